"""convnet.ops against torchvision (its pure-Python code, imported through the oracle) and
against plain references written here: boxes, NMS, RoIAlign, anchors, coding, matching, losses."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from convnet import ops
import oracle
from convnet.ops import poolers as roi_align_module
from convnet.ops import suppression as nms_module

DEVICES = oracle.DEVICES


@pytest.fixture(scope="module")
def tv():
    """torchvision's pure-Python modules: boxes, losses, detection utils, anchors, poolers, RoIAlign."""
    oracle.torchvision_models()
    import torchvision.models.detection._utils as det_utils
    import torchvision.models.detection.anchor_utils as anchor_utils
    import torchvision.models.detection.image_list as image_list
    import torchvision.ops.boxes as boxes
    import torchvision.ops.focal_loss as focal_loss
    import torchvision.ops.giou_loss as giou_loss
    import torchvision.ops.poolers as poolers

    class TV:
        pass

    t = TV()
    t.boxes, t.focal_loss, t.giou_loss, t.poolers = boxes, focal_loss, giou_loss, poolers
    t.det_utils, t.anchor_utils, t.image_list = det_utils, anchor_utils, image_list
    # The pure-Python RoIAlign, unwrapped from its lazy torch.compile decorator.
    t.roi_align_ref = sys.modules["torchvision.ops.roi_align"]._roi_align.__wrapped__
    return t


def random_boxes(n: int, ndim: int = 2, size: float = 100.0, max_side: float = 30.0, seed: int = 0,
                 dtype=torch.float32, min_side: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(n, ndim, generator=g, dtype=torch.float64) * size
    side = min_side + torch.rand(n, ndim, generator=g, dtype=torch.float64) * (max_side - min_side)
    return torch.cat([lo, lo + side], dim=1).to(dtype)


# ---------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------

def test_box_functions_equal_torchvision(tv):
    b1, b2 = random_boxes(60, seed=1), random_boxes(45, seed=2)
    assert torch.equal(ops.box_iou(b1, b2), tv.boxes.box_iou(b1, b2))
    assert torch.equal(ops.generalized_box_iou(b1, b2), tv.boxes.generalized_box_iou(b1, b2))
    assert torch.equal(ops.box_area(b1), tv.boxes.box_area(b1))
    for fmt in ("xywh", "cxcywh"):
        converted = ops.box_convert(b1, "xyxy", fmt)
        assert torch.equal(converted, tv.boxes.box_convert(b1, "xyxy", fmt))
        assert torch.equal(ops.box_convert(converted, fmt, "xyxy"), tv.boxes.box_convert(converted, fmt, "xyxy"))
        assert torch.equal(ops.box_area(converted, fmt), tv.boxes.box_area(converted, fmt))
        other = ops.box_convert(b2, "xyxy", fmt)
        assert torch.equal(ops.box_iou(converted, other, fmt), tv.boxes.box_iou(converted, other, fmt))
    xywh = ops.box_convert(b1, "xyxy", "xywh")
    assert torch.equal(ops.box_convert(xywh, "xywh", "cxcywh"), tv.boxes.box_convert(xywh, "xywh", "cxcywh"))
    shifted = b1 * 1.5 - 20
    assert torch.equal(ops.clip_boxes_to_image(shifted, (70, 90)), tv.boxes.clip_boxes_to_image(shifted, (70, 90)))
    assert torch.equal(ops.remove_small_boxes(b1, 12.0), tv.boxes.remove_small_boxes(b1, 12.0))
    # batch dimensions broadcast as in torchvision
    batched1, batched2 = b1[:40].reshape(2, 20, 4), b2[:30].reshape(2, 15, 4)
    assert torch.equal(ops.box_iou(batched1, batched2), tv.boxes.box_iou(batched1, batched2))
    assert torch.equal(ops.generalized_box_iou(batched1, batched2), tv.boxes.generalized_box_iou(batched1, batched2))


def test_nd_boxes_reduce_to_2d_and_count_voxels():
    b1, b2 = random_boxes(30, seed=3), random_boxes(20, seed=4)
    # a 3-D box of unit depth, and a 1-D segment as a 2-D box of unit height, have the 2-D IoU
    def lift(b, z=(0.0, 1.0)):
        return torch.cat([b[:, :2], torch.full_like(b[:, :1], z[0]), b[:, 2:], torch.full_like(b[:, :1], z[1])], 1)
    assert torch.equal(ops.box_iou(lift(b1), lift(b2)), ops.box_iou(b1, b2))
    assert torch.equal(ops.generalized_box_iou(lift(b1), lift(b2)), ops.generalized_box_iou(b1, b2))
    seg1, seg2 = b1[:, [0, 2]], b2[:, [0, 2]]
    unit = lambda s: torch.stack([s[:, 0], torch.zeros_like(s[:, 0]), s[:, 1], torch.ones_like(s[:, 0])], 1)
    assert torch.equal(ops.box_iou(seg1, seg2), ops.box_iou(unit(seg1), unit(seg2)))
    assert torch.equal(ops.box_area(seg1), seg1[:, 1] - seg1[:, 0])
    # 3-D IoU of integer boxes against a count of voxels
    g = torch.Generator().manual_seed(5)
    lo = torch.randint(0, 6, (12, 3), generator=g)
    boxes = torch.cat([lo, lo + torch.randint(1, 5, (12, 3), generator=g)], 1).double()
    grid = torch.stack(torch.meshgrid(*[torch.arange(12) + 0.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    inside = ((grid[None] >= boxes[:, None, :3]) & (grid[None] < boxes[:, None, 3:])).all(-1).double()
    inter = inside @ inside.T
    volume = inside.sum(1)
    expected = inter / (volume[:, None] + volume[None, :] - inter)
    assert torch.allclose(ops.box_iou(boxes, boxes), expected, atol=1e-12)
    assert torch.equal(ops.box_area(boxes), volume)
    # clipping and the size filter read the spatial sizes in tensor order (D, H, W)
    clipped = ops.clip_boxes_to_image(boxes * 2, (5, 7, 9))
    assert (clipped[:, [0, 3]] <= 9).all() and (clipped[:, [1, 4]] <= 7).all() and (clipped[:, [2, 5]] <= 5).all()
    sides = boxes[:, 3:] - boxes[:, :3]
    assert torch.equal(ops.remove_small_boxes(boxes, 3), torch.where((sides >= 3).all(1))[0])


def test_box_iou_gradients_and_errors():
    b1 = random_boxes(5, seed=6, dtype=torch.float64).requires_grad_()
    b2 = random_boxes(4, seed=7, dtype=torch.float64) + 5
    assert torch.autograd.gradcheck(lambda a: ops.generalized_box_iou(a, b2), (b1,))
    assert torch.autograd.gradcheck(lambda a: ops.box_iou(a, b2 - 2), (b1,))
    with pytest.raises(ValueError, match="2n coordinates"):
        ops.box_iou(torch.zeros(3, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="same number of dimensions"):
        ops.box_iou(torch.zeros(3, 4), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="unknown box format 'xyhw'; choose from xyxy, xywh, cxcywh"):
        ops.box_convert(torch.zeros(3, 4), "xyhw", "xyxy")
    with pytest.raises(ValueError, match="2 spatial sizes"):
        ops.clip_boxes_to_image(torch.zeros(3, 4), (5, 6, 7))


# ---------------------------------------------------------------------------------------
# NMS
# ---------------------------------------------------------------------------------------

def reference_nms(boxes: torch.Tensor, order: list[int], threshold: float) -> list[int]:
    """Greedy NMS, the textbook loop: visit the boxes in ``order``; keep a box unless its IoU
    with a box kept before is above the threshold (IoU in float64 NumPy, any dimension)."""
    b = boxes.double().numpy()
    n = b.shape[1] // 2
    kept: list[int] = []
    for i in order:
        if kept:
            k = b[kept]
            inter = np.prod(np.clip(np.minimum(k[:, n:], b[i, n:]) - np.maximum(k[:, :n], b[i, :n]), 0, None), axis=1)
            union = np.prod(k[:, n:] - k[:, :n], axis=1) + np.prod(b[i, n:] - b[i, :n]) - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                if (inter / union > threshold).any():
                    continue
        kept.append(i)
    return kept


def stable_order(scores: torch.Tensor) -> list[int]:
    s = scores.tolist()
    return sorted(range(len(s)), key=lambda i: -s[i])  # Python's sort is stable: ties by index


def clustered_boxes(n: int, ndim: int = 2, seed: int = 0) -> torch.Tensor:
    """Boxes jittered around a few centres, so that most of them overlap something; in float64
    so that the reference's double IoU and the op's agree (no decision sits at the threshold)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(n // 20, 1), ndim, generator=g, dtype=torch.float64) * 200
    pick = torch.randint(0, centres.shape[0], (n,), generator=g)
    ctr = centres[pick] + torch.randn(n, ndim, generator=g, dtype=torch.float64) * 6
    half = 5 + torch.rand(n, ndim, generator=g, dtype=torch.float64) * 20
    return torch.cat([ctr - half, ctr + half], 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold,n", [(0.3, 800), (0.5, 3000), (0.7, 800)])
def test_nms_equals_reference_loop(device, threshold, n):
    boxes = clustered_boxes(n, seed=int(threshold * 10))
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    scores[::3] = torch.round(scores[::3] * 10) / 10          # many ties
    boxes[100:110] = boxes[90:100]                           # duplicates
    scores[100:105] = scores[90:95]                          # ... with the same scores
    expected = reference_nms(boxes, stable_order(scores), threshold)
    got = ops.nms(boxes.to(device), scores.to(device), threshold, stable=True)
    assert got.dtype == torch.int64 and got.device.type == device
    assert got.cpu().tolist() == expected
    # The default visits boxes in torchvision's order (scores.sort(descending=True), the
    # unstable sort its kernels call); given that order, the same greedy result.
    order = scores.to(device).sort(descending=True).indices.cpu().tolist()
    assert ops.nms(boxes.to(device), scores.to(device), threshold).cpu().tolist() == \
        reference_nms(boxes, order, threshold)


@pytest.mark.parametrize("device", DEVICES)
def test_nms_edge_cases(device):
    empty = ops.nms(torch.zeros((0, 4), device=device), torch.zeros(0, device=device), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,) and empty.device.type == device
    one = ops.nms(torch.tensor([[0.0, 0, 1, 1]], device=device), torch.tensor([0.3], device=device), 0.5)
    assert one.tolist() == [0]
    # identical boxes with identical scores: one survives, the lowest index when stable
    same = torch.tensor([[0.0, 0, 10, 10]] * 4, device=device)
    assert ops.nms(same, torch.ones(4, device=device), 0.5, stable=True).tolist() == [0]
    assert len(ops.nms(same, torch.ones(4, device=device), 0.5)) == 1
    # IoU exactly at the threshold is kept (suppression needs IoU > threshold), in half precision too
    pair = torch.tensor([[0.0, 0, 2, 1], [1.0, 0, 4, 1]], device=device)  # intersection 1, union 4
    assert ops.nms(pair, torch.tensor([0.9, 0.8], device=device), 0.25).tolist() == [0, 1]
    assert ops.nms(pair.half(), torch.tensor([0.9, 0.8], device=device).half(), 0.2).tolist() == [0]
    batched = ops.batched_nms(torch.zeros((0, 4), device=device), torch.zeros(0, device=device),
                              torch.zeros(0, dtype=torch.int64, device=device), 0.5)
    assert batched.shape == (0,) and batched.dtype == torch.int64
    with pytest.raises(ValueError, match=r"scores must be \(3,\)"):
        ops.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_nms_threshold_compares_as_double():
    # The CPU kernel compares a float IoU with a double threshold; float32 comparisons with the
    # threshold rounded to float32 would differ for IoUs equal to that rounded value.
    for threshold in (0.3, 0.5, 0.7, 0.1, 2 / 3):
        t32 = np.float32(threshold)
        values = np.array([np.nextafter(t32, np.float32(-1)), t32, np.nextafter(t32, np.float32(2))], np.float32)
        expected = [float(v) > threshold for v in values]
        cut = nms_module._threshold(torch.float32, threshold)
        assert [bool(v > np.float32(cut)) for v in values] == expected


@pytest.mark.parametrize("ndim", [1, 3])
def test_nms_in_other_dimensions(ndim):
    boxes = clustered_boxes(400, ndim=ndim, seed=ndim)
    scores = torch.rand(400, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert ops.nms(boxes, scores, 0.4, stable=True).tolist() == reference_nms(boxes, stable_order(scores), 0.4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [600, 1100])  # the one-pass path and (> 4,000 coordinates) the per-class path
def test_batched_nms_equals_per_class_nms(device, n):
    boxes = clustered_boxes(n, seed=n)
    g = torch.Generator().manual_seed(3)
    scores = torch.round(torch.rand(n, generator=g, dtype=torch.float64) * 50) / 50  # ties across classes
    idxs = torch.randint(0, 7, (n,), generator=g)
    expected_mask = torch.zeros(n, dtype=torch.bool)
    for c in idxs.unique():
        members = torch.where(idxs == c)[0]
        expected_mask[members[ops.nms(boxes[members], scores[members], 0.5, stable=True)]] = True
    expected = [i for i in stable_order(scores) if expected_mask[i]]
    got = ops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5, stable=True)
    assert got.cpu().tolist() == expected
    # The default visits equal scores in torchvision's order: one sort of all scores on the
    # one-pass path (its coordinate trick's), a sort per class on the per-class path.
    default = ops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5).cpu()
    one_pass = boxes.numel() <= (4000 if device == "cpu" else 100_000)
    visit = scores.to(device).sort(descending=True).indices.cpu()
    kept = []
    for c in idxs.unique():
        members = torch.where(idxs == c)[0]
        if one_pass:
            order = visit[idxs[visit] == c].tolist()
        else:
            order = members[scores[members].to(device).sort(descending=True).indices.cpu()].tolist()
        kept += reference_nms(boxes, order, 0.5)
    assert sorted(default.tolist()) == sorted(kept)
    assert (scores[default][1:] <= scores[default][:-1]).all()


def test_nms_block_boundaries(monkeypatch):
    # Blocks of 7 boxes exercise the kept-versus-block suppression across many blocks.
    monkeypatch.setattr(nms_module, "_BLOCK", 7)
    monkeypatch.setattr(nms_module, "_KEPT_CHUNK", 5)
    boxes = clustered_boxes(300, seed=9)
    scores = torch.rand(300, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert ops.nms(boxes, scores, 0.5, stable=True).tolist() == reference_nms(boxes, stable_order(scores), 0.5)
    idxs = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(5))
    got = ops.batched_nms(boxes, scores, idxs, 0.5, stable=True)
    expected = []
    for c in range(3):
        members = torch.where(idxs == c)[0]
        expected += members[reference_nms(boxes[members], stable_order(scores[members]), 0.5)].tolist()
    assert got.tolist() == sorted(expected, key=lambda i: -scores[i].item())


def test_nms_equals_torchvision_compiled_op_where_it_loads(tv):
    import torchvision
    boxes = clustered_boxes(500, seed=11).float()
    scores = torch.rand(500, generator=torch.Generator().manual_seed(6))
    try:
        expected = torchvision.ops.nms(boxes, scores, 0.5)
    except RuntimeError as e:
        pytest.skip(f"torchvision's compiled nms does not load against this torch: {str(e)[:80]}")
    assert torch.equal(ops.nms(boxes, scores, 0.5), expected)
    idxs = torch.randint(0, 5, (500,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(ops.batched_nms(boxes, scores, idxs, 0.5), torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))


# ---------------------------------------------------------------------------------------
# RoIAlign
# ---------------------------------------------------------------------------------------

def rois_inside(k: int, height: int, width: int, batch: int, aligned: bool, seed: int, scale: float = 1.0
                ) -> torch.Tensor:
    """Boxes whose samples all fall within [-1, H] x [-1, W] (where torchvision's Python fallback
    and its kernels agree), several reaching up to a pixel past the map's edges, some tiny."""
    g = torch.Generator().manual_seed(seed)
    shift = 0.5 if aligned else 0.0
    lo_min = (-1.0 + shift) / scale
    hi_max = (min(height, width) - 1.0 + shift) / scale  # legacy mode stretches boxes to >= 1 px
    corners = lo_min + torch.rand(k, 4, generator=g) * (hi_max - lo_min)
    boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]), torch.maximum(corners[:, :2], corners[:, 2:])], 1)
    boxes[:3, 2:] = boxes[:3, :2] + 0.2 / scale  # sub-pixel boxes
    boxes[3, 2:] = boxes[3, :2]                  # an empty box
    index = torch.randint(0, batch, (k, 1), generator=g).float()
    return torch.cat([index, boxes], 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2, 3])
@pytest.mark.parametrize("scale,output", [(1.0, (7, 7)), (0.5, (3, 5)), (0.25, (2, 2))])
def test_roi_align_equals_torchvision_reference(tv, device, aligned, sampling_ratio, scale, output):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 19, 23, generator=g)
    rois = rois_inside(40, 19, 23, 2, aligned, seed=sampling_ratio + 10, scale=scale)
    expected = tv.roi_align_ref(x, rois, scale, output[0], output[1], sampling_ratio, aligned)
    got = ops.roi_align(x.to(device), rois.to(device), output, scale, sampling_ratio, aligned)
    assert got.shape == (40, 3) + output
    assert torch.allclose(got.cpu(), expected, atol=1e-5, rtol=0)


def kernel_reference(x: torch.Tensor, rois: torch.Tensor, scale: float, output: tuple[int, int],
                     sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """torchvision's C++ kernel, transcribed as scalar loops (tiny inputs only): samples beyond
    one pixel outside the map read zero."""
    _, channels, height, width = x.shape
    out = torch.zeros(len(rois), channels, *output, dtype=torch.float64)

    def sample(img, y, xx):
        if y < -1.0 or y > height or xx < -1.0 or xx > width:
            return torch.zeros(channels, dtype=torch.float64)
        y, xx = max(y, 0.0), max(xx, 0.0)
        y0, x0 = int(y), int(xx)
        if y0 >= height - 1:
            y0 = y1 = height - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= width - 1:
            x0 = x1 = width - 1
            xx = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, xx - x0
        hy, hx = 1 - ly, 1 - lx
        return hy * hx * img[:, y0, x0] + hy * lx * img[:, y0, x1] + ly * hx * img[:, y1, x0] + ly * lx * img[:, y1, x1]

    for k, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        img = x[int(b)].double()
        off = 0.5 if aligned else 0.0
        sw, sh, ew, eh = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ew - sw, eh - sh
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / output[0], rw / output[1]
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / output[0])
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / output[1])
        count = max(gh * gw, 1)
        for ph in range(output[0]):
            for pw in range(output[1]):
                acc = torch.zeros(channels, dtype=torch.float64)
                for iy in range(gh):
                    y = sh + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        acc += sample(img, y, sw + pw * bw + (ix + 0.5) * bw / gw)
                out[k, :, ph, pw] = acc / count
    return out


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_far_outside_the_map_reads_zero_like_the_kernels(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 6, 7, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, -6.0, -5.0, 3.0, 4.0], [0, 4.0, 3.0, 14.0, 11.0], [0, -3.0, 2.0, 9.5, 4.5],
                         [0, 1.0, 1.0, 5.0, 5.0]], dtype=torch.float64)
    got = ops.roi_align(x, rois, (3, 2), 1.0, sampling_ratio, aligned)
    assert torch.allclose(got, kernel_reference(x, rois, 1.0, (3, 2), sampling_ratio, aligned), atol=1e-12)


def test_roi_align_box_lists_chunks_dtypes_and_gradients(tv, monkeypatch):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 12, 10, generator=g)
    rois = rois_inside(30, 12, 10, 2, False, seed=3)
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    expected = ops.roi_align(x, rois, 3, 1.0, 2)
    order = torch.cat([torch.where(rois[:, 0] == i)[0] for i in range(2)])
    assert torch.allclose(ops.roi_align(x, per_image, 3, 1.0, 2), expected[order], atol=1e-6)
    assert torch.allclose(ops.RoIAlign((3, 3), 1.0, 2)(x, rois), expected)
    # tiny gather chunks give the same result as one chunk
    monkeypatch.setattr(roi_align_module, "_CHUNK_ELEMENTS", 50)
    assert torch.allclose(ops.roi_align(x, rois, 3, 1.0, -1), tv.roi_align_ref(x, rois, 1.0, 3, 3, -1, False),
                          atol=1e-5)
    monkeypatch.undo()
    # half precision is pooled in float32 and returned in half; float64 stays float64
    half = ops.roi_align(x.half(), rois.half(), 3, 1.0, 2)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), expected, atol=2e-2)
    assert ops.roi_align(x.double(), rois.double(), 3, 1.0, 2).dtype == torch.float64
    empty = ops.roi_align(x, torch.zeros((0, 5)), (2, 3))
    assert empty.shape == (0, 4, 2, 3)
    # gradients reach the features (float64 gradcheck on a tiny case), none the boxes
    xs = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    small = torch.tensor([[0, 0.5, 0.7, 4.2, 3.9], [0, 1.3, 0.2, 5.5, 2.4]], dtype=torch.float64)
    for sr, al in [(2, False), (-1, True)]:
        assert torch.autograd.gradcheck(lambda t: ops.roi_align(t, small, (2, 2), 1.0, sr, al), (xs,))
    boxes = small.clone().requires_grad_()
    ops.roi_align(xs, boxes, 2).sum().backward()
    assert boxes.grad is None and xs.grad is not None and xs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        ops.roi_align(x, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="batch indices"):
        ops.roi_align(x, torch.tensor([[2.0, 0, 0, 1, 1]]), 2)


def test_multiscale_roi_align_equals_torchvision(tv, monkeypatch):
    # torchvision's pooler calls roi_align, which would torch.compile the fallback; route it to
    # the same fallback, uncompiled.
    def reference(input, rois, output_size, spatial_scale, sampling_ratio):
        return tv.roi_align_ref(input, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio, False)
    monkeypatch.setattr(tv.poolers, "roi_align", reference)
    g = torch.Generator().manual_seed(4)
    features = {"0": torch.randn(2, 3, 32, 40, generator=g), "1": torch.randn(2, 3, 16, 20, generator=g),
                "pool": torch.randn(2, 3, 4, 5, generator=g), "2": torch.randn(2, 3, 8, 10, generator=g),
                "3": torch.randn(2, 3, 4, 5, generator=g)}
    image_shapes = [(128, 160), (120, 150)]
    boxes = []
    for i, (h, w) in enumerate(image_shapes):
        # inside the image and at least 16 px: a box under a pixel of its level's map is
        # stretched past the map's edge in legacy mode, where the fallback and the kernels
        # differ (see convnet.ops.poolers)
        extent = torch.tensor([w, h], dtype=torch.float32)
        side = 16 + torch.rand(25, 2, generator=g) ** 2 * (extent - 16)
        lo = torch.rand(25, 2, generator=g) * (extent - side)
        boxes.append(torch.cat([lo, lo + side], 1))
    for names, out, sr in [(["0", "1", "2", "3"], 7, 2), (["0", "2"], (3, 4), -1), (["1"], 5, 2)]:
        ours = ops.MultiScaleRoIAlign(names, out, sr)(features, boxes, image_shapes)
        theirs = tv.poolers.MultiScaleRoIAlign(names, out, sr)(features, boxes, image_shapes)
        assert torch.allclose(ours, theirs, atol=1e-5), names
    mapper, theirs = ops.LevelMapper(2, 5), tv.poolers.LevelMapper(2, 5)
    assert torch.equal(mapper(boxes), theirs(boxes))


# ---------------------------------------------------------------------------------------
# Anchors
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_anchor_generator_equals_torchvision(tv, device):
    configs = [
        (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),      # Faster R-CNN FPN
        (tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in [32, 64, 128, 256, 512]),
         ((0.5, 1.0, 2.0),) * 5),                                            # RetinaNet
        (((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5),                 # FCOS
    ]
    for (sizes, ratios), image_size in zip(configs, [(224, 320), (200, 256), (333, 500)]):
        maps = [torch.zeros(2, 1, math.ceil(image_size[0] / s), math.ceil(image_size[1] / s), device=device)
                for s in (4, 8, 16, 32, 64)]
        images = torch.zeros(2, 3, *image_size, device=device)
        ours = ops.AnchorGenerator(sizes, ratios)(images, maps)
        theirs = tv.anchor_utils.AnchorGenerator(sizes, ratios)(
            tv.image_list.ImageList(images, [image_size, (image_size[0] - 10, image_size[1] - 3)]), maps)
        assert len(ours) == 2 and all(torch.equal(a, b) for a, b in zip(ours, theirs))
        assert ours[0].shape[0] == sum(m.shape[-2] * m.shape[-1] for m in maps) * len(sizes[0]) * len(ratios[0])
    assert ops.AnchorGenerator((16, 32), (0.5, 1.0)).num_anchors_per_location() == [2, 2]
    with pytest.raises(ValueError, match="one entry per feature map"):
        ops.AnchorGenerator(((16,), (32,)))(torch.zeros(1, 3, 32, 32), [torch.zeros(1, 1, 8, 8)])


@pytest.mark.parametrize("device", DEVICES)
def test_default_box_generator_equals_torchvision(tv, device):
    configs = [  # SSD300-VGG16 and SSDlite320's settings in torchvision
        dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
             steps=[8, 16, 32, 64, 100, 300]),
        dict(aspect_ratios=[[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95),
        dict(aspect_ratios=[[2]], clip=False),
    ]
    for cfg, (image_size, grids) in zip(configs, [((300, 300), [38, 19, 10, 5, 3, 1]),
                                                  ((320, 320), [20, 10, 5, 3, 2, 1]),
                                                  ((100, 160), [7])]):
        maps = [torch.zeros(3, 1, g, g + 1, device=device) for g in grids]
        images = torch.zeros(3, 3, *image_size, device=device)
        ours = ops.DefaultBoxGenerator(**cfg)(images, maps)
        theirs = tv.anchor_utils.DefaultBoxGenerator(**cfg)(tv.image_list.ImageList(images, [image_size] * 3), maps)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)) and len(ours) == 3
        assert ops.DefaultBoxGenerator(**cfg).num_anchors_per_location() == \
            tv.anchor_utils.DefaultBoxGenerator(**cfg).num_anchors_per_location()


# ---------------------------------------------------------------------------------------
# Box coding
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_box_coder_equals_torchvision_and_round_trips(tv, device):
    # sides of 4 to 30: size ratios within exp(bbox_xform_clip), so that decoding inverts encoding
    anchors = random_boxes(200, seed=12, min_side=4).to(device)
    targets = random_boxes(200, seed=13, min_side=4).to(device)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        ours, theirs = ops.BoxCoder(weights), tv.det_utils.BoxCoder(weights)
        codes = ours.encode_single(targets, anchors)
        assert torch.equal(codes, theirs.encode_single(targets, anchors))
        assert all(torch.equal(a, b) for a, b in zip(ours.encode([targets[:80], targets[80:]], [anchors[:80], anchors[80:]]),
                                                      theirs.encode([targets[:80], targets[80:]], [anchors[:80], anchors[80:]])))
        assert torch.allclose(ours.decode_single(codes, anchors), targets, atol=1e-4)
        # several codes per box (one per class), and codes large enough to hit the clamp
        multi = torch.randn(200, 3 * 4, generator=torch.Generator().manual_seed(1)).to(device) * 4
        assert torch.equal(ours.decode_single(multi, anchors), theirs.decode_single(multi, anchors))
        assert torch.equal(ours.decode(multi, [anchors[:50], anchors[50:]]), theirs.decode(multi, [anchors[:50], anchors[50:]]))
    assert ops.BoxCoder((1.0,) * 4).decode(torch.zeros(0, 4), [torch.zeros(0, 4)]).shape == (0, 4)
    for normalize in (True, False):
        ours, theirs = ops.BoxLinearCoder(normalize), tv.det_utils.BoxLinearCoder(normalize)
        codes = ours.encode(anchors, targets)
        assert torch.equal(codes, theirs.encode(anchors, targets))
        assert torch.equal(ours.decode(codes, anchors), theirs.decode(codes, anchors))
        assert torch.allclose(ours.decode(codes, anchors), targets, atol=1e-4)


@pytest.mark.parametrize("ndim", [1, 3])
def test_box_coders_in_other_dimensions(ndim):
    anchors = random_boxes(50, ndim, seed=14, dtype=torch.float64, min_side=4)
    targets = random_boxes(50, ndim, seed=15, dtype=torch.float64, min_side=4)
    coder = ops.BoxCoder((10.0,) * ndim + (5.0,) * ndim)
    assert torch.allclose(coder.decode_single(coder.encode_single(targets, anchors), anchors), targets, atol=1e-9)
    linear = ops.BoxLinearCoder()
    assert torch.allclose(linear.decode(linear.encode(anchors, targets), anchors), targets, atol=1e-9)
    # a 3-D box of unit depth codes like the 2-D box in x and y
    if ndim == 3:
        flat_a, flat_t = anchors[:, [0, 1, 3, 4]], targets[:, [0, 1, 3, 4]]
        codes2 = ops.BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(flat_t, flat_a)
        assert torch.allclose(coder.encode_single(targets, anchors)[:, [0, 1, 3, 4]], codes2)
    with pytest.raises(ValueError, match="coordinates but the coder has 4 weights"):
        ops.BoxCoder((1.0,) * 4).encode_single(targets, anchors)


# ---------------------------------------------------------------------------------------
# Matching and sampling
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_matchers_equal_torchvision(tv, device):
    g = torch.Generator().manual_seed(5)
    for trial in range(6):
        quality = torch.rand(7, 300, generator=g)
        if trial % 2:
            quality = torch.round(quality * 8) / 8   # ties, also for a ground truth's best prediction
        quality = quality.to(device)
        for high, low, allow in [(0.7, 0.3, True), (0.5, 0.4, True), (0.5, 0.5, False)]:
            ours = ops.Matcher(high, low, allow)(quality.clone())
            theirs = tv.det_utils.Matcher(high, low, allow)(quality.clone())
            assert torch.equal(ours, theirs)
        assert torch.equal(ops.SSDMatcher(0.5)(quality.clone()), tv.det_utils.SSDMatcher(0.5)(quality.clone()))
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        ops.Matcher(0.7, 0.3)(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="must not exceed"):
        ops.Matcher(0.3, 0.7)


def test_sampler_equals_torchvision_under_the_same_seed(tv):
    matched = [torch.randint(-1, 4, (500,), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    matched.append(torch.zeros(40, dtype=torch.int64))  # no positives
    torch.manual_seed(7)
    ours = ops.BalancedPositiveNegativeSampler(256, 0.25)(matched)
    torch.manual_seed(7)
    theirs = tv.det_utils.BalancedPositiveNegativeSampler(256, 0.25)(matched)
    for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        assert torch.equal(a, b)
    for m, pos, neg in zip(matched, *ours):  # 256 per image, at most a quarter positive, fewer if short
        n_pos = min(int((m >= 1).sum()), 64)
        assert int(pos.sum()) == n_pos and int(neg.sum()) == min(int((m == 0).sum()), 256 - n_pos)
        assert bool((m[pos.bool()] >= 1).all()) and bool((m[neg.bool()] == 0).all())


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_losses_equal_torchvision(tv, device):
    g = torch.Generator().manual_seed(8)
    logits = (torch.randn(64, 10, generator=g) * 3).to(device)
    targets = (torch.rand(64, 10, generator=g) < 0.2).float().to(device)
    for alpha, gamma in [(0.25, 2.0), (-1, 0.0), (0.5, 1.5)]:
        for reduction in ("none", "mean", "sum"):
            ours = ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
            theirs = tv.focal_loss.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
            assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    b1 = random_boxes(100, seed=16).to(device).requires_grad_()
    b2 = random_boxes(100, seed=17).to(device) * 0.5 + 20   # some overlap, some not
    t1 = b1.detach().clone().requires_grad_()
    for reduction in ("none", "mean", "sum"):
        ours = ops.generalized_box_iou_loss(b1, b2, reduction)
        theirs = tv.giou_loss.generalized_box_iou_loss(t1, b2, reduction)
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    ops.generalized_box_iou_loss(b1, b2, "sum").backward()
    tv.giou_loss.generalized_box_iou_loss(t1, b2, "sum").backward()
    assert torch.allclose(b1.grad, t1.grad, rtol=1e-5, atol=1e-6)
    assert ops.generalized_box_iou_loss(b1[:0], b2[:0], "mean").item() == 0.0
    # N-d: a unit-depth 3-D pair has the 2-D loss
    lift = lambda b: torch.cat([b[:, :2], torch.zeros_like(b[:, :1]), b[:, 2:], torch.ones_like(b[:, :1])], 1)
    assert torch.allclose(ops.generalized_box_iou_loss(lift(b1.detach()), lift(b2)),
                          ops.generalized_box_iou_loss(b1.detach(), b2))
    with pytest.raises(ValueError, match="unknown reduction 'avg'; choose from none, mean, sum"):
        ops.sigmoid_focal_loss(logits, targets, reduction="avg")
    with pytest.raises(ValueError, match="alpha"):
        ops.sigmoid_focal_loss(logits, targets, alpha=2.0)
