"""Batches of sequences of different lengths: padding them, and running a 1-D network on a padded
batch so that no output depends on the padding.

:func:`pad_sequences` zero-pads (C, L_i) inputs after their end to the longest and returns the
lengths. :func:`masked_forward` runs a model on such a batch with forward hooks on its layers
that make every layer see, past each sequence's end, what it would see at the edge of that
sequence alone:

- a convolution's input is zero past the end (the zeros its own padding would add; with
  "same" padding the output inside the sequence then equals the unpadded one's);
- a local max pool's input is -inf past the end (its padding value);
- a local average pool's input is zero (its count_include_pad padding);
- batch norm in training mode takes its batch statistics over the positions inside the
  sequences only, and its running statistics follow those (in eval mode it is element-wise);
- global pooling (``layers.GlobalPool``, adaptive pools to 1) averages or takes the maximum
  over each sequence's own positions.

For networks that keep the length through every layer (FCN, ResNet and InceptionTime of the
time-series literature), a padded batch then gives, in eval mode, the logits of each sequence
alone, and in training mode the batch statistics of the sequences' positions only. A layer whose
input is shorter than the batch (after a stride) masks ``ceil(length x L_layer / L_batch)``
positions: the best one can do without the layer's geometry, not exact. Layers other than these
(attention, recurrent cells) are not masked.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.pooling import _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd, _MaxPoolNd

from ..layers.pooling import GlobalPool

__all__ = ["length_mask", "masked_forward", "pad_sequences", "trim_to_longest"]


def pad_sequences(inputs: Sequence[torch.Tensor], lengths: Sequence[int] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, L_i) tensors -> ((B, C, max L) zero-padded after each end, (B,) int64 lengths).

    ``lengths`` (default: each input's last axis) may be shorter than an input that is already
    padded; the values past them are zeroed.
    """
    if not inputs:
        raise ValueError("pad_sequences needs at least one input")
    lengths = [x.shape[-1] for x in inputs] if lengths is None else [int(n) for n in lengths]
    width = max(lengths)
    out = inputs[0].new_zeros(len(inputs), *inputs[0].shape[:-1], width)
    for i, (x, n) in enumerate(zip(inputs, lengths)):
        if x.shape[:-1] != inputs[0].shape[:-1]:
            raise ValueError(f"inputs differ in more than their length: {tuple(inputs[0].shape)} and {tuple(x.shape)}")
        out[i, ..., :n] = x[..., :n]
    return out, torch.tensor(lengths, dtype=torch.long)


def length_mask(lengths: torch.Tensor, size: int, full: int | None = None) -> torch.Tensor:
    """(B, 1, size) bool, True inside each sequence: ``lengths`` are at the batch's length
    ``full`` (default ``size``) and scale to ``size`` rounding up."""
    if full is not None and full != size:
        lengths = torch.clamp((lengths * size + full - 1) // full, 1, size)
    return (torch.arange(size, device=lengths.device) < lengths[:, None])[:, None, :]


def _is_global(module: nn.Module) -> bool:
    if isinstance(module, GlobalPool):
        return True
    if isinstance(module, (_AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd)):
        size = module.output_size
        return all(s == 1 for s in (size if isinstance(size, tuple) else (size,)))
    return False


class _Masker:
    """The hooks of :func:`masked_forward` for one batch."""

    def __init__(self, lengths: torch.Tensor, full: int):
        self.lengths, self.full = lengths, full
        self.saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return length_mask(self.lengths.to(x.device), x.shape[-1], self.full)

    def fill(self, value: float):
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            x = args[0]
            if not isinstance(x, torch.Tensor) or x.ndim != 3:
                return None
            return (x.masked_fill(~self.mask(x), value), *args[1:])
        return hook

    def global_pool(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        x = args[0]
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            return None
        m = self.mask(x)
        if isinstance(module, _AdaptiveMaxPoolNd) or getattr(module, "pool_type", "avg") == "max":
            pooled = x.masked_fill(~m, float("-inf")).amax(-1, keepdim=True)
        else:
            pooled = x.masked_fill(~m, 0.0).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1)
        return pooled.reshape(output.shape)

    # Batch norm in training: the module runs as usual (its output is replaced), its running
    # statistics are put back and updated with the statistics of the masked positions.
    def norm_pre(self, module: _BatchNorm, args: tuple) -> None:
        x = args[0]
        if not module.training or x.ndim != 3 or module.running_mean is None:
            return
        self.saved[id(module)] = (module.running_mean.clone(), module.running_var.clone())

    def norm_post(self, module: _BatchNorm, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        x = args[0]
        if not module.training or x.ndim != 3:
            return None
        inside = self.mask(x)
        count = inside.sum() * 1.0
        mean = x.masked_fill(~inside, 0.0).sum((0, 2)) / count
        var = ((x - mean[None, :, None]).masked_fill(~inside, 0.0) ** 2).sum((0, 2)) / count  # biased, as BN normalises
        y = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + module.eps)
        if module.affine:
            y = y * module.weight[None, :, None] + module.bias[None, :, None]
        saved = self.saved.pop(id(module), None)
        if saved is not None:
            rm, rv = saved
            momentum = module.momentum
            if momentum is None:  # cumulative moving average (num_batches_tracked already counts this one)
                momentum = 1.0 / float(module.num_batches_tracked)
            unbiased = var.detach() * count / max(float(count) - 1.0, 1.0)
            with torch.no_grad():
                module.running_mean.copy_((1 - momentum) * rm + momentum * mean.detach())
                module.running_var.copy_((1 - momentum) * rv + momentum * unbiased)
        return y


@contextlib.contextmanager
def _hooks(model: nn.Module, masker: _Masker) -> Iterator[None]:
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, (_ConvNd, _AvgPoolNd)):
                handles.append(module.register_forward_pre_hook(masker.fill(0.0)))
            elif isinstance(module, _MaxPoolNd):
                handles.append(module.register_forward_pre_hook(masker.fill(float("-inf"))))
            elif isinstance(module, _BatchNorm):
                handles.append(module.register_forward_pre_hook(masker.norm_pre))
                handles.append(module.register_forward_hook(masker.norm_post))
            elif _is_global(module):
                handles.append(module.register_forward_hook(masker.global_pool))
        yield
    finally:
        for h in handles:
            h.remove()


def masked_forward(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``model(x)`` on a zero-padded batch (B, C, L) of sequences of ``lengths`` (B,), with the
    padding masked in every layer (see the module docstring). A batch without padding runs the
    model plainly."""
    if x.ndim != 3:
        raise ValueError(f"masked_forward takes 1-D batches (B, C, L), got shape {tuple(x.shape)}")
    lengths = lengths.to(x.device).long()
    if len(lengths) != len(x) or (lengths < 1).any() or (lengths > x.shape[-1]).any():
        raise ValueError(f"lengths must be one per sample in [1, {x.shape[-1]}], got {lengths.tolist()}")
    if bool((lengths == x.shape[-1]).all()):
        return model(x)
    with _hooks(model, _Masker(lengths, x.shape[-1])):
        return model(x.masked_fill(~length_mask(lengths, x.shape[-1]), 0.0))


def trim_to_longest(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` cut after its longest sequence (a batch drawn from a split padded to a longer case)."""
    longest = int(lengths.max()) if len(lengths) else x.shape[-1]
    return x[..., :max(1, longest)] if longest < x.shape[-1] else x

