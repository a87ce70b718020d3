"""Detectors: the torchvision layouts against torchvision's own code (identical boxes, scores,
labels and training losses from the same weights), YOLOv1 and the modern YOLO against counts
derived by hand, every detector's input/output contract at a tiny size, the FPN over other
backbones, analysis (summary, Grad-CAM) and the ONNX export of the YOLO's dense outputs.

torchvision's detectors call its compiled ``torchvision.ops.nms`` and ``roi_align``, which do not
load against the CPU torch here. The comparisons therefore patch torchvision's ops with
convnet's (``torchvision.ops.boxes.nms`` / ``batched_nms`` and the ``roi_align`` its poolers
call), so that what is compared is the model code: backbone, FPN, heads, anchors, coding,
matching, sampling, losses and postprocessing. convnet's ops are checked against torchvision's
semantics in tests/test_ops.py.
"""
import pytest
import torch

import convnet.ops as ops
from convnet import create_model, list_models, model_info, summary
from convnet.analysis.cam import grad_cam
from convnet.models import get_entry
from convnet.weights import load_pretrained

import oracle
from conftest import tiny_model

DETECTORS = list_models(task="detect")


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: one thread avoids the cost of waking a thread pool on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(seed=3, sizes=((100, 130), (90, 140))):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def _targets(offset=0):
    return [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0], [50.0, 30.0, 120.0, 85.0]]),
             "labels": torch.tensor([1, 3]) + offset},
            {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}]


# ------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_contract(name):
    """Eval: one dict per image, boxes inside the image; training: finite losses whose sum
    reaches every trainable parameter; an image without objects is a valid target."""
    entry = get_entry(name)
    offset = entry.cls.label_offset
    model = tiny_model(name, in_channels=3, num_classes=4 + offset).eval()
    assert model.spatial_dims == 2 and model.feature_info and model.cam_layer
    assert model.get_submodule(model.cam_layer) is not None
    images = _images()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for pred, img in zip(out, images):
        assert set(pred) == {"boxes", "scores", "labels"}
        n = len(pred["scores"])
        assert pred["boxes"].shape == (n, 4) and pred["labels"].dtype == torch.int64
        h, w = img.shape[-2:]
        b = pred["boxes"]
        assert ((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w + 1e-3) & (b[:, 3] <= h + 1e-3)).all()
        assert ((pred["labels"] >= offset) & (pred["labels"] < 4 + offset)).all()
    model.train()
    losses = model(images, _targets(offset))
    assert isinstance(losses, dict) and losses
    total = sum(losses.values())
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_detector_input_errors_name_the_problem():
    model = tiny_model("yolo_n", in_channels=3, num_classes=4)
    with pytest.raises(ValueError, match="needs targets"):
        model(_images())
    with pytest.raises(ValueError, match="x1 < x2"):
        model(_images(), [{"boxes": torch.tensor([[5.0, 5, 5, 9]]), "labels": torch.tensor([0])}] * 2)
    with pytest.raises(ValueError, match="labels.*0..3"):
        model(_images(), [{"boxes": torch.tensor([[5.0, 5, 8, 9]]), "labels": torch.tensor([4])}] * 2)
    with pytest.raises(ValueError, match="3 input channel"):
        model.eval()([torch.rand(1, 32, 32)])
    with pytest.raises(ValueError, match="supports spatial_dims"):
        create_model("yolo_n", spatial_dims=3)


def test_background_models_count_it():
    assert get_entry("fasterrcnn_resnet50_fpn").cls.label_offset == 1
    assert get_entry("ssd300_vgg16").cls.label_offset == 1
    assert get_entry("retinanet_resnet50_fpn").cls.label_offset == 0
    with pytest.raises(ValueError, match=r"\['labels'\] must lie in 1..3"):
        tiny_model("fasterrcnn_resnet50_fpn", in_channels=3, num_classes=4)(
            _images(), [{"boxes": torch.tensor([[1.0, 1, 9, 9]]), "labels": torch.tensor([0])}] * 2)


@pytest.mark.parametrize("backbone, overrides", [
    ("resnet18", {"stem_width": 8, "widths": (8, 8, 16, 16), "layers": (1, 1, 1, 1)}),
    ("resnext50_32x4d", {"stem_width": 8, "widths": (8, 16, 16, 16), "layers": (1, 1, 1, 1), "groups": 2,
                         "width_per_group": 32}),
])
def test_fpn_is_built_from_any_backbones_feature_info(backbone, overrides):
    model = create_model("retinanet_resnet50_fpn", backbone=backbone, backbone_overrides=overrides, num_classes=3,
                         fpn_channels=16, head_convs=1, min_size=64, max_size=96).eval()
    trunk_info = create_model(backbone, **overrides).feature_info
    assert [f.channels for f in model.feature_info] == [trunk_info[i].channels for i in (1, 2, 3)]
    x = torch.rand(1, 3, 64, 64)
    levels = model.fpn(model.backbone(x))
    assert list(levels) == ["0", "1", "2", "p6", "p7"]
    # P3..P7 at strides 8..128, all with the pyramid's channels
    assert [tuple(v.shape[1:]) for v in levels.values()] == [(16, 8, 8), (16, 4, 4), (16, 2, 2), (16, 1, 1),
                                                            (16, 1, 1)]


def test_trainable_backbone_layers_freeze_from_the_stem():
    counts = {}
    for layers in (0, 3, 5):
        m = create_model("fasterrcnn_resnet50_fpn", trainable_backbone_layers=layers,
                         **get_entry("fasterrcnn_resnet50_fpn").extra["tiny"])
        body = m.backbone.body
        counts[layers] = {name: all(p.requires_grad for p in body.get_submodule(name).parameters())
                          for name in ("stem", "stages.0", "stages.1", "stages.2", "stages.3")}
    assert not any(counts[0].values()) and all(counts[5].values())
    assert counts[3] == {"stem": False, "stages.0": False, "stages.1": True, "stages.2": True, "stages.3": True}
    with pytest.raises(ValueError, match="trainable_backbone_layers must be in 0..5"):
        create_model("fasterrcnn_resnet50_fpn", trainable_backbone_layers=6,
                     **get_entry("fasterrcnn_resnet50_fpn").extra["tiny"])


# ------------------------------------------------------------------------------ torchvision


def _patched_torchvision(monkeypatch):
    """torchvision.models with its compiled detection ops replaced by convnet's (module docstring)."""
    tv = oracle.torchvision_models()
    import torchvision.ops.boxes as tv_boxes
    import torchvision.ops.poolers as tv_poolers

    monkeypatch.setattr(tv_boxes, "nms", ops.nms)
    monkeypatch.setattr(tv_boxes, "batched_nms", ops.batched_nms)
    monkeypatch.setattr(tv_poolers, "roi_align", ops.roi_align)
    return tv


def _randomize_norms(model, seed=0):
    """Random statistics and affine parameters in every (frozen or not) batch norm."""
    misc = oracle.torchvision_ops_misc()
    oracle.randomize_batchnorm(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, misc.FrozenBatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def _assert_same_detector(theirs, name, tmp_path, ours_kw, offset=1, rtol=1e-4):
    """Save theirs, load into ours; identical predictions in eval mode and identical losses in
    training mode (same seed for the samplers) on two images of different sizes."""
    theirs = _randomize_norms(theirs).eval()
    torch.save(theirs.state_dict(), tmp_path / "theirs.pth")
    ours = load_pretrained(create_model(name, **ours_kw), tmp_path / "theirs.pth").eval()
    images = _images(sizes=((160, 200), (150, 210)))
    with torch.no_grad():
        expected, actual = theirs(images), ours(images)
    for a, b in zip(expected, actual):
        assert len(a["boxes"]) > 0 and torch.equal(a["labels"], b["labels"])
        scale = max(1.0, float(a["boxes"].abs().max()))
        assert (a["boxes"] - b["boxes"]).abs().max() <= rtol * scale
        assert (a["scores"] - b["scores"]).abs().max() <= rtol * float(a["scores"].abs().max())
    theirs.train()
    ours.train()
    targets = [{"boxes": torch.tensor([[10.0, 20, 80, 90], [50, 40, 150, 120]]), "labels": torch.tensor([3, 7])},
               {"boxes": torch.tensor([[30.0, 30, 60, 100]]), "labels": torch.tensor([1])}]
    torch.manual_seed(5)
    expected = theirs(images, targets)
    torch.manual_seed(5)
    actual = ours(images, targets)
    assert expected.keys() == actual.keys()
    for k in expected:
        assert actual[k].item() == pytest.approx(expected[k].item(), rel=rtol), k


def _tv_resnet_fpn(tv, depth, out_channels=256, returned_layers=(1, 2, 3, 4), extra_blocks=None):
    """torchvision's ResNet-FPN backbone (``_resnet_fpn_extractor`` with its pyramid width as an
    argument), with frozen batch norms: the configuration torchvision uses with pretrained weights."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import misc
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    backbone = getattr(tv, f"resnet{depth}")(norm_layer=misc.FrozenBatchNorm2d)
    stage2 = backbone.inplanes // 8
    return BackboneWithFPN(backbone, {f"layer{k}": str(v) for v, k in enumerate(returned_layers)},
                           [stage2 * 2 ** (i - 1) for i in returned_layers], out_channels,
                           extra_blocks=extra_blocks or LastLevelMaxPool())


# Small images (min_size 160) and thresholds that keep random-weight detections.
_SMALL = {"min_size": 160, "max_size": 256}
# The fast comparisons: ResNet-18, a 32-wide pyramid, fewer proposals, smaller images.
_FAST = {"min_size": 128, "max_size": 192}
_FAST_RPN = {"rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 150, "rpn_pre_nms_top_n_test": 300,
             "rpn_post_nms_top_n_test": 150, "box_batch_size_per_image": 64, "box_score_thresh": 0.0}


def test_fasterrcnn_layout_equals_torchvision(monkeypatch, tmp_path):
    tv = _patched_torchvision(monkeypatch)  # imports torchvision the oracle's way first
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    theirs = tv.detection.FasterRCNN(_tv_resnet_fpn(tv, 18, 32), box_head=TwoMLPHead(32 * 49, 64),
                                     box_predictor=FastRCNNPredictor(64, 91), **_FAST_RPN, **_FAST)
    _assert_same_detector(theirs, "fasterrcnn_resnet50_fpn", tmp_path,
                          dict(backbone="resnet18", fpn_channels=32, representation_size=64, **_FAST_RPN, **_FAST))


@pytest.mark.parametrize("name", ["retinanet_resnet50_fpn", "fcos_resnet50_fpn"])
def test_retinanet_and_fcos_layouts_equal_torchvision(monkeypatch, tmp_path, name):
    tv = _patched_torchvision(monkeypatch)
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    cls = tv.detection.RetinaNet if name.startswith("retinanet") else tv.detection.FCOS
    backbone = _tv_resnet_fpn(tv, 18, 32, (2, 3, 4), LastLevelP6P7(32, 32))
    theirs = cls(backbone, 91, score_thresh=0.0, topk_candidates=200, **_FAST)
    _assert_same_detector(theirs, name, tmp_path, dict(backbone="resnet18", fpn_channels=32, score_thresh=0.0,
                                                       topk_candidates=200, **_FAST))


@pytest.mark.slow
def test_ssdlite_equals_torchvision(monkeypatch, tmp_path):
    tv = _patched_torchvision(monkeypatch)
    theirs = tv.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, score_thresh=0.0,
                                                        width_mult=0.5)
    _assert_same_detector(theirs, "ssdlite320_mobilenet_v3_large", tmp_path,
                          dict(score_thresh=0.0, backbone_overrides={"width_mult": 0.5}))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn",
                                  "ssd300_vgg16"])
def test_full_size_layouts_equal_torchvision(monkeypatch, tmp_path, name):
    """The registered layouts at full size, as torchvision's builders make them (frozen batch
    norms as with pretrained weights for the ResNet ones; SSD300's VGG has none)."""
    tv = _patched_torchvision(monkeypatch)
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    det = tv.detection
    if name == "fasterrcnn_resnet50_fpn":
        theirs = det.FasterRCNN(_tv_resnet_fpn(tv, 50), 91, box_score_thresh=0.0, **_SMALL)  # torchvision's layout
        kw = dict(box_score_thresh=0.0, **_SMALL)
    elif name == "ssd300_vgg16":
        theirs = det.ssd300_vgg16(weights=None, weights_backbone=None, score_thresh=0.0)
        kw = dict(score_thresh=0.0)
    else:
        cls = det.RetinaNet if name.startswith("retinanet") else det.FCOS
        theirs = cls(_tv_resnet_fpn(tv, 50, 256, (2, 3, 4), LastLevelP6P7(256, 256)), 91, score_thresh=0.0, **_SMALL)
        kw = dict(score_thresh=0.0, **_SMALL)
    assert sum(p.numel() for p in theirs.parameters()) == get_entry(name).reference_params
    _assert_same_detector(theirs, name, tmp_path, kw)


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn",
                                  "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"])
def test_parameter_counts_equal_torchvisions_builders(name):
    """torchvision's builders at weights=None count what their weights' metadata says (SSDlite
    without backbone weights has the reduced tail); so do ours (meta device, free)."""
    tv = oracle.torchvision_models()
    with torch.device("meta"):
        theirs = getattr(tv.detection, name)(weights=None, weights_backbone=None)
    frozen_bn = 53_120 if "resnet50" in name else 0  # weights=None builds plain batch norms there
    assert sum(p.numel() for p in theirs.parameters()) - frozen_bn == get_entry(name).reference_params
    assert model_info(name)["params"] == get_entry(name).reference_params


# ------------------------------------------------------------------------------ YOLOv1


def test_yolov1_parameter_count_by_hand():
    """Redmon et al. 2016, Fig. 3: conv weights k*k*c_in*c_out + c_out biases, layer by layer."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    layers = [conv(7, 3, 64), conv(3, 64, 192),
              conv(1, 192, 128), conv(3, 128, 256), conv(1, 256, 256), conv(3, 256, 512),
              *[conv(1, 512, 256), conv(3, 256, 512)] * 4, conv(1, 512, 512), conv(3, 512, 1024),
              *[conv(1, 1024, 512), conv(3, 512, 1024)] * 2,
              conv(3, 1024, 1024), conv(3, 1024, 1024), conv(3, 1024, 1024), conv(3, 1024, 1024)]
    assert len(layers) == 24
    fc1 = 7 * 7 * 1024 * 4096 + 4096
    fc2 = 4096 * 7 * 7 * 30 + 7 * 7 * 30  # S x S x (B * 5 + C) = 7 x 7 x 30
    expected = sum(layers) + fc1 + fc2
    assert expected == 271_703_550 == get_entry("yolov1").reference_params
    assert model_info("yolov1")["params"] == expected


def test_yolov1_loss_terms_follow_eq3():
    model = create_model("yolov1", grid_size=2, width_mult=1 / 32, fc_width=16, num_classes=3)
    size = 128  # 64 S
    grid = torch.zeros(1, 2, 2, 2 * 5 + 3)
    box = torch.tensor([[70.0, 10.0, 118.0, 42.0]])  # centre (94, 26): cell row 0, column 1
    cx, cy, w, h = 94 / size * 2 - 1, 26 / size * 2, 48 / size, 32 / size
    grid[0, 0, 1, 5:10] = torch.tensor([cx, cy, w ** 0.5, h ** 0.5, 1.0])  # predictor 1 is exact
    grid[0, 0, 1, 0:5] = torch.tensor([0.0, 0.0, 0.1, 0.1, 0.0])  # predictor 0 is far off
    grid[0, 0, 1, 10 + 2] = 1.0  # class 2, one-hot
    target = [{"boxes": box, "labels": torch.tensor([2])}]
    losses = model.loss(grid, target, size)
    assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in losses.values()), losses
    grid[0, 0, 1, 4] = 0.6  # the unresponsible predictor's confidence: lambda_noobj * 0.6^2
    grid[0, 1, 0, 9] = 0.5  # a cell without an object: lambda_noobj * 0.5^2
    grid[0, 0, 1, 5] += 0.2  # the responsible box moves: lambda_coord * 0.2^2, and its IoU drops
    losses = model.loss(grid, target, size)
    assert losses["no_object"].item() == pytest.approx(0.5 * (0.36 + 0.25))
    assert losses["coord"].item() == pytest.approx(5 * 0.04)
    assert losses["object"].item() > 0 and losses["class"].item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------ modern YOLO


def _yolo_count(width_mult, depth_mult, num_classes=80):
    """Parameters of the modern YOLO from its description (models/yolo.py): every conv is
    k*k*c_in*c_out without bias plus 2*c_out of batch norm; the head's three 1x1 outputs have
    biases. Base widths 64..1024, depths 3, 9, 9, 3, head width 256, scaled."""
    def conv(k, cin, cout):
        return k * k * cin * cout + 2 * cout

    def csp(cin, cout, n):  # two 1x1 to half, n bottlenecks (1x1, 3x3) on half, 1x1 fuse
        half = cout // 2
        return 2 * conv(1, cin, half) + n * (conv(1, half, half) + conv(3, half, half)) + conv(1, 2 * half, cout)

    w = [max(8, round(c * width_mult)) for c in (64, 128, 256, 512, 1024)]
    d = [max(1, round(n * depth_mult)) for n in (3, 9, 9, 3)]
    total = conv(3, 3, w[0])
    for i in range(4):  # strided 3x3, then the CSP block
        total += conv(3, w[i], w[i + 1]) + csp(w[i + 1], w[i + 1], d[i])
    total += conv(1, w[4], w[4] // 2) + conv(1, w[4] // 2 * 4, w[4])  # SPP: 1x1 to half, pools, 1x1 back
    c3, c4, c5, n = w[2], w[3], w[4], d[0]
    total += conv(1, c5, c4) + csp(2 * c4, c4, n) + conv(1, c4, c3) + csp(2 * c3, c3, n)  # top-down
    total += conv(3, c3, c3) + csp(2 * c3, c4, n) + conv(3, c4, c4) + csp(2 * c4, c5, n)  # bottom-up
    h = max(8, round(256 * width_mult))
    for c in (c3, c4, c5):  # stem, 2 + 2 convs, class / box / objectness outputs
        total += conv(1, c, h) + 4 * conv(3, h, h) + (h + 1) * num_classes + (h + 1) * 4 + (h + 1)
    return total


@pytest.mark.parametrize("name, width, depth", [("yolo_n", 0.25, 0.33), ("yolo_s", 0.50, 0.33)])
def test_yolo_parameter_counts_by_formula(name, width, depth):
    assert _yolo_count(width, depth) == get_entry(name).reference_params == model_info(name)["params"]
    assert _yolo_count(0.0625, 0.33, 7) == sum(p.numel() for p in create_model(name, width_mult=0.0625,
                                                                               num_classes=7).parameters())


def test_yolo_decoding_and_simota_assignment():
    model = tiny_model("yolo_n", in_channels=3, num_classes=3).eval()
    raw, grid, stride = model.raw_outputs(torch.zeros(1, 3, 64, 96))
    assert raw.shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 8) and grid.shape == (raw.shape[1], 2)
    zero = model.decode(torch.zeros_like(raw), grid, stride)[0]
    # zero outputs: a box of one stride's side centred on its cell's corner
    assert torch.equal(zero[:, 2:] - zero[:, :2], torch.stack((stride, stride), 1))
    assert torch.equal((zero[:, :2] + zero[:, 2:]) / 2, grid * stride[:, None])
    boxes = model.decode(raw, grid, stride)[0]
    centres = (grid + 0.5) * stride[:, None]
    gt = {"boxes": torch.tensor([[4.0, 4, 40, 30], [50, 20, 94, 62], [4, 40, 20, 60]]),
          "labels": torch.tensor([0, 2, 1])}
    positive, matched, ious = model.assign(boxes, raw[0, :, 4:], centres, stride, gt)
    assert positive.sum() == len(matched) == len(ious) and set(matched.tolist()) == {0, 1, 2}  # every object
    radius = model.spec.center_radius * stride[positive]
    pos_centres = centres[positive]
    owners = gt["boxes"][matched]
    inside = ((pos_centres > owners[:, :2]) & (pos_centres < owners[:, 2:])).all(1)
    near = ((pos_centres - (owners[:, :2] + owners[:, 2:]) / 2).abs() < radius[:, None]).all(1)
    assert (inside & near).all()  # SimOTA's positives lie in their object's box and centre region


# ------------------------------------------------------------------------------ analysis, export


def test_summary_counts_a_detector_on_the_meta_device():
    with torch.device("meta"):
        model = create_model("yolo_n")
    s = summary(model, device="meta")
    assert s.total_params == get_entry("yolo_n").reference_params
    assert s.output_shape == (80,) and s.total_macs > 1e9 and not s.uncounted
    assert any(r.name.startswith("head.cls_preds") for r in s.rows)


@pytest.mark.parametrize("name", ["yolo_n", "retinanet_resnet50_fpn"])
def test_grad_cam_explains_a_detectors_class(name):
    model = tiny_model(name, in_channels=3, num_classes=4)
    x = torch.rand(2, 3, 64, 64)
    result = grad_cam(model, x, target=1)
    assert result.cam.shape == (2, 64, 64) and result.layer == model.cam_layer
    assert (result.cam >= 0).all() and (result.cam <= 1).all() and result.classes.tolist() == [1, 1]
    assert result.gradients.abs().sum() > 0


@pytest.mark.slow
def test_yolo_dense_outputs_export_to_onnx_with_dynamic_batch_and_size(tmp_path):
    """The YOLO before NMS (decoded boxes, objectness, class probabilities) exported once at
    2 x 3 x 64 x 64 and run by ONNX Runtime at batch 1 and 3 and two other sizes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from convnet.deploy.export import export_onnx, verify_onnx
    from convnet.models.yolo import DenseOutputs

    model = DenseOutputs(tiny_model("yolo_n", in_channels=3, num_classes=4).eval())
    path = export_onnx(model, tmp_path / "yolo.onnx", torch.rand(2, 3, 64, 64))
    inputs = [torch.rand(b, 3, h, w) for b, h, w in ((1, 96, 64), (3, 128, 160))]
    report = verify_onnx(path, model, inputs)
    assert [c["shape"] for c in report["cases"]] == [[1, 3, 96, 64], [3, 3, 128, 160]]
    assert report["max_rel_err"] < 1e-4
