"""The effective receptive field (Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive
Field in Deep Convolutional Neural Networks", NIPS 2016).

Luo et al. measure how much each input pixel moves one output unit: the gradient of the centre
unit of the last feature map with respect to the input, averaged over many inputs (section 4).
It is Gaussian-shaped, its standard deviation grows like sqrt(depth) for a stack of convolutions
(section 2.2: the gradient of a stack of k uniform kernels is a k-fold convolution, a binomial),
and it fills only a fraction of the theoretical receptive field.

What is computed here, per call of :func:`effective_receptive_field`:

* the centre unit: index ``S_i // 2`` on every spatial axis of ``forward_features``' output,
  summed over all channels (``channel=None``, the default) or one channel;
* ``heatmap``: the mean over inputs of |d unit / d x|, summed over input channels;
  ``energy``: the mean of (d unit / d x)^2, summed over input channels (the "gradient energy");
* ``sigma``: the standard deviation of the normalised heatmap's marginal on each axis (the
  moment estimate of a fitted Gaussian's sigma; exact for a Gaussian that the input does not
  clip) and ``center``, its mean;
* ``area95``: the size (pixels) of the smallest region holding 95% of the gradient energy (the
  pixels of highest energy, taken until their sum reaches 95%), and ``share95``, that area over
  the area of the theoretical receptive field (clipped to the input).

The theoretical field is the centre unit's field from ``analysis.receptive_field`` clipped to the
input; for a model that analysis cannot trace (or without that module) it is the bounding box of
every input pixel with a nonzero gradient for any input (the measured extent; on a network
whose units are never all dead this is the theoretical field). ``rf_source`` says which.

The model is put in eval mode for the measurement (batch statistics would couple the samples of
a batch; dropout would add noise) and restored afterwards.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._inputs import probe_setup

__all__ = [
    "ERFResult",
    "centre_unit_gradients",
    "effective_receptive_field",
    "moments",
    "smallest_region_share",
]


@dataclass
class ERFResult:
    """The effective receptive field of one model at one input size.

    Attributes:
        heatmap: mean |gradient| per input position, shape ``S`` (the spatial input size).
        energy: mean squared gradient per input position, shape ``S``.
        sigma: the heatmap's standard deviation per spatial axis, in input pixels.
        center: the heatmap's centroid per spatial axis, in input pixels.
        rf_size: the theoretical receptive field per axis, clipped to the input.
        rf_source: ``"receptive_field"`` (the analytic computation) or ``"gradient-extent"``
            (the bounding box of nonzero gradients).
        area95: pixels in the smallest region that holds 95% of the gradient energy.
        share95: ``area95`` over the theoretical field's area (``prod(rf_size)``).
        input_size: (C, *S) of the inputs.
        output_unit: the index of the centre unit on forward_features' spatial axes.
        channel: the output channel whose unit was differentiated (None: the sum of all).
        n_inputs: how many inputs were averaged.
    """

    heatmap: np.ndarray
    energy: np.ndarray
    sigma: tuple[float, ...]
    center: tuple[float, ...]
    rf_size: tuple[int, ...]
    rf_source: str
    area95: int
    share95: float
    input_size: tuple[int, ...]
    output_unit: tuple[int, ...]
    channel: int | None
    n_inputs: int

    def to_dict(self, maps: bool = False) -> dict[str, Any]:
        """The figures as plain Python values; ``maps=True`` adds the heatmap and energy lists."""
        d = asdict(self)
        for k in ("heatmap", "energy"):
            d[k] = getattr(self, k).tolist() if maps else None
            if not maps:
                del d[k]
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def describe(self) -> str:
        """One line of the figures, for the command line."""
        axes = " x ".join(f"{s:.2f}" for s in self.sigma)
        rf = " x ".join(str(r) for r in self.rf_size)
        return (f"sigma {axes} px, theoretical field {rf} ({self.rf_source}), "
                f"95% of the gradient energy in {self.area95} px = {self.share95:.1%} of the field")


def _features_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return model.forward_features if hasattr(model, "forward_features") else model


def centre_unit_gradients(model: nn.Module, x: torch.Tensor, channel: int | None = None
                          ) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """d(centre unit of forward_features) / dx for every sample of ``x`` in one backward pass.

    Samples of a batch are independent in eval mode, so the gradient of the batch sum of the
    centre units gives every sample's own gradient.

    Returns:
        The gradients, shaped like ``x``, the centre unit's spatial index, and the spatial shape
        of the feature map.
    """
    x = x.detach().clone().requires_grad_(True)
    y = _features_fn(model)(x)  # (B, C, *S')
    if y.ndim != x.ndim:
        raise ValueError(f"forward_features returned shape {tuple(y.shape)}; a spatial map of rank "
                         f"{x.ndim} like the input {tuple(x.shape)} was expected")
    unit = tuple(s // 2 for s in y.shape[2:])
    picked = y[(slice(None), slice(None)) + unit]  # (B, C)
    target = picked.sum() if channel is None else picked[:, channel].sum()
    (grad,) = torch.autograd.grad(target, x, allow_unused=True)
    if grad is None:  # the unit does not depend on the input at all
        grad = torch.zeros_like(x)
    return grad.detach(), unit, tuple(y.shape[2:])


def moments(heatmap: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Centroid and standard deviation of a nonnegative map on each axis (its marginals)."""
    total = float(heatmap.sum())
    if total <= 0:
        return tuple(float("nan") for _ in heatmap.shape), tuple(float("nan") for _ in heatmap.shape)
    p = heatmap / total
    centers, sigmas = [], []
    for axis, n in enumerate(heatmap.shape):
        marginal = p.sum(axis=tuple(a for a in range(p.ndim) if a != axis))
        pos = np.arange(n, dtype=np.float64)
        mu = float((marginal * pos).sum())
        centers.append(mu)
        sigmas.append(float(np.sqrt(max((marginal * (pos - mu) ** 2).sum(), 0.0))))
    return tuple(centers), tuple(sigmas)


def smallest_region_share(energy: np.ndarray, fraction: float = 0.95) -> int:
    """Pixels in the smallest region holding ``fraction`` of the total energy (the most energetic
    pixels first; no region of any shape with fewer pixels holds as much)."""
    flat = np.sort(energy.ravel())[::-1].astype(np.float64)
    total = flat.sum()
    if total <= 0:
        return 0
    cum = np.cumsum(flat)
    return int(np.searchsorted(cum, fraction * total * (1 - 1e-12)) + 1)


def _theoretical_rf(model: nn.Module, input_size: tuple[int, ...], out_spatial: tuple[int, ...],
                    extent: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """The centre unit's theoretical field clipped to the input, per axis, and where it is from."""
    from .receptive_field import receptive_field
    from .rf_measurement import clipped_extent

    try:
        rf = receptive_field(model, input_size)
        box = clipped_extent(rf, out_spatial, input_size[1:])
    except Exception:  # noqa: BLE001 - an op without a rule (UnknownGeometry etc.): keep the measurement
        return extent, "gradient-extent"
    return tuple(int(hi - lo + 1) for lo, hi in box), "receptive_field"


@torch.no_grad()
def _noise(n: int, input_size: Sequence[int], generator: torch.Generator, dtype: torch.dtype,
           device: torch.device) -> torch.Tensor:
    return torch.randn((n, *input_size), generator=generator, dtype=dtype).to(device)


def effective_receptive_field(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    inputs: torch.Tensor | None = None,
    n_inputs: int = 16,
    channel: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> ERFResult:
    """Measure the effective receptive field of ``model``'s last feature map.

    Args:
        model: a convnet classifier (its ``forward_features`` is used) or any module mapping
            (B, C, *S) to a spatial map (B, C', *S').
        input_size: (C, *S); None means ``model.default_cfg["input_size"]`` or, with ``inputs``,
            their shape.
        inputs: real inputs (N, C, *S) to average over (e.g. a data set's test images); None
            draws ``n_inputs`` standard-normal noise inputs, as Luo et al. did at initialisation.
        n_inputs: how many noise inputs (ignored with ``inputs``).
        channel: the output channel whose centre unit is differentiated; None sums all channels.
        batch_size: inputs per backward pass.
        seed: the noise generator's seed.
    """
    device, dtype, input_size = probe_setup(model, input_size, inputs, "effective_receptive_field")
    n = len(inputs) if inputs is not None else n_inputs
    if n < 1:
        raise ValueError(f"need at least one input, got {n}")
    gen = torch.Generator().manual_seed(seed)
    heat = torch.zeros(input_size[1:], dtype=torch.float64)
    energy = torch.zeros_like(heat)
    support = torch.zeros(input_size[1:], dtype=torch.bool)
    unit: tuple[int, ...] = ()
    out_spatial: tuple[int, ...] = ()
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            x = (inputs[start:start + b].to(device=device, dtype=dtype) if inputs is not None
                 else _noise(b, input_size, gen, dtype, device))
            with torch.enable_grad():
                grad, unit, out_spatial = centre_unit_gradients(model, x, channel)
            g = grad.double().cpu()
            heat += g.abs().sum(1).sum(0)  # over input channels, then samples
            energy += g.pow(2).sum(1).sum(0)
            support |= (g != 0).any(1).any(0)
    finally:
        model.train(was_training)
    heat /= n
    energy /= n
    heat_np, energy_np = heat.numpy(), energy.numpy()
    center, sigma = moments(heat_np)
    nz = np.nonzero(support.numpy())
    extent = tuple(int(a.max() - a.min() + 1) if a.size else 0 for a in nz) if nz else ()
    rf_size, source = _theoretical_rf(model, input_size, out_spatial, extent)
    area95 = smallest_region_share(energy_np, 0.95)
    rf_area = int(np.prod(rf_size)) if rf_size else 0
    share = area95 / rf_area if rf_area else float("nan")
    return ERFResult(heatmap=heat_np, energy=energy_np, sigma=sigma, center=center, rf_size=rf_size,
                     rf_source=source, area95=area95, share95=float(share), input_size=input_size,
                     output_unit=unit, channel=channel, n_inputs=n)
