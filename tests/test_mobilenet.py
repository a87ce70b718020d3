"""MobileNet V1/V2/V3: reference checkpoints load and predict the same, the papers' parameter and
multiply-add figures are recomputed, the blocks are what each paper describes, and the depthwise
separable saving (Howard et al. 2017, §3.1) is counted on real layers."""
import pytest
import torch
from torch import nn

from conftest import tiny_model
from convnet import create_model, model_info
from convnet import layers as L
from convnet.analysis import summary
from convnet.analysis.formulas import separable_conv_cost
from convnet.models.mobilenet import MobileNet
from oracle import DEVICES, assert_loads_same, timm, torchvision_models


def _macs(name: str, size: int = 224, **overrides) -> int:
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return summary(model, (3, size, size), receptive_field=False).total_macs


def _blocks(model: MobileNet) -> list[nn.Module]:
    return [b for stage in model.stages for b in stage.blocks]


# -- the separable saving, formula against counted layers ---------------------------------------

@pytest.mark.parametrize("spatial_dims,size", [(2, 14), (1, 28), (3, 6)])
def test_separable_cost_matches_counted_layers(spatial_dims, size):
    d, c = spatial_dims, 256
    cost = separable_conv_cost(c, c, 3, size, spatial_dims=d)
    standard = L.conv(d, c, c, 3, bias=False)
    separable = nn.Sequential(L.conv(d, c, c, 3, groups=c, bias=False), L.conv(d, c, c, 1, bias=False))
    for model, kind in ((standard, "standard"), (separable, "separable")):
        s = summary(model, (c,) + (size,) * d, device="meta", receptive_field=False)
        assert s.output_shape == (c,) + (size,) * d  # "same" padding, as the formula assumes
        assert s.total_params == cost[f"{kind}_params"]
        assert s.total_macs == cost[f"{kind}_macs"]
    assert cost["ratio"] == pytest.approx(1 / c + 1 / 3 ** d)
    assert cost["ratio"] == pytest.approx(cost["paper_ratio"])


def test_separable_saving_is_8_to_9x_for_3x3_256():
    cost = separable_conv_cost(256, 256, 3, 14)
    assert 8 < cost["saving"] < 9  # §3.1: "8 to 9 times less computation"
    assert cost["saving"] == pytest.approx(1 / (1 / 256 + 1 / 9))
    # A wider output makes 1/N vanish: the saving tends to k^2 = 9.
    assert separable_conv_cost(256, 4096, 3, 14)["saving"] > cost["saving"]
    with pytest.raises(ValueError, match="must be >= 1"):
        separable_conv_cost(0, 256, 3, 14)


# -- checkpoints of the reference implementations (random init, input 64) ------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"])
def test_torchvision_mobilenet_loads(name, device, tmp_path):
    tv = torchvision_models()
    assert_loads_same(name, getattr(tv, name)(), tmp_path, device=device)


@pytest.mark.parametrize("name,width", [("mobilenet_v2", 0.5), ("mobilenet_v3_large", 0.75)])
def test_torchvision_width_multiplier_rounding_matches(name, width, tmp_path):
    # The rounding of every width (make_divisible, the unthinned last conv of V2) must agree.
    tv = torchvision_models()
    assert_loads_same(name, getattr(tv, name)(width_mult=width), tmp_path, width_mult=width)


@pytest.mark.parametrize("device", DEVICES)
def test_timm_mobilenetv1_100_loads(device, tmp_path):
    theirs = timm().create_model("mobilenetv1_100", pretrained=False)
    assert sum(p.numel() for p in theirs.parameters()) == model_info("mobilenet_v1")["params"]
    assert_loads_same("mobilenet_v1", theirs, tmp_path, device=device)


@pytest.mark.parametrize("name,width", [("mobilenet_v1_025", 0.25), ("mobilenet_v1_075", 0.75)])
def test_timm_mobilenet_v1_widths_load(name, width, tmp_path):
    timm()  # skips where timm cannot be imported
    from timm.models.efficientnet import _gen_mobilenet_v1

    theirs = _gen_mobilenet_v1("mobilenetv1_100", channel_multiplier=width)
    assert sum(p.numel() for p in theirs.parameters()) == model_info(name)["reference_params"]
    assert_loads_same(name, theirs, tmp_path)


def test_v3_layout_does_not_load_into_v2(tmp_path):
    tv = torchvision_models()
    path = tmp_path / "v3.pth"
    torch.save(tv.mobilenet_v3_small().state_dict(), path)
    from convnet.weights import load_pretrained
    with pytest.raises(ValueError, match="missing keys"):
        load_pretrained(create_model("mobilenet_v2"), path)


# -- the papers' figures ------------------------------------------------------------------------

def test_mobilenet_v2_is_0_30_gmacs_at_224():
    # Sandler et al. 2018 Table 4: 300M multiply-adds; torchvision: 0.30 GFLOPS (i.e. GMACs).
    macs = _macs("mobilenet_v2")
    assert round(macs / 1e9, 2) == 0.30
    assert round(macs / 1e6) in (300, 301)


@pytest.mark.parametrize("name,millions_params,millions_macs", [
    ("mobilenet_v1", 4.2, 569), ("mobilenet_v1_075", 2.6, 325),
    ("mobilenet_v1_050", 1.3, 149), ("mobilenet_v1_025", 0.5, 41)])
def test_mobilenet_v1_width_multipliers_match_table6(name, millions_params, millions_macs):
    # Howard et al. 2017 Table 6: 1.0 / 0.75 / 0.5 / 0.25 MobileNet-224.
    assert round(model_info(name)["params"] / 1e6, 1) == millions_params
    assert round(_macs(name) / 1e6) == millions_macs


def test_mobilenet_v1_resolution_multiplier_matches_table7():
    # Table 7: 1.0 MobileNet at 192 / 160 / 128: 418M / 290M / 186M mult-adds (the table
    # truncates as often as it rounds: we count 290.7M at 160).
    for size, millions in ((192, 418), (160, 290), (128, 186)):
        assert abs(_macs("mobilenet_v1", size) / 1e6 - millions) < 1


@pytest.mark.parametrize("name,gmacs,paper_mmacs,paper_params", [
    ("mobilenet_v3_large", 0.22, 219, 5.4), ("mobilenet_v3_small", 0.06, 56, 2.5)])
def test_mobilenet_v3_cost(name, gmacs, paper_mmacs, paper_params):
    # torchvision's GFLOPS column (MACs); Howard et al. 2019 Table 3 (MAdds, params); the paper's
    # TF counting differs from ours by about 1% (it leaves out parts of the SE modules).
    macs = _macs(name)
    assert round(macs / 1e9, 2) == gmacs
    assert abs(macs / 1e6 - paper_mmacs) / paper_mmacs < 0.02
    assert abs(model_info(name)["params"] / 1e6 - paper_params) / paper_params < 0.02  # 5.48M for 5.4M


# -- the blocks each paper describes -------------------------------------------------------------

def test_mobilenet_v1_is_28_layers_of_separable_units():
    model = create_model("mobilenet_v1")
    blocks = _blocks(model)
    assert len(blocks) == 13 and all(isinstance(b, L.DepthwiseSeparable) for b in blocks)
    # Table 1 / §4: "Counting depthwise and pointwise convolutions as separate layers, MobileNet has 28 layers".
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 28
    for b in blocks:
        assert b.depthwise.conv.groups == b.depthwise.conv.in_channels
        assert b.pointwise.conv.kernel_size == (1, 1)
    assert [f.reduction for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [f.channels for f in model.feature_info] == [64, 128, 256, 512, 1024]
    assert create_model("mobilenet_v1", act_layer="relu").stem.act.__class__ is nn.ReLU  # the paper's Fig. 3


def test_mobilenet_v2_blocks_follow_table2():
    model = create_model("mobilenet_v2")
    blocks = _blocks(model)
    assert len(blocks) == 17  # sum of n in Table 2
    first = blocks[0]
    assert first.expand is None and first.depthwise.conv.in_channels == 32  # t = 1: no expansion
    for b in blocks[1:]:
        # t = 6: expansion to 6x the input, then a linear (activation-free) projection.
        assert b.expand.conv.out_channels == 6 * b.expand.conv.in_channels
        assert isinstance(b.expand.act, nn.ReLU6) and isinstance(b.project.act, nn.Identity)
    residual = [b.use_residual for b in blocks]
    assert sum(residual) == 10  # the repeats of each row (n - 1 summed) keep shape
    assert model.final_conv.conv.out_channels == 1280
    assert [f.reduction for f in model.feature_info] == [2, 4, 8, 16, 32]
    # Widths below one do not thin the last layer (§6.1); above one they do.
    assert create_model("mobilenet_v2", width_mult=0.5).final_conv.conv.out_channels == 1280
    assert create_model("mobilenet_v2", width_mult=1.4).final_conv.conv.out_channels == 1792


def test_mobilenet_v3_large_follows_table1():
    model = create_model("mobilenet_v3_large")
    blocks = _blocks(model)
    assert len(blocks) == 15
    with_se = [i for i, b in enumerate(blocks) if b.se is not None]
    assert with_se == [3, 4, 5, 10, 11, 12, 13, 14]
    for i in with_se:  # SE squeezes to 1/4 of the expansion (§5.3), gated by a hard sigmoid
        se = blocks[i].se
        assert se.fc1.out_channels == L.make_divisible(se.fc1.in_channels / 4)
        assert isinstance(se.gate, nn.Hardsigmoid) and isinstance(se.act, nn.ReLU)
    acts = [type(b.depthwise.act) for b in blocks]
    assert acts == [nn.ReLU] * 6 + [nn.Hardswish] * 9  # h-swish in the second half only (§5.2)
    assert [b.depthwise.conv.kernel_size[0] for b in blocks].count(5) == 6
    assert isinstance(model.stem.act, nn.Hardswish) and model.stem.conv.out_channels == 16
    assert (model.final_conv.conv.out_channels, model.head.hidden.out_features) == (960, 1280)
    assert model.stem.norm.eps == 1e-3 and blocks[0].project.norm.momentum == 0.01


def test_mobilenet_v3_head_runs_after_the_pool():
    model = create_model("mobilenet_v3_small", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        pooled = feats.mean((2, 3))
        manual = model.head.fc(nn.functional.hardswish(model.head.hidden(pooled)))
    assert feats.shape == (2, 576, 2, 2) and pre.shape == (2, 1024)
    torch.testing.assert_close(model(x), manual)
    model.reset_classifier(0)
    assert model(x).shape == (2, 1024)


@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_tiny_mobilenets_keep_their_blocks_in_other_dims(spatial_dims):
    for name in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large"):
        model = tiny_model(name, spatial_dims)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv1d if spatial_dims == 1 else nn.Conv3d)]
        assert convs and any(c.groups > 1 and c.groups == c.in_channels for c in convs), name
        out = model(torch.randn(2, 2, *([32] * spatial_dims)))
        assert out.shape == (2, 5)
