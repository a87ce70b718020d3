"""Non-maximum suppression with torchvision's signatures and results, in pure PyTorch.

Greedy NMS (the form every torchvision detector uses): visit the boxes in decreasing score
order; keep a box unless a box kept before it overlaps it with IoU > ``iou_threshold``.

How it is computed here. The boxes are sorted once, then taken in blocks of ``_BLOCK``: a
block's boxes are first suppressed by the boxes kept from earlier blocks (one vectorised
IoU matrix, kept x block), then the greedy pass inside the block runs over a boolean
``IoU > threshold`` matrix on the CPU (a short loop of NumPy row ORs, the part torchvision's
CUDA kernel also leaves to the host). Memory is O(block x kept) instead of O(N^2), and the
result is exactly the greedy one.

Equal scores. torchvision's CPU and CUDA kernels both order the boxes with
``scores.sort(0, /*descending=*/true)``, the *unstable* sort (the ``/*stable*/`` in the CPU
kernel is a comment, not an argument). ``nms`` makes the same call, so on the same
PyTorch build and device it keeps the same boxes as torchvision's op, ties included. That
order is not the index order: on x86 CPUs with AVX2/AVX-512, PyTorch's unstable sort is
x86-simd-sort, which reorders equal keys from about 100 elements on. Pass ``stable=True``
for an order that is the same on every machine (equal scores: lower index first).

IoU arithmetic follows the CPU kernel: ``inter / (area_i + area_j - inter)`` in the boxes'
dtype (half and bfloat16 in float32, as the CUDA kernel accumulates), compared with the
threshold as a double, so decisions at the threshold agree too.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .boxes import box_ndim

__all__ = ["batched_nms", "nms"]

# Boxes per block: a block's IoU against itself is _BLOCK^2 booleans moved to the host.
_BLOCK = 1024
# Rows of kept boxes compared with a block at a time (bounds the float IoU temporary).
_KEPT_CHUNK = 1024


def _check(boxes: Tensor, scores: Tensor, idxs: Tensor | None = None) -> None:
    if boxes.dim() != 2:
        raise ValueError(f"boxes must be (N, 2n), got shape {tuple(boxes.shape)}")
    box_ndim(boxes)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be ({boxes.shape[0]},) for {boxes.shape[0]} boxes, got shape "
                         f"{tuple(scores.shape)}")
    if idxs is not None and (idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]):
        raise ValueError(f"idxs must be ({boxes.shape[0]},) for {boxes.shape[0]} boxes, got shape "
                         f"{tuple(idxs.shape)}")


def _threshold(dtype: torch.dtype, iou_threshold: float) -> float:
    """The value ``t`` of ``dtype`` such that ``iou > t`` in ``dtype`` equals ``iou > iou_threshold``
    in double precision (the CPU kernel compares a float IoU with a double threshold)."""
    if dtype == torch.float64:
        return float(iou_threshold)
    t = np.float32(iou_threshold)
    if float(t) > iou_threshold:  # rounded up: the largest float32 not above the threshold decides alike
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def _pairwise_iou(lo1: Tensor, hi1: Tensor, area1: Tensor, lo2: Tensor, hi2: Tensor, area2: Tensor) -> Tensor:
    """IoU of every box of set 1 with every box of set 2, from precomputed corners and areas.

    The kernel's arithmetic (per axis ``max(0, min(hi) - max(lo))``, their product, then
    ``inter / (area1 + area2 - inter)``), done in place: half the memory traffic.
    """
    inter = None
    for k in range(lo1.shape[1]):
        side = torch.min(hi1[:, None, k], hi2[None, :, k])
        side.sub_(torch.max(lo1[:, None, k], lo2[None, :, k])).clamp_(min=0)
        inter = side if inter is None else inter.mul_(side)
    union = area1[:, None] + area2[None, :]
    union.sub_(inter)
    return inter.div_(union)


def _greedy(over: np.ndarray, alive: np.ndarray) -> list[int]:
    """Greedy pass over a block: ``over[i, j]`` says box i would suppress box j (j after i)."""
    removed = ~alive
    keep = []
    for i in range(len(removed)):
        if not removed[i]:
            keep.append(i)
            removed[i + 1:] |= over[i, i + 1:]
    return keep


def _nms_sorted(boxes: Tensor, iou_threshold: float, classes: Tensor | None = None) -> Tensor:
    """Greedy NMS of boxes already in visiting order; returns the kept positions (int64).

    With ``classes``, a box only suppresses boxes of its own class.
    """
    n = boxes.shape[1] // 2
    if not boxes.is_floating_point() or boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()
    thr = _threshold(boxes.dtype, iou_threshold)
    lo, hi = boxes[:, :n], boxes[:, n:]
    sides = hi - lo
    area = sides[:, 0]
    for i in range(1, n):
        area = area * sides[:, i]
    kept: list[Tensor] = []  # positions kept so far, one tensor per block
    for start in range(0, boxes.shape[0], _BLOCK):
        stop = min(start + _BLOCK, boxes.shape[0])
        blk = slice(start, stop)
        alive = torch.ones(stop - start, dtype=torch.bool, device=boxes.device)
        if kept:
            prev = torch.cat(kept)
            for c in range(0, prev.numel(), _KEPT_CHUNK):
                p = prev[c:c + _KEPT_CHUNK]
                over = _pairwise_iou(lo[p], hi[p], area[p], lo[blk], hi[blk], area[blk]) > thr
                if classes is not None:
                    over &= classes[p][:, None] == classes[blk][None, :]
                alive &= ~over.any(dim=0)
        over = _pairwise_iou(lo[blk], hi[blk], area[blk], lo[blk], hi[blk], area[blk]) > thr
        if classes is not None:
            over &= classes[blk][:, None] == classes[blk][None, :]
        keep = _greedy(over.cpu().numpy(), alive.cpu().numpy())
        kept.append(torch.as_tensor(keep, dtype=torch.int64).to(boxes.device) + start)
    return torch.cat(kept)


def _sort_order(scores: Tensor, stable: bool) -> Tensor:
    # The very call torchvision's kernels make (see the module docstring) unless stable is asked.
    if stable:
        return scores.sort(dim=0, descending=True, stable=True).indices
    return scores.sort(dim=0, descending=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, *, stable: bool = False) -> Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Args:
        boxes: ``(N, 2n)`` boxes in ``xyxy`` format (``(N, 4)`` for images; 1-D segments and
            3-D boxes work alike), with ``lo <= hi``.
        scores: ``(N,)`` scores.
        iou_threshold: Boxes overlapping a kept, higher-scoring box with IoU strictly above
            this are discarded.
        stable: Order equal scores by index (portable) instead of by PyTorch's unstable sort,
            which is what torchvision's kernels use (module docstring).

    Returns:
        int64 indices of the kept boxes, in decreasing order of score; empty for empty input.
    """
    _check(boxes, scores)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = _sort_order(scores, stable)
    return order[_nms_sorted(boxes[order], iou_threshold)]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, *,
                stable: bool = False) -> Tensor:
    """NMS within each category, as ``torchvision.ops.batched_nms``.

    torchvision offsets each category's boxes by a multiple of the largest coordinate so that
    categories cannot overlap and one NMS serves all of them. The offset costs float32
    precision (coordinates of class 80 sit near 80x the image size), which can flip a
    decision at the threshold; here the category test is folded into the suppression matrix
    instead, so the result is exactly per-category NMS with one pass and one sort, ordered as
    the offset trick orders it. Large inputs (over 4,000 coordinates on the CPU, 100,000 on
    other devices: torchvision's thresholds) run one NMS per category, as torchvision does,
    because the per-category matrices are then much smaller.

    Args:
        boxes: ``(N, 2n)`` boxes in ``xyxy`` format.
        scores: ``(N,)`` scores.
        idxs: ``(N,)`` integer category of each box.
        iou_threshold: As for :func:`nms`.
        stable: As for :func:`nms`.

    Returns:
        int64 indices of the kept boxes, in decreasing order of score.
    """
    _check(boxes, scores, idxs)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            members = torch.where(idxs == class_id)[0]
            keep_mask[members[nms(boxes[members], scores[members], iou_threshold, stable=stable)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[_sort_order(scores[keep], stable)]
    order = _sort_order(scores, stable)
    return order[_nms_sorted(boxes[order], iou_threshold, classes=idxs[order])]
