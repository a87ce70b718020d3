"""Joint augmentation of an image batch and its label maps, on the training device.

Geometry moves image and mask together: one set of random parameters per sample, one sampling
grid, applied to the image with (multi)linear interpolation and to the mask with nearest
neighbour (a label is never blended into a class that is not there); positions that come from
outside the input get ``ignore_index`` in the mask (they carry no label) and zeros, the data
set's mean, in the normalised image. The transforms are those of the ``augment.*`` config, in
1, 2 and 3 dims:

- ``resized_crop``: a random box of ``resized_crop``..1 of the area (volume), aspect ratio in
  [3/4, 4/3] per axis pair, resized back to the input's size (Szegedy et al. 2015, §6);
- ``crop_padding``: pad every axis by that many positions, crop back at a random offset (He et
  al. 2016, §4.2); the padding is black in the image and ignored in the mask;
- ``shift``/``scale``/``shear``/``rotate``: a random affine map (LeCun et al. 1998, §III.C), drawn
  as ``data.transforms.random_affine`` draws it: translation up to ``shift`` positions per axis,
  scale per axis in [1 - scale, 1 + scale], shear of the last axis along the one before, rotation
  in the plane of the last two axes (about the depth axis in 3-D);
- ``hflip``/``vflip``: the last / second-to-last axis reversed with that probability.

Colour transforms (``color_jitter``, ``hue``, ``pca_lighting``) and random erasing touch the image
only, through :class:`convnet.data.augment.BatchAugment` with its geometry switched off (erasing
hides pixels; their labels stay, as an occluder would leave the object's extent). Mixup and
CutMix mix the labels of whole images and the learned policies (AutoAugment, RandAugment,
TrivialAugment) warp the image alone: both are refused for segmentation.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

GEOMETRY = ("resized_crop", "crop_padding", "shift", "scale", "shear", "rotate", "hflip", "vflip")


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(shape, generator=g, device=g.device).cpu()


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * _rand(g, *shape)


def warp_pair(x: Tensor, mask: Tensor, theta: Tensor, ignore_index: int | None, mode: str = "bilinear"
              ) -> tuple[Tensor, Tensor]:
    """Sample image (B, C, *S) and mask (B, *S) through one affine map per sample, theta (B, n,
    n + 1) in ``affine_grid``'s normalised coordinates (last axis first). The image is sampled
    with ``mode`` ("bilinear": multilinear in 3-D), the mask with nearest neighbour; outside the
    input the image gets zeros and the mask ``ignore_index`` (0 when there is none)."""
    if x.ndim == 3:  # a 1-D batch is sampled as a one-position-high image
        t2 = torch.zeros(theta.shape[0], 2, 3, dtype=theta.dtype, device=theta.device)
        t2[:, 0, 0], t2[:, 0, 2], t2[:, 1, 1] = theta[:, 0, 0], theta[:, 0, 1], 1.0
        x2, m2 = warp_pair(x.unsqueeze(2), mask.unsqueeze(1), t2, ignore_index, mode)
        return x2.squeeze(2), m2.squeeze(1)
    theta = theta.to(x.device, torch.float32)
    grid = F.affine_grid(theta, [x.shape[0], 1, *x.shape[2:]], align_corners=False)
    image = F.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False).to(x.dtype)
    # Labels shifted by one so that the zeros grid_sample puts outside mark "no label".
    shifted = (mask + 1).to(torch.float32).unsqueeze(1)
    sampled = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
    sampled = sampled.round().long()
    fill = ignore_index if ignore_index is not None else 0
    return image, torch.where(sampled == 0, torch.full_like(sampled, fill), sampled - 1)


def affine_theta(b: int, spatial: Sequence[int], g: torch.Generator, shift: float = 0.0, scale: float = 0.0,
                 shear: float = 0.0, rotate: float = 0.0) -> Tensor:
    """(B, n, n + 1) random affine maps (output -> input coordinates, normalised, last axis
    first) with the parameterisation of ``data.transforms.random_affine``."""
    n = len(spatial)
    theta = torch.zeros(b, n, n + 1)
    theta[:, range(n), range(n)] = 1.0
    if scale:
        theta[:, range(n), range(n)] = 1.0 / (1.0 + scale * _uniform(g, -1, 1, b, n))
    if shear and n >= 2:
        theta[:, 0, 1] = shear * _uniform(g, -1, 1, b)
    if rotate and n >= 2:
        angle = torch.deg2rad(rotate * _uniform(g, -1, 1, b))
        rot = torch.eye(n).repeat(b, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
        theta[:, :, :n] = rot @ theta[:, :, :n]
    if shift:
        sizes = torch.tensor(spatial[::-1], dtype=torch.float32)  # (W, H[, D])
        theta[:, :, n] = _uniform(g, -1, 1, b, n) * shift * 2.0 / sizes
    return theta


def resized_crop_theta(b: int, n: int, g: torch.Generator, min_area: float,
                       ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """(B, n, n + 1) maps that crop a random box of ``min_area``..1 of the input's area (volume)
    and resize it to the whole: per axis after the first a log aspect ratio uniform in
    log(``ratio``), sides centred so that their product is the area, clipped to the input."""
    area = _uniform(g, min_area, 1.0, b)
    r = torch.zeros(b, n)
    if n > 1:
        r[:, 1:] = _uniform(g, math.log(ratio[0]), math.log(ratio[1]), b, n - 1)
    frac = (area.log()[:, None] / n + r - r.mean(1, keepdim=True)).exp().clamp(max=1.0)  # (B, n), first axis first
    start = _rand(g, b, n) * (1 - frac)
    theta = torch.zeros(b, n, n + 1)
    theta[:, range(n), range(n)] = frac.flip(1)
    theta[:, :, n] = (2 * start + frac - 1).flip(1)
    return theta


def flip_pair(x: Tensor, mask: Tensor, axis: int, p: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Reverse spatial ``axis`` (-1: last) of image and mask of each sample with probability p."""
    n = x.ndim - 2
    if not -n <= axis < n:
        raise ValueError(f"spatial axis {axis} is out of range for a batch {tuple(x.shape)}")
    flip = _rand(g, x.shape[0]) < p
    d = axis % n
    fx = flip.to(x.device).view(-1, *([1] * (x.ndim - 1)))
    fm = flip.to(mask.device).view(-1, *([1] * (mask.ndim - 1)))
    return torch.where(fx, x.flip(2 + d), x), torch.where(fm, mask.flip(1 + d), mask)


def pad_crop_pair(x: Tensor, mask: Tensor, padding: int, g: torch.Generator, ignore_index: int | None,
                  fill: Sequence[float] | float = 0.0) -> tuple[Tensor, Tensor]:
    """Pad every spatial axis by ``padding`` (image: ``fill`` per channel; mask: ignore_index) and
    cut a window of the input's size at one random offset per sample for both."""
    b, n = x.shape[0], x.ndim - 2
    offsets = torch.randint(0, 2 * padding + 1, (b, n), generator=g, device=g.device).cpu().tolist()
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, *([1] * n))
    xp = F.pad(x - fill_t, [padding] * (2 * n)) + fill_t  # constant pad takes one value: pad around the fill
    mp = F.pad(mask, [padding] * (2 * n), value=ignore_index if ignore_index is not None else 0)
    size = x.shape[2:]
    xs, ms = [], []
    for i, offset in enumerate(offsets):
        index = tuple(slice(o, o + s) for o, s in zip(offset, size))
        xs.append(xp[(i, slice(None)) + index])
        ms.append(mp[(i,) + index])
    return torch.stack(xs), torch.stack(ms)


class JointAugment:
    """The ``augment.*`` config on a segmentation batch ``{"input": (B, C, *S), "target": (B, *S)}``.

    Args:
        cfg: an ``AugmentConfig`` (zero/empty turns an op off).
        spatial_dims: 1, 2 or 3.
        mean, std: the batches' normalisation, (v - mean) / std (black = -mean / std).
        ignore_index: the mask's "no label" value (None: none; 0 then fills the outside).
        interpolation: how the image is sampled ("bilinear", or "nearest" to compare with the mask).

    Raises:
        ValueError: Mixup, CutMix or a learned policy is on (the message says which key to reset).
    """

    def __init__(self, cfg: Any, spatial_dims: int, mean: Sequence[float], std: Sequence[float],
                 ignore_index: int | None = 255, interpolation: str = "bilinear"):
        from ..data.augment import BatchAugment

        refused = [k for k, on in (("augment.mixup", cfg.mixup > 0), ("augment.cutmix", cfg.cutmix > 0)) if on]
        if refused:
            raise ValueError(f"{' and '.join(refused)} mix the labels of whole images, which a segmentation mask "
                             f"does not have; set {'=0 '.join(refused)}=0")
        policies = [k for k, on in (("augment.auto_augment", bool(cfg.auto_augment)),
                                    ("augment.rand_augment_n", cfg.rand_augment_n > 0),
                                    ("augment.trivial_augment", bool(cfg.trivial_augment))) if on]
        if policies:
            raise ValueError(f"{policies[0]}: the learned augmentation policies warp the image without its mask; "
                             "use the geometric keys (shift, scale, rotate, hflip, ...) for segmentation")
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        if cfg.vflip > 0 and spatial_dims == 1:
            raise ValueError("augment.vflip flips the second-to-last axis; a 1-D signal has only one")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.cfg, self.spatial_dims = cfg, spatial_dims
        self.ignore_index, self.interpolation = ignore_index, interpolation
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        # Colour and erasing: the classification chain with its geometry and mixing turned off.
        off = {k: 0 for k in GEOMETRY}
        self.colour = BatchAugment(dataclasses.replace(cfg, **off, mixup=0.0, cutmix=0.0), spatial_dims=spatial_dims,
                                   num_classes=1, mean=self.mean, std=self.std)

    def geometry(self) -> list[str]:
        """The geometric ops that are on, in the order they run."""
        c = self.cfg
        ops = []
        if c.resized_crop > 0:
            ops.append("resized_crop")
        elif c.crop_padding > 0:  # a resized crop already moves the content, as in BatchAugment
            ops.append("crop_padding")
        if c.shift or c.scale or c.shear or c.rotate:
            ops.append("affine")
        ops += [name for name in ("hflip", "vflip") if getattr(c, name) > 0]
        return ops

    @property
    def enabled(self) -> bool:
        return bool(self.geometry()) or self.colour.enabled

    def pair(self, x: Tensor, mask: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augment (B, C, *S) normalised images and their (B, *S) masks together."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a batch (B, C) + {self.spatial_dims} spatial axes, got {tuple(x.shape)}")
        if mask.shape != x.shape[:1] + x.shape[2:]:
            raise ValueError(f"masks {tuple(mask.shape)} do not match images {tuple(x.shape)}")
        c, b, spatial = self.cfg, x.shape[0], tuple(x.shape[2:])
        for op in self.geometry():
            if op == "resized_crop":
                theta = resized_crop_theta(b, len(spatial), g, c.resized_crop)
                x, mask = warp_pair(x, mask, theta, self.ignore_index, self.interpolation)
            elif op == "crop_padding":
                black = [-m / s for m, s in zip(self.mean, self.std)]
                x, mask = pad_crop_pair(x, mask, int(c.crop_padding), g, self.ignore_index,
                                        black if len(black) == x.shape[1] else black[0])
            elif op == "affine":
                theta = affine_theta(b, spatial, g, c.shift, c.scale, c.shear, c.rotate)
                x, mask = warp_pair(x, mask, theta, self.ignore_index, self.interpolation)
            else:
                x, mask = flip_pair(x, mask, -1 if op == "hflip" else -2, getattr(c, op), g)
        if self.colour.enabled:
            x, _ = self.colour(x, torch.zeros(b, dtype=torch.long, device=x.device), g)
        return x, mask

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        x, mask = self.pair(batch["input"], batch["target"], generator)
        return {**batch, "input": x, "target": mask}
