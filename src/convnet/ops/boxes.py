"""Axis-aligned boxes in any number of dimensions: area, IoU, GIoU, format conversion, clipping.

The semantics are torchvision's ``torchvision.ops.boxes`` (same names, arguments and results
for 2-D boxes); the one generalisation is the number of spatial dimensions, which every
function reads from the last axis. A box in ``n`` dimensions has ``2n`` coordinates:

* ``"xyxy"``: ``(lo_1, ..., lo_n, hi_1, ..., hi_n)``: 1-D segments ``(x1, x2)``, 2-D boxes
  ``(x1, y1, x2, y2)``, 3-D boxes ``(x1, y1, z1, x2, y2, z2)``;
* ``"xywh"``: ``(lo_1, ..., lo_n, size_1, ..., size_n)``;
* ``"cxcywh"``: ``(centre_1, ..., centre_n, size_1, ..., size_n)``.

Coordinate ``i`` runs along tensor axis ``-1 - i``, as in torchvision, where ``x`` indexes
the width (the last axis) and ``y`` the height: a 3-D box's ``x``, ``y``, ``z`` run along
``W``, ``H``, ``D`` of a ``(B, C, D, H, W)`` volume, and image sizes are given in tensor
order (``(H, W)``, ``(D, H, W)``).

Everything here is differentiable where the maths is (areas, IoU and GIoU w.r.t. the
coordinates) and runs on any device.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "BOX_FORMATS",
    "box_area",
    "box_convert",
    "box_iou",
    "box_ndim",
    "clip_boxes_to_image",
    "generalized_box_iou",
    "remove_small_boxes",
]


def box_ndim(boxes: Tensor, name: str = "boxes") -> int:
    """The number of spatial dimensions ``n`` of ``boxes`` (``2n`` coordinates on the last axis).

    Raises:
        ValueError: The last axis is missing, empty or odd.
    """
    if boxes.dim() == 0 or boxes.shape[-1] == 0 or boxes.shape[-1] % 2:
        raise ValueError(f"{name} must have 2n coordinates on the last axis (n lows, then n highs or sizes), "
                         f"got shape {tuple(boxes.shape)}")
    return boxes.shape[-1] // 2


def _upcast(t: Tensor) -> Tensor:
    # Products of coordinates overflow half precision and small integers: compute areas in
    # float32 / int32 at least, as torchvision does.
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


# Each format maps to (lows, highs) and to its sizes; building the other way is box_convert's.
def _xyxy_lo_hi(b: Tensor, n: int) -> tuple[Tensor, Tensor]:
    return b[..., :n], b[..., n:]


def _xywh_lo_hi(b: Tensor, n: int) -> tuple[Tensor, Tensor]:
    return b[..., :n], b[..., :n] + b[..., n:]


def _cxcywh_lo_hi(b: Tensor, n: int) -> tuple[Tensor, Tensor]:
    return b[..., :n] - b[..., n:] / 2, b[..., :n] + b[..., n:] / 2


def _xyxy_from(lo: Tensor, hi: Tensor) -> Tensor:
    return torch.cat((lo, hi), dim=-1)


def _xywh_from(lo: Tensor, hi: Tensor) -> Tensor:
    return torch.cat((lo, hi - lo), dim=-1)


def _cxcywh_from(lo: Tensor, hi: Tensor) -> Tensor:
    return torch.cat(((lo + hi) / 2, hi - lo), dim=-1)


# name -> (to lows and highs, from lows and highs, sizes)
BOX_FORMATS: dict[str, tuple[Callable, Callable, Callable]] = {
    "xyxy": (_xyxy_lo_hi, _xyxy_from, lambda b, n: b[..., n:] - b[..., :n]),
    "xywh": (_xywh_lo_hi, _xywh_from, lambda b, n: b[..., n:]),
    "cxcywh": (_cxcywh_lo_hi, _cxcywh_from, lambda b, n: b[..., n:]),
}


def _format(fmt: str, what: str = "box format") -> tuple[Callable, Callable, Callable]:
    try:
        return BOX_FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown {what} {fmt!r}; choose from {', '.join(BOX_FORMATS)}") from None


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"`` (any number of dims).

    Args:
        boxes: ``(..., 2n)`` boxes in ``in_fmt``.
        in_fmt: Format of ``boxes``.
        out_fmt: Format wanted.

    Returns:
        ``(..., 2n)`` boxes in ``out_fmt`` (a copy, also when the formats are equal).
    """
    to_lo_hi, _, _ = _format(in_fmt)
    _, from_lo_hi, _ = _format(out_fmt)
    n = box_ndim(boxes)
    if in_fmt == out_fmt:
        return boxes.clone()
    # Through lows and highs, as torchvision goes through xyxy, so that the values agree bit for bit.
    return from_lo_hi(*to_lo_hi(boxes, n))


def box_area(boxes: Tensor, fmt: str = "xyxy") -> Tensor:
    """Area (length in 1-D, volume in 3-D) of each box.

    Args:
        boxes: ``(..., 2n)`` boxes.
        fmt: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.

    Returns:
        ``(...)`` areas, in float32 at least for half-precision input (int32 for small ints).
    """
    _, _, sizes = _format(fmt)
    n = box_ndim(boxes)
    return _prod_last(sizes(_upcast(boxes), n))


def _prod_last(t: Tensor) -> Tensor:
    """Product over the last axis, left to right: for two sides exactly torchvision's ``w * h``."""
    out = t[..., 0]
    for i in range(1, t.shape[-1]):
        out = out * t[..., i]
    return out


def _inter_union(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pairwise intersection and union of ``(..., N, 2n)`` and ``(..., M, 2n)`` boxes, with the
    corners of the intersections (for GIoU's enclosing box the caller needs the lows and highs)."""
    to_lo_hi, _, _ = _format(fmt)
    n1, n2 = box_ndim(boxes1, "boxes1"), box_ndim(boxes2, "boxes2")
    if n1 != n2:
        raise ValueError(f"boxes1 and boxes2 must have the same number of dimensions, got {2 * n1} and "
                         f"{2 * n2} coordinates")
    area1, area2 = box_area(boxes1, fmt), box_area(boxes2, fmt)
    lo1, hi1 = to_lo_hi(boxes1, n1)
    lo2, hi2 = to_lo_hi(boxes2, n1)
    lt = torch.max(lo1[..., :, None, :], lo2[..., None, :, :])  # (..., N, M, n)
    rb = torch.min(hi1[..., :, None, :], hi2[..., None, :, :])
    inter = _prod_last(_upcast(rb - lt).clamp(min=0))
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter, union, (lo1, hi1), (lo2, hi2)


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Pairwise intersection over union (Jaccard index).

    Args:
        boxes1: ``(..., N, 2n)`` boxes.
        boxes2: ``(..., M, 2n)`` boxes (batch dimensions broadcast with ``boxes1``'s).
        fmt: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.

    Returns:
        ``(..., N, M)`` IoU; NaN where both boxes are empty (0 / 0), as in torchvision.
    """
    inter, union, _, _ = _inter_union(boxes1, boxes2, fmt)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU: IoU minus the share of the smallest enclosing box that neither
    box covers (Rezatofighi et al., CVPR 2019, Alg. 1); in [-1, 1], and informative for boxes
    that do not overlap.

    Args:
        boxes1: ``(..., N, 2n)`` boxes in ``xyxy`` format.
        boxes2: ``(..., M, 2n)`` boxes in ``xyxy`` format.

    Returns:
        ``(..., N, M)`` GIoU.
    """
    inter, union, (lo1, hi1), (lo2, hi2) = _inter_union(boxes1, boxes2)
    iou = inter / union
    lti = torch.min(lo1[..., :, None, :], lo2[..., None, :, :])
    rbi = torch.max(hi1[..., :, None, :], hi2[..., None, :, :])
    enclosing = _prod_last(_upcast(rbi - lti).clamp(min=0))
    return iou - (enclosing - union) / enclosing


def clip_boxes_to_image(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Clip ``xyxy`` boxes to an image (or volume, or signal) of ``size``.

    Args:
        boxes: ``(..., 2n)`` boxes in ``xyxy`` format.
        size: The ``n`` spatial sizes in tensor order: ``(height, width)`` for images,
            ``(depth, height, width)`` for volumes, ``(length,)`` for signals.

    Returns:
        ``(..., 2n)`` boxes with coordinate ``i`` clamped to ``[0, size[-1 - i]]``.
    """
    n = box_ndim(boxes)
    if len(size) != n:
        raise ValueError(f"size must give {n} spatial sizes for {2 * n}-coordinate boxes, got {tuple(size)}")
    limits = [float(s) if boxes.is_floating_point() else int(s) for s in reversed(tuple(size))]
    upper = torch.tensor(limits * 2, dtype=boxes.dtype, device=boxes.device)
    return torch.min(boxes.clamp(min=0), upper)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose every side is at least ``min_size``.

    Args:
        boxes: ``(K, 2n)`` boxes in ``xyxy`` format.
        min_size: Smallest side kept.

    Returns:
        ``(K',)`` int64 indices into ``boxes``, increasing.
    """
    n = box_ndim(boxes)
    sides = boxes[..., n:] - boxes[..., :n]
    keep = (sides >= min_size).all(dim=-1)
    return torch.where(keep)[0]
