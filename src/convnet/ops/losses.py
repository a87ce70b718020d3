"""Detection losses: focal loss and the generalised-IoU box loss, as torchvision.ops.

torchvision's detectors otherwise use ``F.smooth_l1_loss(..., beta=1/9)`` (Faster R-CNN) and
``F.l1_loss`` (RetinaNet, SSD's smooth L1 with beta 1) directly; there is nothing to wrap.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import _prod_last as _prod
from .boxes import box_ndim

__all__ = ["REDUCTIONS", "generalized_box_iou_loss", "sigmoid_focal_loss"]

REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda loss: loss,
    "mean": lambda loss: loss.mean() if loss.numel() > 0 else 0.0 * loss.sum(),
    "sum": lambda loss: loss.sum(),
}


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    try:
        return REDUCTIONS[reduction](loss)
    except KeyError:
        raise ValueError(f"unknown reduction {reduction!r}; choose from {', '.join(REDUCTIONS)}") from None


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """Focal loss on logits (Lin et al., RetinaNet, ICCV 2017, Eq. 5): binary cross-entropy
    scaled by ``(1 - p_t) ** gamma`` so that easy examples weigh little, and by ``alpha_t``.

    Args:
        inputs: Logits of any shape.
        targets: Same shape, 1 for positives and 0 for negatives (soft targets work too).
        alpha: Weight of the positives in [0, 1] (negatives get ``1 - alpha``), or -1 for none
            (0.25 in the paper, with gamma 2).
        gamma: Focusing exponent.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        The loss, reduced as asked.
    """
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"alpha must be in [0, 1], or -1 for no weighting, got {alpha}")
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def generalized_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of paired boxes (Rezatofighi et al., CVPR 2019), FCOS's box loss.

    Symmetric in its arguments, and non-zero with a useful gradient even for boxes that do not
    overlap. Boxes may have any number of dimensions (``2n`` coordinates).

    Args:
        boxes1: ``(..., 2n)`` boxes in ``xyxy`` format.
        boxes2: ``(..., 2n)`` boxes, paired with ``boxes1``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        eps: Added to denominators so that empty boxes do not divide by zero.

    Returns:
        The loss, reduced as asked.
    """
    n = box_ndim(boxes1, "boxes1")
    if boxes1.shape[-1] != boxes2.shape[-1]:
        raise ValueError(f"boxes1 and boxes2 must have the same coordinates, got shapes {tuple(boxes1.shape)} and "
                         f"{tuple(boxes2.shape)}")
    if not boxes1.is_floating_point() or boxes1.dtype in (torch.float16, torch.bfloat16):
        boxes1 = boxes1.float()
    if not boxes2.is_floating_point() or boxes2.dtype in (torch.float16, torch.bfloat16):
        boxes2 = boxes2.float()
    lo1, hi1, lo2, hi2 = boxes1[..., :n], boxes1[..., n:], boxes2[..., :n], boxes2[..., n:]
    inter_sides = torch.min(hi1, hi2) - torch.max(lo1, lo2)
    # Only boxes overlapping on every axis intersect; masking (rather than clamping) keeps
    # torchvision's zero gradient for disjoint pairs.
    overlap = (inter_sides > 0).all(dim=-1)
    inter = torch.where(overlap, _prod(inter_sides), torch.zeros_like(inter_sides[..., 0]))
    union = _prod(hi1 - lo1) + _prod(hi2 - lo2) - inter
    iou = inter / (union + eps)
    enclosing = _prod(torch.max(hi1, hi2) - torch.min(lo1, lo2))
    giou = iou - ((enclosing - union) / (enclosing + eps))
    return _reduce(1 - giou, reduction)
