"""Tests for convnet.layers: the N-d factories, activations, normalisations, pooling, blocks and
LeNet-5's special layers. Every check compares against torch functional code or a hand-written
reference, on tiny tensors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convnet import layers as L
from convnet.layers.factory import SameConv
from convnet.models.lenet import C3_TABLE

# torch warns that "same" with an even kernel may copy the input; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

DIMS = (1, 2, 3)
CONV_CLASSES = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
MAX_POOL_FN = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL_FN = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

# Per-dimension spatial sizes mixing odd and even axes (so per-axis mistakes show).
ODD_EVEN_SIZES = {1: (8,), 2: (7, 8), 3: (7, 8, 9)}


def rand(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n - d * (k - 1) - 1 + 2 * p) // s + 1


def tf_same_pads(sizes, kernel, stride, dilation) -> list[int]:
    """TensorFlow's "same" padding as an F.pad list (last axis first), smaller half first."""
    pads: list[int] = []
    for n, k, s, d in reversed(list(zip(sizes, kernel, stride, dilation))):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


# ----------------------------------------------------------------------------------------------
# conv
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", DIMS)
def test_conv_class_per_dim(d):
    assert L.conv_class(d) is CONV_CLASSES[d]
    m = L.conv(d, 2, 3, 3)
    assert type(m) is CONV_CLASSES[d]
    assert m.weight.shape == (3, 2) + (3,) * d


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k,s,p,dil", [(3, 1, 0, 1), (3, 2, 1, 1), (5, 3, 2, 1), (3, 1, 0, 2),
                                       (4, 2, 1, 3), (2, 2, 0, 1), (1, 1, 0, 1)])
def test_conv_output_size_formula(d, k, s, p, dil):
    size = 13
    m = L.conv(d, 1, 2, k, stride=s, padding=p, dilation=dil)
    out = m(torch.zeros((1, 1) + (size,) * d))
    expect = conv_out(size, k, s, p, dil)
    assert out.shape == (1, 2) + (expect,) * d


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k,dil", [(1, 1), (3, 1), (5, 1), (3, 2), (5, 3)])
def test_conv_default_padding_keeps_size(d, k, dil):
    sizes = ODD_EVEN_SIZES[d]
    m = L.conv(d, 2, 3, k, dilation=dil)  # padding=None
    assert m.padding == (dil * (k - 1) // 2,) * d
    x = rand(1, 2, *sizes)
    assert m(x).shape == (1, 3) + sizes
    # And it is plain symmetric zero padding.
    ref = CONV_FN[d](x, m.weight, m.bias, padding=dil * (k - 1) // 2, dilation=dil)
    torch.testing.assert_close(m(x), ref)


@pytest.mark.parametrize("d", DIMS)
def test_conv_valid_padding(d):
    m = L.conv(d, 2, 3, 3, padding="valid")
    assert m.padding == (0,) * d
    x = rand(1, 2, *(9,) * d)
    assert m(x).shape == (1, 3) + (7,) * d
    torch.testing.assert_close(m(x), CONV_FN[d](x, m.weight, m.bias))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k,dil", [(3, 1), (4, 1), (3, 2), (2, 3)])
def test_conv_same_stride1(d, k, dil):
    sizes = ODD_EVEN_SIZES[d]
    m = L.conv(d, 2, 3, k, padding="same", dilation=dil)
    x = rand(1, 2, *sizes)
    y = m(x)
    assert y.shape == (1, 3) + sizes
    pads = tf_same_pads(sizes, (k,) * d, (1,) * d, (dil,) * d)
    ref = CONV_FN[d](F.pad(x, pads), m.weight, m.bias, dilation=dil)
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k,dil", [(3, 1), (4, 1), (5, 1), (3, 2), (1, 1)])
@pytest.mark.parametrize("sizes_kind", ["odd_even", "even_odd"])
def test_conv_same_stride2(d, k, dil, sizes_kind):
    sizes = ODD_EVEN_SIZES[d]
    if sizes_kind == "even_odd":
        sizes = tuple(n + 1 if n % 2 else n - 1 for n in sizes)
    m = L.conv(d, 2, 3, k, stride=2, padding="same", dilation=dil)
    assert isinstance(m, SameConv)
    assert m.weight is m.conv.weight
    x = rand(1, 2, *sizes)
    y = m(x)
    assert y.shape == (1, 3) + tuple(math.ceil(n / 2) for n in sizes)
    pads = tf_same_pads(sizes, (k,) * d, (2,) * d, (dil,) * d)
    ref = CONV_FN[d](F.pad(x, pads), m.weight, m.conv.bias, stride=2, dilation=dil)
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("d", DIMS)
def test_conv_same_puts_smaller_half_first(d):
    # Size 8, kernel 4, stride 2: total pad = (4-1)*2 + 4 - 8 = 2 -> [1, 1]; kernel 3: total 1 -> [0, 1].
    sizes = (8,) * d
    m = L.conv(d, 1, 1, 3, stride=2, padding="same")
    x = rand(1, 1, *sizes)
    good = CONV_FN[d](F.pad(x, [0, 1] * d), m.weight, m.conv.bias, stride=2)
    swapped = CONV_FN[d](F.pad(x, [1, 0] * d), m.weight, m.conv.bias, stride=2)
    torch.testing.assert_close(m(x), good)
    assert not torch.allclose(m(x), swapped)


def test_conv_same_per_axis_stride():
    # Stride 1 on one axis, 3 on the other: still TF "same" per axis.
    m = L.conv(2, 1, 2, (3, 4), stride=(1, 3), padding="same")
    assert isinstance(m, SameConv)
    x = rand(2, 1, 7, 10)
    y = m(x)
    assert y.shape == (2, 2, 7, 4)
    pads = tf_same_pads((7, 10), (3, 4), (1, 3), (1, 1))
    # width (last, first in F.pad): (4-1)*3 + 4 - 10 = 3 -> [1, 2]; height: 6 + 3 - 7 = 2 -> [1, 1]
    assert pads == [1, 2, 1, 1]
    torch.testing.assert_close(y, F.conv2d(F.pad(x, pads), m.weight, m.conv.bias, stride=(1, 3)))


@pytest.mark.parametrize("n,k,s,dil,expect", [
    (8, 3, 2, 1, (0, 1)),   # (4-1)*2 + 3 - 8 = 1
    (7, 3, 2, 1, (1, 1)),   # (4-1)*2 + 3 - 7 = 2
    (10, 4, 3, 1, (1, 2)),  # (4-1)*3 + 4 - 10 = 3
    (9, 1, 3, 1, (0, 0)),   # (3-1)*3 + 1 - 9 = -2 -> 0
    (8, 3, 2, 2, (1, 2)),   # (4-1)*2 + 5 - 8 = 3
])
def test_tf_same_rule_hand_values(n, k, s, dil, expect):
    # The rule, checked against hand-computed pads, then through the 1-D layer by equality with
    # an explicit pad.
    assert tuple(tf_same_pads((n,), (k,), (s,), (dil,))) == expect
    m = L.conv(1, 1, 1, k, stride=s, padding="same", dilation=dil)
    x = rand(1, 1, n)
    ref = F.conv1d(F.pad(x, list(expect)), m.weight, m.conv.bias, stride=s, dilation=dil)
    torch.testing.assert_close(m(x), ref)
    assert m(x).shape[-1] == math.ceil(n / s)


@pytest.mark.parametrize("d", DIMS)
def test_conv_groups_and_depthwise(d):
    m = L.conv(d, 4, 8, 3, groups=2)
    assert m.groups == 2
    assert m.weight.shape == (8, 2) + (3,) * d
    x = rand(1, 4, *(5,) * d)
    torch.testing.assert_close(m(x), CONV_FN[d](x, m.weight, m.bias, padding=1, groups=2))

    dw = L.conv(d, 6, 12, 3, depthwise=True)
    assert dw.groups == 6
    assert dw.weight.shape == (12, 1) + (3,) * d
    # depthwise overrides groups
    assert L.conv(d, 6, 6, 3, groups=2, depthwise=True).groups == 6


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("cin,cout,groups", [(4, 6, 4), (6, 4, 4), (5, 10, 2), (4, 4, 0), (4, 4, -2)])
def test_conv_invalid_groups(d, cin, cout, groups):
    with pytest.raises(ValueError):
        L.conv(d, cin, cout, 3, groups=groups)


def test_conv_invalid_depthwise_out_channels():
    with pytest.raises(ValueError):
        L.conv(2, 4, 6, 3, depthwise=True)


@pytest.mark.parametrize("bad", [0, 4, 5])
def test_bad_spatial_dims(bad):
    with pytest.raises(ValueError, match="spatial_dims"):
        L.conv(bad, 1, 1, 3)
    with pytest.raises(ValueError):
        L.check_dims(bad)
    with pytest.raises(ValueError):
        L.norm("batch", bad, 4)
    with pytest.raises(ValueError):
        L.pool("max", bad)


@pytest.mark.parametrize("d", DIMS)
def test_conv_per_axis_tuples(d):
    k = (3, 1, 5)[:d]
    s = (1, 2, 3)[:d]
    p = (0, 1, 2)[:d]
    dil = (2, 1, 1)[:d]
    sizes = (11, 12, 13)[:d]
    m = L.conv(d, 2, 3, k, stride=s, padding=p, dilation=dil)
    assert m.kernel_size == k and m.stride == s and m.padding == p and m.dilation == dil
    x = rand(1, 2, *sizes)
    y = m(x)
    assert y.shape[2:] == tuple(conv_out(n, *a) for n, *a in zip(sizes, k, s, p, dil))
    torch.testing.assert_close(y, CONV_FN[d](x, m.weight, m.bias, s, p, dil))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("arg", ["kernel_size", "stride", "padding", "dilation"])
def test_conv_wrong_length_tuple_raises(d, arg):
    bad = (1,) * (d + 1)
    with pytest.raises(ValueError, match=arg):
        L.conv(d, 1, 1, **{"kernel_size": 3, arg: bad})


def test_ntuple():
    assert L.ntuple(3, 2) == (3, 3)
    assert L.ntuple([1, 2, 3], 3) == (1, 2, 3)
    with pytest.raises(ValueError):
        L.ntuple((1, 2), 3)


# ----------------------------------------------------------------------------------------------
# norm
# ----------------------------------------------------------------------------------------------

NORM_CLASSES = {
    "batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
    "instance": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
    "group": {d: nn.GroupNorm for d in DIMS},
    "layer": {d: L.ChannelLayerNorm for d in DIMS},
    "local_response": {d: L.LocalResponseNorm for d in DIMS},
    "grn": {d: L.GlobalResponseNorm for d in DIMS},
    "none": {d: nn.Identity for d in DIMS},
    None: {d: nn.Identity for d in DIMS},
}


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("name", list(NORM_CLASSES))
def test_norm_by_name(d, name):
    m = L.norm(name, d, 8)
    assert type(m) is NORM_CLASSES[name][d]
    x = rand(2, 8, *(4,) * d)
    assert m(x).shape == x.shape


@pytest.mark.parametrize("d", DIMS)
def test_norm_batch_and_instance_match_functional(d):
    x = rand(3, 4, *(5,) * d)
    bn = L.norm("batch", d, 4).train()
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, training=True, eps=bn.eps))
    inorm = L.norm("instance", d, 4)
    assert inorm.affine  # affine by default
    with torch.no_grad():
        inorm.weight.copy_(torch.arange(1.0, 5.0))
        inorm.bias.copy_(torch.arange(4.0))
    torch.testing.assert_close(inorm(x), F.instance_norm(x, weight=inorm.weight, bias=inorm.bias,
                                                         eps=inorm.eps))
    assert not L.norm("instance", d, 4, affine=False).affine


@pytest.mark.parametrize("d", DIMS)
def test_norm_group_divides_channels(d):
    assert L.norm("group", d, 8).num_groups == 8       # gcd(32, 8)
    assert L.norm("group", d, 48).num_groups == 16     # gcd(32, 48)
    g = L.norm("group", d, 12, num_groups=4)
    assert g.num_groups == 4
    x = rand(2, 12, *(3,) * d)
    torch.testing.assert_close(g(x), F.group_norm(x, 4, g.weight, g.bias, g.eps))


@pytest.mark.parametrize("d", DIMS)
def test_norm_callable(d):
    calls = []

    def make(channels, **kw):
        calls.append((channels, kw))
        return nn.GroupNorm(1, channels)

    m = L.norm(make, d, 6, foo=1)
    assert isinstance(m, nn.GroupNorm) and m.num_channels == 6
    assert calls == [(6, {"foo": 1})]


def test_norm_unknown_name():
    with pytest.raises(ValueError) as info:
        L.norm("batchnorm", 2, 4)
    msg = str(info.value)
    for valid in ("batch", "layer", "group", "instance", "local_response", "grn", "none"):
        assert valid in msg


@pytest.mark.parametrize("d", DIMS)
def test_channel_layer_norm_matches_permuted_layer_norm(d):
    c = 5
    m = L.norm("layer", d, c)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, c))
        m.bias.copy_(torch.linspace(-1.0, 1.0, c))
    x = rand(2, c, *(3, 4, 2)[:d]) * 3 + 1
    perm_in = (0,) + tuple(range(2, 2 + d)) + (1,)      # (B, *S, C)
    perm_out = (0, d + 1) + tuple(range(1, d + 1))      # back to (B, C, *S)
    ref = F.layer_norm(x.permute(perm_in), (c,), m.weight, m.bias, 1e-6).permute(perm_out)
    y = m(x)
    torch.testing.assert_close(y, ref)
    # Normalised over channels: zero mean, unit variance per position before the affine.
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.zero_()
    z = m(x)
    torch.testing.assert_close(z.mean(1), torch.zeros_like(z.mean(1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(1, unbiased=False), torch.ones_like(z.mean(1)), atol=1e-3, rtol=0)


@pytest.mark.parametrize("d", DIMS)
def test_grn_matches_convnext_v2_formula(d):
    c = 4
    m = L.norm("grn", d, c)
    x = rand(2, c, *(3, 4, 2)[:d], dtype=torch.float64)
    m = m.double()
    # Identity at init (gamma = beta = 0).
    assert torch.equal(m.gamma, torch.zeros(c, dtype=torch.float64))
    torch.testing.assert_close(m(x), x)
    with torch.no_grad():
        m.gamma.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
        m.beta.copy_(torch.tensor([0.1, 0.2, -0.3, 0.4]))
    # ConvNeXt V2 reference, channels-last, written by hand.
    xl = x.movedim(1, -1)                                            # (B, *S, C)
    spatial = tuple(range(1, 1 + d))
    gx = xl.pow(2).sum(dim=spatial, keepdim=True).sqrt()             # ||X_c|| over space
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    ref = (m.gamma * (xl * nx) + m.beta + xl).movedim(-1, 1)
    torch.testing.assert_close(m(x), ref)


def lrn_paper(a: torch.Tensor, n=5, k=2.0, alpha=1e-4, beta=0.75) -> torch.Tensor:
    """Krizhevsky et al. 2012, §3.3, with a loop over channels."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        s = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, i] = a[:, i] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("d", DIMS)
def test_local_response_norm_paper_formula(d):
    m = L.norm("local_response", d, 7)
    assert isinstance(m, L.LocalResponseNorm)
    assert (m.size, m.k, m.beta) == (5, 2.0, 0.75)
    x = rand(2, 7, *(3, 2, 2)[:d], dtype=torch.float64) * 30  # large so that alpha matters
    ref = lrn_paper(x)
    torch.testing.assert_close(m(x), ref)
    explicit = L.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, paper_alpha=True)
    torch.testing.assert_close(explicit(x), ref)
    # torch's own LRN divides alpha by n, so it is not the paper's formula with the same alpha.
    torch_lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x)
    assert not torch.allclose(torch_lrn, ref, rtol=1e-3, atol=0)
    # paper_alpha=False is exactly torch's convention.
    caffe = L.LocalResponseNorm(5, 1e-4, 0.75, 2.0, paper_alpha=False)
    torch.testing.assert_close(caffe(x), torch_lrn)


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------

ACT_REFS = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "scaled_tanh": lambda x: 1.7159 * torch.tanh(2.0 * x / 3.0),
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": lambda x: x * torch.sigmoid(x),
    "hard_swish": F.hardswish,
    "hard_sigmoid": F.hardsigmoid,
}


@pytest.mark.parametrize("name", sorted(L.ACTIVATIONS))
def test_get_act_every_name(name):
    assert name in ACT_REFS, f"add a reference for the new activation {name!r}"
    x = torch.linspace(-8, 8, 101)
    m = L.get_act(name)
    assert isinstance(m, nn.Module)
    torch.testing.assert_close(m(x.clone()), ACT_REFS[name](x))
    # L.act is the same factory.
    torch.testing.assert_close(L.act(name)(x.clone()), ACT_REFS[name](x))


def test_get_act_none_callable_unknown():
    assert isinstance(L.get_act(None), nn.Identity)
    m = L.get_act(nn.LeakyReLU, negative_slope=0.2)
    assert isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2
    with pytest.raises(ValueError, match="unknown activation"):
        L.get_act("relu7")
    assert isinstance(L.get_act("leaky_relu", negative_slope=0.3), nn.LeakyReLU)
    assert L.get_act("leaky_relu", negative_slope=0.3).negative_slope == 0.3


def test_scaled_tanh():
    f = L.ScaledTanh()
    assert abs(f(torch.tensor(1.0)).item() - 1.0) < 1e-3
    assert abs(f(torch.tensor(-1.0)).item() + 1.0) < 1e-3
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)
    assert torch.equal(f(x), 1.7159 * torch.tanh((2.0 / 3.0) * x))
    assert isinstance(L.get_act("scaled_tanh"), L.ScaledTanh)
    # Asymptote is the amplitude.
    assert abs(f(torch.tensor(50.0)).item() - 1.7159) < 1e-6


def test_relu_inplace_flag():
    x = torch.tensor([-1.0, 2.0, -3.0])
    m = L.get_act("relu", inplace=True)
    assert m.inplace
    y = m(x)
    assert y.data_ptr() == x.data_ptr()
    assert torch.equal(x, torch.tensor([0.0, 2.0, 0.0]))

    x = torch.tensor([-1.0, 2.0, -3.0])
    m = L.get_act("relu")
    assert not m.inplace
    m(x)
    assert torch.equal(x, torch.tensor([-1.0, 2.0, -3.0]))
    # Activations without an inplace argument ignore the flag instead of failing.
    assert isinstance(L.get_act("gelu", inplace=True), nn.GELU)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", DIMS)
def test_pool_max_avg(d):
    x = rand(2, 3, *(7, 6, 5)[:d])
    mp = L.pool("max", d, 2)
    ap = L.pool("avg", d, 3, stride=2, padding=1)
    assert type(mp).__name__ == f"MaxPool{d}d"
    assert type(ap).__name__ == f"AvgPool{d}d"
    torch.testing.assert_close(mp(x), MAX_POOL_FN[d](x, 2))
    torch.testing.assert_close(ap(x), AVG_POOL_FN[d](x, 3, 2, 1))
    cm = L.pool("max", d, 2, ceil_mode=True)
    torch.testing.assert_close(cm(x), MAX_POOL_FN[d](x, 2, ceil_mode=True))
    with pytest.raises(ValueError, match="unknown pool"):
        L.pool("median", d)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_global_pool(d, kind):
    x = rand(2, 3, *(4, 3, 5)[:d])
    spatial = tuple(range(2, 2 + d))
    ref = x.mean(spatial) if kind == "avg" else x.amax(spatial)
    torch.testing.assert_close(L.GlobalPool(kind, flatten=True)(x), ref)
    kept = L.GlobalPool(kind, flatten=False)(x)
    assert kept.shape == (2, 3) + (1,) * d
    torch.testing.assert_close(kept.flatten(1), ref)
    by_name = L.pool(f"global_{kind}", d)
    assert isinstance(by_name, L.GlobalPool) and not by_name.flatten
    torch.testing.assert_close(by_name(x), kept)
    adaptive = (L.adaptive_avg_pool if kind == "avg" else L.adaptive_max_pool)(d, 1)
    torch.testing.assert_close(adaptive(x), kept)


def test_global_pool_bad_type():
    with pytest.raises(ValueError):
        L.GlobalPool("min")


def window_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sum over non-overlapping k^d windows with unfold, by hand."""
    y = x
    for axis in range(2, x.ndim):
        y = y.unfold(axis, k, k)
    d = x.ndim - 2
    return y.sum(dim=tuple(range(y.ndim - d, y.ndim)))


@pytest.mark.parametrize("d", DIMS)
def test_trainable_subsampling(d):
    c = 3
    m = L.pool("subsample", d, 2, channels=c)
    assert isinstance(m, L.TrainableSubsampling)
    params = dict(m.named_parameters())
    assert set(params) == {"weight", "bias"}
    assert sum(p.numel() for p in m.parameters()) == 2 * c
    x = rand(2, c, *(4, 6, 2)[:d])
    # At init: the plain average.
    torch.testing.assert_close(m(x), AVG_POOL_FN[d](x, 2))
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.5, -2.0, 3.0]))
        m.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    shape = (1, c) + (1,) * d
    ref = window_sum(x, 2) * m.weight.view(shape) + m.bias.view(shape)
    torch.testing.assert_close(m(x), ref)
    with pytest.raises(ValueError, match="channels"):
        L.pool("subsample", d, 2)


@pytest.mark.parametrize("d", DIMS)
def test_trainable_subsampling_kernel3(d):
    m = L.TrainableSubsampling(d, 2, kernel_size=3)
    assert m.area == 3 ** d
    x = rand(1, 2, *(6,) * d)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([2.0, -1.0]))
    shape = (1, 2) + (1,) * d
    torch.testing.assert_close(m(x), window_sum(x, 3) * m.weight.view(shape))


# ----------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", DIMS)
def test_conv_norm_act(d):
    b = L.ConvNormAct(d, 2, 4, 3)
    assert [n for n, _ in b.named_children()] == ["conv", "norm", "act"]
    assert type(b.conv) is CONV_CLASSES[d]
    assert b.conv.bias is None
    assert type(b.norm) is NORM_CLASSES["batch"][d]
    assert isinstance(b.act, nn.ReLU)
    b.eval()
    x = rand(2, 2, *(5,) * d)
    ref = F.relu(b.norm(CONV_FN[d](x, b.conv.weight, None, padding=1)))
    torch.testing.assert_close(b(x), ref)

    nb = L.ConvNormAct(d, 2, 4, 3, norm_layer=None, act_layer="gelu")
    assert nb.conv.bias is not None
    assert isinstance(nb.norm, nn.Identity) and isinstance(nb.act, nn.GELU)
    torch.testing.assert_close(nb(x), F.gelu(CONV_FN[d](x, nb.conv.weight, nb.conv.bias, padding=1)))
    assert L.ConvNormAct(d, 2, 4, 3, norm_layer="none").conv.bias is not None
    assert L.ConvNormAct(d, 2, 4, 3, norm_layer="group").conv.bias is None
    assert L.ConvNormAct(d, 2, 4, 3, bias=True).conv.bias is not None  # explicit override
    assert "conv.weight" in b.state_dict() and "norm.running_mean" in b.state_dict()


@pytest.mark.parametrize("d", DIMS)
def test_squeeze_excite(d):
    c = 8
    se = L.SqueezeExcite(d, c, rd_ratio=0.25)
    assert se.fc1.out_channels == 2 and se.fc2.out_channels == c
    assert L.SqueezeExcite(d, c, rd_channels=3).fc1.out_channels == 3
    x = rand(2, c, *(4, 3, 2)[:d])
    s = x.mean(tuple(range(2, 2 + d)))                                  # (B, C)
    w1 = se.fc1.weight.reshape(2, c)
    w2 = se.fc2.weight.reshape(c, 2)
    h = F.relu(s @ w1.t() + se.fc1.bias)
    gate = torch.sigmoid(h @ w2.t() + se.fc2.bias)
    ref = x * gate.view(2, c, *(1,) * d)
    torch.testing.assert_close(se(x), ref)


@pytest.mark.parametrize("d", DIMS)
def test_drop_path(d):
    x = rand(4, 2, *(3,) * d)
    m = L.DropPath(0.5)
    m.eval()
    assert torch.equal(m(x), x)
    assert torch.equal(L.DropPath(0.0).train()(x), x)

    p, n = 0.3, 20000
    m = L.DropPath(p).train()
    torch.manual_seed(1)
    ones = torch.ones(n, 2, *(2,) * d)
    y = m(ones)
    flat = y.flatten(1)
    dropped = (flat == 0).all(1)
    kept = ~dropped
    # Whole samples are dropped or kept, never parts of one.
    assert torch.equal(dropped | torch.isclose(flat, torch.full_like(flat, 1 / (1 - p))).all(1),
                       torch.ones(n, dtype=torch.bool))
    share = dropped.float().mean().item()
    assert abs(share - p) < 3 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(flat[kept], torch.full_like(flat[kept], 1 / (1 - p)))


def test_drop_path_drops_everything_at_one():
    x = torch.ones(8, 3, 4)
    y = L.drop_path(x, 1.0, training=True)
    assert torch.equal(y, torch.zeros_like(x))


def zeros_are_whole_blocks(zero: torch.Tensor, block: int) -> bool:
    """True when every zero lies in some fully-zero block^d window (morphological opening)."""
    d = zero.ndim - 2
    z = zero.float()
    full = AVG_POOL_FN[d](z, block, stride=1) > 1 - 1e-6        # windows that are all zero
    covered = MAX_POOL_FN[d](F.pad(full.float(), [block - 1] * 2 * d), block, stride=1) > 0
    return torch.equal(covered, zero)


@pytest.mark.parametrize("d", DIMS)
def test_drop_block_eval_identity(d):
    x = rand(2, 3, *(6,) * d)
    m = L.DropBlock(0.5, 3).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(L.DropBlock(0.0, 3).train()(x), x)


@pytest.mark.parametrize("d,size,block", [(1, 64, 5), (2, 24, 5), (2, 20, 4), (3, 12, 3)])
def test_drop_block_random_blocks(d, size, block):
    m = L.DropBlock(drop_prob=0.1, block_size=block).train()
    x = torch.ones(2, 2, *(size,) * d)
    saw_drop = False
    for seed in range(5):
        torch.manual_seed(seed)
        y = m(x)
        zero = y == 0
        if zero.any():
            saw_drop = True
        assert zeros_are_whole_blocks(zero, block)
        kept = y[~zero]
        # Kept values all share one scale: units / kept units, so the mean stays exactly 1.
        torch.testing.assert_close(kept, torch.full_like(kept, x.numel() / (~zero).sum().item()))
        torch.testing.assert_close(y.mean(), torch.tensor(1.0))
    assert saw_drop


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("block", [3, 4])
def test_drop_block_single_seed_is_exact_block(d, block, monkeypatch):
    """Patch the sampling to place one seed; the dropped region must be exactly one block^d
    cube starting at that seed, and gamma must follow Eq. 1."""
    size, p = 10, 0.2
    m = L.DropBlock(drop_prob=p, block_size=block).train()
    x = torch.ones(1, 2, *(size,) * d)
    where = (1, 2, 4, 5)[: d + 1]  # channel 1, then a position inside the valid region
    seen = {}
    original = torch.Tensor.bernoulli_

    def fake_bernoulli_(self, prob, *args, **kwargs):
        seen["shape"], seen["p"] = tuple(self.shape), prob
        self.zero_()
        self[(0,) + where] = 1.0
        return self

    monkeypatch.setattr(torch.Tensor, "bernoulli_", fake_bernoulli_)
    y = m(x)
    monkeypatch.setattr(torch.Tensor, "bernoulli_", original)

    valid = size - block + 1
    assert seen["shape"] == (1, 2) + (valid,) * d
    gamma = p * size ** d / (block ** d * valid ** d)
    assert seen["p"] == pytest.approx(gamma)
    expect = torch.zeros_like(x, dtype=torch.bool)
    expect[(0, where[0]) + tuple(slice(v, v + block) for v in where[1:])] = True
    assert torch.equal(y == 0, expect)
    assert int((y == 0).sum()) == block ** d
    scale = x.numel() / (x.numel() - block ** d)
    torch.testing.assert_close(y[~expect], torch.full_like(y[~expect], scale))


@pytest.mark.parametrize("d", DIMS)
def test_drop_block_seed_in_corner_stays_inside(d, monkeypatch):
    # A seed at the last valid position must give a block flush with the far edge.
    size, block = 7, 4
    m = L.DropBlock(drop_prob=0.1, block_size=block).train()
    x = torch.ones(1, 1, *(size,) * d)

    def fake_bernoulli_(self, prob, *args, **kwargs):
        self.zero_()
        self[(0, 0) + (size - block,) * d] = 1.0
        return self

    monkeypatch.setattr(torch.Tensor, "bernoulli_", fake_bernoulli_)
    y = m(x)
    expect = torch.zeros_like(x, dtype=torch.bool)
    expect[(0, 0) + (slice(size - block, size),) * d] = True
    assert torch.equal(y == 0, expect)


# ----------------------------------------------------------------------------------------------
# special: ConnectionTableConv, EuclideanRBF
# ----------------------------------------------------------------------------------------------


def table_mask(table, in_channels) -> torch.Tensor:
    mask = torch.zeros(len(table), in_channels, dtype=torch.bool)
    for o, inputs in enumerate(table):
        for i in inputs:
            mask[o, i] = True
    return mask


def test_connection_table_lenet_c3():
    m = L.ConnectionTableConv(2, 6, C3_TABLE, 5)
    assert sum(len(t) for t in C3_TABLE) == 60
    assert m.weight.numel() == 60 * 25
    assert m.bias.numel() == 16
    assert sum(p.numel() for p in m.parameters()) == 1516
    dense = m.dense_weight()
    assert dense.shape == (16, 6, 5, 5)
    mask = table_mask(C3_TABLE, 6)
    nonzero = (dense != 0).any(dim=(2, 3))
    assert torch.equal(nonzero, mask)
    assert torch.all(dense[~mask] == 0)
    with torch.no_grad():
        m.bias.copy_(torch.linspace(-1, 1, 16))
    x = rand(2, 6, 14, 14)
    y = m(x)
    assert y.shape == (2, 16, 10, 10)
    torch.testing.assert_close(y, F.conv2d(x, dense, m.bias))
    # Output map 0 sees only inputs 0, 1, 2: changing input 4 leaves it alone.
    x2 = x.clone()
    x2[:, 4] += 10
    y2 = m(x2)
    torch.testing.assert_close(y2[:, 0], y[:, 0])
    assert not torch.allclose(y2[:, 4], y[:, 4])


def test_connection_table_gradients_only_reach_table_weights():
    m = L.ConnectionTableConv(2, 6, C3_TABLE, 5)
    x = rand(2, 6, 9, 9)
    target = rand(2, 16, 5, 5, seed=1)
    F.mse_loss(m(x), target).backward()
    # Reference: the dense conv with a free dense kernel; the table's weights get exactly the
    # dense gradient at their (out, in) slot, and nothing else is a parameter.
    dense = m.dense_weight().detach().requires_grad_()
    bias = m.bias.detach().clone().requires_grad_()
    F.mse_loss(F.conv2d(x, dense, bias), target).backward()
    assert {n for n, p in m.named_parameters()} == {"weight", "bias"}
    expect = torch.stack([dense.grad[o, i] for o, inputs in enumerate(C3_TABLE) for i in inputs])
    torch.testing.assert_close(m.weight.grad, expect)
    torch.testing.assert_close(m.bias.grad, bias.grad)
    # The absent connections do get a gradient in the dense reference, so the check above is not
    # vacuous: they are simply not parameters here.
    assert dense.grad[~table_mask(C3_TABLE, 6)].abs().sum() > 0


@pytest.mark.parametrize("d,sizes", [(1, (11,)), (3, (6, 7, 5))])
def test_connection_table_1d_3d(d, sizes):
    table = ((0,), (0, 1), (1, 2), (2, 0, 1))
    m = L.ConnectionTableConv(d, 3, table, 3)
    assert sum(p.numel() for p in m.parameters()) == 8 * 3 ** d + 4
    dense = m.dense_weight()
    assert dense.shape == (4, 3) + (3,) * d
    mask = table_mask(table, 3)
    assert torch.equal((dense != 0).flatten(2).any(2), mask)
    x = rand(2, 3, *sizes)
    y = m(x)
    assert y.shape == (2, 4) + tuple(n - 2 for n in sizes)
    torch.testing.assert_close(y, CONV_FN[d](x, dense, m.bias))


def test_connection_table_bad_index():
    with pytest.raises(ValueError):
        L.ConnectionTableConv(2, 3, ((0, 3),), 3)
    with pytest.raises(ValueError):
        L.ConnectionTableConv(4, 3, ((0,),), 3)


def test_euclidean_rbf():
    g = torch.Generator().manual_seed(3)
    protos = torch.randint(0, 2, (10, 84), generator=g).float() * 2 - 1
    m = L.EuclideanRBF(protos)
    assert "prototypes" in dict(m.named_buffers())
    assert list(m.parameters()) == []
    assert "prototypes" in m.state_dict()
    x = rand(5, 84)
    y = m(x)
    assert y.shape == (5, 10)
    torch.testing.assert_close(y, torch.cdist(x, protos) ** 2, rtol=1e-4, atol=1e-3)
    # Hand reference: sum_j (x_j - w_ij)^2.
    ref = ((x[:, None, :] - protos[None]) ** 2).sum(-1)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-3)
    # A prototype as input is at distance zero from itself.
    assert m(protos[3:4])[0, 3].abs() < 1e-3
    # The buffer is a copy, not a view of the caller's tensor.
    protos.zero_()
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-3)


def test_same_pool_matches_ceil_mode_pooling_at_even_sizes():
    # "Same" max pooling equals Caffe's ceil-mode 3x3/2 at even sizes (BN-Inception at 224) ...
    x = torch.randn(2, 4, 28, 28)
    torch.testing.assert_close(L.SamePool("max", 2, 3, 2)(x), nn.MaxPool2d(3, 2, ceil_mode=True)(x))
    # ... and gives ceil(in / stride) at odd sizes, as a stride-2 pad-1 convolution does.
    assert L.SamePool("max", 2, 3, 2)(torch.randn(1, 1, 27, 27)).shape[-1] == 14


def test_same_pool_average_of_real_inputs_in_3d_on_small_inputs():
    # torch's avg_pool3d refuses inputs smaller than its kernel; SamePool pads explicitly, and
    # count_include_pad=False divides by the real inputs of each window.
    pool = L.SamePool("avg", 3, 3, 1, count_include_pad=False)
    x = torch.randn(2, 3, 4, 5, 3)
    torch.testing.assert_close(pool(x), F.avg_pool3d(x, 3, 1, 1, count_include_pad=False))
    for s in (1, 2):
        y = torch.randn(1, 2, s, s, s)
        torch.testing.assert_close(pool(y), y.mean((2, 3, 4), keepdim=True).expand_as(y))
    zeros_count = L.SamePool("avg", 2, 3, 1)
    x2 = torch.randn(1, 1, 5, 5)
    torch.testing.assert_close(zeros_count(x2), F.avg_pool2d(x2, 3, 1, 1, count_include_pad=True))


@pytest.mark.parametrize("value, expected", [(32, 32), (8.0, 8), (96 * 1.1, 104), (32 * 1.4, 48), (1280 * 0.35, 448), (3.0, 8)])
def test_make_divisible_rounds_like_mobilenet(value, expected):
    # Nearest multiple of 8, never below 90% of the value nor below the divisor.
    assert L.make_divisible(value) == expected
    assert L.make_divisible(value) >= 0.9 * value and L.make_divisible(value) % 8 == 0


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_inverted_residual_structure_and_parameters(spatial_dims):
    d, k = spatial_dims, 3
    block = L.InvertedResidual(d, 16, 16, k, 1, 6.0, se_channels=4)
    mid = 96
    bn = lambda c: 2 * c  # noqa: E731  (weight and bias)
    expected = (16 * mid + bn(mid)) + (mid * k ** d + bn(mid)) + (mid * 4 + 4 + 4 * mid + mid) + (mid * 16 + bn(16))
    assert sum(p.numel() for p in block.parameters()) == expected
    assert block.depthwise.conv.groups == mid and block.use_residual
    assert isinstance(block.project.act, nn.Identity)  # the linear bottleneck
    # With a zero projection the block is the identity: the input is added back.
    nn.init.zeros_(block.project.norm.weight)
    nn.init.zeros_(block.project.norm.bias)
    x = torch.randn(2, 16, *([6] * d))
    torch.testing.assert_close(block.eval()(x), x)
    assert L.InvertedResidual(d, 16, 24, k, 2).eval()(x).shape == (2, 24, *([3] * d))


def test_inverted_residual_ratio_one_and_fused():
    # t = 1 (MobileNetV2's first block, EfficientNet's MBConv1): no expansion conv.
    assert L.InvertedResidual(2, 16, 16, 3, 1, 1.0).expand is None
    fused = L.InvertedResidual(2, 16, 24, 3, 2, 4.0, fused=True)
    assert fused.depthwise is None and fused.expand.conv.kernel_size == (3, 3) and fused.expand.conv.stride == (2, 2)
    assert fused.project.conv.kernel_size == (1, 1)
    single = L.InvertedResidual(2, 16, 16, 3, 1, 1.0, fused=True)
    assert single.expand is None and single.project.conv.kernel_size == (3, 3)
    assert not isinstance(single.project.act, nn.Identity)
    eps = L.InvertedResidual(2, 8, 8, 3, norm_kwargs={"eps": 1e-3, "momentum": 0.01}).depthwise.norm
    assert eps.eps == 1e-3 and eps.momentum == 0.01


def test_depthwise_separable_and_layer_scale():
    block = L.DepthwiseSeparable(2, 8, 16, 3, 2)
    assert block.depthwise.conv.groups == 8 and block.pointwise.conv.kernel_size == (1, 1)
    assert block(torch.randn(1, 8, 8, 8)).shape == (1, 16, 4, 4)
    scale = L.LayerScale(4, 0.5)
    torch.testing.assert_close(scale(torch.ones(2, 4, 3)), torch.full((2, 4, 3), 0.5))


# ----------------------------------------------------------------------------------------------
# registries, frozen batch norm, the shared pieces of the families
# ----------------------------------------------------------------------------------------------


def test_norm_and_pool_registries_are_open():
    """A decorated factory makes a new name work wherever norms and pools are chosen by name,
    and the error text for an unknown name is generated from the registries."""

    @L.register_norm("test_scale")
    def _scale(spatial_dims, channels, value=2.0):
        return L.LayerScale(channels, value)

    @L.register_pool("test_first")
    def _first(spatial_dims, kernel_size, stride, padding, ceil_mode, channels):
        return L.avg_pool(spatial_dims, kernel_size, stride)

    try:
        block = L.ConvNormAct(2, 3, 4, 3, norm_layer="test_scale", act_layer=None)
        assert isinstance(block.norm, L.LayerScale) and block.conv.bias is None  # a norm follows: no conv bias
        assert L.norm("test_scale", 1, 5, value=3.0).gamma.tolist() == [3.0] * 5
        assert type(L.pool("test_first", 3, 2)).__name__ == "AvgPool3d"
        with pytest.raises(ValueError, match="test_scale"):
            L.norm("nope", 2, 4)
        with pytest.raises(ValueError, match="test_first"):
            L.pool("nope", 2)
        with pytest.raises(ValueError, match="already registered"):
            L.register_norm("batch")(_scale)
        with pytest.raises(ValueError, match="already registered"):
            L.register_pool("max")(_first)
    finally:
        del L.NORMS["test_scale"], L.POOLS["test_first"]


def test_frozen_batch_norm_matches_torchvision():
    from oracle import torchvision_ops_misc

    tv = torchvision_ops_misc().FrozenBatchNorm2d(6)
    ours = L.norm("frozen_batch", 2, 6)
    g = torch.Generator().manual_seed(0)
    for key in ("weight", "bias", "running_mean"):
        getattr(tv, key).copy_(torch.randn(6, generator=g))
    tv.running_var.copy_(torch.rand(6, generator=g) + 0.1)
    # torchvision's state dict (its layout: four buffers) loads into ours unchanged.
    assert list(ours.state_dict()) == list(tv.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(3, 6, 5, 4, generator=g)
    torch.testing.assert_close(ours.train()(x), tv.train()(x))  # frozen in training too
    assert ours.eps == tv.eps == 1e-5 and not list(ours.parameters())


@pytest.mark.parametrize("d", DIMS)
def test_frozen_batch_norm_is_inference_batch_norm_in_any_dimension(d):
    bn = L.norm("batch", d, 4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(4, generator=g))
        bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    frozen = L.norm("frozen_batch", d, 4)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, not unexpected
    x = torch.randn(2, 4, *(5,) * d, generator=g)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    torch.testing.assert_close(frozen.train()(x), bn.eval()(x))
    assert all(torch.equal(v, frozen.state_dict()[k]) for k, v in before.items())  # no statistics update


def test_same_padding_is_tensorflows_rule():
    for sizes, kernel, stride, dilation in [((7, 8), (3, 3), (2, 2), (1, 1)), ((9,), (4,), (3,), (2,)),
                                            ((5, 6, 7), (3, 1, 5), (1, 2, 3), (1, 1, 1))]:
        assert L.same_padding(sizes, kernel, stride, dilation) == tf_same_pads(sizes, kernel, stride, dilation)
    assert L.same_padding((7, 8), (3, 3), (2, 2)) == tf_same_pads((7, 8), (3, 3), (2, 2), (1, 1))


def test_conv_types_are_what_conv_builds():
    assert L.CONV_TYPES == tuple(L.conv_class(d) for d in DIMS)
    assert all(isinstance(L.conv(d, 1, 1, 3), L.CONV_TYPES) for d in DIMS)


def test_drop_path_rates_grow_linearly():
    assert L.drop_path_rates(5, 0.2) == [0.2 * i / 4 for i in range(5)]  # ends at the rate
    assert L.drop_path_rates(4, 0.2, endpoint=False) == [0.2 * i / 4 for i in range(4)]  # torchvision's EfficientNet
    assert L.drop_path_rates(1, 0.3) == [0.0]


@pytest.mark.parametrize("d", DIMS)
def test_resnet_stem_reduces_by_four(d):
    stem = L.resnet_stem(d, 3, 8)
    assert list(dict(stem.named_children())) == ["conv", "pool"] and isinstance(stem.conv, L.ConvNormAct)
    assert stem.conv.conv.kernel_size == (7,) * d and stem.conv.conv.stride == (2,) * d
    assert stem(torch.randn(1, 3, *(32,) * d)).shape == (1, 8, *(8,) * d)
    bare = L.resnet_stem(d, 3, 8, pre_activation=True).conv
    assert type(bare) is L.conv_class(d) and bare.bias is None
