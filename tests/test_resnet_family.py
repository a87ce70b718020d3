"""ResNet relatives: CIFAR ResNets (option A), pre-activation ResNets, ResNeXt, Wide ResNets,
SE-ResNets. Checkpoints of torchvision/timm load and predict the same; the architectural details
that make each paper's network what it is are checked on blocks."""
import pytest
import torch
from torch import nn

from conftest import tiny_model
from convnet import create_model, model_info
from convnet.weights import load_pretrained
from convnet.models.preact_resnet import PreActBasicBlock, PreActBottleneck
from convnet.models.resnet import Bottleneck, ZeroPadShortcut, se_channels
from oracle import DEVICES, assert_loads_same, randomize_batchnorm, timm, torchvision_models


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _call_order(block: nn.Module, x: torch.Tensor) -> list[str]:
    order = []
    hooks = [m.register_forward_hook(lambda mod, a, o, n=n: order.append(n))
             for n, m in block.named_children()]
    block(x)
    for h in hooks:
        h.remove()
    return order


def _depth(model: nn.Module, shortcuts: bool = False, linear: bool = True) -> int:
    """Weighted layers as a paper counts them: He et al. count every conv and the fc but not
    the 1x1 projections of shortcuts."""
    return sum(1 for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear) if linear else nn.Conv2d)
               and (shortcuts or "shortcut" not in n))


# -- checkpoints of the reference implementations ----------------------------------------------

# Full-size models cost seconds each on 2 cores: the fast tests use one block per stage (every
# kind of block, shortcut, SE gate and grouped conv is still there); full sizes are `slow`.
_ONE = dict(layers=(1, 1, 1, 1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,kwargs", [("resnext50_32x4d", dict(groups=32, width_per_group=4)),
                                         ("wide_resnet50_2", dict(width_per_group=128))])
def test_torchvision_resnext_and_wide_layouts_load(name, kwargs, device, tmp_path):
    tv = torchvision_models()
    theirs = tv.resnet.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], **kwargs)
    assert_loads_same(name, theirs, tmp_path, device=device, **_ONE)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnext50_32x4d", "wide_resnet50_2", "resnext101_32x8d", "wide_resnet101_2"])
def test_torchvision_full_size_loads(name, tmp_path):
    tv = torchvision_models()
    assert_loads_same(name, getattr(tv, name)(), tmp_path)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["seresnet50", "seresnext50_32x4d"])
def test_timm_seresnet_layouts_load(name, device, tmp_path):
    theirs = timm().create_model(name, pretrained=False, layers=[1, 1, 1, 1])
    assert_loads_same(name, theirs, tmp_path, device=device, **_ONE)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seresnet50", "seresnext50_32x4d", "seresnet152"])
def test_timm_seresnet_full_size_loads(name, tmp_path):
    theirs = timm().create_model(name, pretrained=False)
    assert _count(theirs) == model_info(name)["params"]
    assert_loads_same(name, theirs, tmp_path)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet50"])
def test_timm_resnetv2_layouts_load_into_preact_resnet(name, device, tmp_path):
    theirs = timm().create_model(name.replace("preact_resnet", "resnetv2_"), pretrained=False, layers=[1, 1, 1, 1])
    assert_loads_same(name, theirs, tmp_path, device=device, **_ONE)


@pytest.mark.slow
@pytest.mark.parametrize("name", [f"preact_resnet{n}" for n in (18, 34, 50, 101, 152)])
def test_timm_resnetv2_full_size_loads(name, tmp_path):
    theirs = timm().create_model(name.replace("preact_resnet", "resnetv2_"), pretrained=False)
    assert _count(theirs) == model_info(name)["params"]
    assert_loads_same(name, theirs, tmp_path)


def test_torchvision_resnet_does_not_load_into_preact(tmp_path):
    """Same widths, different unit: the converter must refuse rather than load something."""
    tv = torchvision_models()
    path = tmp_path / "r18.pth"
    torch.save(tv.resnet.ResNet(tv.resnet.BasicBlock, [1, 1, 1, 1]).state_dict(), path)
    with pytest.raises(ValueError, match="missing keys"):
        load_pretrained(create_model("preact_resnet18", **_ONE), path)


# -- CIFAR ResNets, option A (He et al. 2016, §4.2) -------------------------------------------

def test_cifar_resnet_counts_round_to_table6():
    table6 = {"resnet20_cifar": 0.27, "resnet32_cifar": 0.46, "resnet44_cifar": 0.66,
              "resnet56_cifar": 0.85, "resnet110_cifar": 1.7}
    for name, millions in table6.items():
        info = model_info(name)
        assert (info["num_classes"], info["input_size"]) == (10, 32)
        digits = 2 if millions < 1 else 1
        assert round(info["params"] / 1e6, digits) == millions, name
    assert model_info("resnet20_cifar")["params"] == 269_722


def test_cifar_resnet_depth_and_maps():
    for n, name in ((3, "resnet20_cifar"), (18, "resnet110_cifar")):
        model = create_model(name)
        assert _depth(model) == 6 * n + 2
        assert [len(s.blocks) for s in model.stages] == [n] * 3
        assert [f.channels for f in model.feature_info] == [16, 32, 64]
        assert [f.reduction for f in model.feature_info] == [1, 2, 4]  # maps 32, 16, 8 (§4.2)
    with torch.no_grad():
        assert create_model("resnet20_cifar").eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_shortcuts_are_parameter_free():
    model = create_model("resnet20_cifar")
    shortcuts = [b.shortcut for s in model.stages for b in s.blocks]
    pads = [s for s in shortcuts if isinstance(s, ZeroPadShortcut)]
    assert len(pads) == 2 and all(isinstance(s, (ZeroPadShortcut, nn.Identity)) for s in shortcuts)
    assert sum(_count(s) for s in shortcuts) == 0
    # Option B would add a 1x1 conv + BN at each of the two transitions: 16*32+64 + 32*64+128.
    assert model_info("resnet20_cifar")["params"] + 2_752 == _count(create_model("resnet20_cifar", shortcut="B"))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_option_a_subsamples_and_pads_zeros(spatial_dims):
    x = torch.randn(2, 16, *([7] * spatial_dims))
    out = ZeroPadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, *([4] * spatial_dims))  # ceil(7 / 2), as the 3x3/2 conv
    sub = x[(slice(None), slice(None)) + (slice(None, None, 2),) * spatial_dims]
    torch.testing.assert_close(out[:, 8:24], sub)
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    # The block's two paths meet on the same grid.
    block = tiny_model("resnet20_cifar", spatial_dims).stages[1].blocks[0]
    assert isinstance(block.shortcut, ZeroPadShortcut)
    c_in, c_out = block.shortcut.in_channels, block.shortcut.out_channels
    assert c_out > c_in
    assert block(torch.randn(1, c_in, *([7] * spatial_dims))).shape == (1, c_out, *([4] * spatial_dims))


# -- pre-activation ResNets (He et al. ECCV 2016) ----------------------------------------------

def test_preact_basic_unit_order_and_shared_preactivation():
    model = tiny_model("preact_resnet18").eval()
    block = model.stages[1].blocks[0]  # changes shape: projection shortcut
    assert isinstance(block, PreActBasicBlock) and isinstance(block.shortcut, nn.Conv2d)
    x = torch.randn(2, 8, 9, 9)
    order = _call_order(block, x)
    assert order.index("norm1") < order.index("act1") < order.index("conv1")
    assert order.index("conv1") < order.index("norm2") < order.index("act2") < order.index("conv2")
    seen = {}
    h1 = block.act1.register_forward_hook(lambda m, a, o: seen.__setitem__("pre", o.clone()))
    h2 = block.shortcut.register_forward_hook(lambda m, a, o: seen.__setitem__("short_in", a[0].clone()))
    with torch.no_grad():
        out = block(x)
    h1.remove(), h2.remove()
    torch.testing.assert_close(seen["short_in"], seen["pre"])  # BN-ReLU before the split
    assert (out < 0).any()  # nothing after the addition: no ReLU on the output


def test_preact_identity_unit_is_x_plus_branch():
    model = tiny_model("preact_resnet50", layers=(1, 2, 1, 1)).eval()
    block = model.stages[0].blocks[0]
    assert isinstance(block, PreActBottleneck)
    x = torch.randn(2, 8, 6, 6)
    assert _call_order(block, x)[:3] == ["norm1", "act1", "shortcut"]
    block = model.stages[1].blocks[1]  # identity shortcut
    x = torch.randn(2, 64, 5, 5)
    with torch.no_grad():
        branch = block.conv3(block.act3(block.norm3(block.conv2(block.act2(block.norm2(
            block.conv1(block.act1(block.norm1(x.clone())))))))))
        torch.testing.assert_close(block(x.clone()), x + branch)


def test_preact_final_activation_before_pooling():
    model = tiny_model("preact_resnet18").eval()
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        last = model.stages[-1](model.stages[-2](model.stages[-3](model.stages[-4](model.stem(x)))))
    assert (last < 0).any() and (feats >= 0).all()
    torch.testing.assert_close(feats, model.final_act(model.final_norm(last)))
    assert model.default_cfg["cam_layer"] == "final_act"


def test_preact_cifar_depths_and_counts():
    """9n + 2 layers; the paper's 1.7M and 10.2M (the latter without its 149,216 BN params)."""
    for name, n, total, paper in (("preact_resnet164_cifar", 18, 1_703_258, 1.7),
                                  ("preact_resnet1001_cifar", 111, 10_327_706, 10.2)):
        with torch.device("meta"):
            model = create_model(name)
        assert _depth(model) == 9 * n + 2
        assert _count(model) == total
        norms = sum(_count(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        assert round((total - norms) / 1e6, 1) == paper
        assert [f.channels for f in model.feature_info] == [64, 128, 256]
        # Authors' code: the stride sits in the first 1x1 conv of a unit.
        assert model.stages[1].blocks[0].conv1.stride == (2, 2)


# -- Wide ResNets --------------------------------------------------------------------------------

def test_wrn28_10_widths_and_depth():
    with torch.device("meta"):
        model = create_model("wrn28_10_cifar")
    # WRN-n-k counts convolutions only, the three 1x1 projections included: n = 6N + 4.
    assert _depth(model, shortcuts=True, linear=False) == 28
    assert [len(s.blocks) for s in model.stages] == [4, 4, 4]  # (28 - 4) / 6
    assert [s.blocks[-1].conv2.out_channels for s in model.stages] == [160, 320, 640]  # 16k, 32k, 64k
    assert model.stem.conv.out_channels == 16
    assert _count(model) == 36_479_194 and round(_count(model) / 1e6, 1) == 36.5
    assert model.num_classes == 10


def test_wrn_dropout_sits_between_the_convs():
    model = tiny_model("wrn28_10_cifar", block_dropout=0.3)
    block = model.stages[0].blocks[0]
    assert isinstance(block.drop, nn.Dropout) and block.drop.p == 0.3
    order = _call_order(block, torch.randn(2, block.conv1.in_channels, 8, 8))
    assert order.index("act2") < order.index("drop") < order.index("conv2")
    assert isinstance(tiny_model("wrn28_10_cifar").stages[0].blocks[0].drop, nn.Identity)


def test_torchvision_wide_resnet_inner_width():
    with torch.device("meta"):
        model = create_model("wide_resnet50_2")
    widths = [s.blocks[0].conv2.conv.out_channels for s in model.stages]
    assert widths == [128, 256, 512, 1024]  # twice resnet50's bottleneck
    assert model.feature_info[-1].channels == 2048


# -- SE-ResNets (Hu et al. 2018) ----------------------------------------------------------------

def test_se_reduction_is_sixteen():
    with torch.device("meta"):
        model = create_model("seresnet50")
    for stage, out in zip(model.stages, (256, 512, 1024, 2048)):
        se = stage.blocks[0].se
        assert (se.fc1.in_channels, se.fc1.out_channels) == (out, out // 16)
    assert se_channels(256, 1 / 16) == 16 and se_channels(32, 1 / 16) == 8


def test_se_gates_the_branch_before_the_addition():
    model = randomize_batchnorm(tiny_model("seresnet50")).eval()
    block = model.stages[1].blocks[0]
    assert isinstance(block, Bottleneck)
    x = torch.randn(2, 32, 6, 6)
    order = _call_order(block, x)
    assert order.index("conv3") < order.index("se") < order.index("act")
    with torch.no_grad():
        block.se.fc2.bias.fill_(-1e4)  # gate closed: only the shortcut reaches the sum
        torch.testing.assert_close(block(x), torch.relu(block.shortcut(x)))
        block.se.fc2.bias.fill_(1e4)  # gate open: the plain bottleneck
        plain = torch.relu(block.conv3(block.conv2(block.conv1(x))) + block.shortcut(x))
        torch.testing.assert_close(block(x), plain)


# -- shared behaviour ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet20_cifar", "preact_resnet50", "wrn28_10_cifar", "seresnext50_32x4d"])
def test_stochastic_depth_grows_linearly(name):
    model = tiny_model(name, drop_path_rate=0.2, layers=(2, 2, 2) if "cifar" in name else (2, 2, 2, 2))
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates)


@pytest.mark.parametrize("name", ["resnet20_cifar", "preact_resnet1001_cifar", "seresnet50"])
@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_other_dims_forward(name, spatial_dims):
    model = tiny_model(name, spatial_dims, in_channels=1, num_classes=4).eval()
    with torch.no_grad():
        size = max(16, model.min_spatial_size())  # SE-ResNet-50 needs 32, its total stride
        assert model(torch.randn(2, 1, *([size] * spatial_dims))).shape == (2, 4)


def test_drop_block_sits_in_the_last_two_stages_and_is_identity_at_eval():
    """Ghiasi et al. 2018, §4.1: DropBlock (block_size 7) in groups 3 and 4 of ResNet-50."""
    import convnet.layers as L

    plain = create_model("resnet18", layers=(1, 1, 1, 1))
    dropped = create_model("resnet18", layers=(1, 1, 1, 1), drop_block_rate=0.2)
    dropped.load_state_dict(plain.state_dict())  # DropBlock has no parameters
    kinds = [type(stage.blocks[0].drop_block) for stage in dropped.stages]
    assert kinds == [torch.nn.Identity, torch.nn.Identity, L.DropBlock, L.DropBlock]
    assert dropped.stages[3].blocks[0].drop_block.block_size == 7
    x = torch.randn(2, 3, 64, 64)
    plain.eval(), dropped.eval()
    assert torch.equal(plain(x), dropped(x))
    plain.train(), dropped.train()
    torch.manual_seed(0)
    a = plain(x)
    torch.manual_seed(0)
    assert not torch.allclose(a, dropped(x))

