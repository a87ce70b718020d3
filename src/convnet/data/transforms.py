"""Preprocessing that maps raw images to what a model was trained on, saved with every run so
that ``convnet predict`` prepares a new image exactly as the training data was prepared."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..layers.factory import linear_mode


@dataclass(frozen=True)
class Preprocess:
    """Resize, pad and normalise a batch of images in [0, 1].

    The image is resized to ``content`` and centred in a canvas of ``size`` (LeCun et al. 1998
    placed MNIST's 20x20 digit boxes in a 32x32 field so that strokes at the edge still reach
    the centre of the top feature detectors' receptive fields), then normalised per channel.

    Pretrained weights prescribe another path (:meth:`from_weights`): with ``resize`` set, an
    image of any size is resized (its shorter side to ``resize``, or to exactly ``resize``) and
    centre-cropped to ``size``, as torchvision's ``weights.transforms()`` and timm's eval
    transform do, then normalised; ``source_size``, ``content`` and padding are not used.

    Attributes:
        channels: 1 (grayscale) or 3 (RGB).
        source_size: the data set's native size per axis (8x8 for the digits); new images are
            first brought to it, as the training images were. With ``resize``, the size a large
            JPEG may be decoded down to (never below what the resize needs).
        content: the size the image is resized to; None means ``size`` (no padding).
        size: the size the model sees.
        mean, std: per-channel normalisation, (x - mean) / std.
        resize: None, or an int (the shorter side) or one size per axis: resize every image to
            it, then centre-crop to ``size`` (the preprocessing of pretrained weights).
        interpolation: "bilinear", "bicubic" or "nearest" for ``resize`` (antialiased when
            shrinking 2-D images).
    """

    channels: int
    source_size: tuple[int, ...]
    size: tuple[int, ...]
    content: tuple[int, ...] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: int | tuple[int, ...] | None = None
    interpolation: str = "bilinear"

    @classmethod
    def from_weights(cls, preprocess: Mapping[str, Any], channels: int = 3,
                     size: tuple[int, ...] | None = None) -> "Preprocess":
        """The preprocessing pretrained weights prescribe (``model.default_cfg["preprocess"]``,
        ``convnet.weights.init_preprocess``): resize, centre crop, their mean and std.

        Args:
            preprocess: ``resize``, ``crop``, ``mean``, ``std``, ``interpolation`` as
                ``WeightsPreprocess.to_dict`` gives them.
            channels: the data's channels; must be the weights' (3 for ImageNet weights: gray
                images are then read as RGB).
            size: the model's input size where the weights prescribe no crop (segmentation
                weights resize the shorter side only); a batch needs one size.

        Raises:
            ValueError: channels other than the weights', or no size to crop to.
        """
        mean, std = preprocess.get("mean"), preprocess.get("std")
        if mean is not None and len(mean) != channels:
            raise ValueError(f"the weights normalise {len(mean)} channels (mean {list(mean)}); the data has "
                             f"{channels}: set data.channels={len(mean)}")
        resize = preprocess.get("resize")
        resize = tuple(resize) if isinstance(resize, (list, tuple)) else resize
        crop = preprocess.get("crop")
        if size is not None:
            out = tuple(size)
        elif crop:
            out = tuple(crop)
        else:  # an exact resize is the size; a shorter-side resize leaves it open
            out = resize if isinstance(resize, tuple) else None
        if out is None:
            raise ValueError("the weights prescribe no crop; give the input size (size=...)")
        if resize is None:  # a detector's weights: no resize of their own, crop to the size given
            resize = out
        source = (resize,) * len(out) if isinstance(resize, int) else tuple(resize)
        return cls(channels=channels, source_size=source, size=out, mean=tuple(mean or (0.0,) * channels),
                   std=tuple(std or (1.0,) * channels), resize=resize,
                   interpolation=preprocess.get("interpolation", "bilinear"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) in [0, 1] at the source size -> (B, C, *size), normalised."""
        x = x.float()
        if self.resize is not None:
            return self._normalise(center_crop(resize_images(x, self.resize, self.interpolation), self.size))
        content = tuple(self.content or self.size)
        if tuple(x.shape[2:]) != content:
            mode = linear_mode(x.ndim - 2)
            x = F.interpolate(x, size=content, mode=mode, align_corners=False).clamp_(0.0, 1.0)
        pads: list[int] = []
        for s, c in reversed(list(zip(self.size, content))):
            pads += [(s - c) // 2, s - c - (s - c) // 2]
        if any(pads):
            x = F.pad(x, pads, value=0.0)
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        """One image (C, *S) of any size in [0, 1] -> a model input (1, C, *size).

        It is first brought to the data set's native size with area averaging (what a scanner
        or the data set's own downsampling does), then through the training preprocessing."""
        if image.shape[0] != self.channels:
            if self.channels == 1:
                image = image.mean(0, keepdim=True)
            elif image.shape[0] == 1:
                image = image.expand(self.channels, *image.shape[1:])
            else:
                raise ValueError(f"expected an image with 1 or {self.channels} channels, got {image.shape[0]}")
        x = image.unsqueeze(0).float()
        if self.resize is None and tuple(x.shape[2:]) != tuple(self.source_size):
            mode = linear_mode(x.ndim - 2)
            x = F.interpolate(x, size=self.source_size, mode=mode, antialias=x.ndim == 4,
                              align_corners=False).clamp_(0.0, 1.0)
        return self(x)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def resize_images(x: torch.Tensor, size: int | tuple[int, ...], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize a batch (B, C, *S): an int makes the shorter side ``size`` and scales the others
    by the same factor, truncated (torchvision's ``resize`` with one size); a tuple gives each
    axis its size. Antialiased when shrinking 2-D images, as torchvision's resize; bicubic
    overshoot is clamped to [0, 1] as PIL's integer images are."""
    spatial = tuple(x.shape[2:])
    if isinstance(size, int):
        short = min(spatial)
        out = tuple(size if s == short else int(size * s / short) for s in spatial)
    else:
        out = tuple(size)
    if out == spatial:
        return x
    if interpolation == "nearest":
        return F.interpolate(x, size=out, mode="nearest-exact")
    mode = "bicubic" if interpolation == "bicubic" and x.ndim == 4 else linear_mode(x.ndim - 2)
    y = F.interpolate(x, size=out, mode=mode, align_corners=False, antialias=x.ndim == 4)
    return y.clamp_(0.0, 1.0)


def center_crop(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The centre ``size`` of a batch (B, C, *S); axes smaller than ``size`` are zero-padded
    first. Offsets round as torchvision's ``center_crop``: int(round((s - c) / 2))."""
    pads: list[int] = []
    for s, c in reversed(list(zip(x.shape[2:], size))):
        extra = max(0, c - s)
        pads += [extra // 2, extra - extra // 2]
    if any(pads):
        x = F.pad(x, pads, value=0.0)
    index = [slice(None), slice(None)]
    for s, c in zip(x.shape[2:], size):
        start = int(round((s - c) / 2.0))
        index.append(slice(start, start + c))
    return x[tuple(index)]


def random_affine(x: torch.Tensor, max_shift: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                  rotate: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random planar affine distortions of a batch, one per sample, as LeCun et al. 1998 (§III.C)
    used to enlarge MNIST: translations, scaling, squeezing and shearing (and rotation).

    Args:
        x: (B, C, *S) with 1 to 3 spatial axes.
        max_shift: translation in pixels, up to this much per axis.
        scale: each axis is scaled by a factor in [1 - scale, 1 + scale] independently, which
            also squeezes (changes the aspect ratio).
        shear: horizontal shear factor in [-shear, shear] (2-D and 3-D).
        rotate: rotation in degrees in [-rotate, rotate] (2-D: in the plane; 3-D: about the depth axis).
    """
    b, spatial = x.shape[0], tuple(x.shape[2:])
    n = len(spatial)
    if n == 1:  # treat a signal as a 1-pixel-high image and distort only along it
        out = random_affine(x.unsqueeze(2), max_shift, scale, 0.0, 0.0, generator)
        return out.squeeze(2)
    device = generator.device if generator is not None else torch.device("cpu")

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator, device=device) * 2 - 1).to(x.device, torch.float32)

    # affine_grid maps output coordinates (x, y[, z], normalised to [-1, 1], last axis first)
    # to input coordinates; build that matrix per sample.
    theta = torch.zeros(b, n, n + 1, device=x.device)
    theta[:, range(n), range(n)] = 1.0
    if scale:
        theta[:, range(n), range(n)] = 1.0 / (1.0 + scale * uniform(b, n))
    if shear:
        theta[:, 0, 1] = shear * uniform(b)
    if rotate and n >= 2:
        angle = torch.deg2rad(rotate * uniform(b))
        c, s = torch.cos(angle), torch.sin(angle)
        rot = torch.eye(n, device=x.device).repeat(b, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
        theta[:, :, :n] = rot @ theta[:, :, :n]
    if max_shift:
        sizes = torch.tensor(spatial[::-1], device=x.device, dtype=torch.float32)  # (W, H[, D])
        theta[:, :, n] = uniform(b, n) * max_shift * 2.0 / sizes
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
