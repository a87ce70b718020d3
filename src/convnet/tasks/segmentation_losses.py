"""Losses for dense prediction in 1, 2 or 3 dims: logits (B, C, *S) against a label map (B, *S).

- Cross-entropy with ``ignore_index`` and class weights (``F.cross_entropy`` is already N-d; the
  wrapper checks shapes and label values and says what is wrong).
- Soft Dice in Milletari et al.'s form (V-Net, 3DV 2016, Eq. 1): D = 2 sum(p g) / (sum p^2 +
  sum g^2), with p the soft-max probability and g the one-hot label of a class, summed over the
  batch and every position; the loss is 1 - mean over classes of D. Positions labelled
  ``ignore_index`` count in neither sum; ``include_background=False`` leaves class 0 out of
  the mean (it usually dominates the volume).
- Dice + cross-entropy (nnU-Net's default pairing), weighted.
- Focal loss (T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
  Detection", ICCV 2017, Eq. 5) for C classes: FL = -alpha_t (1 - p_t)^gamma log p_t with p_t the
  soft-max probability of the true class, averaged over the labelled positions; ``alpha`` is one
  weight per class (or None).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def check_dense_target(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """``target`` as a (B, *S) int64 label map matching (B, C, *S) ``logits``; a (B, 1, *S) map is
    accepted. Raises a ValueError naming the shapes or the offending label value."""
    if logits.ndim < 3:
        raise ValueError(f"dense logits are (B, C, *S) with 1 to 3 spatial axes, got shape {tuple(logits.shape)}")
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
                         f"expected (B, *S) = {tuple(logits.shape[:1] + logits.shape[2:])}")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer class labels, got dtype {target.dtype}")
    target = target.long()
    num_classes = logits.shape[1]
    labelled = target if ignore_index is None else target[target != ignore_index]
    if labelled.numel():
        low, high = int(labelled.min()), int(labelled.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            ignore = f" (ignore_index is {ignore_index})" if ignore_index is not None else ""
            raise ValueError(f"target label {bad} is outside [0, {num_classes}) for {num_classes} classes{ignore}")
    return target


def _class_weight(weight: Sequence[float] | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=logits.dtype, device=logits.device)
    if weight.shape != (logits.shape[1],):
        raise ValueError(f"class weights need one value per class ({logits.shape[1]}), got shape {tuple(weight.shape)}")
    return weight


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: Sequence[float] | torch.Tensor | None = None,
                  ignore_index: int = -100, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions (weighted means with ``weight``, as
    ``F.cross_entropy``). 0 when every position is ignored (not NaN)."""
    target = check_dense_target(logits, target, ignore_index)
    if not (target != ignore_index).any():
        return logits.sum() * 0.0  # keeps the graph, no NaN from an empty mean
    return F.cross_entropy(logits, target, weight=_class_weight(weight, logits), ignore_index=ignore_index,
                           label_smoothing=label_smoothing)


def dice_per_class(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None,
                   eps: float = 1e-6) -> torch.Tensor:
    """Milletari's soft Dice of every class over the batch: (C,) values in [0, 1]. A class absent
    from both the labels and the predictions scores 1 (eps / eps)."""
    target = check_dense_target(logits, target, ignore_index)
    probs = logits.float().softmax(dim=1)
    valid = None
    if ignore_index is not None:
        valid = target != ignore_index
        target = target.masked_fill(~valid, 0)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)  # (B, C, *S)
    if valid is not None:
        mask = valid.unsqueeze(1).to(probs.dtype)
        probs, onehot = probs * mask, onehot * mask
    axes = [0] + list(range(2, logits.ndim))
    intersection = (probs * onehot).sum(axes)
    denominator = probs.square().sum(axes) + onehot.square().sum(axes)
    return (2 * intersection + eps) / (denominator + eps)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None,
              include_background: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """1 - the mean soft Dice over classes (class 0 left out when ``include_background`` is False)."""
    dice = dice_per_class(logits, target, ignore_index, eps)
    if not include_background:
        if dice.numel() < 2:
            raise ValueError("include_background=False needs at least two classes")
        dice = dice[1:]
    return 1.0 - dice.mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: Sequence[float] | torch.Tensor | None = None, ignore_index: int = -100) -> torch.Tensor:
    """Lin et al.'s focal loss over C classes, averaged over the labelled positions."""
    target = check_dense_target(logits, target, ignore_index)
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    safe = target.masked_fill(~valid, 0).unsqueeze(1)
    log_pt = logits.float().log_softmax(dim=1).gather(1, safe).squeeze(1)  # (B, *S)
    pt = log_pt.exp()
    loss = -(1 - pt).pow(gamma) * log_pt
    weight = _class_weight(alpha, logits)
    if weight is not None:
        loss = loss * weight[safe.squeeze(1)]
    return loss[valid].mean()


class CrossEntropyLoss(nn.Module):
    """:func:`cross_entropy` as a module."""

    def __init__(self, weight: Sequence[float] | None = None, ignore_index: int = -100, label_smoothing: float = 0.0):
        super().__init__()
        self.weight = None if weight is None else tuple(float(w) for w in weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, self.weight, self.ignore_index, self.label_smoothing)


class DiceLoss(nn.Module):
    """:func:`dice_loss` as a module."""

    def __init__(self, ignore_index: int | None = None, include_background: bool = True, eps: float = 1e-6):
        super().__init__()
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, target, self.ignore_index, self.include_background, self.eps)


class DiceCELoss(nn.Module):
    """``dice_weight`` * Dice + ``ce_weight`` * cross-entropy; :meth:`parts` gives both terms."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, weight: Sequence[float] | None = None,
                 ignore_index: int | None = None, include_background: bool = True):
        super().__init__()
        self.dice_weight, self.ce_weight = dice_weight, ce_weight
        self.dice = DiceLoss(ignore_index, include_background)
        self.ce = CrossEntropyLoss(weight, -100 if ignore_index is None else ignore_index)

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"dice": self.dice(logits, target), "ce": self.ce(logits, target)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = self.parts(logits, target)
        return self.dice_weight * parts["dice"] + self.ce_weight * parts["ce"]


class FocalLoss(nn.Module):
    """:func:`focal_loss` as a module."""

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None, ignore_index: int = -100):
        super().__init__()
        self.gamma = gamma
        self.alpha = None if alpha is None else tuple(float(a) for a in alpha)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.alpha, self.ignore_index)


LOSSES: dict[str, type[nn.Module]] = {"ce": CrossEntropyLoss, "dice": DiceLoss, "dice_ce": DiceCELoss,
                                      "focal": FocalLoss}


def segmentation_loss(name: str, **kwargs) -> nn.Module:
    """A loss module by name (a key of ``LOSSES``)."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown segmentation loss {name!r}; choose from {', '.join(LOSSES)}") from None
    return cls(**kwargs)
