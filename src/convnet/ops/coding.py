"""Box coding: boxes as regression targets relative to reference boxes (anchors, proposals).

* :class:`BoxCoder`: the R-CNN parametrisation (Girshick et al., CVPR 2014, Appendix C;
  Ren et al., Faster R-CNN, NeurIPS 2015, Eq. 2): centre offsets in units of the reference
  size and log size ratios, each scaled by a weight. Faster R-CNN, RetinaNet and SSD use it.
* :class:`BoxLinearCoder`: FCOS's distances from the reference centre to the box's sides
  (Tian et al., ICCV 2019, Eq. 1), optionally in units of the reference size.

Both equal torchvision's ``models/detection/_utils.py`` classes of the same names on 2-D boxes,
operation for operation, and work for boxes in any number of dimensions: ``2n`` weights
(``n`` for the centre, ``n`` for the sizes), ``2n``-coordinate codes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .boxes import box_ndim

__all__ = ["BoxCoder", "BoxLinearCoder"]


def _centre_size(boxes: Tensor, n: int) -> tuple[Tensor, Tensor]:
    sizes = boxes[..., n:] - boxes[..., :n]
    return boxes[..., :n] + 0.5 * sizes, sizes


class BoxCoder:
    """Encode boxes as ``(d_centre, d_log_size)`` relative to reference boxes, and decode them.

    For a reference box with centre ``c_a`` and size ``s_a`` and a target with ``c``, ``s``:
    ``t_c = w_c (c - c_a) / s_a`` and ``t_s = w_s log(s / s_a)`` per axis. Decoding clamps
    ``t_s / w_s`` at ``bbox_xform_clip`` before ``exp`` so that an untrained head cannot
    produce infinite boxes (log(1000 / 16): a box at most 62.5 times its reference).

    Args:
        weights: ``2n`` weights: ``n`` for the centre offsets, then ``n`` for the log sizes
            (``(wx, wy, ww, wh)`` for images; Faster R-CNN's RPN uses (1, 1, 1, 1), its box
            head (10, 10, 5, 5)).
        bbox_xform_clip: Largest log size ratio decoded.
    """

    def __init__(self, weights: Sequence[float], bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        if len(weights) == 0 or len(weights) % 2:
            raise ValueError(f"weights must be 2n numbers (n for centres, n for sizes), got {tuple(weights)}")
        self.weights = tuple(weights)
        self.bbox_xform_clip = bbox_xform_clip

    def _ndim(self, boxes: Tensor, name: str) -> int:
        n = box_ndim(boxes, name)
        if 2 * n != len(self.weights):
            raise ValueError(f"{name} have {2 * n} coordinates but the coder has {len(self.weights)} weights")
        return n

    def encode(self, reference_boxes: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, ...]:
        """Encode per image: ``reference_boxes[i]`` (the targets, e.g. matched ground truth)
        relative to ``proposals[i]`` (anchors or proposals); returns one code tensor per image."""
        boxes_per_image = [len(b) for b in reference_boxes]
        targets = self.encode_single(torch.cat(reference_boxes, dim=0), torch.cat(proposals, dim=0))
        return targets.split(boxes_per_image, 0)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Codes ``(K, 2n)`` of the ``(K, 2n)`` boxes ``reference_boxes`` relative to ``proposals``."""
        n = self._ndim(reference_boxes, "reference_boxes")
        weights = torch.as_tensor(self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device)
        ex_ctr, ex_sizes = _centre_size(proposals, n)
        gt_ctr, gt_sizes = _centre_size(reference_boxes, n)
        d_ctr = weights[:n] * (gt_ctr - ex_ctr) / ex_sizes
        d_size = weights[n:] * torch.log(gt_sizes / ex_sizes)
        return torch.cat((d_ctr, d_size), dim=-1)

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        """Decode ``rel_codes`` (``(sum K_i, C * 2n)`` for ``C`` codes per box, e.g. one per
        class) relative to the per-image ``boxes``; returns ``(sum K_i, C, 2n)``."""
        if not isinstance(boxes, (list, tuple)):
            raise ValueError(f"boxes must be a list of per-image tensors, got {type(boxes).__name__}")
        if not isinstance(rel_codes, Tensor):
            raise ValueError(f"rel_codes must be a tensor, got {type(rel_codes).__name__}")
        box_sum = sum(int(b.size(0)) for b in boxes)
        concat_boxes = torch.cat(boxes, dim=0)
        if box_sum > 0:
            rel_codes = rel_codes.reshape(box_sum, -1)
        pred_boxes = self.decode_single(rel_codes, concat_boxes)
        if box_sum > 0:
            pred_boxes = pred_boxes.reshape(box_sum, -1, len(self.weights))
        return pred_boxes

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Boxes ``(K, C * 2n)`` from codes ``(K, C * 2n)`` relative to reference ``boxes`` ``(K, 2n)``."""
        n = self._ndim(boxes, "boxes")
        k = 2 * n
        boxes = boxes.to(rel_codes.dtype)
        sizes = boxes[:, n:] - boxes[:, :n]                     # (K, n)
        ctr = boxes[:, :n] + 0.5 * sizes
        if rel_codes.dim() != 2 or rel_codes.shape[1] % k:
            raise ValueError(f"rel_codes must be (K, C * {k}), got shape {tuple(rel_codes.shape)}")
        codes = rel_codes.reshape(rel_codes.shape[0], rel_codes.shape[1] // k, k)  # (K, C, 2n)
        w = torch.tensor(self.weights, dtype=rel_codes.dtype, device=rel_codes.device)
        d_ctr = codes[..., :n] / w[:n]
        # Prevent sending too large values into exp().
        d_size = torch.clamp(codes[..., n:] / w[n:], max=self.bbox_xform_clip)
        pred_ctr = d_ctr * sizes[:, None, :] + ctr[:, None, :]
        pred_size = torch.exp(d_size) * sizes[:, None, :]
        half = torch.tensor(0.5, dtype=pred_ctr.dtype, device=pred_ctr.device) * pred_size
        return torch.cat((pred_ctr - half, pred_ctr + half), dim=-1).reshape(rel_codes.shape)


class BoxLinearCoder:
    """FCOS's coder: distances from the reference centre to the box's low and high sides
    (``(l, t, r, b)`` for images), optionally divided by the reference's size.

    Args:
        normalize_by_size: Express the distances in units of the reference box's size
            (torchvision's FCOS does, with anchors of one stride per level).
    """

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Codes ``(..., 2n)`` of ``proposals`` (the targets) relative to ``reference_boxes``.

        Note the argument order, torchvision's: here the *first* argument is the reference.
        """
        n = box_ndim(reference_boxes, "reference_boxes")
        ctr = 0.5 * (reference_boxes[..., :n] + reference_boxes[..., n:])
        targets = torch.cat((ctr - proposals[..., :n], proposals[..., n:] - ctr), dim=-1)
        if self.normalize_by_size:
            sizes = reference_boxes[..., n:] - reference_boxes[..., :n]
            targets = targets / torch.cat((sizes, sizes), dim=-1)
        return targets

    def decode(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Boxes ``(..., 2n)`` from codes relative to reference ``boxes`` (same leading shape)."""
        n = box_ndim(boxes, "boxes")
        boxes = boxes.to(dtype=rel_codes.dtype)
        ctr = 0.5 * (boxes[..., :n] + boxes[..., n:])
        if self.normalize_by_size:
            sizes = boxes[..., n:] - boxes[..., :n]
            rel_codes = rel_codes * torch.cat((sizes, sizes), dim=-1)
        return torch.cat((ctr - rel_codes[..., :n], ctr + rel_codes[..., n:]), dim=-1)
