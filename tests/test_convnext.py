"""ConvNeXt (V1, V2) and the modernisation path from ResNet-50: checkpoints of torchvision and
timm load and predict the same, GRN follows Woo et al.'s formula, and every step of Liu et al.'s
Fig. 2 builds with the FLOPs the paper reports."""
import dataclasses
import importlib

import pytest
import torch
from torch import nn

from conftest import tiny_model
from convnet import create_model, model_info
from convnet import layers as L
from convnet.analysis import summary
from convnet.models import get_entry
from convnet.models.convnext import ConvNeXt, ConvNeXtBlock, ConvNeXtSpec, modernisation_path
from oracle import DEVICES, assert_loads_same, timm, torchvision_models


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize_scales(model: nn.Module, seed: int = 0) -> nn.Module:
    """Layer scales start at 1e-6 and GRN's gamma/beta at 0, which would hide a converter that
    drops or misplaces whole residual branches: give every scale, norm affine and bias values
    of order one (biases small)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.ndim == 1 or "layer_scale" in name or name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.25)
    return model


def _macs(spec: ConvNeXtSpec, size: int = 224) -> int:
    with torch.device("meta"):
        model = ConvNeXt(spec)
    return summary(model, (3, size, size), device="meta", receptive_field=False).total_macs


# -- checkpoints of the reference implementations ----------------------------------------------

_ONE = dict(depths=(1, 1, 1, 1))


@pytest.mark.parametrize("device", DEVICES)
def test_torchvision_convnext_layout_loads(device, tmp_path):
    tv = torchvision_models()
    cfg = tv.convnext.CNBlockConfig
    theirs = tv.convnext.ConvNeXt([cfg(96, 192, 1), cfg(192, 384, 1), cfg(384, 768, 1), cfg(768, None, 1)])
    assert_loads_same("convnext_tiny", _randomize_scales(theirs), tmp_path, device=device, **_ONE)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"])
def test_torchvision_full_size_loads(name, tmp_path):
    theirs = getattr(torchvision_models(), name)()
    assert _count(theirs) == model_info(name)["params"]
    assert_loads_same(name, _randomize_scales(theirs), tmp_path)


@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"])
def test_torchvision_parameter_counts(name):
    with torch.device("meta"):
        theirs = getattr(torchvision_models(), name)()
    assert _count(theirs) == model_info(name)["params"] == get_entry(name).reference_params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,kwargs", [
    ("convnextv2_atto", {}),  # timm's atto-nano use 1x1 convs (conv_mlp=True)
    ("convnextv2_tiny", _ONE),  # the larger ones nn.Linear
    ("convnext_tiny", _ONE),  # timm's V1: layer scale as blocks.j.gamma
])
def test_timm_convnext_layouts_load(name, kwargs, device, tmp_path):
    theirs = timm().create_model(name, pretrained=False, **kwargs)
    assert_loads_same(name, _randomize_scales(theirs), tmp_path, device=device, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnextv2_tiny", "convnext_tiny"])
def test_timm_full_size_loads(name, tmp_path):
    theirs = timm().create_model(name, pretrained=False)
    assert_loads_same(name, _randomize_scales(theirs), tmp_path)


@pytest.mark.parametrize("name", ["convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano",
                                  "convnextv2_tiny", "convnextv2_base", "convnextv2_large", "convnextv2_huge",
                                  "convnext_xlarge"])
def test_timm_parameter_counts(name):
    with torch.device("meta"):
        theirs = timm().create_model(name, pretrained=False)
    assert _count(theirs) == model_info(name)["params"] == get_entry(name).reference_params


# -- the blocks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_global_response_norm_is_the_papers_formula(spatial_dims):
    """Woo et al. 2023, Eq. 1-3: G(X)_c = ||X_c||_2 over space, N_c = G_c / mean_c G,
    X'_c = gamma_c (X_c N_c) + beta_c + X_c, with gamma and beta starting at zero."""
    c = 6
    grn = L.GlobalResponseNorm(c)
    x = torch.randn((2, c) + (5,) * spatial_dims)
    assert torch.equal(grn(x), x)  # zero gamma and beta: the identity at initialisation
    with torch.no_grad():
        grn.gamma.copy_(torch.randn(c))
        grn.beta.copy_(torch.randn(c))
    flat = x.flatten(2)  # (B, C, S)
    g = flat.pow(2).sum(-1).sqrt()  # (B, C)
    n = g / (g.mean(1, keepdim=True) + 1e-6)
    expected = grn.gamma[:, None] * (flat * n[..., None]) + grn.beta[:, None] + flat
    torch.testing.assert_close(grn(x), expected.view_as(x))


def test_global_response_norm_matches_timm():
    timm()  # skips where timm cannot be imported
    theirs = importlib.import_module("timm.layers.grn").GlobalResponseNorm(8, channels_last=False)
    _randomize_scales(theirs)
    ours = L.GlobalResponseNorm(8)
    with torch.no_grad():
        ours.gamma.copy_(theirs.weight)
        ours.beta.copy_(theirs.bias)
    x = torch.randn(2, 8, 7, 5)
    torch.testing.assert_close(ours(x), theirs(x))


def test_convnext_block_order_and_widths():
    """Liu et al. 2022 Fig. 4: 7x7 depthwise, LN, 1x1 to 4C, GELU, 1x1 to C, layer scale 1e-6."""
    block = ConvNeXtBlock(2, 16, 16, spec=ConvNeXtSpec())
    assert block.depthwise.conv.groups == 16 and block.depthwise.conv.kernel_size == (7, 7)
    assert isinstance(block.depthwise.norm, L.ChannelLayerNorm) and isinstance(block.depthwise.act, nn.Identity)
    assert block.expand.conv.out_channels == 64 and isinstance(block.expand.act, nn.GELU)
    assert isinstance(block.expand.norm, nn.Identity) and isinstance(block.project.norm, nn.Identity)
    assert block.project.conv.out_channels == 16
    assert torch.all(block.layer_scale.gamma == 1e-6)
    assert isinstance(block.shortcut, nn.Identity) and isinstance(block.grn, nn.Identity)
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        block.layer_scale.gamma.fill_(1.0)
        branch = block.project(block.expand(block.depthwise(x)))
    torch.testing.assert_close(block(x), x + branch)


def test_convnextv2_block_has_grn_and_no_layer_scale():
    model = create_model("convnextv2_atto")
    block = model.stages[0].blocks[0]
    assert isinstance(block.grn, L.GlobalResponseNorm) and block.grn.gamma.numel() == 4 * 40
    assert isinstance(block.layer_scale, nn.Identity)
    assert not any("layer_scale" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_signals_and_volumes_reduce_by_32(spatial_dims):
    """Patchify stem /4 and three 2x2/2 downsamplings: /32 along every axis, in 1-D and 3-D too."""
    model = tiny_model("convnextv2_atto", spatial_dims).eval()
    x = torch.randn((2, 2) + (64,) * spatial_dims)
    feats = model.forward_features(x)
    assert feats.shape[2:] == (2,) * spatial_dims
    assert [f.reduction for f in model.feature_info] == [4, 8, 16, 32]
    assert model(x).shape == (2, 5)


# -- the modernisation path (Liu et al. 2022, §2, Fig. 2) -------------------------------------------

def test_path_starts_at_resnet50_and_ends_at_convnext_tiny():
    steps = modernisation_path()
    assert steps[-1][1] == get_entry("convnext_tiny").spec
    with torch.device("meta"):
        resnet = ConvNeXt(steps[0][1])
        tv_resnet = torchvision_models().resnet50()
    assert _count(resnet) == _count(tv_resnet) == 25_557_032


def test_each_path_step_changes_the_previous_one():
    steps = modernisation_path()
    for (_, before, _), (name, after, _) in zip(steps, steps[1:]):
        changed = {f.name for f in dataclasses.fields(before) if getattr(before, f.name) != getattr(after, f.name)}
        assert changed, f"step {name} changes nothing"


def test_path_steps_are_registered():
    steps = modernisation_path()
    for i, (name, spec, _) in enumerate(steps[:-1]):
        assert get_entry(f"convnext_path_{i:02d}_{name}").spec == spec


def test_path_flops_follow_figure_2():
    """Fig. 2's GFLOPs (multiply-adds at 224): 4.1, 4.5, 4.4, 2.4, 5.3, 4.6, 4.1, 4.2 ... 4.2, 4.5.
    Each step is measured (conv + linear MACs on the meta device) and lies within 0.06 G of the
    figure the paper prints with one decimal, so every rise and fall of the figure is reproduced."""
    measured = []
    for name, spec, paper_gflops in modernisation_path():
        gmacs = _macs(spec) / 1e9
        assert abs(gmacs - paper_gflops) < 0.06, f"{name}: {gmacs:.3f} GMACs, paper {paper_gflops}"
        measured.append(gmacs)
    # The trend: the stage ratio adds compute, depthwise conv nearly halves it, width 96 more than
    # doubles it back, the inverted bottleneck and moving the depthwise conv up take some away.
    assert measured[1] > measured[0] and measured[3] < 0.6 * measured[2] and measured[4] > 2 * measured[3]
    assert measured[5] < measured[4] and measured[6] < measured[5] and measured[7] > measured[6]


def test_convnext_tiny_and_resnet50_macs():
    """ConvNeXt-T 4.5 GFLOPs vs ResNet-50 4.1 (Liu et al. 2022 Table 1; torchvision: 4.46 and 4.09)."""
    tiny = _macs(get_entry("convnext_tiny").spec)
    resnet = _macs(modernisation_path()[0][1])
    assert round(tiny / 1e9, 2) == 4.46 and round(resnet / 1e9, 2) == 4.09

