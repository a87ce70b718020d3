"""Segmentation losses and confusion-matrix scores against values worked out by hand."""
import math

import pytest
import torch

from convnet.tasks.segmentation_losses import (DiceCELoss, FocalLoss, cross_entropy, dice_loss, dice_per_class,
                                               focal_loss, segmentation_loss)
from convnet.tasks.segmentation_metrics import confusion_matrix, scores_from_confusion

LN2, LN43 = math.log(2), math.log(4 / 3)


def _two_positions():
    """One sample, 2 classes, 2 positions: position 0 has p = (1/4, 3/4), label 1; position 1
    has p = (1/2, 1/2), label 0."""
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]])  # (B=1, C=2, L=2)
    target = torch.tensor([[1, 0]])
    return logits, target


def test_cross_entropy_by_hand():
    logits, target = _two_positions()
    assert cross_entropy(logits, target).item() == pytest.approx((LN43 + LN2) / 2)
    # Class weights (1, 3): the weighted mean sum(w_y * l) / sum(w_y).
    assert cross_entropy(logits, target, weight=(1.0, 3.0)).item() == pytest.approx((3 * LN43 + LN2) / 4)
    ignored = torch.tensor([[1, 255]])
    assert cross_entropy(logits, ignored, ignore_index=255).item() == pytest.approx(LN43)
    everything_ignored = cross_entropy(logits, torch.full((1, 2), 255), ignore_index=255)
    assert everything_ignored.item() == 0.0  # not NaN


def test_soft_dice_in_milletari_form_by_hand():
    """D = 2 sum(pg) / (sum p^2 + sum g^2) per class."""
    logits, target = _two_positions()
    d0 = 2 * 0.5 / (1 / 16 + 1 / 4 + 1)  # class 0: g = (0, 1)
    d1 = 2 * 0.75 / (9 / 16 + 1 / 4 + 1)  # class 1: g = (1, 0)
    assert (d0, d1) == pytest.approx((16 / 21, 24 / 29))
    torch.testing.assert_close(dice_per_class(logits, target), torch.tensor([d0, d1]))
    assert dice_loss(logits, target).item() == pytest.approx(1 - (d0 + d1) / 2)
    assert dice_loss(logits, target, include_background=False).item() == pytest.approx(1 - d1)
    # Ignoring position 1 removes it from both sums: class 0 has no label left and p^2 = 1/16.
    per_class = dice_per_class(logits, torch.tensor([[1, 9]]), ignore_index=9)
    assert per_class[0].item() == pytest.approx(0.0, abs=1e-4)
    assert per_class[1].item() == pytest.approx(2 * 0.75 / (9 / 16 + 1))


def test_dice_of_a_perfect_prediction_is_one_and_absent_classes_score_one():
    target = torch.tensor([[0, 1, 1, 0]])
    logits = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 50
    dice = dice_per_class(logits, target)
    torch.testing.assert_close(dice, torch.ones(3), atol=1e-4, rtol=0)  # class 2: absent everywhere
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-4)


def test_focal_loss_by_hand():
    logits, target = _two_positions()
    # (1 - p_t)^2 * -log p_t: (1/4)^2 ln(4/3) and (1/2)^2 ln 2.
    assert focal_loss(logits, target, gamma=2).item() == pytest.approx((LN43 / 16 + LN2 / 4) / 2)
    assert focal_loss(logits, target, gamma=0).item() == pytest.approx(cross_entropy(logits, target).item())
    # alpha_t: 0.75 for the label-1 position, 0.25 for the label-0 one.
    alpha = focal_loss(logits, target, gamma=2, alpha=(0.25, 0.75)).item()
    assert alpha == pytest.approx((0.75 * LN43 / 16 + 0.25 * LN2 / 4) / 2)
    assert focal_loss(logits, torch.tensor([[1, -1]]), ignore_index=-1).item() == pytest.approx(LN43 / 16)


def test_dice_ce_is_the_weighted_sum():
    logits, target = _two_positions()
    loss = DiceCELoss(dice_weight=0.5, ce_weight=2.0)
    parts = loss.parts(logits, target)
    assert parts["ce"].item() == pytest.approx((LN43 + LN2) / 2)
    assert parts["dice"].item() == pytest.approx(1 - (16 / 21 + 24 / 29) / 2)
    assert loss(logits, target).item() == pytest.approx(0.5 * parts["dice"].item() + 2.0 * parts["ce"].item())


@pytest.mark.parametrize("name", ["ce", "dice", "dice_ce", "focal"])
def test_losses_are_n_dimensional(name):
    """The same positions laid out in 3-D or flattened to 1-D give the same loss; gradients flow."""
    loss = segmentation_loss(name)
    logits = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 5, 6))
    volume = loss(logits, target)
    flat = loss(logits.reshape(2, 3, -1), target.reshape(2, -1))
    torch.testing.assert_close(volume, flat)
    volume.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # A (B, 1, *S) target is accepted as well.
    torch.testing.assert_close(loss(logits, target.unsqueeze(1)), volume)


def test_loss_errors_name_the_problem():
    logits = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"target shape \(2, 8, 7\) does not match logits"):
        cross_entropy(logits, torch.zeros(2, 8, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target label 3 is outside \[0, 3\)"):
        dice_loss(logits, torch.full((2, 8, 8), 3))
    with pytest.raises(ValueError, match="integer class labels"):
        focal_loss(logits, torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="one value per class"):
        cross_entropy(logits, torch.zeros(2, 8, 8, dtype=torch.long), weight=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown segmentation loss 'iou'; choose from ce, dice, dice_ce, focal"):
        segmentation_loss("iou")
    assert isinstance(segmentation_loss("focal", gamma=1.0), FocalLoss)


# -- confusion matrix and scores --------------------------------------------------------------------

def _example():
    # target 0 0 | 1 1 1 | 2 | ignored; 4 classes, class 3 absent from both.
    target = torch.tensor([[0, 1, 1, 1, 2, 0, 255]])
    pred = torch.tensor([[0, 0, 1, 1, 2, 2, 3]])
    return pred, target


def test_confusion_matrix_by_hand():
    pred, target = _example()
    cm = confusion_matrix(pred, target, 4, ignore_index=255)
    expected = torch.tensor([[1, 0, 1, 0],  # target 0: predicted 0 once, 2 once
                             [1, 2, 0, 0],  # target 1: 0 once, 1 twice
                             [0, 0, 1, 0],
                             [0, 0, 0, 0]])
    assert torch.equal(cm, expected)
    # From scores (B, C, *S): the arg-max; in 2-D and 3-D the counts are the same.
    logits = torch.nn.functional.one_hot(pred, 4).movedim(-1, 1).float()
    assert torch.equal(confusion_matrix(logits, target, 4, ignore_index=255), expected)
    assert torch.equal(confusion_matrix(pred.reshape(1, 7, 1, 1), target.reshape(1, 7, 1, 1), 4, 255), expected)


def test_scores_from_confusion_by_hand():
    pred, target = _example()
    scores = scores_from_confusion(confusion_matrix(pred, target, 4, ignore_index=255))
    iou = scores["iou"].tolist()
    assert iou[:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and math.isnan(iou[3])
    assert scores["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)  # class 3 left out
    dice = scores["dice"].tolist()
    assert dice[:3] == pytest.approx([2 / 4, 4 / 5, 2 / 3]) and math.isnan(dice[3])
    assert scores["mean_dice"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    assert scores["class_accuracy"].tolist()[:3] == pytest.approx([1 / 2, 2 / 3, 1.0])


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"prediction label 4 is outside \[0, 4\)"):
        confusion_matrix(torch.tensor([4]), torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="does not match target shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(torch.zeros(3, 4))
