"""Inception-v4, Inception-ResNet-v2 (Szegedy et al. 2017) and Xception (Chollet 2017): timm's
checkpoints load and predict the same; residual scaling where §3.3 puts it; the N-d
factorisations; Xception's depthwise separable convolutions."""
import pytest
import torch
from conftest import tiny_model
from oracle import DEVICES, assert_loads_same, timm
from torch import nn

from convnet import create_model
from convnet import layers as L
from convnet.models.inception_v4 import InceptionResNetBlock
from convnet.models.xception import SeparableConv
from convnet.weights.keymaps import convert

CONVS = L.CONV_TYPES


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):  # full size, no memory
        return create_model(name, **kw)


PAIRS = [("inception_v4", "inception_v4"), ("inception_resnet_v2", "inception_resnet_v2"),
         ("xception", "legacy_xception")]


@pytest.mark.parametrize("name,theirs", PAIRS)
def test_timm_keys_and_shapes_convert(name, theirs):
    """Every tensor of timm's full-size state dict finds its place (keys and shapes, on the meta
    device: no memory, no compute)."""
    with torch.device("meta"):
        net = timm().create_model(theirs, pretrained=False)
    ours = _meta(name)
    converted = convert(net.state_dict(), ours)
    assert converted is not None and converted.keys() == ours.state_dict().keys()


# Full-size numerics (about 2 s each on one core: two ~50M-parameter nets built, saved, run).
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,theirs", PAIRS)
def test_timm_checkpoint_loads_same(name, theirs, device, tmp_path):
    net = timm().create_model(theirs, pretrained=False)
    # 107 keeps 2x2 maps in the last stage (75, the least the valid stems take, ends at 1x1,
    # where padding and the 1x3 | 3x1 split would go untested).
    ours = assert_loads_same(name, net, tmp_path, input_size=107 if name != "xception" else 75, device=device)
    if name == "inception_resnet_v2":  # the same residual scale in every block, in order
        theirs_scales = [b.scale for r in (net.repeat, net.repeat_1, net.repeat_2) for b in r] + [net.block8.scale]
        ours_scales = [b.scale for b in ours.modules() if isinstance(b, InceptionResNetBlock)]
        assert ours_scales == theirs_scales


def test_residual_scaling_where_the_paper_puts_it():
    """§3.3, Fig. 20: every Inception-ResNet block scales its residual by 0.1-0.3 before the sum
    (0.17, 0.10, 0.20 in the released net); only TF-slim's last block, with no ReLU, is unscaled.
    Inception-v4 has no residual blocks."""
    model = _meta("inception_resnet_v2")
    per_stage = [[b.scale for b in stage.blocks] for stage in model.stages]
    assert per_stage[0] == [0.17] * 10 and per_stage[1] == [0.10] * 20
    assert per_stage[2] == [0.20] * 9 + [1.0]
    last = model.stages[2].blocks[-1]
    assert isinstance(last.act, nn.Identity) and all(isinstance(b.act, nn.ReLU) for b in model.stages[2].blocks[:-1])
    assert not any(isinstance(m, InceptionResNetBlock) for m in _meta("inception_v4").modules())


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_residual_block_computes_scaled_sum(spatial_dims):
    """relu(x + scale * expand(concat(branches(x)))): the scale really multiplies the residual."""
    model = tiny_model("inception_resnet_v2", spatial_dims).eval()
    block = model.stages[1].blocks[0]
    channels = block.expand.out_channels
    x = torch.randn(2, channels, *([5] * spatial_dims))
    with torch.no_grad():
        residual = block.expand(torch.cat([b(x) for b in block.branches], 1))
        assert residual.abs().max() > 0
        torch.testing.assert_close(block(x), torch.relu(x + 0.10 * residual))
        block.scale = 0.0
        torch.testing.assert_close(block(x), torch.relu(x))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_factorised_convolutions_one_axis_each(spatial_dims):
    """Fig. 5's 1x7 / 7x1 chains become one 1-D kernel per axis; Fig. 6's parallel 1x3 | 3x1
    pair becomes one per axis, sharing the 2-D total width. In 2-D the kernels are timm's."""
    d = spatial_dims
    block = _meta("inception_v4", spatial_dims=d).stages[1].blocks[0]  # Inception-B
    chain = [m.kernel_size for m in block.branches[1].modules() if isinstance(m, CONVS)]
    one_d = [tuple(7 if a == axis else 1 for a in range(d)) for axis in range(d)]
    assert chain == [(1,) * d] + one_d[::-1]  # 1x1, then the last axis first (1x7, 7x1 in 2-D)
    if d == 2:
        assert chain == [(1, 1), (1, 7), (7, 1)]
        assert [m.kernel_size for m in block.branches[2].modules() if isinstance(m, CONVS)] == \
            [(1, 1), (7, 1), (1, 7), (7, 1), (1, 7)]
    split = _meta("inception_v4", spatial_dims=d).stages[2].blocks[0].branches[1][1]  # Inception-C
    kernels = [m.conv.kernel_size for m in split.branches]
    assert sorted(kernels) == sorted(tuple(3 if a == axis else 1 for a in range(d)) for axis in range(d))
    assert sum(m.conv.out_channels for m in split.branches) == 512


def test_widths_do_not_depend_on_spatial_dims():
    for name in ("inception_v4", "inception_resnet_v2", "xception"):
        infos = [_meta(name, spatial_dims=d).feature_info for d in (1, 2, 3)]
        assert infos[0] == infos[1] == infos[2]
    assert [i.channels for i in infos[1]] == [64, 128, 256, 728, 2048]  # Fig. 5


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_smallest_input_is_75(name):
    """Valid convolutions shrink 299 to 8 (Figs. 9, 15); 75 is the least that reaches 1x1, as
    extra["test_input"] says (shapes on the meta device)."""
    model = _meta(name)
    with torch.device("meta"):
        assert model.forward_features(torch.empty(2, 3, 299, 299)).shape[1:] == (1536, 8, 8)
        assert model.forward_features(torch.empty(2, 3, 75, 75)).shape[2:] == (1, 1)
        with pytest.raises(ValueError, match=r"at least \(75, 75\)"):  # named before a layer fails
            model(torch.empty(2, 3, 74, 74))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_xception_separable_convs_are_depthwise_then_pointwise(spatial_dims):
    """§3: 36 convolutional layers, 34 of them depthwise separable: a k^d depthwise conv with
    groups == channels, then a 1x1 pointwise conv, no nonlinearity in between (§4.7)."""
    model = _meta("xception", spatial_dims=spatial_dims)
    seps = [m for m in model.modules() if isinstance(m, SeparableConv)]
    assert len(seps) == 34
    for sep in seps:
        dw, pw = sep.depthwise, sep.pointwise
        assert dw.groups == dw.in_channels == dw.out_channels and dw.kernel_size == (3,) * spatial_dims
        assert pw.groups == 1 and pw.kernel_size == (1,) * spatial_dims
        assert dw.weight.shape[1] == 1  # one filter per channel
    plain = [m for name, m in model.named_modules() if isinstance(m, CONVS) and name.startswith("stem")]
    assert len(plain) + len(seps) == 36
    sep = next(m for m in tiny_model("xception", spatial_dims).modules() if isinstance(m, SeparableConv))
    x = torch.randn(2, sep.depthwise.in_channels, *([6] * spatial_dims))
    torch.testing.assert_close(sep(x), sep.pointwise(sep.depthwise(x)))


def test_xception_first_relu_keeps_the_shortcut_input():
    """The ReLU that opens a residual module must not overwrite its input (the shortcut adds it)."""
    block = tiny_model("xception", 2).stages[1].blocks[0].eval()
    x = torch.randn(2, block.units[0].conv.depthwise.in_channels, 6, 6)
    with torch.no_grad():
        expected = block.units(x.clone()) + x
        torch.testing.assert_close(block(x.clone()), expected)
