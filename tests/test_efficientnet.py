"""EfficientNet B0-B7 and V2-S/M/L: compound scaling (formula, released table, FLOPs ~ 2^phi),
the block details of the papers, MAC pins, and torchvision checkpoints loading with equal logits."""
import math

import pytest
import torch
from conftest import tiny_model
from oracle import DEVICES, assert_loads_same, torchvision_models
from torch import nn

from convnet import create_model
from convnet.analysis import summary
from convnet.layers import InvertedResidual, make_divisible
from convnet.models import get_entry
from convnet.models.efficientnet import (
    EFFICIENTNET_B0,
    EfficientNet,
    EfficientNetSpec,
    MBStage,
    compound_scale,
)

# The released EfficientNet coefficients (width, depth, resolution, dropout), typed here from the
# authors' efficientnet_builder.py params_dict (the same as torchvision's efficientnet_b0..b7).
RELEASED = {
    0: (1.0, 1.0, 224, 0.2), 1: (1.0, 1.1, 240, 0.2), 2: (1.1, 1.2, 260, 0.3), 3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4), 5: (1.6, 2.2, 456, 0.4), 6: (1.8, 2.6, 528, 0.5), 7: (2.0, 3.1, 600, 0.5),
}


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def _macs(model: nn.Module, size: int) -> int:
    return summary(model, (3, size, size), receptive_field=False).total_macs


# -- compound scaling ---------------------------------------------------------------------------

@pytest.mark.parametrize("phi", [0, 1, 2.5, 4, 7, 9])
def test_compound_scale_formula(phi):
    s = compound_scale(phi, released=False)
    assert not s.released and s.drop_rate is None
    assert s.depth == pytest.approx(1.2 ** phi)
    assert s.width == pytest.approx(1.1 ** phi)
    assert s.resolution_mult == pytest.approx(1.15 ** phi)
    assert s.resolution == round(224 * 1.15 ** phi)
    # Other bases, and phi outside the released table, always use the formula.
    t = compound_scale(phi, alpha=1.3, beta=1.05, gamma=1.2, base_resolution=100)
    assert not t.released
    assert (t.depth, t.width, t.resolution) == pytest.approx((1.3 ** phi, 1.05 ** phi, round(100 * 1.2 ** phi)))


def test_paper_coefficients_double_flops_per_phi():
    # §3.3: alpha * beta^2 * gamma^2 ~ 2 so that FLOPs grow by ~2^phi.
    assert 1.2 * 1.1 ** 2 * 1.15 ** 2 == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("phi", range(8))
def test_compound_scale_reproduces_released_table(phi):
    width, depth, resolution, dropout = RELEASED[phi]
    s = compound_scale(phi)
    assert s.released
    assert (s.width, s.depth, s.resolution, s.drop_rate) == (width, depth, resolution, dropout)
    # The table is the formula rounded by hand: width and resolution within 15% of beta^phi and
    # 224 gamma^phi (worst: B3, 300 px vs 341); depth grows slower than alpha^phi, 0.81-1.0 x
    # (worst: B3, 1.4 vs 1.73).
    f = compound_scale(phi, released=False)
    for table, formula in ((s.width, f.width), (s.resolution, f.resolution)):
        assert abs(math.log(table / formula)) < math.log(1.15), (phi, table, formula)
    assert 0.8 <= s.depth / f.depth <= 1.0, (phi, s.depth, f.depth)


def test_compound_scale_rounds_a_users_base_spec():
    base = EfficientNetSpec((MBStage("mbconv", 1, 3, 1, 20, 1), MBStage("mbconv", 6, 3, 2, 36, 3)),
                            stem_width=32, head_width=100)
    s = compound_scale(1.5, base=base)
    w, d = 1.1 ** 1.5, 1.2 ** 1.5  # 1.154, 1.315
    assert (s.width, s.depth) == pytest.approx((w, d))
    # make_divisible(c * w, 8): 20 * 1.154 = 23.1 -> 24, 36 * 1.154 = 41.5 -> 40, 32 -> 40,
    # 100 -> 115.4 -> 112; ceil(n * d): 1 -> 2, 3 -> 4.
    assert [st.out_channels for st in s.spec.stages] == [24, 40]
    assert [st.layers for st in s.spec.stages] == [2, 4]
    assert (s.spec.stem_width, s.spec.head_width) == (40, 112)
    assert (s.spec.width_mult, s.spec.depth_mult) == (1.0, 1.0)
    assert s.spec.drop_rate == base.drop_rate  # the formula keeps the base's dropout
    model = EfficientNet(s.spec, num_classes=3)
    assert [len(st.blocks) for st in model.stages] == [2, 4]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    # Scaling the spec ahead of time and scaling it while building agree.
    lazy = EfficientNet(EfficientNetSpec(base.stages, 32, 100, width_mult=w, depth_mult=d), num_classes=3)
    assert [p.shape for p in lazy.parameters()] == [p.shape for p in model.parameters()]


def test_stages_override_round_trips_through_json():
    model = tiny_model("efficientnet_b0", 2)
    stages = model.model_config["overrides"]["stages"]
    assert stages == [list(row) for row in get_entry("efficientnet_b0").extra["tiny"]["stages"]]
    again = create_model("efficientnet_b0", in_channels=2, num_classes=5,
                         **{**model.model_config["overrides"], "stages": stages})
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


@pytest.mark.parametrize("phi", range(8))
def test_b0_to_b7_are_b0_compound_scaled(phi):
    width, depth, resolution, dropout = RELEASED[phi]
    entry = get_entry(f"efficientnet_b{phi}")
    assert entry.input_size == resolution
    spec = entry.spec
    assert spec.drop_rate == dropout
    assert [s.out_channels for s in spec.stages] == [make_divisible(s.out_channels * width) for s in EFFICIENTNET_B0.stages]
    assert [s.layers for s in spec.stages] == [math.ceil(s.layers * depth) for s in EFFICIENTNET_B0.stages]
    assert spec.stem_width == make_divisible(32 * width)


def test_b7_widths_and_depths():
    # B7: 2x width (head 4 * 640 = 2560), 3.1x depth (55 blocks from B0's 16).
    model = _meta("efficientnet_b7")
    assert model.feature_info[-1].channels == 2560
    assert sum(len(s.blocks) for s in model.stages) == 55


# Measured FLOPs (multiply-accumulates, conv + linear, convnet.analysis.summary at each model's
# resolution) relative to B0: released B1-B7 give 1.78, 2.58, 4.74, 11.39, 26.61, 49.42, 97.83,
# i.e. 0.59-0.89 x 2^phi (the released coefficients sit below the formula for small phi);
# the formula's models give 2.57, 4.69, 8.43, 16.38, 29.48, 52.09, 102.81, i.e. 0.80-1.29 x 2^phi
# and 1.04-1.34 x (alpha beta^2 gamma^2)^phi = 1.92^phi (rounding up of widths/depths, the stem
# and head scale less than d * w^2 * r^2).
MEASURED_RELEASED = [1.0, 1.78, 2.58, 4.74, 11.39, 26.61, 49.42, 97.83]
MEASURED_FORMULA = [1.0, 2.57, 4.69, 8.43, 16.38, 29.48, 52.09, 102.81]


def test_released_models_flops_grow_about_2_to_the_phi():
    b0 = _macs(_meta("efficientnet_b0"), 224)
    ratios = [_macs(_meta(f"efficientnet_b{phi}"), RELEASED[phi][2]) / b0 for phi in range(8)]
    assert ratios == pytest.approx(MEASURED_RELEASED, rel=0.01)
    for phi, ratio in enumerate(ratios):
        # "about 2^phi": within a factor of 2 (0.5 <= ratio / 2^phi <= 2), and monotone.
        assert 0.5 <= ratio / 2 ** phi <= 2.0, (phi, ratio)
    assert ratios == sorted(ratios)


@pytest.mark.slow
def test_formula_models_flops_grow_about_2_to_the_phi():
    b0 = _macs(_meta("efficientnet_b0"), 224)
    ratios = []
    for phi in range(8):
        s = compound_scale(phi, base=EFFICIENTNET_B0, released=False)
        with torch.device("meta"):
            model = EfficientNet(s.spec)
        ratios.append(_macs(model, s.resolution) / b0)
    assert ratios == pytest.approx(MEASURED_FORMULA, rel=0.01)
    for phi, ratio in enumerate(ratios):
        assert 0.75 <= ratio / 2 ** phi <= 1.35, (phi, ratio)  # within 35% of 2^phi
        assert 1.0 <= ratio / 1.92 ** phi <= 1.4, (phi, ratio)


def test_efficientnet_b0_gmacs_at_224():
    # Tan & Le 2019, Table 2: B0 0.39B FLOPs (multiply-adds).
    macs = summary(_meta("efficientnet_b0"), (3, 224, 224), receptive_field=False).total_macs
    assert round(macs / 1e9, 2) == 0.39


# -- architecture -------------------------------------------------------------------------------

def test_b0_blocks_follow_table_1():
    model = create_model("efficientnet_b0")
    assert [i.reduction for i in model.feature_info] == [2, 4, 8, 16, 16, 32, 32, 32]
    assert [i.channels for i in model.feature_info] == [16, 24, 40, 80, 112, 192, 320, 1280]
    first = model.stages[0].blocks[0]  # MBConv1: no expansion
    assert first.expand is None and first.depthwise.conv.kernel_size == (3, 3)
    assert model.stages[2].blocks[0].depthwise.conv.kernel_size == (5, 5)  # MBConv6 k5x5
    block = model.stages[1].blocks[0]  # 16 -> 96 (x6) -> 24
    assert block.expand.conv.out_channels == 96 and block.project.conv.out_channels == 24
    # SE bottleneck: a quarter of the block *input* (16 // 4 = 4), SiLU inside, sigmoid gate.
    assert block.se.fc1.out_channels == 4 and isinstance(block.se.act, nn.SiLU)
    assert isinstance(block.se.gate, nn.Sigmoid)
    assert isinstance(model.stem.act, nn.SiLU) and isinstance(block.expand.act, nn.SiLU)
    assert isinstance(block.project.act, nn.Identity)  # linear bottleneck
    # torchvision's BN: PyTorch defaults for B0-B4, TF's eps 1e-3 / momentum 0.01 for B5-B7.
    assert (model.stem.norm.eps, model.stem.norm.momentum) == (1e-5, 0.1)
    b5 = _meta("efficientnet_b5")
    assert (b5.stem.norm.eps, b5.stages[3].blocks[0].project.norm.eps, b5.stem.norm.momentum) == (1e-3, 1e-3, 0.01)


def test_stochastic_depth_grows_linearly():
    model = _meta("efficientnet_b0")
    blocks = [b for s in model.stages for b in s.blocks]
    probs = [b.drop_path.drop_prob if b.drop_path is not None else None for b in blocks]
    for i, (b, p) in enumerate(zip(blocks, probs)):
        if b.use_residual and i:
            assert p == pytest.approx(0.2 * i / len(blocks))
        else:
            assert p is None


def test_v2_s_fused_mbconv_in_the_early_stages():
    model = create_model("efficientnet_v2_s")
    assert model.stem.conv.out_channels == 24 and model.feature_info[-1].channels == 1280
    assert model.stem.norm.eps == 1e-3
    for i, stage in enumerate(model.stages):
        for block in stage.blocks:
            fused = block.depthwise is None
            assert fused == (i < 3), i  # Table 4: Fused-MBConv in stages 1-3
            assert (block.se is None) == fused  # SE only in MBConv stages
    one = model.stages[0].blocks[0]  # Fused-MBConv1: a single 3x3 conv with BN and SiLU
    assert one.expand is None and one.project.conv.kernel_size == (3, 3) and isinstance(one.project.act, nn.SiLU)
    four = model.stages[1].blocks[0]  # Fused-MBConv4: 3x3/2 24 -> 96, then 1x1 96 -> 48
    assert four.expand.conv.kernel_size == (3, 3) and four.expand.conv.stride == (2, 2)
    assert (four.expand.conv.out_channels, four.project.conv.out_channels) == (96, 48)
    assert model.stages[3].blocks[0].se.fc1.out_channels == 64 // 4
    assert [len(s.blocks) for s in model.stages] == [2, 4, 4, 6, 9, 15]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_tiny_runs_in_1d_and_3d(name, spatial_dims):
    model = tiny_model(name, spatial_dims)
    assert all(isinstance(b, InvertedResidual) for s in model.stages for b in s.blocks)
    x = torch.randn(2, 2, *([32] * spatial_dims))
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()


# -- torchvision checkpoints --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_torchvision_checkpoints_load(name, device, tmp_path):
    theirs = getattr(torchvision_models(), name)()
    assert sum(p.numel() for p in theirs.parameters()) == get_entry(name).reference_params
    assert_loads_same(name, theirs, tmp_path, input_size=64, device=device)


@pytest.mark.slow
@pytest.mark.parametrize("name", [f"efficientnet_b{i}" for i in range(1, 8)] + ["efficientnet_v2_m", "efficientnet_v2_l"])
def test_torchvision_checkpoints_load_full_family(name, tmp_path):
    theirs = getattr(torchvision_models(), name)()
    assert sum(p.numel() for p in theirs.parameters()) == get_entry(name).reference_params
    assert_loads_same(name, theirs, tmp_path, input_size=64)
