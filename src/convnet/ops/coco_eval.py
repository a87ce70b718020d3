"""COCO detection metrics (mAP@[.5:.95], AP50, AP75, AP and AR by object size, AR@1/10/100),
computed as pycocotools' ``COCOeval`` computes them for ``iouType="bbox"``, without it.

Inputs and outputs follow torchmetrics' ``MeanAveragePrecision``: one dict per image with
``boxes``, ``scores`` and ``labels`` (predictions) or ``boxes``, ``labels``, optional
``iscrowd`` and ``area`` (targets); the result has torchmetrics' keys.

The algorithm, step by step as in ``cocoeval.py`` (Lin et al., "Microsoft COCO", ECCV 2014,
and the COCO detection evaluation page):

1. Per image and category, detections are sorted by score (stable mergesort: equal scores
   keep their input order) and only the best 100 (the largest maxDet) are kept.
2. IoU in double precision from ``(x, y, w, h)``, as pycocotools' ``bbIou``; against a crowd
   region the union is the detection's own area (the share of the detection inside the crowd).
3. Per area range (all, small < 32^2, medium, large > 96^2, bounds inclusive; a ground
   truth's area is its ``area`` if given, else its box area; a detection's is its box area)
   and IoU threshold (.50:.05:.95), detections are matched greedily in score order: each
   takes the best still-free ground truth with IoU >= threshold, regular ones before ignored
   ones (crowd regions and ground truths outside the area range), the later ground truth
   winning ties in IoU. A crowd region can take any number of detections. Detections
   matched to ignored ground truth, and unmatched ones outside the area range, are ignored.
4. Per category, area and maxDet (1, 10, 100 per image), the detections of all images are
   merged by score (stable), precision is made monotone from the right and read at 101
   recall points (0 beyond the reached recall); recall is the final one. Categories without
   (non-ignored) ground truth in an area range are -1 and left out of the means.

Vectorised over images, categories, area ranges and thresholds at once: the greedy matching
walks the detection ranks (at most 100 steps) for all (image, category) pairs together,
in buckets of similar ground-truth counts.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .boxes import BOX_FORMATS, box_convert

__all__ = ["AREA_RANGES", "IOU_THRESHOLDS", "MAX_DETECTIONS", "RECALL_THRESHOLDS", "evaluate_detections"]

# pycocotools' Params for bbox, computed the same way so that the floats are identical.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e5 ** 2)}
IOU_TYPES = ("bbox",)


_REQUIRED = {"predictions": ("boxes", "scores", "labels"), "targets": ("boxes", "labels")}


def _get(sample: dict, key: str, where: str) -> Tensor:
    if key not in sample:
        required = _REQUIRED[where.split("[")[0]]
        raise ValueError(f"{where} has no {key!r}; each dict needs {', '.join(required)}")
    value = sample[key]
    return (value if isinstance(value, Tensor) else torch.as_tensor(value)).detach()


def _boxes(sample: dict, where: str) -> Tensor:
    boxes = _get(sample, "boxes", where)
    if boxes.numel() == 0:
        return boxes.new_zeros((0, 4), dtype=torch.float64)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] must be (N, 4), got shape {tuple(boxes.shape)}")
    return boxes


def _vector(sample: dict, key: str, where: str, n: int) -> Tensor:
    v = _get(sample, key, where).reshape(-1)
    if v.numel() != n:
        raise ValueError(f"{where}[{key!r}] must have one value per box ({n}), got shape {tuple(v.shape)}")
    return v


def _cat(parts: list[Tensor], dtype: torch.dtype) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.float64)
    return torch.cat([p.cpu() for p in parts]).to(dtype).numpy()  # cat promotes mixed dtypes


def _collect(predictions: Sequence[dict], targets: Sequence[dict], box_format: str) -> tuple[dict, dict]:
    """Flatten the per-image dicts into arrays: image index, label, ... per box, boxes as xywh."""
    det = {"label": [], "score": [], "boxes": []}
    gt = {"label": [], "boxes": [], "area": [], "crowd": []}
    for i, (pred, target) in enumerate(zip(predictions, targets)):
        for what, sample in (("predictions", pred), ("targets", target)):
            if not isinstance(sample, dict):
                raise ValueError(f"{what}[{i}] must be a dict, got {type(sample).__name__}")
        boxes = _boxes(pred, f"predictions[{i}]")
        n = boxes.shape[0]
        det["boxes"].append(boxes)
        det["score"].append(_vector(pred, "scores", f"predictions[{i}]", n))
        det["label"].append(_vector(pred, "labels", f"predictions[{i}]", n))
        boxes = _boxes(target, f"targets[{i}]")
        n = boxes.shape[0]
        gt["boxes"].append(boxes)
        gt["label"].append(_vector(target, "labels", f"targets[{i}]", n))
        gt["crowd"].append(_vector(target, "iscrowd", f"targets[{i}]", n) if "iscrowd" in target
                           else torch.zeros(n, dtype=torch.bool))
        # NaN marks "no area given": the box area is used for those below.
        gt["area"].append(_vector(target, "area", f"targets[{i}]", n) if "area" in target
                          else torch.full((n,), float("nan"), dtype=torch.float64))
    out = []
    for arrays in (det, gt):
        boxes = torch.cat([b.cpu() for b in arrays.pop("boxes")] or [torch.zeros((0, 4))]).double()
        xyxy = box_convert(boxes, box_format, "xyxy").numpy()
        if not np.isfinite(xyxy).all():
            raise ValueError(f"{'predictions' if arrays is det else 'targets'} have non-finite boxes")
        # pycocotools works in (x, y, w, h); widths from differences, as a results file holds them.
        converted = {"xywh": np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)}
        sizes = [v.shape[0] for v in arrays["label"]]
        converted["img"] = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        for key, parts in arrays.items():
            dtype = {"label": torch.int64, "crowd": torch.bool}.get(key, torch.float64)
            converted[key] = _cat(parts, dtype).astype({torch.int64: np.int64, torch.bool: bool}.get(dtype, np.float64))
        out.append(converted)
    det, gt = out
    if not np.isfinite(det["score"]).all():
        raise ValueError("predictions have non-finite scores")
    no_area = np.isnan(gt["area"])
    gt["area"][no_area] = gt["xywh"][no_area, 2] * gt["xywh"][no_area, 3]
    return det, gt


def _bbox_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` on broadcast ``(..., 4)`` xywh arrays: the same operations in
    the same order, so the doubles are identical."""
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    da = d[..., 2] * d[..., 3]
    ga = g[..., 2] * g[..., 3]
    union = np.where(crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def _dense_rank(values: np.ndarray) -> np.ndarray:
    """Rank along the last axis, equal values sharing a rank (0 for the smallest)."""
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    steps = np.zeros(values.shape, dtype=np.int32)
    steps[..., 1:] = np.cumsum(ordered[..., 1:] != ordered[..., :-1], axis=-1)
    rank = np.empty_like(steps)
    np.put_along_axis(rank, order, steps, axis=-1)
    return rank


def _match(det_xywh: np.ndarray, gt_xywh: np.ndarray, gt_crowd: np.ndarray, gt_ignore: np.ndarray,
           det_rows: np.ndarray, det_count: np.ndarray, gt_rows: np.ndarray, gt_valid: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching for P (image, category) pairs of one bucket, all area ranges and
    IoU thresholds at once.

    Args:
        det_rows: ``(P, D)`` detection rows in rank order (padding past ``det_count``).
        det_count: ``(P,)`` detections per pair, non-increasing.
        gt_rows: ``(P, G)`` ground-truth rows in input order (padding where not ``gt_valid``).
        gt_ignore: ``(P, A, G)`` ignore flag per area range.

    Returns:
        ``matched`` and ``matched_ignored`` (matched to an ignored ground truth), both
        ``(P, A, T, D)``.
    """
    # Ground truth in reverse order: cocoeval gives ties in IoU to the later ground truth,
    # argmax to the first.
    gt_rows, gt_valid, gt_ignore = gt_rows[:, ::-1], gt_valid[:, ::-1], gt_ignore[:, :, ::-1]
    p, d_max = det_rows.shape
    g_max = gt_rows.shape[1]
    a, t = gt_ignore.shape[1], len(IOU_THRESHOLDS)
    crowd = gt_crowd[gt_rows] & gt_valid
    ious = _bbox_iou(det_xywh[det_rows][:, :, None, :], gt_xywh[gt_rows][:, None, :, :], crowd[:, None, :])
    ious = np.where(gt_valid[:, None, :], ious, -1.0)   # padding never matches
    # The choice among candidates, as one integer key: any regular ground truth before any
    # ignored one (cocoeval stops at the first ignored one once it holds a regular match),
    # then the higher IoU. Ranks keep the comparison of IoUs exact.
    rank = _dense_rank(ious)
    regular = ~gt_ignore                                 # (P, A, G)
    key_offset = (g_max + 1) * regular.astype(np.int32)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # as cocoeval: an IoU of 1 still matches at .95
    free = np.ones((p, a, t, g_max), dtype=bool)         # crowd regions are never used up
    matched = np.zeros((p, a, t, d_max), dtype=bool)
    matched_ignored = np.zeros((p, a, t, d_max), dtype=bool)
    lanes_a = np.arange(a)[None, :, None]
    for d in range(d_max):
        n = int(np.searchsorted(-det_count, -d, side="left"))  # pairs with more than d detections
        if n == 0:
            break
        active = np.nonzero(ious[:n, d].max(axis=-1) >= thresholds[0])[0]  # others match nothing
        if active.size == 0:
            continue
        iou = ious[active, d]                                                # (n', G)
        ok = (iou[:, None, None, :] >= thresholds[None, None, :, None]) & free[active]   # (n', A, T, G)
        key = np.where(ok, (rank[active, d][:, None, :] + key_offset[active])[:, :, None, :], -1)
        best = key.argmax(axis=-1)                                           # (n', A, T)
        rows = active[:, None, None]
        hit = ok[np.arange(active.size)[:, None, None], lanes_a, np.arange(t)[None, None, :], best]
        matched[active, :, :, d] = hit
        matched_ignored[active, :, :, d] = hit & ~regular[rows, lanes_a, best]
        i, ai, ti = np.nonzero(hit & ~crowd[rows, best])
        free[active[i], ai, ti, best[i, ai, ti]] = False
    return matched, matched_ignored


def _accumulate(tp: np.ndarray, fp: np.ndarray, det_scores: np.ndarray, npig: np.ndarray,
                precision: np.ndarray, recall: np.ndarray, scores: np.ndarray) -> None:
    """cocoeval.accumulate for one category and maxDet, all area ranges and thresholds.

    Args:
        tp: ``(A, T, nd)`` true positives in score order; ``fp`` likewise.
        det_scores: ``(nd,)`` their scores.
        npig: ``(A,)`` regular ground truths (area ranges without any are left at -1).
        precision: ``(T, R, A)`` view to fill; ``recall`` ``(T, A)``; ``scores`` ``(T, R, A)``.
    """
    a_count, t_count, nd = tp.shape
    r_count = len(RECALL_THRESHOLDS)
    areas = np.nonzero(npig)[0]
    if nd == 0:
        recall[:, areas] = 0
        precision[:, :, areas] = 0
        scores[:, :, areas] = 0
        return
    tp_sum = np.cumsum(tp[areas], axis=-1)
    fp_sum = np.cumsum(fp[areas], axis=-1)
    tp_f = tp_sum.astype(np.float64)
    rc_last = tp_f[..., -1] / npig[areas, None]
    pr = tp_f / (fp_sum + tp_f + np.spacing(1))
    pr = np.maximum.accumulate(pr[..., ::-1], axis=-1)[..., ::-1]  # monotone from the right
    # First position whose recall tp / npig reaches each threshold. Recall only changes with
    # the integer tp, so find the smallest count whose quotient (in doubles, as cocoeval
    # divides) reaches each threshold, then search all lanes' counts at once by offsetting
    # each lane by a multiple of nd + 2: exact, no float offsets.
    need = np.stack([np.searchsorted(np.arange(c + 2) / c, RECALL_THRESHOLDS, side="left") for c in npig[areas]])
    need = np.minimum(need, nd + 1)                                  # (A', R)
    lanes = len(areas) * t_count
    offsets = np.arange(lanes)[:, None] * (nd + 2)
    queries = np.broadcast_to(need[:, None, :], (len(areas), t_count, r_count)).reshape(lanes, r_count)
    pos = np.searchsorted((tp_sum.reshape(lanes, nd) + offsets).ravel(), (queries + offsets).ravel(), side="left")
    pos = pos.reshape(lanes, r_count) - np.arange(lanes)[:, None] * nd
    inside = pos < nd
    safe = np.minimum(pos, nd - 1)
    q = np.where(inside, np.take_along_axis(pr.reshape(lanes, nd), safe, axis=1), 0.0)
    ss = np.where(inside, det_scores[safe], 0.0)
    recall[:, areas] = rc_last.T
    precision[:, :, areas] = q.reshape(len(areas), t_count, r_count).transpose(1, 2, 0)
    scores[:, :, areas] = ss.reshape(len(areas), t_count, r_count).transpose(1, 2, 0)


def evaluate_detections(predictions: Sequence[dict], targets: Sequence[dict], iou_type: str = "bbox",
                        class_metrics: bool = False, box_format: str = "xyxy",
                        extended_summary: bool = False) -> dict[str, Tensor]:
    """COCO mean average precision and recall of detections, equal to pycocotools' COCOeval.

    Args:
        predictions: One dict per image: ``boxes`` ``(N, 4)`` in absolute coordinates,
            ``scores`` ``(N,)``, ``labels`` ``(N,)`` (integers).
        targets: One dict per image: ``boxes`` ``(M, 4)``, ``labels`` ``(M,)``, optional
            ``iscrowd`` ``(M,)`` (crowd regions: matches to them are neither right nor wrong)
            and ``area`` ``(M,)`` (for the size ranges; the box area otherwise).
        iou_type: ``"bbox"`` (the only type here).
        class_metrics: Also give ``map_per_class`` and ``mar_100_per_class``.
        box_format: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"`` for all boxes.
        extended_summary: Also give the ``precision`` ``(T, R, K, A, M)``, ``recall``
            ``(T, K, A, M)`` and ``scores`` ``(T, R, K, A, M)`` arrays of COCOeval.accumulate.

    Returns:
        torchmetrics' keys: ``map``, ``map_50``, ``map_75``, ``map_small``, ``map_medium``,
        ``map_large``, ``mar_1``, ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``,
        ``mar_large`` (float32 scalars, -1 when there is no ground truth), ``map_per_class``
        and ``mar_100_per_class`` (per class of ``classes`` with ``class_metrics``, else -1),
        and ``classes`` (int32: every label seen in predictions or targets, sorted).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"unknown iou_type {iou_type!r}; choose from {', '.join(IOU_TYPES)}")
    if box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box_format {box_format!r}; choose from {', '.join(BOX_FORMATS)}")
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets must list the same images, got {len(predictions)} and "
                         f"{len(targets)}")
    det, gt = _collect(predictions, targets, box_format)
    n_img = len(targets)
    classes = np.unique(np.concatenate([det["label"], gt["label"]]))
    k_count, a_count, t_count, r_count, m_count = len(classes), len(AREA_RANGES), len(IOU_THRESHOLDS), \
        len(RECALL_THRESHOLDS), len(MAX_DETECTIONS)
    area_lo = np.array([r[0] for r in AREA_RANGES.values()])
    area_hi = np.array([r[1] for r in AREA_RANGES.values()])

    # 1. detections per (category, image) pair by score, stable, best 100 kept
    det_cat = np.searchsorted(classes, det["label"])
    det_pair = det_cat * n_img + det["img"]  # pairs ordered by category, then image
    order = np.argsort(-det["score"], kind="stable")
    order = order[np.argsort(det_pair[order], kind="stable")]
    pair_sorted = det_pair[order]
    _, pair_start, pair_n = np.unique(pair_sorted, return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(pair_start, pair_n)
    keep = rank < MAX_DETECTIONS[-1]
    order, rank, pair_sorted = order[keep], rank[keep], pair_sorted[keep]
    det_area = det["xywh"][order, 2] * det["xywh"][order, 3]
    det_score = det["score"][order]
    det_outside = (det_area[None, :] < area_lo[:, None]) | (det_area[None, :] > area_hi[:, None])  # (A, N)

    # ground truth per pair in input order; ignore = crowd or outside the area range
    gt_cat = np.searchsorted(classes, gt["label"])
    gt_pair = gt_cat * n_img + gt["img"]
    gt_order = np.argsort(gt_pair, kind="stable")
    gt_pair_sorted = gt_pair[gt_order]
    gt_ignore_all = gt["crowd"][None, :] | (gt["area"][None, :] < area_lo[:, None]) | \
        (gt["area"][None, :] > area_hi[:, None])   # (A, M) in input order

    # 2-3. greedy matching, for pairs with both detections and ground truth
    matched = np.zeros((a_count, t_count, len(order)), dtype=bool)
    matched_ignored = np.zeros_like(matched)
    d_pairs, d_start, d_n = np.unique(pair_sorted, return_index=True, return_counts=True)
    g_pairs, g_start, g_n = np.unique(gt_pair_sorted, return_index=True, return_counts=True)
    both, d_at, g_at = np.intersect1d(d_pairs, g_pairs, assume_unique=True, return_indices=True)
    if len(both):
        g_sizes = g_n[g_at]
        buckets = np.ceil(np.log2(g_sizes)).astype(np.int64)
        for b in np.unique(buckets):
            members = np.nonzero(buckets == b)[0]
            members = members[np.argsort(-d_n[d_at[members]], kind="stable")]  # most detections first
            counts_d, counts_g = d_n[d_at[members]], g_n[g_at[members]]
            d_max, g_max = int(counts_d.max()), int(counts_g.max())
            det_pos = d_start[d_at[members]][:, None] + np.minimum(np.arange(d_max)[None, :], counts_d[:, None] - 1)
            gt_pos = g_start[g_at[members]][:, None] + np.minimum(np.arange(g_max)[None, :], counts_g[:, None] - 1)
            gt_valid = np.arange(g_max)[None, :] < counts_g[:, None]
            gt_rows = gt_order[gt_pos]
            m, mi = _match(det["xywh"], gt["xywh"], gt["crowd"], gt_ignore_all[:, gt_rows].transpose(1, 0, 2),
                           order[det_pos], counts_d, gt_rows, gt_valid)
            det_valid = np.arange(d_max)[None, :] < counts_d[:, None]
            cols = det_pos[det_valid]
            matched[:, :, cols] = m.transpose(1, 2, 0, 3)[:, :, det_valid]
            matched_ignored[:, :, cols] = mi.transpose(1, 2, 0, 3)[:, :, det_valid]
    det_ignored = matched_ignored | (~matched & det_outside[:, None, :])  # (A, T, N)

    # 4. accumulate per category, area range and maxDet
    precision = -np.ones((t_count, r_count, k_count, a_count, m_count))
    recall = -np.ones((t_count, k_count, a_count, m_count))
    scores = -np.ones((t_count, r_count, k_count, a_count, m_count))
    det_cat_sorted = pair_sorted // max(n_img, 1)
    cat_bounds = np.searchsorted(det_cat_sorted, np.arange(k_count + 1))
    npig_all = np.stack([np.bincount(gt_cat[~gt_ignore_all[a]], minlength=k_count) for a in range(a_count)])
    counted = ~det_ignored
    for k in range(k_count):
        npig = npig_all[:, k]
        if not npig.any():
            continue
        block = np.arange(cat_bounds[k], cat_bounds[k + 1])
        # cocoeval merges the images' detections by score with a stable sort; the detections
        # kept for a smaller maxDet keep their relative order, so one sort serves all three.
        inds = block[np.argsort(-det_score[block], kind="mergesort")]
        tp_all = matched[:, :, inds] & counted[:, :, inds]     # (A, T, nd)
        fp_all = ~matched[:, :, inds] & counted[:, :, inds]
        for m_i, max_det in enumerate(MAX_DETECTIONS):
            cols = rank[inds] < max_det
            _accumulate(tp_all[..., cols], fp_all[..., cols], det_score[inds[cols]], npig,
                        precision[:, :, k, :, m_i], recall[:, k, :, m_i], scores[:, :, k, :, m_i])

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(np.mean(valid)) if valid.size else -1.0

    areas = list(AREA_RANGES)
    a_all, m_last = areas.index("all"), len(MAX_DETECTIONS) - 1
    t50, t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5))), int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    stats = {
        "map": mean(precision[:, :, :, a_all, m_last]),
        "map_50": mean(precision[t50, :, :, a_all, m_last]),
        "map_75": mean(precision[t75, :, :, a_all, m_last]),
        "map_small": mean(precision[:, :, :, areas.index("small"), m_last]),
        "map_medium": mean(precision[:, :, :, areas.index("medium"), m_last]),
        "map_large": mean(precision[:, :, :, areas.index("large"), m_last]),
    }
    for mi_, max_det in enumerate(MAX_DETECTIONS):
        stats[f"mar_{max_det}"] = mean(recall[:, :, a_all, mi_])
    for name in ("small", "medium", "large"):
        stats[f"mar_{name}"] = mean(recall[:, :, areas.index(name), m_last])
    result = {key: torch.tensor(value, dtype=torch.float32) for key, value in stats.items()}
    if class_metrics:
        result["map_per_class"] = torch.tensor([mean(precision[:, :, k, a_all, m_last]) for k in range(k_count)],
                                               dtype=torch.float32)
        result[f"mar_{MAX_DETECTIONS[-1]}_per_class"] = torch.tensor(
            [mean(recall[:, k, a_all, m_last]) for k in range(k_count)], dtype=torch.float32)
    else:
        result["map_per_class"] = torch.tensor(-1.0)
        result[f"mar_{MAX_DETECTIONS[-1]}_per_class"] = torch.tensor(-1.0)
    result["classes"] = torch.as_tensor(classes, dtype=torch.int32)
    if extended_summary:
        result["precision"] = torch.from_numpy(precision)
        result["recall"] = torch.from_numpy(recall)
        result["scores"] = torch.from_numpy(scores)
    return result
