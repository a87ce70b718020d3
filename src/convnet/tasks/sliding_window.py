"""Dense inference on inputs of any size: padding to a size the model takes, and sliding windows.

This lives with the tasks (not in analysis/ or deploy/) because ``eval``, ``predict`` and
``serve`` reach it through the segmentation Task, and imports run ``tasks -> analysis/deploy``,
never back; it needs only a model's size surface (``output_size``, ``size_divisor``) and torch.

- :func:`pad_to_multiple` pads every spatial axis to a multiple of a divisor and returns the crop
  that undoes it; :func:`pad_for_model` pads to the nearest size a segmentation model takes such
  that its output covers the whole input, which for a valid-convolution U-Net is Ronneberger's
  overlap-tile strategy ("the missing context is extrapolated by mirroring the input image",
  §2, Fig. 2) and for a padded model is plain padding.
- :func:`sliding_window_inference` runs a model on overlapping windows in 1, 2 or 3 dims and blends
  their logits with a Gaussian importance map (sigma = window / 8, nnU-Net's choice: Isensee et
  al. 2021, "nnU-Net", Nat. Methods), so that predictions near a window's border, which saw
  the least context, count least. Memory for the model is bounded by ``batch_size`` windows; only
  the output and its weight sum have the size of the input. A window's ``margin`` outer positions
  can be discarded where they are not at the input's border; with a margin at least the model's
  receptive-field radius, every blended prediction equals whole-input inference.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Crop = tuple[slice, ...]


def _per_axis(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(int(v) for v in value)
    if len(value) != dims:
        raise ValueError(f"{name} {value} has {len(value)} entries, the input has {dims} spatial axes")
    return value


def _pad(x: torch.Tensor, before: Sequence[int], after: Sequence[int], mode: str, value: float) -> torch.Tensor:
    pads: list[int] = []
    for b, a in reversed(list(zip(before, after))):  # F.pad takes the last axis first
        pads += [b, a]
    if not any(pads):
        return x
    if mode == "constant":
        return F.pad(x, pads, mode="constant", value=value)
    if mode == "reflect":
        # Reflection cannot reach further than the map itself: mirror in steps of at most size - 1.
        while any(pads):
            step = []
            for i, p in enumerate(pads):
                size = x.shape[x.ndim - 1 - i // 2]
                step.append(min(p, size - 1))
            x = F.pad(x, step, mode="reflect")
            pads = [p - s for p, s in zip(pads, step)]
        return x
    return F.pad(x, pads, mode=mode)


def pad_to_multiple(x: torch.Tensor, divisor: int | Sequence[int], mode: str = "constant",
                    value: float = 0.0) -> tuple[torch.Tensor, Crop]:
    """Pad (B, C, *S) so that every spatial extent is a multiple of ``divisor`` (split evenly,
    the extra position after). Returns the padded tensor and the index that crops an output of
    the padded size back to ``S`` (``y[crop]``).

    Args:
        mode: ``"constant"`` (with ``value``), ``"reflect"``, ``"replicate"`` or ``"circular"``.
    """
    dims = x.ndim - 2
    divisor = _per_axis(divisor, dims, "divisor")
    if any(d < 1 for d in divisor):
        raise ValueError(f"divisor must be positive, got {divisor}")
    size = x.shape[2:]
    total = [-s % d for s, d in zip(size, divisor)]
    before = [t // 2 for t in total]
    after = [t - b for t, b in zip(total, before)]
    crop = (slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(before, size))
    return _pad(x, before, after, mode, value), crop


def pad_for_model(model: nn.Module, x: torch.Tensor, mode: str = "reflect",
                  value: float = 0.0) -> tuple[torch.Tensor, Crop]:
    """Pad (B, C, *S) to the smallest size the model takes whose output covers ``S``; returns it
    and the index that crops the model's output to exactly ``S``.

    Padded models (output size = input size) get at most ``size_divisor - 1`` positions per axis;
    a valid-convolution U-Net gets its margin on both sides, mirrored by default (Ronneberger's
    overlap-tile), so ``model(padded)[crop]`` is a prediction for every input position.
    """
    dims = x.ndim - 2
    if not (hasattr(model, "valid_size") and hasattr(model, "axis_output_size")):
        raise ValueError(f"pad_for_model needs a segmentation model (valid_size, axis_output_size); "
                         f"{type(model).__name__} has neither: use pad_to_multiple")
    before, after, crop = [], [], [slice(None), slice(None)]
    for axis, s in enumerate(x.shape[2:]):
        found = None
        for candidate in range(s, 16 * s + 4096):
            if model.valid_size(candidate):
                out = model.axis_output_size(candidate)
                if out >= s:
                    found = (candidate, out)
                    break
        if found is None:
            raise ValueError(f"no input size the model takes gives an output of {s} on axis {axis}")
        padded, out = found
        margin = (padded - out) // 2  # input positions before the first output position
        lo = margin + (out - s) // 2
        before.append(lo)
        after.append(padded - s - lo)
        crop.append(slice(lo - margin, lo - margin + s))
    assert len(before) == dims
    return _pad(x, before, after, mode, value), tuple(crop)


def gaussian_importance(size: Sequence[int], sigma_scale: float = 1 / 8, dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """An N-d Gaussian over ``size`` centred in the window, sigma = ``sigma_scale`` * size per
    axis, scaled to a maximum of 1; nnU-Net raises its zeros to the smallest positive value so
    that every position keeps some weight."""
    weight = torch.ones((), dtype=torch.float64)  # built on the CPU: not every device has float64
    for n in size:
        coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        sigma = max(sigma_scale * n, 1e-6)
        weight = weight.unsqueeze(-1) * torch.exp(-0.5 * (coords / sigma) ** 2)
    weight = weight / weight.max()
    positive = weight[weight > 0]
    weight = weight.clamp(min=float(positive.min()))
    return weight.to(device=device, dtype=dtype)


def _starts(extent: int, window: int, step: int) -> list[int]:
    if extent <= window:
        return [0]
    starts = list(range(0, extent - window + 1, step))
    if starts[-1] != extent - window:
        starts.append(extent - window)  # the last window ends at the border
    return starts


def _model_output_size(model: nn.Module, window: tuple[int, ...]) -> tuple[int, ...]:
    output_size = getattr(model, "output_size", None)
    return tuple(output_size(window)) if callable(output_size) else window


@torch.no_grad()
def sliding_window_inference(model: nn.Module, x: torch.Tensor, window: int | Sequence[int], overlap: float = 0.25,
                             gaussian: bool = True, batch_size: int = 4, margin: int | Sequence[int] = 0,
                             sigma_scale: float = 1 / 8, pad_mode: str = "constant",
                             output_device: torch.device | str | None = None) -> torch.Tensor:
    """Blend a model's logits over overlapping windows of ``x`` (B, C, *S), 1 to 3 spatial axes.

    Args:
        model: maps (N, C, *window) to (N, K, *output_size(window)) (a dict's ``"out"`` is used);
            ``output_size`` (valid-convolution U-Nets) is read when the model has it.
        window: the window's input extent (an int for every axis, or one per axis); it must be a
            size the model takes.
        overlap: the fraction of a window shared with its neighbour along each axis, in [0, 1).
        gaussian: weight positions by a Gaussian importance map (else uniformly).
        batch_size: windows per forward pass: the bound on the model's memory.
        margin: output positions at each window edge given no weight unless the edge lies on the
            input's border (use the model's receptive-field radius for exact whole-input results;
            needs overlap >= 2 * margin / window).

    Windows start at multiples of the model's ``output_stride`` (1 for a model without one), so
    a model with a size divisor sees the input padded at the end, as whole-input inference
    after :func:`pad_to_multiple` would.
        pad_mode: how an input smaller than the window is padded (``"constant"``: zeros).
        output_device: where the blended output is accumulated (default: ``x``'s device); windows
            run on the model's device.

    Returns:
        (B, K, *O) logits: O = S for padded models, S minus the valid-convolution margins
        otherwise (position j of the output is input position j + (window - output) / 2).
    """
    dims = x.ndim - 2
    if dims not in (1, 2, 3):
        raise ValueError(f"sliding_window_inference takes (B, C, *S) with 1 to 3 spatial axes, got {tuple(x.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    window = _per_axis(window, dims, "window")
    margin = _per_axis(margin, dims, "margin")
    out_window = _model_output_size(model, window)
    shrink = [(w - o) // 2 for w, o in zip(window, out_window)]  # valid-convolution margin per side
    size = tuple(x.shape[2:])
    out_size = tuple(s - 2 * m for s, m in zip(size, shrink))
    if any(o < 1 for o in out_size):
        raise ValueError(f"input {size} is too small for a model that loses {[2 * m for m in shrink]} "
                         f"positions per axis")
    if any(2 * m >= o for m, o in zip(margin, out_window)):
        raise ValueError(f"margin {margin} leaves nothing of the window's output {out_window}")
    # Windows start at multiples of the model's output stride (the grid of its poolings and
    # strides), so each sees the pooling grid the whole input would; the input is padded at the
    # end (as pad_to_multiple would for whole-input inference) until the windows tile it.
    align = int(getattr(model, "output_stride", 1) or 1)
    steps = [max(align, int(o * (1 - overlap)) // align * align) for o in out_window]
    padded_out = tuple(w + math.ceil(max(0, o - w) / align) * align for o, w in zip(out_size, out_window))
    x = _pad(x, [0] * dims, [p + 2 * m - s for p, m, s in zip(padded_out, shrink, size)], pad_mode, 0.0)
    starts = [_starts(e, o, st) for e, o, st in zip(padded_out, out_window, steps)]

    param = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = param.device if param is not None else x.device
    output_device = torch.device(output_device) if output_device is not None else x.device
    importance = (gaussian_importance(out_window, sigma_scale, device=output_device) if gaussian
                  else torch.ones(out_window, device=output_device))

    def weight_at(origin: tuple[int, ...]) -> torch.Tensor:
        w = importance
        if not any(margin):
            return w
        w = w.clone()
        for axis, (o, n, m, extent) in enumerate(zip(origin, out_window, margin, padded_out)):
            if m == 0:
                continue
            index = [slice(None)] * dims
            if o > 0:  # the window's low edge is inside the input
                index[axis] = slice(0, m)
                w[tuple(index)] = 0
            if o + n < extent:
                index[axis] = slice(n - m, n)
                w[tuple(index)] = 0
        return w

    batch, num_classes = x.shape[0], None
    total: torch.Tensor | None = None
    weights = torch.zeros((1, 1) + padded_out, device=output_device)
    jobs = [(b, origin) for b in range(batch) for origin in itertools.product(*starts)]
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first:first + batch_size]
        windows = torch.stack([x[(b, slice(None)) + tuple(slice(o, o + w) for o, w in zip(origin, window))]
                               for b, origin in chunk]).to(device)
        pred = model(windows)
        if isinstance(pred, dict):
            pred = pred["out"]
        if tuple(pred.shape[2:]) != out_window:
            raise ValueError(f"the model returned {tuple(pred.shape[2:])} for a window of {window}, "
                             f"expected {out_window}")
        pred = pred.to(output_device, torch.float32)
        if total is None:
            num_classes = pred.shape[1]
            total = torch.zeros((batch, num_classes) + padded_out, device=output_device)
        for (b, origin), p in zip(chunk, pred):
            region = tuple(slice(o, o + n) for o, n in zip(origin, out_window))
            w = weight_at(origin)
            total[(b, slice(None)) + region] += p * w
            if b == 0:
                weights[(0, 0) + region] += w
    if (weights == 0).any():
        raise ValueError(f"margin {margin} with overlap {overlap} leaves positions no window predicts; "
                         f"use overlap >= {max(2 * m / o for m, o in zip(margin, out_window)):.3f}")
    out = total / weights
    return out[(slice(None), slice(None)) + tuple(slice(0, o) for o in out_size)]
