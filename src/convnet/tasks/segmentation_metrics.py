"""Segmentation scores from one confusion matrix, in any number of spatial dims.

A split's IoU is not the mean of per-image IoUs: the confusion matrix is accumulated over every
labelled pixel of the split (and summed across ranks, a "sum" state of ``tasks.metric.Metric``),
and the scores are read from it once. Rows are true classes, columns predicted ones.

- IoU_c = TP / (TP + FP + FN) (Jaccard), Dice_c = 2 TP / (2 TP + FP + FN) (the F1 score);
- mIoU and mean Dice average the classes that occur in the labels or the predictions (a class
  absent from both has no defined score: NaN, left out of the mean, as torchvision's reference
  ``ConfusionMatrix`` and mmsegmentation do);
- pixel accuracy = trace / total; per-class accuracy (recall) = TP / (TP + FN).
"""
from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """The (num_classes, num_classes) int64 confusion matrix (rows: target, columns: prediction).

    Args:
        pred: predicted labels (B, *S), or logits/probabilities (B, C, *S) (arg-maxed over C).
        target: true labels (B, *S) (or (B, 1, *S)).
        ignore_index: a label whose positions are not counted.

    Raises:
        ValueError: mismatched shapes or labels outside [0, num_classes).
    """
    if pred.is_floating_point() and pred.ndim == target.ndim and target.ndim >= 3 and target.shape[1] == 1:
        target = target[:, 0]  # (B, 1, *S) labels beside (B, C, *S) scores
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(dim=1)  # scores -> labels
    if target.ndim == pred.ndim + 1 and target.shape[1] == 1:
        target = target[:, 0]
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, labels in (("target", target), ("prediction", pred)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise ValueError(f"{name} label {bad} is outside [0, {num_classes}) for {num_classes} classes")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def scores_from_confusion(cm: torch.Tensor) -> dict[str, torch.Tensor | float]:
    """Per-class IoU, Dice and accuracy (NaN for classes absent from labels and predictions),
    their means over the present classes (``miou``, ``mean_dice``) and ``pixel_accuracy``."""
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {tuple(cm.shape)}")
    cm = cm.double()
    tp = cm.diagonal()
    gt = cm.sum(1)  # TP + FN
    predicted = cm.sum(0)  # TP + FP
    union = gt + predicted - tp
    present = union > 0
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(present, tp / union.clamp(min=1), nan)
    dice = torch.where(present, 2 * tp / (gt + predicted).clamp(min=1), nan)
    accuracy = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
    total = cm.sum()
    return {
        "iou": iou,
        "dice": dice,
        "class_accuracy": accuracy,
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "mean_dice": float(dice[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
    }
