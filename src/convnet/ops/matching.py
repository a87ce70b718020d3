"""Assigning ground truth to anchors or proposals, and sampling them for the loss.

As torchvision's ``models/detection/_utils.py``:

* :class:`Matcher`: each prediction takes the ground truth it overlaps most; below
  ``low_threshold`` it is background, between the thresholds it is ignored (Faster R-CNN's
  RPN: 0.7 / 0.3, Ren et al. 2015, Sec. 3.1.2; RetinaNet: 0.5 / 0.4, Lin et al. 2017, Sec. 4).
  ``allow_low_quality_matches`` also gives every ground truth its best predictions, however
  low their IoU, so that no object goes without an anchor (the RPN's rule (i)).
* :class:`SSDMatcher`: one threshold, plus every ground truth forced onto its single best
  default box (SSD, Liu et al. 2016, Sec. 2.2 "Matching strategy").
* :class:`BalancedPositiveNegativeSampler`: a fixed-size minibatch per image with at most a
  given fraction of positives (the RPN's 256 anchors at 1:1; the box head's 512 at 1:3).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BalancedPositiveNegativeSampler", "Matcher", "SSDMatcher"]


class Matcher:
    """Match predictions to ground truth from an ``(M ground truths, N predictions)`` quality
    matrix (usually IoU).

    The result gives, per prediction, the index of its ground truth, or
    ``BELOW_LOW_THRESHOLD`` (-1: background) or ``BETWEEN_THRESHOLDS`` (-2: ignored).

    Args:
        high_threshold: Quality at or above which a match counts.
        low_threshold: Quality below which a prediction is background.
        allow_low_quality_matches: Also match each ground truth to the predictions of its
            highest quality (ties included), even below ``high_threshold``.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """``(N,)`` int64 matches for the ``(M, N)`` quality matrix."""
        if match_quality_matrix.numel() == 0:
            # Training needs both; an image without objects is handled by the caller.
            if match_quality_matrix.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")
        matched_vals, matches = match_quality_matrix.max(dim=0)
        all_matches = matches.clone() if self.allow_low_quality_matches else None
        below_low_threshold = matched_vals < self.low_threshold
        between_thresholds = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below_low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[between_thresholds] = self.BETWEEN_THRESHOLDS
        if all_matches is not None:
            self.set_low_quality_matches_(matches, all_matches, match_quality_matrix)
        return matches

    def set_low_quality_matches_(self, matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor) -> None:
        """Give back each ground truth's best predictions (all of them on ties) their best match."""
        highest_quality_foreach_gt, _ = match_quality_matrix.max(dim=1)
        gt_pred_pairs_of_highest_quality = torch.where(match_quality_matrix == highest_quality_foreach_gt[:, None])
        pred_inds_to_update = gt_pred_pairs_of_highest_quality[1]
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]


class SSDMatcher(Matcher):
    """SSD's matching: IoU >= ``threshold`` matches; every ground truth also claims the one
    prediction it overlaps most (the later ground truth wins where two claim the same).

    Args:
        threshold: IoU at or above which a prediction matches (0.5 in SSD).
    """

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        matches = super().__call__(match_quality_matrix)
        _, highest_quality_pred_foreach_gt = match_quality_matrix.max(dim=1)
        matches[highest_quality_pred_foreach_gt] = torch.arange(
            highest_quality_pred_foreach_gt.size(0), dtype=torch.int64, device=highest_quality_pred_foreach_gt.device)
        return matches


class BalancedPositiveNegativeSampler:
    """Pick ``batch_size_per_image`` predictions per image, at most ``positive_fraction`` of
    them positive, the rest negative (fewer when an image lacks either), uniformly at random.

    Args:
        batch_size_per_image: Predictions sampled per image.
        positive_fraction: Largest share of positives.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list[Tensor], generator: torch.Generator | None = None
                 ) -> tuple[list[Tensor], list[Tensor]]:
        """Masks of the sampled positives and negatives per image.

        Args:
            matched_idxs: Per image, ``(N,)`` labels: ``>= 1`` positive, ``0`` negative,
                ``-1`` ignored.
            generator: Random generator for the permutations (the global one by default,
                which is what torchvision uses: same seed, same samples).

        Returns:
            Two lists of ``(N,)`` uint8 masks: positives, negatives.
        """
        pos_idx, neg_idx = [], []
        for matched in matched_idxs:
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = torch.randperm(positive.numel(), device=positive.device, generator=generator)[:num_pos]
            perm2 = torch.randperm(negative.numel(), device=negative.device, generator=generator)[:num_neg]
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[perm1]] = 1
            neg_mask[negative[perm2]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx
