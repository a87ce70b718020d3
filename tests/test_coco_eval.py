"""convnet.evaluate_detections against pycocotools' COCOeval (the reference implementation of
the COCO metrics) on generated cases, plus cases small enough to work out by hand."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

import oracle
from convnet import evaluate_detections
from convnet.ops import box_convert

STATS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]  # the order of COCOeval.stats


def generated_case(seed: int, n_img: int = 30, n_cls: int = 4):
    """Detections jittered around ground truth, with everything COCOeval treats specially:
    crowd regions (with detections inside), images without objects and images without
    detections, classes never in the ground truth and classes never detected, more than 100
    detections of one class in one image, equal scores, duplicate ground truth (equal IoUs),
    exact copies of ground truth (IoU 1), ``area`` given or not, objects of every size range."""
    g = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(n_img):
        m = 0 if i % 9 == 4 else int(g.integers(1, 8))
        xy = g.uniform(0, 400, (m, 2))
        wh = np.exp(g.uniform(np.log(4), np.log(300), (m, 2)))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = g.integers(0, n_cls, m)
        labels[labels == 2] = n_cls + 2 if i % 2 else 2      # n_cls + 2: a class never detected
        crowd = (g.random(m) < 0.15).astype(np.int64)
        if m >= 2 and i % 5 == 1:                            # a duplicate: two equal IoUs
            boxes[1], labels[1], crowd[1] = boxes[0], labels[0], 0
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
                  "iscrowd": torch.tensor(crowd)}
        if i % 3 == 0:                                       # areas that move objects across ranges
            target["area"] = torch.tensor(wh.prod(1) * g.uniform(0.3, 1.0, m), dtype=torch.float32)
        targets.append(target)

        k = 0 if i % 9 == 7 else int(g.integers(0, 4) * max(m, 1) + g.integers(0, 6))
        if i % 10 == 3:
            k = 160                                          # > 100 in one (image, class) pair
        src = g.integers(0, max(m, 1), k)
        det = np.zeros((k, 4)) if m == 0 else boxes[src] + g.normal(0, 1, (k, 4)) * wh[src].repeat(2, 1) * 0.12
        det = np.concatenate([np.minimum(det[:, :2], det[:, 2:]), np.maximum(det[:, :2], det[:, 2:])], 1)
        stray = g.random(k) < 0.25
        xy, wh2 = g.uniform(0, 400, (k, 2)), g.uniform(4, 200, (k, 2))
        det[stray] = np.concatenate([xy, xy + wh2], 1)[stray]
        if m and k:
            det[0] = boxes[src[0]]                           # an exact copy: IoU 1
        det_labels = labels[src] if m else g.integers(0, n_cls, k)
        if i % 10 == 3:
            det_labels[:] = det_labels[0]
        other = g.random(k) < 0.15
        det_labels = np.where(other, g.integers(0, n_cls + 2, k), det_labels)  # n_cls, n_cls + 1: never in gt
        scores = np.round(g.random(k), 1)                    # ties
        preds.append({"boxes": torch.tensor(det, dtype=torch.float32),
                      "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(det_labels)})
    return preds, targets


def coco_eval(preds, targets):
    """pycocotools' COCOeval on the same detections, its COCO objects built from dicts."""
    pytest.importorskip("pycocotools", reason="pycocotools (the test extra) is the COCO mAP oracle")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    classes = sorted({int(v) for t in targets for v in t["labels"]} | {int(v) for p in preds for v in p["labels"]})
    images, gts, dts = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i + 1})
        xywh = box_convert(t["boxes"].double(), "xyxy", "xywh").tolist()
        for j, box in enumerate(xywh):
            area = float(t["area"][j]) if "area" in t else box[2] * box[3]
            gts.append({"id": len(gts) + 1, "image_id": i + 1, "category_id": int(t["labels"][j]), "bbox": box,
                        "area": area, "iscrowd": int(t["iscrowd"][j]) if "iscrowd" in t else 0})
        xywh = box_convert(p["boxes"].double(), "xyxy", "xywh").tolist()
        for j, box in enumerate(xywh):
            # what COCO.loadRes adds to a results file's entry
            dts.append({"id": len(dts) + 1, "image_id": i + 1, "category_id": int(p["labels"][j]), "bbox": box,
                        "area": box[2] * box[3], "iscrowd": 0, "score": float(p["scores"][j])})
    categories = [{"id": c, "name": str(c)} for c in classes]
    with contextlib.redirect_stdout(io.StringIO()):
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "annotations": gts, "categories": categories}
        dt.dataset = {"images": images, "annotations": dts, "categories": categories}
        gt.createIndex()
        dt.createIndex()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", range(6))
def test_equals_pycocotools(seed):
    preds, targets = generated_case(seed)
    reference = coco_eval(preds, targets)
    ours = evaluate_detections(preds, targets, class_metrics=True, extended_summary=True)
    for key, expected in zip(STATS, reference.stats):
        assert abs(float(ours[key]) - expected) < 1e-6, (key, float(ours[key]), expected)
    # the whole precision / recall / score arrays of COCOeval.accumulate, not just their means
    assert np.allclose(ours["precision"].numpy(), reference.eval["precision"], atol=1e-12, rtol=0)
    assert np.allclose(ours["recall"].numpy(), reference.eval["recall"], atol=1e-12, rtol=0)
    assert np.allclose(ours["scores"].numpy(), reference.eval["scores"], atol=1e-7, rtol=0)
    # per class, as torchmetrics reads it: the mean over the class's valid entries
    precision = reference.eval["precision"][:, :, :, 0, -1]
    recall = reference.eval["recall"][:, :, 0, -1]
    for k, cls in enumerate(ours["classes"].tolist()):
        assert reference.params.catIds[k] == cls
        p, r = precision[:, :, k], recall[:, k]
        assert abs(float(ours["map_per_class"][k]) - (p[p > -1].mean() if (p > -1).any() else -1)) < 1e-6
        assert abs(float(ours["mar_100_per_class"][k]) - (r[r > -1].mean() if (r > -1).any() else -1)) < 1e-6


def test_equals_pycocotools_on_crowded_images():
    # Many objects per image and many detections: large matching buckets, 100-detection caps.
    g = np.random.default_rng(7)
    preds, targets = [], []
    for i in range(6):
        m = 60 + 10 * i
        xy, wh = g.uniform(0, 600, (m, 2)), g.uniform(8, 120, (m, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = g.integers(0, 2, m)
        targets.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels),
                        "iscrowd": torch.tensor((g.random(m) < 0.05).astype(int))})
        src = g.integers(0, m, 250)
        det = boxes[src] + g.normal(0, 6, (250, 4))
        det = np.concatenate([np.minimum(det[:, :2], det[:, 2:]), np.maximum(det[:, :2], det[:, 2:])], 1)
        preds.append({"boxes": torch.tensor(det), "scores": torch.tensor(g.random(250)),
                      "labels": torch.tensor(labels[src])})
    reference = coco_eval(preds, targets)
    ours = evaluate_detections(preds, targets)
    for key, expected in zip(STATS, reference.stats):
        assert abs(float(ours[key]) - expected) < 1e-6, key


def test_results_by_hand():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    # IoU 0.62: a match at thresholds .50, .55, .60 only -> AP 3/10; a 10x10 object is small
    det = [{"boxes": torch.tensor([[0.0, 0, 10, 6.2]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    r = evaluate_detections(det, gt)
    assert float(r["map"]) == pytest.approx(0.3) and float(r["map_50"]) == 1 and float(r["map_75"]) == 0
    assert float(r["map_small"]) == pytest.approx(0.3) and float(r["map_medium"]) == -1
    assert float(r["mar_1"]) == pytest.approx(0.3) and float(r["mar_large"]) == -1
    # a perfect detector scores 1 everywhere it can
    perfect = [{"boxes": gt[0]["boxes"], "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}]
    assert float(evaluate_detections(perfect, gt)["map"]) == 1.0
    # a false positive ranked above the true one halves precision at every recall: AP 0.5 at .5
    two = [{"boxes": torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10]]), "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([1, 1])}]
    assert float(evaluate_detections(two, gt)["map_50"]) == pytest.approx(0.5)
    # ... and ranked below it costs nothing
    two[0]["scores"] = torch.tensor([0.7, 0.8])
    assert float(evaluate_detections(two, gt)["map_50"]) == 1.0
    # a detection on a crowd region is neither right nor wrong
    crowd = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 80, 80]]), "labels": torch.tensor([1, 1]),
              "iscrowd": torch.tensor([0, 1])}]
    on_crowd = [{"boxes": torch.tensor([[30.0, 30, 40, 40], [0, 0, 10, 10]]), "scores": torch.tensor([0.9, 0.8]),
                 "labels": torch.tensor([1, 1])}]
    assert float(evaluate_detections(on_crowd, crowd)["map"]) == 1.0
    # no ground truth at all: every figure is -1, as COCOeval reports it
    empty = evaluate_detections([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}],
                                [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])
    assert all(float(empty[k]) == -1 for k in STATS) and empty["classes"].numel() == 0
    assert evaluate_detections([], [])["map"] == -1


TIE_TARGETS = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10]]), "labels": torch.tensor([1, 1])}]
TIE_PREDICTIONS = [{"boxes": torch.tensor([[1.0, 0, 11, 10], [0, 0, 10, 10]]), "scores": torch.tensor([0.9, 0.8]),
                    "labels": torch.tensor([1, 1])}]


def test_equal_ious_go_to_the_later_ground_truth():
    # The first detection overlaps A and B equally (IoU 9/11) and takes B, the later one, so the
    # second (an exact copy of A) still finds A at every threshold up to .80; at .85 and above
    # only the second matches, behind a false positive: precision 1/2 up to recall 1/2, which is
    # 51 of the 101 recall points. (Giving the tie to A would cost the thresholds .70 to .80.)
    assert float(evaluate_detections(TIE_PREDICTIONS, TIE_TARGETS)["map"]) == pytest.approx((7 + 3 * 0.5 * 51 / 101) / 10)
    assert float(evaluate_detections(TIE_PREDICTIONS, TIE_TARGETS)["map"]) == \
        pytest.approx(coco_eval(TIE_PREDICTIONS, TIE_TARGETS).stats[0], abs=1e-6)


@pytest.mark.parametrize("device", oracle.DEVICES)
def test_formats_devices_and_keys(device):
    preds, targets = generated_case(11, n_img=8)
    expected = evaluate_detections(preds, targets)
    assert list(expected) == STATS + ["map_per_class", "mar_100_per_class", "classes"]
    assert expected["map_per_class"].item() == -1 and expected["classes"].dtype == torch.int32
    for fmt in ("xywh", "cxcywh"):
        convert = lambda d: {**d, "boxes": box_convert(d["boxes"].double(), "xyxy", fmt).to(device)}
        got = evaluate_detections([convert(p) for p in preds], [convert(t) for t in targets], box_format=fmt)
        for key in STATS:
            assert abs(float(got[key]) - float(expected[key])) < 1e-6, (fmt, key)
    # plain lists work as well as tensors
    as_lists = [{k: v.tolist() for k, v in p.items()} for p in preds]
    assert float(evaluate_detections(as_lists, targets)["map"]) == pytest.approx(float(expected["map"]), abs=1e-6)


def test_bad_input_is_named():
    box = {"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.zeros(1)}
    with pytest.raises(ValueError, match="predictions and targets must list the same images, got 1 and 2"):
        evaluate_detections([box], [box, box])
    with pytest.raises(ValueError, match=r"predictions\[0\] has no 'scores'"):
        evaluate_detections([{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1)}], [box])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] must be \(N, 4\), got shape \(1, 5\)"):
        evaluate_detections([box], [{"boxes": torch.zeros(1, 5), "labels": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"predictions\[0\]\['labels'\] must have one value per box \(1\)"):
        evaluate_detections([{**box, "labels": torch.zeros(2)}], [box])
    with pytest.raises(ValueError, match="unknown iou_type 'segm'; choose from bbox"):
        evaluate_detections([box], [box], iou_type="segm")
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_detections([{**box, "scores": torch.tensor([float("nan")])}], [box])
