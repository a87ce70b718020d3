"""Batch augmentation on the training device, reproducible from a ``torch.Generator`` alone.

Every function takes a batch ``(B, C, *S)`` and draws one set of parameters per sample from a
CPU generator (small tensors, moved to the batch's device), then acts on the whole batch with one
kernel (``grid_sample``, a mask, a gather), so that it runs every step on CPU or GPU without the
global RNG. Geometry, erasing, Mixup and CutMix work in 1, 2 and 3 spatial dimensions; colour ops
act per pixel (any dimensionality); the learned policies (AutoAugment, RandAugment,
TrivialAugment) are defined on 2-D images and refuse anything else.

Sources: random resized crop (Szegedy et al. 2015, "Going deeper with convolutions", §6);
pad-and-crop (He et al. 2016, §4.2); PCA lighting (Krizhevsky et al. 2012, §4.1); Random Erasing
(Zhong et al. 2020) / Cutout (DeVries & Taylor 2017); Mixup (Zhang et al. 2018); CutMix (Yun et
al. 2019); AutoAugment (Cubuk et al. 2019), RandAugment (Cubuk et al. 2020), TrivialAugment
(Müller & Hutter 2021), with the op magnitudes of torchvision's ``autoaugment.py``.

``BatchAugment`` chains them in timm's order on a normalised batch: geometry -> policy -> colour
jitter -> PCA lighting -> erasing -> Mixup/CutMix.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .transforms import random_affine

__all__ = [
    "AUTO_AUGMENT_IMAGENET",
    "AugmentConfig",
    "IMAGENET_PCA_EIGVAL",
    "IMAGENET_PCA_EIGVEC",
    "OPS",
    "POLICY_OPS",
    "PolicyOp",
    "Step",
    "BatchAugment",
    "adjust_hue",
    "apply_op",
    "auto_augment",
    "color_jitter",
    "cutmix",
    "flip",
    "hflip",
    "mixup",
    "pad_crop",
    "pca_lighting",
    "rand_augment",
    "random_erasing",
    "random_resized_crop",
    "sample_beta",
    "trivial_augment",
    "vflip",
]

# ImageNet RGB pixel covariance (pixels in [0, 1]): eigenvalues and eigenvectors (columns), as
# used for AlexNet's lighting noise (Krizhevsky et al. 2012, §4.1, whose paper does not print them);
# the figures are fb.resnet.torch's (datasets/imagenet.lua, `pca`), also used by timm and GluonCV.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))

# ITU-R 601-2 luma, the grey level of PIL and torchvision.
_LUMA = (0.2989, 0.587, 0.114)


@dataclass
class AugmentConfig:
    """Batch augmentations on the training device (data/augment.py); zero/empty disables each."""
    # Planar distortions (LeCun et al. 1998, §III.C).
    shift: float = 2.0  # translation, pixels per axis
    scale: float = 0.1  # scale per axis in [1 - scale, 1 + scale] (also squeezes)
    shear: float = 0.2  # horizontal shear factor
    rotate: float = 0.0  # degrees
    hflip: float = 0.0  # probability of flipping the last axis
    vflip: float = 0.0  # probability of flipping the second-to-last axis (2-D/3-D)
    crop_padding: int = 0  # pad by this many pixels per side, crop back at random (CIFAR)
    resized_crop: float = 0.0  # random resized crop: minimum area fraction (0.08 for ImageNet)
    color_jitter: float = 0.0  # brightness, contrast and saturation strength
    hue: float = 0.0  # hue shift, fraction of the colour circle
    pca_lighting: float = 0.0  # AlexNet's PCA lighting noise std (0.1 in the paper)
    erase: float = 0.0  # random erasing (Cutout) probability
    erase_area: tuple[float, float] = (0.02, 0.25)  # erased area fraction range
    auto_augment: str = ""  # "" or "imagenet" (Cubuk et al. 2019's ImageNet policy)
    rand_augment_n: int = 0  # RandAugment: ops per image (0 disables)
    rand_augment_m: float = 9.0  # RandAugment magnitude, 0..30
    trivial_augment: bool = False
    mixup: float = 0.0  # Mixup Beta(alpha, alpha); 0 disables
    cutmix: float = 0.0  # CutMix Beta(alpha, alpha); 0 disables
    mix_prob: float = 1.0  # probability a batch is mixed at all
    switch_prob: float = 0.5  # with both on: probability of CutMix rather than Mixup

    # Allowed values of the numeric fields (checked by train/config.py as keys are set).
    RANGES: ClassVar[dict[str, str]] = {
        "shift": "[0, inf)", "scale": "[0, 1)", "shear": "[0, inf)", "rotate": "[0, 180]",
        "hflip": "[0, 1]", "vflip": "[0, 1]", "crop_padding": "[0, inf)", "resized_crop": "[0, 1]",
        "color_jitter": "[0, inf)", "hue": "[0, 0.5]", "pca_lighting": "[0, inf)", "erase": "[0, 1]",
        "erase_area": "(0, 1]", "rand_augment_n": "[0, inf)", "rand_augment_m": "[0, 30]",
        "mixup": "[0, inf)", "cutmix": "[0, inf)", "mix_prob": "[0, 1]", "switch_prob": "[0, 1]",
    }



# --------------------------------------------------------------------------------------------
# Random draws: always on the generator's device (CPU), then moved to the batch.

def _rand(g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(shape, generator=g, device=g.device).cpu()


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * _rand(g, *shape)


def _randint(g: torch.Generator, high: int, *shape: int) -> Tensor:
    return torch.randint(0, high, shape, generator=g, device=g.device).cpu()


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """(B,) -> (B, 1, ..., 1) on x's device and dtype, to broadcast over a batch."""
    return v.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1)))


def _spatial_dim(x: Tensor, axis: int) -> int:
    n = x.ndim - 2
    if not -n <= axis < n:
        raise ValueError(f"spatial axis {axis} is out of range for a batch {tuple(x.shape)} with {n} spatial axes")
    return 2 + axis % n


def sample_beta(alpha: float, g: torch.Generator, n: int = 1) -> Tensor:
    """n draws of Beta(alpha, alpha) from the generator (``torch.distributions`` takes none).

    Beta = X / (X + Y) with X, Y ~ Gamma(alpha), each by Marsaglia & Tsang (2000) in log space
    (Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1 underflows for Mixup's small alphas)."""
    if alpha <= 0:
        raise ValueError(f"Beta(alpha, alpha) needs alpha > 0, got {alpha}")
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)

    def log_gamma(k: int) -> Tensor:
        out = torch.empty(k, dtype=torch.float64)
        todo = torch.arange(k)
        while todo.numel():
            z = torch.randn(todo.numel(), generator=g, dtype=torch.float64, device=g.device).cpu()
            u = torch.rand(todo.numel(), generator=g, dtype=torch.float64, device=g.device).cpu()
            v = (1 + c * z) ** 3
            ok = (v > 0) & (u.log() < 0.5 * z * z + d - d * v + d * v.clamp(min=1e-300).log())
            out[todo[ok]] = math.log(d) + v[ok].log()
            todo = todo[~ok]
        if alpha < 1:
            u = torch.rand(k, generator=g, dtype=torch.float64, device=g.device).cpu()
            out += u.clamp(min=1e-300).log() / alpha
        return out

    lx, ly = log_gamma(n), log_gamma(n)
    return torch.sigmoid(lx - ly)  # X / (X + Y), computed stably


# --------------------------------------------------------------------------------------------
# Geometry (1-D, 2-D, 3-D).

def flip(x: Tensor, axis: int, p: float, g: torch.Generator) -> Tensor:
    """Reverse spatial ``axis`` (0 = first spatial axis, -1 = last) of each sample with probability p."""
    dim = _spatial_dim(x, axis)
    if p <= 0:
        return x
    mask = _per_sample(_rand(g, x.shape[0]) < p, x).bool()
    return torch.where(mask, x.flip(dim), x)


def hflip(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Horizontal flip: the last axis (width; the signal axis in 1-D)."""
    return flip(x, -1, p, g)


def vflip(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Vertical flip: the second-to-last axis (height) of a 2-D or 3-D batch."""
    if x.ndim < 4:
        raise ValueError(f"vertical flip needs 2 or 3 spatial axes, got a batch {tuple(x.shape)}")
    return flip(x, -2, p, g)


def pad_crop(x: Tensor, padding: int, g: torch.Generator, fill: float | Sequence[float] = 0.0) -> Tensor:
    """Pad every spatial axis by ``padding`` on both sides with ``fill`` (a value or one per
    channel) and cut back a window of the input's size at a random offset per sample (He et al.
    2016, §4.2: CIFAR's 4-pixel pad and 32x32 crop)."""
    if padding <= 0:
        return x
    b, n = x.shape[0], x.ndim - 2
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    if fill_t.ndim:
        fill_t = fill_t.view(1, -1, *([1] * n))
    # Constant padding takes one scalar: pad with 0 and add the per-channel fill on the border only
    # (x + 0 keeps the content bit-exact).
    border = 1 - F.pad(torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device), [padding] * (2 * n))
    xp = F.pad(x, [padding] * (2 * n)) + fill_t * border
    offsets = _randint(g, 2 * padding + 1, b, n).to(x.device)
    for d in range(n):  # one gather per axis: window [offset, offset + size) of the padded axis
        size = x.shape[2 + d]
        idx = offsets[:, d, None] + torch.arange(size, device=x.device)  # (B, size)
        shape = [b] + [1] * (xp.ndim - 1)
        shape[2 + d] = size
        idx = idx.view(shape).expand(*xp.shape[:2 + d], size, *xp.shape[3 + d:])
        xp = xp.gather(2 + d, idx)
    return xp


def _box_fractions(g: torch.Generator, area: Tensor, n: int, ratio: tuple[float, float]) -> Tensor:
    """Side fractions (B, n) of boxes with area (volume) fractions ``area`` (B,) and a random
    aspect ratio per sample, each side at most the image's.

    In 2-D this is torchvision's draw: log(w / h) uniform in log(ratio), h = sqrt(a / r),
    w = sqrt(a * r). In n-D each axis after the first gets its own log-ratio to the first and the
    log-sides are centred so that their product is the area. A side longer than the image is cut
    to it and the others grow to keep the area (torchvision retries 10 times instead; a retry
    loop has no place in a batched kernel)."""
    b = area.shape[0]
    if n == 1:
        return area[:, None].clone()
    r = torch.zeros(b, n)
    r[:, 1:] = _uniform(g, math.log(ratio[0]), math.log(ratio[1]), b, n - 1)
    frac = (area.log()[:, None] / n + r - r.mean(1, keepdim=True)).exp()
    for _ in range(n):
        full = frac >= 1
        frac = frac.clamp(max=1.0)
        free = (~full).sum(1, keepdim=True).clamp(min=1)
        grow = (area[:, None] / frac.prod(1, keepdim=True)) ** (1.0 / free)
        frac = torch.where(full, frac, frac * grow)
    return frac.clamp(max=1.0)


def _affine_sample(x: Tensor, theta: Tensor, padding_mode: str = "border") -> Tensor:
    """grid_sample x through theta (B, n, n + 1) in normalised coordinates (last axis first);
    a 1-D batch is sampled as a one-pixel-high image."""
    if x.ndim == 3:
        t2 = torch.zeros(theta.shape[0], 2, 3, dtype=theta.dtype, device=theta.device)
        t2[:, 0, 0], t2[:, 0, 2], t2[:, 1, 1] = theta[:, 0, 0], theta[:, 0, 1], 1.0
        return _affine_sample(x.unsqueeze(2), t2, padding_mode).squeeze(2)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_resized_crop(x: Tensor, min_area: float, g: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), max_area: float = 1.0) -> Tensor:
    """Crop a random box of ``min_area``..``max_area`` of each sample's area (volume) and aspect
    ratio in ``ratio``, and resize it (bilinear) back to the input's size (Szegedy et al. 2015,
    §6; 0.08..1 and 3/4..4/3 for ImageNet)."""
    if not 0 < min_area <= max_area <= 1:
        raise ValueError(f"random resized crop needs 0 < min_area <= max_area <= 1, got {min_area}, {max_area}")
    b, n = x.shape[0], x.ndim - 2
    frac = _box_fractions(g, _uniform(g, min_area, max_area, b), n, ratio)  # (B, n), first axis first
    start = _rand(g, b, n) * (1 - frac)  # box [start, start + frac) in image fractions
    centre = 2 * start + frac - 1  # in affine_grid's [-1, 1] coordinates
    theta = torch.zeros(b, n, n + 1)
    theta[:, range(n), range(n)] = frac.flip(1)  # affine_grid orders axes last-first (x, y, z)
    theta[:, :, n] = centre.flip(1)
    return _affine_sample(x, theta.to(x.device))


# --------------------------------------------------------------------------------------------
# Colour (per pixel, any dimensionality; images in [0, 1]).

def _gray(x: Tensor) -> Tensor:
    """(B, 1, *S) grey level: luma of RGB, the image itself for one channel, else the mean."""
    if x.shape[1] == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, *([1] * (x.ndim - 2)))
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def _blend(a: Tensor, b: Tensor, factor: Tensor) -> Tensor:
    """factor * a + (1 - factor) * b, clamped to [0, 1] (PIL's ImageEnhance)."""
    return (factor * a + (1 - factor) * b).clamp(0.0, 1.0)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    dz = delta.clamp(min=1e-12)
    h = torch.where(maxc == r, ((g - b) / dz) % 6,
                    torch.where(maxc == g, (b - r) / dz + 2, (r - g) / dz + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h)) % 1.0
    return torch.stack((h, s, maxc), 1)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    i = (i.long() % 6).unsqueeze(1)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = torch.stack((v, q, p, p, t, v), 1).gather(1, i)
    g = torch.stack((t, v, v, q, p, p), 1).gather(1, i)
    b = torch.stack((p, p, t, v, v, q), 1).gather(1, i)
    return torch.cat((r, g, b), 1)


def _check_colour(x: Tensor, what: str) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{what} needs 1 or 3 channels, got {x.shape[1]} (batch {tuple(x.shape)})")


def adjust_hue(x: Tensor, shift: Tensor | float) -> Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of the colour circle; per sample); grey images unchanged."""
    _check_colour(x, "hue")
    if x.shape[1] == 1:
        return x
    hsv = _rgb_to_hsv(x)
    shift = _per_sample(torch.as_tensor(shift).expand(x.shape[0]), hsv[:, 0:1])[:, 0]
    hsv = torch.stack(((hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]), 1)
    return _hsv_to_rgb(hsv)


def color_jitter(x: Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 g: torch.Generator) -> Tensor:
    """Random brightness, contrast and saturation factors in [max(0, 1 - s), 1 + s] and a hue
    shift in [-hue, hue] per sample, applied in this fixed order (torchvision shuffles it) to
    images in [0, 1]. Saturation and hue leave one-channel images unchanged."""
    b = x.shape[0]
    factors = [_uniform(g, max(0.0, 1 - s), 1 + s, b) for s in (brightness, contrast, saturation)]
    shift = _uniform(g, -hue, hue, b)
    if brightness:
        x = (x * _per_sample(factors[0], x)).clamp(0.0, 1.0)
    if contrast:
        mean = _gray(x).mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        x = _blend(x, mean, _per_sample(factors[1], x))
    if saturation:
        _check_colour(x, "saturation")
        x = _blend(x, _gray(x), _per_sample(factors[2], x))
    if hue:
        x = adjust_hue(x, shift)
    return x


def pca_lighting(x: Tensor, alphastd: float, eigval: Sequence[float] | Tensor | None,
                 eigvec: Sequence[Sequence[float]] | Tensor | None, g: torch.Generator) -> Tensor:
    """AlexNet's lighting noise (Krizhevsky et al. 2012, §4.1): add to every pixel of a sample
    ``eigvec @ (alpha * eigval)`` with alpha ~ N(0, alphastd) per sample and component, i.e. a
    shift along the principal components of the pixel colours scaled by their eigenvalues.

    ``eigvec`` holds the eigenvectors as columns. None means: for 3 channels, ImageNet's
    (``IMAGENET_PCA_EIGVAL``/``IMAGENET_PCA_EIGVEC``, pixels in [0, 1]); for 1 channel, the
    covariance is the 1x1 pixel variance, so the eigenvector is [1] and the eigenvalue is the
    variance of this batch's pixel values (the batch stands in for the data set; no state).
    The result is not clamped (as in fb.resnet.torch)."""
    b, c = x.shape[:2]
    if eigval is None or eigvec is None:
        if c == 3:
            eigval, eigvec = IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC
        elif c == 1:
            eigval, eigvec = x.detach().float().var().reshape(1).cpu(), ((1.0,),)
        else:
            raise ValueError(f"PCA lighting has default eigenvectors for 1 or 3 channels, got {c}; pass eigval/eigvec")
    val = torch.as_tensor(eigval, dtype=torch.float32).reshape(-1)
    vec = torch.as_tensor(eigvec, dtype=torch.float32)
    if vec.shape != (c, val.numel()):
        raise ValueError(f"PCA lighting: eigvec must be ({c}, {val.numel()}) for {c} channels, got {tuple(vec.shape)}")
    alpha = torch.randn(b, val.numel(), generator=g, device=g.device).cpu() * alphastd
    delta = (alpha * val) @ vec.T  # (B, C): sum_i alpha_i * lambda_i * p_i
    return x + delta.to(x.device, x.dtype).view(b, c, *([1] * (x.ndim - 2)))


# --------------------------------------------------------------------------------------------
# Erasing, Mixup, CutMix (1-D, 2-D, 3-D).

def _box_mask(spatial: Sequence[int], start: Tensor, stop: Tensor, device: torch.device) -> Tensor:
    """(B, 1, *S) bool: inside [start, stop) on every axis; start/stop (B, n) integer tensors."""
    b, n = start.shape
    mask = torch.ones(b, *spatial, dtype=torch.bool, device=device)
    for d, size in enumerate(spatial):
        idx = torch.arange(size, device=device)
        inside = (idx >= start[:, d:d + 1].to(device)) & (idx < stop[:, d:d + 1].to(device))  # (B, size)
        shape = [b] + [1] * n
        shape[1 + d] = size
        mask &= inside.view(shape)
    return mask.unsqueeze(1)


def random_erasing(x: Tensor, p: float, area: tuple[float, float], g: torch.Generator,
                   ratio: tuple[float, float] = (0.3, 1 / 0.3), value: float | None = 0.0) -> Tensor:
    """With probability p per sample, replace a random box of ``area`` fraction (a range) and
    aspect ratio in ``ratio`` by ``value`` (Zhong et al. 2020; Cutout is the square, p = 1 case).
    ``value`` None fills with N(0, 1) noise per pixel (Zhong et al.'s random values, in
    normalised units); 0 on a normalised batch is the mean colour (timm's default)."""
    if p <= 0:
        return x
    if not 0 < area[0] <= area[1] <= 1:
        raise ValueError(f"erasing area range must satisfy 0 < lo <= hi <= 1, got {area}")
    b, spatial = x.shape[0], tuple(x.shape[2:])
    apply = _rand(g, b) < p
    frac = _box_fractions(g, _uniform(g, area[0], area[1], b), len(spatial), ratio)
    sizes = torch.tensor(spatial, dtype=torch.float32)
    length = (frac * sizes).round().clamp(min=1).minimum(sizes)
    start = (_rand(g, b, len(spatial)) * (sizes - length + 1)).floor()
    mask = _box_mask(spatial, start.long(), (start + length).long(), x.device)
    mask &= _per_sample(apply, mask).bool()
    if value is None:
        fill = torch.randn(x.shape, generator=g, device=g.device).to(x.device, x.dtype)
    else:
        fill = torch.full((), value, dtype=x.dtype, device=x.device)
    return torch.where(mask, fill, x)


def _soft(y: Tensor, num_classes: int, lam: float | Tensor) -> Tensor:
    onehot = F.one_hot(y, num_classes).float()
    return lam * onehot + (1 - lam) * onehot.flip(0)


def mixup(x: Tensor, y: Tensor, alpha: float, num_classes: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mixup (Zhang et al. 2018): lam ~ Beta(alpha, alpha) per batch; each sample is blended with
    its partner in the reversed batch (timm's pairing), image and one-hot label alike.

    Returns: (mixed x, (B, num_classes) float targets whose rows sum to 1)."""
    lam = float(sample_beta(alpha, g))
    return lam * x + (1 - lam) * x.flip(0), _soft(y, num_classes, lam)


def cutmix(x: Tensor, y: Tensor, alpha: float, num_classes: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """CutMix (Yun et al. 2019, §3.1): lam ~ Beta(alpha, alpha); a box of side fraction
    (1 - lam)^(1/n) per axis (sqrt in 2-D), centred uniformly and clipped at the borders, is pasted
    from the partner in the reversed batch (one box per batch, as timm). The label weight is the
    pasted box's true share of the pixels after clipping (timm's ``correct_lam``)."""
    lam = float(sample_beta(alpha, g))
    spatial = tuple(x.shape[2:])
    sizes = torch.tensor(spatial)
    cut = (sizes * (1 - lam) ** (1 / len(spatial))).long()
    centre = (_rand(g, len(spatial)) * sizes).long()  # uniform over the pixels
    start = (centre - cut // 2).clamp(min=0).minimum(sizes)
    stop = (centre + cut // 2).clamp(min=0).minimum(sizes)
    mask = _box_mask(spatial, start[None], stop[None], x.device)
    lam = 1.0 - float((stop - start).prod()) / float(sizes.prod())
    return torch.where(mask, x.flip(0), x), _soft(y, num_classes, lam)


# --------------------------------------------------------------------------------------------
# Policy ops (2-D images in [0, 1], 1 or 3 channels). Magnitudes follow torchvision's
# autoaugment.py: ``level`` in [0, 1] is the magnitude bin over the last bin.

def _check_image(x: Tensor, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op} is defined on 2-D images (B, C, H, W); got a batch with "
                         f"{x.ndim - 2} spatial dims {tuple(x.shape)}")
    _check_colour(x, op)


def _warp(x: Tensor, mat: Tensor) -> Tensor:
    """Sample x (B, C, H, W) at input = mat @ (u, v, 1) for every output pixel centre (u, v)
    (pixel units, origin at the top-left corner), bilinear, black outside."""
    b, _, h, w = x.shape
    vs, us = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
                            torch.arange(w, device=x.device, dtype=x.dtype) + 0.5, indexing="ij")
    pts = torch.stack((us, vs, torch.ones_like(us)), -1).view(1, h * w, 3)
    src = pts @ mat.to(x.device, x.dtype).transpose(1, 2)  # (B, HW, 2)
    grid = src / torch.tensor([w, h], device=x.device, dtype=x.dtype) * 2 - 1
    return F.grid_sample(x, grid.view(b, h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=False)


def _identity_mats(b: int) -> Tensor:
    mat = torch.zeros(b, 2, 3)
    mat[:, 0, 0] = mat[:, 1, 1] = 1.0
    return mat


# Each op's action on a batch x (B, C, H, W) with one magnitude per sample m (B,) float32 on the CPU.

def _shear_x(x: Tensor, m: Tensor) -> Tensor:
    mat = _identity_mats(x.shape[0])
    mat[:, 0, 1] = m  # PIL's (1, m, 0, 0, 1, 0): x_in = x + m y
    return _warp(x, mat)


def _shear_y(x: Tensor, m: Tensor) -> Tensor:
    mat = _identity_mats(x.shape[0])
    mat[:, 1, 0] = m
    return _warp(x, mat)


def _translate_x(x: Tensor, m: Tensor) -> Tensor:
    mat = _identity_mats(x.shape[0])
    mat[:, 0, 2] = -m  # content moves right by m pixels
    return _warp(x, mat)


def _translate_y(x: Tensor, m: Tensor) -> Tensor:
    mat = _identity_mats(x.shape[0])
    mat[:, 1, 2] = -m
    return _warp(x, mat)


def _rotate(x: Tensor, m: Tensor) -> Tensor:
    # About the centre; y points down, so counter-clockwise on screen.
    h, w = x.shape[2:]
    mat = _identity_mats(x.shape[0])
    a = torch.deg2rad(m)
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = w / 2, h / 2
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1] = cos, -sin, sin, cos
    mat[:, 0, 2] = cx - cos * cx + sin * cy
    mat[:, 1, 2] = cy - sin * cx - cos * cy
    return _warp(x, mat)


def _brightness(x: Tensor, m: Tensor) -> Tensor:
    return (x * _per_sample(1 + m, x)).clamp(0.0, 1.0)


def _color(x: Tensor, m: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else _blend(x, _gray(x), _per_sample(1 + m, x))


def _contrast(x: Tensor, m: Tensor) -> Tensor:
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), _per_sample(1 + m, x))


def _sharpness(x: Tensor, m: Tensor) -> Tensor:
    # Blend with PIL's smoothing filter; the border stays as it is.
    b, c, h, w = x.shape
    if h <= 2 or w <= 2:
        return x
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    blurred = x.clone()
    blurred[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return _blend(x, blurred, _per_sample(1 + m, x))


def _posterize(x: Tensor, m: Tensor) -> Tensor:
    # Keep the top `bits` bits of the 8-bit level.
    step = _per_sample(2.0 ** (8 - m.round()), x)
    return torch.floor((x * 255).round() / step) * step / 255


def _solarize(x: Tensor, m: Tensor) -> Tensor:
    return torch.where(x >= _per_sample(m / 255, x), 1 - x, x)


def _autocontrast(x: Tensor, m: Tensor) -> Tensor:
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1 / (hi - lo).clamp(min=1e-12))
    return ((x - torch.where(flat, torch.zeros_like(lo), lo)) * scale).clamp(0.0, 1.0)


# Each op's magnitude at ``level`` in [0, 1] (per sample): RandAugment's space (Cubuk et al. 2020,
# = AutoAugment's table of operations in Cubuk et al. 2019's appendix), or TrivialAugment's wide
# space (Müller & Hutter 2021, ``wide``); the ranges and bin formulas are torchvision's.

def _no_magnitude(level: Tensor, size: tuple[int, int], wide: bool) -> Tensor:
    return torch.zeros_like(level)


def _linear(normal: float, wide: float) -> Callable[[Tensor, tuple[int, int], bool], Tensor]:
    def magnitude(level: Tensor, size: tuple[int, int], wide_space: bool) -> Tensor:
        return level * (wide if wide_space else normal)
    return magnitude


def _translation(axis: int) -> Callable[[Tensor, tuple[int, int], bool], Tensor]:
    # 150/331 of the image side (axis 1: width, 0: height) in whole pixels, as torchvision's int().
    def magnitude(level: Tensor, size: tuple[int, int], wide: bool) -> Tensor:
        extent = 32.0 if wide else 150.0 / 331.0 * size[axis]
        return (level * extent).trunc()
    return magnitude


def _posterize_bits(level: Tensor, size: tuple[int, int], wide: bool) -> Tensor:
    return 8 - torch.round(level * (6 if wide else 4))  # bits: 8 down to 4 (wide: 2)


def _solarize_threshold(level: Tensor, size: tuple[int, int], wide: bool) -> Tensor:
    return 255.0 * (1 - level)  # on the 0..255 scale


@dataclass(frozen=True)
class PolicyOp:
    """One op of the learned policies, defined once.

    Attributes:
        name: the op's name in the policies (torchvision's, in snake case).
        apply: ``(x (B, C, H, W) in [0, 1], m (B,)) -> x`` with torchvision's semantics of m.
        magnitude: ``(level in [0, 1] per sample, (H, W), wide) -> m``.
        signed: the magnitude gets a random sign (a shear, rotation or enhancement either way).
        searched: in the 14-op space RandAugment and TrivialAugment draw from (AutoAugment's
            ImageNet policy also uses ``invert``).
    """

    name: str
    apply: Callable[[Tensor, Tensor], Tensor]
    magnitude: Callable[[Tensor, tuple[int, int], bool], Tensor] = _no_magnitude
    signed: bool = False
    searched: bool = True


# The table, in the order RandAugment and TrivialAugment index it (the order of the random draws).
OPS: dict[str, PolicyOp] = {op.name: op for op in (
    PolicyOp("identity", lambda x, m: x),
    PolicyOp("shear_x", _shear_x, _linear(0.3, 0.99), signed=True),  # shear factor
    PolicyOp("shear_y", _shear_y, _linear(0.3, 0.99), signed=True),
    PolicyOp("translate_x", _translate_x, _translation(1), signed=True),  # pixels
    PolicyOp("translate_y", _translate_y, _translation(0), signed=True),
    PolicyOp("rotate", _rotate, _linear(30.0, 135.0), signed=True),  # degrees, counter-clockwise
    PolicyOp("brightness", _brightness, _linear(0.9, 0.99), signed=True),  # enhancement factor 1 + m
    PolicyOp("color", _color, _linear(0.9, 0.99), signed=True),
    PolicyOp("contrast", _contrast, _linear(0.9, 0.99), signed=True),
    PolicyOp("sharpness", _sharpness, _linear(0.9, 0.99), signed=True),
    PolicyOp("posterize", _posterize, _posterize_bits),  # bits kept
    PolicyOp("solarize", _solarize, _solarize_threshold),  # threshold on 0..255
    PolicyOp("autocontrast", _autocontrast),
    PolicyOp("equalize", lambda x, m: _equalize(x)),
    PolicyOp("invert", lambda x, m: 1 - x, searched=False),
)}
POLICY_OPS = tuple(name for name, op in OPS.items() if op.searched)
_SIGNED = frozenset(name for name, op in OPS.items() if op.signed)


def _op(name: str) -> PolicyOp:
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation op {name!r}; known: {', '.join(OPS)}") from None


def apply_op(x: Tensor, name: str, magnitude: Tensor | float) -> Tensor:
    """One policy op on 2-D images in [0, 1] with a magnitude per sample (torchvision's
    semantics: shear factor, translation in pixels, rotation in degrees counter-clockwise,
    enhancement factor 1 + m, posterize bits, solarize threshold on 0..255). Bilinear
    resampling (torchvision defaults to nearest), black fill."""
    _check_image(x, name)
    m = torch.as_tensor(magnitude, dtype=torch.float32).expand(x.shape[0]).cpu()
    return _op(name).apply(x, m)


def _equalize(x: Tensor) -> Tensor:
    """Histogram equalisation per sample and channel on 8-bit levels (PIL's ImageOps.equalize,
    as torchvision's tensor version), all channels of the batch at once."""
    b, c, h, w = x.shape
    q = (x * 255).round().long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    last = hist.gather(1, q.max(1, keepdim=True).values)  # pixels in the highest level present
    step = (h * w - last) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = torch.where(step > 0, lut.gather(1, q), q)
    return (out.to(x.dtype) / 255).view(b, c, h, w)


def _apply_ops(x: Tensor, op: Tensor, magnitude: Tensor, names: Sequence[str]) -> Tensor:
    """Apply names[op[i]] with magnitude[i] to sample i (op -1: nothing), one call per op."""
    out = None
    for k, name in enumerate(names):
        sel = (op == k).nonzero().squeeze(1)
        if sel.numel() == 0 or name == "identity":
            continue
        if out is None:
            out = x.clone()  # one copy, then in-place row writes
        sel_d = sel.to(x.device)
        out.index_copy_(0, sel_d, apply_op(x.index_select(0, sel_d), name, magnitude[sel]))
    return x if out is None else out


def _signed(g: torch.Generator, names: Sequence[str], op: Tensor, mag: Tensor) -> Tensor:
    """Flip the sign of a signed op's magnitude with probability 1/2 (always drawn)."""
    sign = torch.where(_randint(g, 2, op.shape[0]).bool(), -1.0, 1.0)
    signed = torch.tensor([OPS[n].signed for n in names])[op.clamp(min=0)]
    return torch.where(signed, mag * sign, mag)


def _ops_list(names: Sequence[str], op: Tensor, mag: Tensor) -> list[tuple[str, float]]:
    return [(names[int(o)], float(v)) for o, v in zip(op, mag) if o >= 0]


def rand_augment(x: Tensor, n: int, m: float, g: torch.Generator,
                 return_ops: bool = False) -> Tensor | tuple[Tensor, list[list[tuple[str, float]]]]:
    """RandAugment (Cubuk et al. 2020): ``n`` ops per image, each uniformly from the 14 of
    ``POLICY_OPS``, at the shared magnitude ``m`` on the 0..30 scale (fractional m interpolates
    the bins, for progressive learning), with a random sign where the op has one.

    Returns: the batch, and with ``return_ops`` a list per sample of its (op, magnitude) in order."""
    _check_image(x, "RandAugment")
    if not 0 <= m <= 30:
        raise ValueError(f"RandAugment magnitude must be in [0, 30], got {m}")
    b, size = x.shape[0], tuple(x.shape[2:])
    applied: list[list[tuple[str, float]]] = [[] for _ in range(b)]
    table = torch.stack([OPS[name].magnitude(torch.tensor([m / 30.0]), size, False)[0] for name in POLICY_OPS])
    for _ in range(n):
        op = _randint(g, len(POLICY_OPS), b)
        mag = _signed(g, POLICY_OPS, op, table[op])
        x = _apply_ops(x, op, mag, POLICY_OPS)
        for i, pair in enumerate(_ops_list(POLICY_OPS, op, mag)):
            applied[i].append(pair)
    return (x, applied) if return_ops else x


def trivial_augment(x: Tensor, g: torch.Generator,
                    return_ops: bool = False) -> Tensor | tuple[Tensor, list[list[tuple[str, float]]]]:
    """TrivialAugment (Müller & Hutter 2021, "Wide"): one op per image, uniformly from
    ``POLICY_OPS``, at a magnitude bin uniform in 0..30 of the wide space."""
    _check_image(x, "TrivialAugment")
    b, size = x.shape[0], tuple(x.shape[2:])
    op = _randint(g, len(POLICY_OPS), b)
    level = _randint(g, 31, b)
    table = torch.stack([OPS[name].magnitude(torch.arange(31) / 30.0, size, True) for name in POLICY_OPS])  # (ops, bins)
    mag = _signed(g, POLICY_OPS, op, table[op, level])
    x = _apply_ops(x, op, mag, POLICY_OPS)
    return (x, [[pair] for pair in _ops_list(POLICY_OPS, op, mag)]) if return_ops else x


# AutoAugment's ImageNet policy (Cubuk et al. 2019, appendix; as in torchvision): 25 sub-policies of two
# (op, probability, magnitude bin 0..9) steps.
AUTO_AUGMENT_IMAGENET = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)), (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)), (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)), (("equalize", 0.4, None), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, None)), (("posterize", 0.8, 5), ("equalize", 1.0, None)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)), (("equalize", 0.6, None), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)), (("rotate", 0.4, 9), ("equalize", 0.6, None)),
    (("equalize", 0.0, None), ("equalize", 0.8, None)), (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)), (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)), (("sharpness", 0.4, 7), ("invert", 0.6, None)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, None)), (("color", 0.4, 0), ("equalize", 0.6, None)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)), (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)), (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
)
_AA_OPS = tuple(OPS)  # the searched ops and invert


def auto_augment(x: Tensor, g: torch.Generator, policy: str = "imagenet",
                 return_ops: bool = False) -> Tensor | tuple[Tensor, list[list[tuple[str, float]]]]:
    """AutoAugment (Cubuk et al. 2019): per image one of the policy's sub-policies, each of its two
    steps applied with its probability at its magnitude bin (of 10), with a random sign."""
    _check_image(x, "AutoAugment")
    if policy != "imagenet":
        raise ValueError(f"AutoAugment policy must be 'imagenet', got {policy!r}")
    b, size = x.shape[0], tuple(x.shape[2:])
    sub = _randint(g, len(AUTO_AUGMENT_IMAGENET), b)
    probs = _rand(g, b, 2)
    applied: list[list[tuple[str, float]]] = [[] for _ in range(b)]
    for step in range(2):
        op = torch.full((b,), -1, dtype=torch.long)
        mag = torch.zeros(b)
        for i, s in enumerate(sub.tolist()):
            name, p, bin_ = AUTO_AUGMENT_IMAGENET[s][step]
            if probs[i, step] <= p:
                op[i] = _AA_OPS.index(name)
                mag[i] = OPS[name].magnitude(torch.tensor([(bin_ or 0) / 9.0]), size, False)[0]
        mag = _signed(g, _AA_OPS, op, mag)
        x = _apply_ops(x, op, mag, _AA_OPS)
        for i in range(b):
            if op[i] >= 0:
                applied[i].append((_AA_OPS[int(op[i])], float(mag[i])))
    return (x, applied) if return_ops else x


# --------------------------------------------------------------------------------------------
# The Trainer's entry point.

@dataclass(frozen=True)
class Step:
    """One enabled transform of a BatchAugment chain.

    Attributes:
        name: the config field (or policy) that turned it on.
        apply: ``(x, target, generator) -> (x, target)``; only mixing changes the target.
        pixels: acts on images in [0, 1] rather than on the normalised batch (the chain converts
            once around each run of such steps).
    """

    name: str
    apply: Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]
    pixels: bool = False


class BatchAugment:
    """The configured chain on a normalised training batch (see the module docstring for order).

    ``rand_augment_m`` and ``mixup`` are plain attributes so that progressive learning
    (Tan & Le 2021, Algorithm 1) can change them between epochs.

    Args:
        cfg: the ``augment`` section of the training config (zero/empty turns an op off).
        spatial_dims: 1, 2 or 3.
        num_classes: width of the soft targets Mixup/CutMix return.
        mean, std: the per-channel normalisation of the batches, (v - mean) / std.
    """

    def __init__(self, cfg: AugmentConfig, *, spatial_dims: int, num_classes: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        self.cfg, self.spatial_dims, self.num_classes = cfg, spatial_dims, num_classes
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.rand_augment_m: float = float(cfg.rand_augment_m)
        self.mixup: float = float(cfg.mixup)
        if cfg.vflip > 0 and spatial_dims == 1:
            raise ValueError("augment.vflip flips the second-to-last axis; a 1-D signal has only one")
        if cfg.auto_augment not in ("", "imagenet"):
            raise ValueError(f"augment.auto_augment must be '' or 'imagenet', got {cfg.auto_augment!r}")
        policies = [name for name, on in (("AutoAugment", bool(cfg.auto_augment)),
                                          ("RandAugment", cfg.rand_augment_n > 0),
                                          ("TrivialAugment", cfg.trivial_augment)) if on]
        if len(policies) > 1:
            raise ValueError(f"choose one augmentation policy, got {' and '.join(policies)}")
        self.policy = policies[0] if policies else ""
        if self.policy and spatial_dims != 2:
            raise ValueError(f"{self.policy} is defined on 2-D images, got spatial_dims={spatial_dims}")

    def steps(self) -> list[Step]:
        """The enabled transforms, in timm's order: geometry, policy, colour jitter, PCA
        lighting, erasing, Mixup/CutMix. ``__call__`` runs exactly these and ``enabled`` is
        whether there are any; read at every call, so that progressive learning's ``mixup`` and
        ``rand_augment_m`` take effect at once."""
        c = self.cfg
        mixing = (self.mixup > 0 or c.cutmix > 0) and c.mix_prob > 0
        chain = (
            (c.resized_crop > 0, Step("resized_crop", lambda x, t, g: (random_resized_crop(x, c.resized_crop, g), t))),
            # A resized crop already moves the content: the CIFAR pad-and-crop is its alternative.
            (c.crop_padding > 0 and not c.resized_crop > 0, Step("crop_padding", self._pad_crop)),
            (bool(c.shift or c.scale or c.shear or c.rotate), Step("affine", lambda x, t, g: (
                random_affine(x, c.shift, c.scale, c.shear, c.rotate, generator=g), t))),
            (c.hflip > 0, Step("hflip", lambda x, t, g: (hflip(x, c.hflip, g), t))),
            (c.vflip > 0, Step("vflip", lambda x, t, g: (vflip(x, c.vflip, g), t))),
            (bool(self.policy), Step(self.policy, self._policy, pixels=True)),
            (c.color_jitter > 0 or c.hue > 0, Step("color_jitter", lambda x, t, g: (color_jitter(
                x.clamp(0.0, 1.0), c.color_jitter, c.color_jitter, c.color_jitter, c.hue, g), t), pixels=True)),
            (c.pca_lighting > 0, Step("pca_lighting", lambda x, t, g: (
                pca_lighting(x, c.pca_lighting, None, None, g), t), pixels=True)),
            (c.erase > 0, Step("erase", lambda x, t, g: (random_erasing(x, c.erase, tuple(c.erase_area), g), t))),
            (mixing, Step("mix", self._mix)),
        )
        return [step for on, step in chain if on]

    @property
    def enabled(self) -> bool:
        """False when every op is off (the trainer then skips the call)."""
        return bool(self.steps())

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def _pad_crop(self, x: Tensor, target: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        mean, std = self._stats(x)
        return pad_crop(x, self.cfg.crop_padding, g, fill=(-mean / std).flatten().tolist()), target  # black

    def _policy(self, x: Tensor, target: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        x = x.clamp(0.0, 1.0)
        if self.policy == "AutoAugment":
            return auto_augment(x, g, self.cfg.auto_augment), target
        if self.policy == "RandAugment":
            return rand_augment(x, self.cfg.rand_augment_n, self.rand_augment_m, g), target
        return trivial_augment(x, g), target

    def _mix(self, x: Tensor, target: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        c = self.cfg
        u = _rand(g, 2)  # whether to mix this batch, and which
        if u[0] >= c.mix_prob:
            return x, target
        if c.cutmix > 0 and (self.mixup <= 0 or u[1] < c.switch_prob):
            return cutmix(x, target, c.cutmix, self.num_classes, g)
        return mixup(x, target, self.mixup, self.num_classes, g)

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augment a normalised batch x (B, C, *S) with labels y (B,) int64.

        Returns: x (same shape, dtype, device) and y unchanged, or (B, num_classes) float soft
        targets when Mixup or CutMix mixed this batch."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a batch (B, C) + {self.spatial_dims} spatial axes, got {tuple(x.shape)}")
        dtype = x.dtype
        x = x.float()
        mean, std = self._stats(x)
        target: Tensor = y
        pixels = False  # whether x holds [0, 1] pixel values rather than normalised ones
        for step in self.steps():
            if step.pixels != pixels:
                x = x * std + mean if step.pixels else (x - mean) / std
                pixels = step.pixels
            x, target = step.apply(x, target, generator)
        if pixels:
            x = (x - mean) / std
        return x.to(dtype), target
