"""Segmentation models: parameter counts from their sources, torchvision's checkpoints, the
output contract in 1, 2 and 3 dims, encoder U-Nets, input sizes and export."""
import pytest
import torch

import oracle
from conftest import input_size, tiny_model
from convnet import create_model
from convnet.models import count_parameters, get_entry, list_models, model_info
from convnet.weights import load_pretrained

SEGMENTERS = list_models(task="segment")
CASES = [(n, d) for n in SEGMENTERS for d in get_entry(n).spatial_dims]
AUX = {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large",
       "pspnet_resnet50"}


def _test_size(name: str, model, spatial_dims: int) -> int:
    """The contract tests' extent: the family's declared test input, else 32 (padded models)."""
    return input_size(name)


# -- parameter counts -------------------------------------------------------------------------------

def test_registry_lists_the_segmentation_models():
    assert set(SEGMENTERS) == {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                               "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "deeplabv3plus_resnet50",
                               "pspnet_resnet50", "unet", "unet3d", "vnet"}
    assert all(get_entry(n).task == "segment" for n in SEGMENTERS)
    assert get_entry("unet3d").default_dims() == get_entry("vnet").default_dims() == 3


@pytest.mark.parametrize("name,params", [
    # torchvision 0.29 weight metadata ("num_params"), 21 classes, auxiliary heads included.
    ("fcn_resnet50", 35_322_218), ("fcn_resnet101", 54_314_346),
    ("deeplabv3_resnet50", 42_004_074), ("deeplabv3_resnet101", 60_996_202),
    ("deeplabv3_mobilenet_v3_large", 11_029_328), ("lraspp_mobilenet_v3_large", 3_221_538),
    # Ronneberger et al. 2015 (1 channel, 2 classes); Cicek et al. 2016 §2 (3 channels, 3 labels).
    ("unet", 31_030_658), ("unet3d", 19_069_955),
])
def test_published_parameter_counts(name, params):
    assert model_info(name)["params"] == params == get_entry(name).reference_params


def _conv(c_in, c_out, k, d, bias=True):
    return c_in * c_out * k ** d + (c_out if bias else 0)


def _bn(c):
    return 2 * c


RESNET50_TRUNK = 25_557_032 - (2048 * 1000 + 1000)  # torchvision resnet50 without its fc layer


def test_unet_count_layer_by_layer():
    """Ronneberger et al. Fig. 1: valid 3x3 convs with bias, 2x2 up-convs halving, 1x1 output."""
    down = [(1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512),
            (512, 1024), (1024, 1024)]
    up = [(1024, 512), (1024, 512), (512, 512), (512, 256), (512, 256), (256, 256), (256, 128), (256, 128),
          (128, 128), (128, 64), (128, 64), (64, 64)]  # (up-conv, conv, conv) per level
    total = sum(_conv(a, b, 3, 2) for a, b in down)
    total += sum(_conv(a, b, 2 if i % 3 == 0 else 3, 2) for i, (a, b) in enumerate(up))
    total += _conv(64, 2, 1, 2)
    assert total == 31_030_658 == count_parameters(create_model("unet"))


def test_unet3d_counted_as_the_paper_counts():
    """19,069,955 = conv weights and biases + up-conv weights without bias + no BN parameters;
    with BN scale/shift and up-conv biases: 19,075,523."""
    convs = [(3, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512),
             (768, 256), (256, 256), (384, 128), (128, 128), (192, 64), (64, 64)]
    upconvs = [512, 256, 128]  # kept channels: 512 -> 512, 256 -> 256, 128 -> 128
    paper = sum(_conv(a, b, 3, 3) for a, b in convs) + sum(_conv(c, c, 2, 3, bias=False) for c in upconvs)
    paper += _conv(64, 3, 1, 3)
    assert paper == 19_069_955 == count_parameters(create_model("unet3d"))
    with_affine = paper + sum(_bn(b) for _, b in convs) + sum(upconvs)
    assert with_affine == 19_075_523 == count_parameters(create_model("unet3d", norm_affine=True, upconv_bias=True))


def test_vnet_count_from_the_figure():
    """Milletari et al. Fig. 2: 5x5x5 convs with bias, 1-2-3-3-3 / 3-3-2-1 per stage, 2x2x2
    down- and up-convs, one PReLU slope per channel after each conv, a 1x1x1 output to 2."""
    widths = [16, 32, 64, 128, 256]
    total = _conv(1, 16, 5, 3) + 16  # stage 1: one conv from the input, its PReLU
    for w, n in zip(widths[1:], [2, 3, 3, 3]):
        total += _conv(w // 2, w, 2, 3) + w  # down-conv and PReLU
        total += n * (_conv(w, w, 5, 3) + w)  # the stage's convs and PReLUs
    c = 256
    for w, n in zip([128, 64, 32, 16], [3, 3, 2, 1]):
        total += _conv(c, w, 2, 3) + w  # up-conv to half the stage's width, PReLU
        total += n * (_conv(2 * w, 2 * w, 5, 3) + 2 * w)
        c = 2 * w
    total += _conv(32, 2, 1, 3)
    assert total == 65_175_314 == get_entry("vnet").reference_params == count_parameters(create_model("vnet"))


def test_deeplabv3plus_count_from_the_paper_layout():
    """Chen et al. 2018: ResNet-50 trunk, ASPP (1x1 + three 3x3 at rates 6/12/18 + image pooling,
    256 each, 1x1 fusion), decoder (1x1 to 48 on the stride-4 features, two 3x3 convs of 256,
    1x1 classifier); every conv before a BN has no bias."""
    aspp = 2 * (_conv(2048, 256, 1, 2, False) + _bn(256)) + 3 * (_conv(2048, 256, 3, 2, False) + _bn(256))
    aspp += _conv(5 * 256, 256, 1, 2, False) + _bn(256)
    decoder = _conv(256, 48, 1, 2, False) + _bn(48) + _conv(256 + 48, 256, 3, 2, False) + _bn(256)
    decoder += _conv(256, 256, 3, 2, False) + _bn(256) + _conv(256, 21, 1, 2)
    total = RESNET50_TRUNK + aspp + decoder
    assert total == 40_352_181 == get_entry("deeplabv3plus_resnet50").reference_params
    assert model_info("deeplabv3plus_resnet50")["params"] == total


def test_pspnet_count_from_the_paper_layout():
    """Zhao et al. 2017: ResNet-50 trunk, four 1x1 convs 2048 -> 512 (BN), a 3x3 conv 4096 -> 512
    (BN), a 1x1 classifier, and the auxiliary head on stage 3 (3x3 1024 -> 256, BN, 1x1)."""
    ppm = 4 * (_conv(2048, 512, 1, 2, False) + _bn(512))
    head = _conv(2048 + 4 * 512, 512, 3, 2, False) + _bn(512) + _conv(512, 21, 1, 2)
    aux = _conv(1024, 256, 3, 2, False) + _bn(256) + _conv(256, 21, 1, 2)
    total = RESNET50_TRUNK + ppm + head + aux
    assert total == 48_957_802 == get_entry("pspnet_resnet50").reference_params
    assert model_info("pspnet_resnet50")["params"] == total


# -- torchvision's checkpoints ----------------------------------------------------------------------

def _assert_same(name: str, theirs, tmp_path, **overrides):
    """Save torchvision's randomised model, load it into ours, compare out and aux in eval mode."""
    theirs = oracle.randomize_batchnorm(theirs).eval()
    path = tmp_path / "theirs.pth"
    torch.save(theirs.state_dict(), path)
    ours = load_pretrained(create_model(name, **overrides), path).eval()
    ours.return_aux = True
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    if not isinstance(actual, dict):
        actual = {"out": actual}
    assert set(actual) == set(expected)
    for key in expected:
        assert actual[key].shape == expected[key].shape == (2, 21, 64, 64)
        err = ((actual[key] - expected[key]).abs().max() / expected[key].abs().max()).item()
        assert err < 1e-5, f"{name} {key}: max relative error {err:.2e}"


def _small_resnet_segmenter(tv, head: str):
    """torchvision's own FCN / DeepLabV3 builders (_fcn_resnet, _deeplabv3_resnet) on a
    ResNet-50 with one block per stage: the same layout at a tenth of the cost."""
    seg = tv.segmentation
    trunk = tv.resnet.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], replace_stride_with_dilation=[False, True, True])
    build = seg.fcn._fcn_resnet if head == "fcn" else seg.deeplabv3._deeplabv3_resnet
    return build(trunk, 21, True)


@pytest.mark.parametrize("name,head", [("fcn_resnet50", "fcn"), ("deeplabv3_resnet50", "deeplabv3")])
def test_torchvision_resnet_layouts_load_with_identical_outputs(name, head, tmp_path):
    tv = oracle.torchvision_models()
    _assert_same(name, _small_resnet_segmenter(tv, head), tmp_path, backbone_overrides={"layers": (1, 1, 1, 1)})


def test_torchvision_mobilenet_layouts_load_with_identical_outputs(tmp_path):
    """deeplabv3 and lraspp on a half-width dilated MobileNetV3-Large (torchvision's builders)."""
    tv = oracle.torchvision_models()
    seg = tv.segmentation
    small = {"backbone_overrides": {"width_mult": 0.5}}
    trunk = tv.mobilenet_v3_large(dilated=True, width_mult=0.5)
    _assert_same("lraspp_mobilenet_v3_large", seg.lraspp._lraspp_mobilenetv3(trunk, 21), tmp_path, **small)
    trunk = tv.mobilenet_v3_large(dilated=True, width_mult=0.5)
    _assert_same("deeplabv3_mobilenet_v3_large", seg.deeplabv3._deeplabv3_mobilenetv3(trunk, 21, True), tmp_path,
                 **small)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                                  "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_torchvision_checkpoints_load_with_identical_outputs(name, tmp_path):
    """The full-size models, as torchvision.models.segmentation builds them."""
    seg = oracle.torchvision_models().segmentation
    kwargs = {} if name.startswith("lraspp") else {"aux_loss": True}
    theirs = getattr(seg, name)(weights=None, weights_backbone=None, num_classes=21, **kwargs)
    _assert_same(name, theirs, tmp_path)


def test_torchvision_layout_rejects_a_foreign_file(tmp_path):
    tv = oracle.torchvision_models()
    path = tmp_path / "theirs.pth"
    torch.save(_small_resnet_segmenter(tv, "fcn").state_dict(), path)
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(create_model("deeplabv3_resnet50", backbone_overrides={"layers": (1, 1, 1, 1)}), path)


# -- the output contract in 1, 2 and 3 dims ---------------------------------------------------------

@pytest.mark.parametrize("name,spatial_dims", CASES)
def test_forward_backward_and_surface(name, spatial_dims):
    model = tiny_model(name, spatial_dims, in_channels=2, num_classes=3)
    s = _test_size(name, model, spatial_dims)
    x = torch.randn(2, 2, *[s] * spatial_dims)
    out_size = model.output_size(s)
    assert len(out_size) == spatial_dims
    out = model(x)  # training mode: torchvision's dict where there is an aux head
    if name in AUX:
        assert isinstance(out, dict) and set(out) == {"out", "aux"}
        assert out["aux"].shape == (2, 3, *out_size)
        loss = out["out"].square().mean() + out["aux"].square().mean()
        out = out["out"]
    else:
        assert isinstance(out, torch.Tensor)
        loss = out.square().mean()
    assert out.shape == (2, 3, *out_size)
    assert torch.isfinite(out).all()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not no_grad, f"parameters without gradient: {no_grad}"

    model.eval()
    with torch.no_grad():
        y = model(x)
        assert isinstance(y, torch.Tensor) and y.shape == (2, 3, *out_size)
        if name in AUX:
            model.return_aux = True
            both = model(x)
            assert set(both) == {"out", "aux"}
            torch.testing.assert_close(both["out"], y)

    cfg = model.default_cfg
    assert cfg["name"] == name and cfg["paper"] and cfg["year"]
    assert cfg["input_size"][0] == 2 and len(cfg["input_size"]) == 1 + spatial_dims
    assert len(cfg["mean"]) == len(cfg["std"]) == 2
    assert cfg["cam_layer"] in dict(model.named_modules())
    assert model.size_divisor >= 1 and s % model.size_divisor == 0


@pytest.mark.parametrize("name", SEGMENTERS)
def test_feature_info_matches_feature_maps(name):
    """Each stage's channels, and its reduction (growing the input by R grows the map by R / r)."""
    spatial_dims = 2
    model = tiny_model(name, spatial_dims).eval()
    modules = dict(model.named_modules())
    info = model.feature_info
    assert info and all(f.module in modules for f in info)
    captured = {}
    for f in info:
        modules[f.module].register_forward_hook(lambda m, a, o, k=f.module: captured.__setitem__(k, o))
    r_max = max(f.reduction for f in info)
    small = _test_size(name, model, spatial_dims)
    large = small + r_max * next(k for k in range(1, 64) if model.valid_size(small + k * r_max))

    def run(size):
        captured.clear()
        with torch.no_grad():
            model(torch.randn(1, 2, size, size))
        return {k: v.shape for k, v in captured.items()}

    a, b = run(small), run(large)
    for f in info:
        assert a[f.module][1] == b[f.module][1] == f.channels, f.module
        for p, q in zip(a[f.module][2:], b[f.module][2:]):
            assert q - p == (large - small) // f.reduction, f"{f.module}: {p} -> {q}, reduction {f.reduction}"


def test_full_size_output_shapes_on_the_meta_device():
    """Shapes of the full models without computing anything: Fig. 1 of each U-Net paper."""
    with torch.device("meta"):
        unet = create_model("unet")
        assert unet(torch.empty(1, 1, 572, 572)).shape == (1, 2, 388, 388)
        unet3d = create_model("unet3d")
        assert unet3d(torch.empty(1, 3, 116, 132, 132)).shape == (1, 3, 28, 44, 44)
        vnet = create_model("vnet")
        assert vnet(torch.empty(1, 1, 64, 128, 128)).shape == (1, 2, 64, 128, 128)
        fcn = create_model("fcn_resnet50").eval()
        assert fcn(torch.empty(1, 3, 520, 520)).shape == (1, 21, 520, 520)


# -- input sizes ------------------------------------------------------------------------------------

def test_valid_convolution_sizes_and_errors():
    unet = create_model("unet", widths=(4, 8, 16, 32, 64))
    assert unet.output_size(572) == (388, 388)
    assert unet.output_size((572, 188)) == (388, 4)
    with pytest.raises(ValueError, match=r"extent 570 on spatial axis 0: .*odd before a 2x2 pooling; "
                                         r"nearest valid: 556 or 572"):
        unet(torch.randn(1, 1, 570, 572))
    with pytest.raises(ValueError, match="nearest valid: 188"):
        unet.output_size(100)  # nothing below, the smallest above
    unet3d = create_model("unet3d", widths=(4, 8, 16, 32))
    assert unet3d.output_size((116, 132, 132)) == (28, 44, 44)


def test_padded_models_name_their_divisor():
    vnet = tiny_model("vnet", 3)
    assert vnet.size_divisor == 4  # three levels in the tiny V-Net: two 2x2x2 stride-2 convs
    with pytest.raises(ValueError, match=r"extent 18 .*18 is not a multiple of 4; nearest valid: 16 or 20; "
                                         r"or pad with .*pad_to_multiple\(x, 4\)"):
        vnet(torch.randn(1, 2, 16, 18, 16))
    assert create_model("vnet").size_divisor == 16
    fcn = tiny_model("fcn_resnet50")
    assert fcn.size_divisor == 1 and fcn.output_size((37, 41)) == (37, 41)


def test_input_errors_name_shapes():
    model = tiny_model("unet")
    with pytest.raises(ValueError, match=r"expects 2 input channel\(s\)"):
        model(torch.randn(1, 3, 44, 44))
    with pytest.raises(ValueError, match="rank 3"):
        model(torch.randn(1, 2, 44))


# -- U-Net over any encoder -------------------------------------------------------------------------

ENCODERS = [
    ("resnet34", 1), ("resnet34", 2), ("resnet34", 3),
    ("convnext_tiny", 2), ("mobilenet_v3_large", 2), ("efficientnet_b0", 3), ("densenet121", 2),
    ("vgg11", 1), ("xception", 2), ("vit_s_16", 2),
]


@pytest.mark.parametrize("encoder,spatial_dims", ENCODERS)
def test_unet_over_any_encoder(encoder, spatial_dims):
    tiny = get_entry(encoder).extra.get("tiny", {})
    model = create_model("unet", spatial_dims=spatial_dims, in_channels=3, num_classes=4, encoder=encoder,
                         encoder_overrides=tiny)
    info = model.encoder.feature_info
    reductions = [f.reduction for f in info]
    assert reductions == sorted(set(reductions))  # one skip per reduction
    assert model.size_divisor == reductions[-1]
    assert len(model.decoder) == len(info) - 1
    # The decoder is built from feature_info: each level takes the deeper output plus its skip.
    c = info[-1].channels
    for level, skip, deeper in zip(model.decoder, reversed(info[:-1]), reversed(info[1:])):
        assert level.convs.conv0.conv.in_channels == c + skip.channels
        assert level.scale == deeper.reduction // skip.reduction
        c = level.convs.conv0.conv.out_channels
    s = max(model.size_divisor, 32)
    x = torch.randn(2, 3, *[s] * spatial_dims)
    out = model(x)
    assert out.shape == (2, 4, *[s] * spatial_dims)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.classifier.parameters())


def test_encoder_unet_arguments():
    tiny = get_entry("resnet18").extra["tiny"]
    model = create_model("unet", encoder="resnet18", in_channels=3, encoder_overrides=tiny, decoder_channels=(8, 8, 8))
    assert [level.convs.conv1.conv.out_channels for level in model.decoder] == [8, 8, 8]
    assert model.model_config["overrides"]["encoder"] == "resnet18"
    with pytest.raises(ValueError, match="decoder_channels needs one width per skip level"):
        create_model("unet", encoder="resnet18", decoder_channels=(8,))
    with pytest.raises(ValueError, match="is a segment model"):
        create_model("unet", encoder="unet")
    with pytest.raises(ValueError, match="need an encoder"):
        create_model("unet", encoder_overrides={"widths": (8,)})


# -- export -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_export_of_an_encoder_unet_with_dynamic_sizes(tmp_path):
    """Dynamic batch, height and width, checked with ONNX Runtime at two other sizes (the
    exporter takes ~20-50 s on 2 cores)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from convnet.deploy.export import export_onnx, verify_onnx

    model = create_model("unet", in_channels=3, num_classes=4, encoder="resnet18",
                         encoder_overrides=get_entry("resnet18").extra["tiny"]).eval()
    path = export_onnx(model, tmp_path / "unet.onnx", torch.randn(2, 3, 64, 64))
    report = verify_onnx(path, model, [torch.randn(1, 3, 96, 128), torch.randn(3, 3, 128, 96)])
    assert [c["shape"] for c in report["cases"]] == [[1, 3, 96, 128], [3, 3, 128, 96]]
    assert report["max_rel_err"] < 1e-4, report


def test_torch_export_of_a_segmentation_model():
    model = tiny_model("fcn_resnet50", in_channels=3).eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x))
