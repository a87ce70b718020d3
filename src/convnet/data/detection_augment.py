"""Box-aware augmentation of detection batches on the training device.

Every transform moves an image and its target's boxes together, draws every random number from
a ``torch.Generator`` (on the CPU; small tensors, moved to the batch's device), and keeps each
image's size, so that a stacked batch stays stacked:

* :func:`random_hflip`: the image mirrored left-right, each box ``(x1, y1, x2, y2)`` becoming
  ``(W - x2, y1, W - x1, y2)``;
* :func:`random_scale`: scale jitter (resize by a factor, then crop or pad back to the size at a
  random offset: the object-size diversity of multi-scale training);
* :func:`random_crop`: a random region (area fraction and aspect ratio drawn, as SSD's patch
  sampling, Liu et al. 2016 §2.2 "Data augmentation") resized back to the size;
* :func:`photometric`: brightness, contrast, saturation and hue, by
  :func:`convnet.data.augment.color_jitter` (boxes unchanged);
* :func:`mosaic`: four images in one (Bochkovskiy et al., YOLOv4, 2020, §3.3 "Mosaic"): the
  images tile a canvas of twice the size, and a window of the original size at a random
  offset in the middle half takes a part of each.

Geometric transforms clip boxes to the image and drop those left with less than
``min_visibility`` of their area (or a side under ``min_size`` pixels): an object mostly cut off
is no longer a fair target. Per-box entries of a target (``labels``, ``iscrowd``, ``area``, ...)
follow their boxes; ``area`` (the COCO segment area, for the size ranges of evaluation) scales
with the box.

Images are in [0, 1] (detectors normalise inside). Transforms take and return a batch: the
images (a ``(B, C, H, W)`` tensor or a list of ``(C, H, W)`` tensors) and a list of target
dicts; they do not modify their inputs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import color_jitter

__all__ = ["DetectionAugment", "DetectionAugmentConfig", "filter_boxes", "hflip_boxes", "mosaic", "photometric",
           "random_crop", "random_hflip", "random_scale"]

Images = Tensor | list[Tensor]
Targets = list[dict[str, Tensor]]


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(shape, generator=g, device=g.device).cpu()


def _as_list(images: Images) -> list[Tensor]:
    return list(images.unbind(0)) if isinstance(images, Tensor) else list(images)


def _like(images: Images, out: list[Tensor]) -> Images:
    return torch.stack(out) if isinstance(images, Tensor) else out


def _per_box(target: dict[str, Tensor]) -> list[str]:
    """The keys of a target that hold one entry per box."""
    n = target["boxes"].shape[0]
    return [k for k, v in target.items() if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == n]


def hflip_boxes(boxes: Tensor, width: float) -> Tensor:
    """``xyxy`` boxes of an image ``width`` wide, mirrored left-right."""
    return torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), dim=1)


def filter_boxes(target: dict[str, Tensor], boxes: Tensor, original_area: Tensor, size: Sequence[int],
                 min_visibility: float, min_size: float, scale: float = 1.0) -> dict[str, Tensor]:
    """A target with its boxes replaced by ``boxes`` clipped to ``size`` (H, W), keeping those
    with at least ``min_visibility`` of ``original_area`` (the box's area after the transform,
    before clipping) and both sides at least ``min_size``; per-box entries follow, ``area`` is
    multiplied by ``scale`` (the transform's area factor) and by the visible fraction."""
    h, w = size
    clipped = torch.stack((boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                           boxes[:, 3].clamp(0, h)), dim=1)
    sides = clipped[:, 2:] - clipped[:, :2]
    visible = sides.clamp(min=0).prod(dim=1)
    fraction = visible / original_area.clamp(min=1e-12)
    keep = (fraction >= min_visibility) & (sides >= min_size).all(dim=1)
    out = dict(target)
    for key in _per_box(target):
        out[key] = target[key][keep]
    out["boxes"] = clipped[keep].to(target["boxes"].dtype)
    if "area" in out:
        out["area"] = (target["area"][keep] * scale * fraction[keep]).to(target["area"].dtype)
    return out


def _affine_boxes(boxes: Tensor, sx: float, sy: float, dx: float, dy: float) -> Tensor:
    return torch.stack((boxes[:, 0] * sx + dx, boxes[:, 1] * sy + dy, boxes[:, 2] * sx + dx, boxes[:, 3] * sy + dy),
                       dim=1)


def _area(boxes: Tensor) -> Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def random_hflip(images: Images, targets: Targets, p: float, g: torch.Generator) -> tuple[Images, Targets]:
    """Mirror each image (and its boxes) left-right with probability ``p``."""
    flips = _rand(g, len(targets)) < p
    out_images, out_targets = [], []
    for img, target, flip in zip(_as_list(images), targets, flips.tolist()):
        if flip:
            img = img.flip(-1)
            target = {**target, "boxes": hflip_boxes(target["boxes"], img.shape[-1])}
        out_images.append(img)
        out_targets.append(target)
    return _like(images, out_images), out_targets


def _resize(img: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]


def _window(img: Tensor, top: int, left: int, size: tuple[int, int], fill: float) -> Tensor:
    """The ``size`` window of ``img`` at (top, left), which may reach outside it (filled)."""
    h, w = size
    out = img.new_full((img.shape[0], h, w), fill)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + h, img.shape[1]), min(left + w, img.shape[2])
    if src_bottom > src_top and src_right > src_left:
        out[:, src_top - top:src_bottom - top, src_left - left:src_right - left] = \
            img[:, src_top:src_bottom, src_left:src_right]
    return out


def random_scale(images: Images, targets: Targets, scale_range: tuple[float, float], g: torch.Generator,
                 min_visibility: float = 0.4, min_size: float = 2.0, fill: float = 0.5) -> tuple[Images, Targets]:
    """Resize each image by a factor drawn from ``scale_range``, then crop it (larger) or pad it
    with ``fill`` (smaller) back to its size at a random offset; boxes follow."""
    lo, hi = scale_range
    draws = _rand(g, len(targets), 3)
    out_images, out_targets = [], []
    for img, target, (u, oy, ox) in zip(_as_list(images), targets, draws.tolist()):
        h, w = img.shape[-2:]
        factor = lo + (hi - lo) * u
        nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
        resized = _resize(img, (nh, nw))
        # the window's top-left in the resized image: anywhere that keeps the window over it
        top = round(oy * (nh - h)) if nh >= h else -round(oy * (h - nh))
        left = round(ox * (nw - w)) if nw >= w else -round(ox * (w - nw))
        out_images.append(_window(resized, top, left, (h, w), fill))
        boxes = _affine_boxes(target["boxes"].float(), nw / w, nh / h, -left, -top)
        out_targets.append(filter_boxes(target, boxes, _area(boxes), (h, w), min_visibility, min_size,
                                        scale=(nw / w) * (nh / h)))
    return _like(images, out_images), out_targets


def random_crop(images: Images, targets: Targets, min_area: float, g: torch.Generator,
                ratio: tuple[float, float] = (0.5, 2.0), min_visibility: float = 0.4,
                min_size: float = 2.0) -> tuple[Images, Targets]:
    """A random region of each image, its area a fraction in [``min_area``, 1] of the image's and
    its aspect ratio (w / h, log-uniform) in ``ratio``, resized back to the image's size."""
    draws = _rand(g, len(targets), 4)
    out_images, out_targets = [], []
    for img, target, (ua, ur, uy, ux) in zip(_as_list(images), targets, draws.tolist()):
        h, w = img.shape[-2:]
        area = (min_area + (1 - min_area) * ua) * h * w
        aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * ur)
        ch = max(1, min(h, round(math.sqrt(area / aspect))))
        cw = max(1, min(w, round(math.sqrt(area * aspect))))
        top, left = round(uy * (h - ch)), round(ux * (w - cw))
        out_images.append(_resize(img[:, top:top + ch, left:left + cw], (h, w)))
        sx, sy = w / cw, h / ch
        shifted = _affine_boxes(target["boxes"].float(), 1.0, 1.0, -left, -top)
        boxes = _affine_boxes(shifted, sx, sy, 0.0, 0.0)
        out_targets.append(filter_boxes(target, boxes, _area(boxes), (h, w), min_visibility, min_size,
                                        scale=sx * sy))
    return _like(images, out_images), out_targets


def photometric(images: Images, brightness: float, contrast: float, saturation: float, hue: float,
                g: torch.Generator) -> Images:
    """Colour jitter of :func:`convnet.data.augment.color_jitter`, per image (boxes unchanged)."""
    if isinstance(images, Tensor):
        return color_jitter(images.clamp(0.0, 1.0), brightness, contrast, saturation, hue, g)
    return [color_jitter(img[None].clamp(0.0, 1.0), brightness, contrast, saturation, hue, g)[0] for img in images]


def mosaic(images: Images, targets: Targets, p: float, g: torch.Generator, min_visibility: float = 0.4,
           min_size: float = 2.0) -> tuple[Images, Targets]:
    """With probability ``p`` per image, replace it by a mosaic of itself and three other images
    of the batch (drawn at random; resized to its size if they differ): the four tile a canvas of
    twice its size in random order, and the window of its size at an offset drawn in the middle
    half of the canvas is the new image, with every visible box of the four."""
    imgs = _as_list(images)
    n = len(imgs)
    draws = _rand(g, n, 7)
    out_images, out_targets = [], []
    for i, (img, target) in enumerate(zip(imgs, targets)):
        u = draws[i].tolist()
        if u[0] >= p or n < 2:
            out_images.append(img)
            out_targets.append(target)
            continue
        others = [int(v * (n - 1)) for v in u[1:4]]
        partners = [i] + [j if j < i else j + 1 for j in others]  # three of the others (repeats allowed)
        order = torch.randperm(4, generator=g, device=g.device).cpu().tolist()
        h, w = img.shape[-2:]
        canvas = img.new_zeros((img.shape[0], 2 * h, 2 * w))
        pieces: list[dict[str, Tensor]] = []
        for slot, k in enumerate(order):
            j = partners[k]
            tile = imgs[j] if tuple(imgs[j].shape[-2:]) == (h, w) else _resize(imgs[j], (h, w))
            sy, sx = h / imgs[j].shape[-2], w / imgs[j].shape[-1]
            row, col = divmod(slot, 2)
            canvas[:, row * h:(row + 1) * h, col * w:(col + 1) * w] = tile
            t = targets[j]
            pieces.append({**t, "boxes": _affine_boxes(t["boxes"].float(), sx, sy, col * w, row * h),
                           **({"area": t["area"] * sx * sy} if "area" in t else {})})
        top, left = round(h / 2 * (0.5 + u[4])), round(w / 2 * (0.5 + u[5]))  # in [h/4, 3h/4]
        out_images.append(canvas[:, top:top + h, left:left + w])
        merged = {k: torch.cat([p[k] for p in pieces]) for k in _per_box(pieces[0])
                  if all(k in p for p in pieces)}
        boxes = _affine_boxes(merged["boxes"], 1.0, 1.0, -left, -top)
        out_targets.append(filter_boxes(merged, boxes, _area(boxes), (h, w), min_visibility, min_size))
    return _like(images, out_images), out_targets


@dataclass(frozen=True)
class DetectionAugmentConfig:
    """Which box-aware transforms run, in this order: mosaic, crop, scale, flip, colour."""

    hflip: float = 0.5  # probability of a left-right flip
    scale: tuple[float, float] | None = None  # scale-jitter range, e.g. (0.75, 1.25)
    crop_min_area: float = 0.0  # random crop's smallest area fraction (0: no crop)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    mosaic: float = 0.0  # probability an image becomes a mosaic of four
    min_visibility: float = 0.4  # boxes keeping less of their area are dropped
    min_size: float = 2.0  # boxes with a side below this (pixels) are dropped

    @classmethod
    def from_augment(cls, cfg: Any, mosaic: float = 0.0, min_visibility: float = 0.4) -> DetectionAugmentConfig:
        """From the training config's ``augment`` section: ``hflip``, ``scale`` (jitter in
        [1 - scale, 1 + scale]), ``resized_crop`` (the crop's smallest area), ``color_jitter``
        (brightness, contrast and saturation) and ``hue``. Its planar distortions (``shift``,
        ``shear``, ``rotate``), ``vflip`` and the learned policies do not keep boxes tight and
        are not used for detection."""
        scale = float(getattr(cfg, "scale", 0.0))
        jitter = float(getattr(cfg, "color_jitter", 0.0))
        return cls(hflip=float(getattr(cfg, "hflip", 0.0)), scale=(1 - scale, 1 + scale) if scale > 0 else None,
                   crop_min_area=float(getattr(cfg, "resized_crop", 0.0)), brightness=jitter, contrast=jitter,
                   saturation=jitter, hue=float(getattr(cfg, "hue", 0.0)), mosaic=mosaic,
                   min_visibility=min_visibility)


class DetectionAugment:
    """The configured transforms on a detection batch (``input`` and ``target``), the object a
    detection task's ``build_augment`` returns."""

    def __init__(self, cfg: DetectionAugmentConfig):
        self.cfg = cfg

    @property
    def enabled(self) -> bool:
        c = self.cfg
        return bool(c.hflip > 0 or c.scale or c.crop_min_area > 0 or c.brightness or c.contrast or c.saturation
                    or c.hue or c.mosaic > 0)

    def apply(self, images: Images, targets: Targets, g: torch.Generator) -> tuple[Images, Targets]:
        c = self.cfg
        keep = dict(min_visibility=c.min_visibility, min_size=c.min_size)
        if c.mosaic > 0:
            images, targets = mosaic(images, targets, c.mosaic, g, **keep)
        if c.crop_min_area > 0:
            images, targets = random_crop(images, targets, c.crop_min_area, g, **keep)
        if c.scale:
            images, targets = random_scale(images, targets, tuple(c.scale), g, **keep)
        if c.hflip > 0:
            images, targets = random_hflip(images, targets, c.hflip, g)
        if c.brightness or c.contrast or c.saturation or c.hue:
            images = photometric(images, c.brightness, c.contrast, c.saturation, c.hue, g)
        return images, targets

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        images, targets = self.apply(batch["input"], batch["target"], generator)
        return {**batch, "input": images, "target": targets}
