"""AlexNet (torchvision's and the 2012 paper's), LeNet-1, and the torchvision AlexNet/VGG key maps."""
import pytest
import torch
from conftest import tiny_model
from oracle import DEVICES, assert_loads_same, torchvision_models
from torch import nn

from convnet import create_model, model_info
from convnet.models import get_entry
from convnet.models.lenet import H3_TABLE
from convnet.weights.keymaps import KEYMAPS, convert


# --------------------------------------------------------------------------- key maps (oracle)
@pytest.mark.parametrize("device", DEVICES)
def test_torchvision_alexnet_loads(device, tmp_path):
    tv = torchvision_models()
    assert_loads_same("alexnet", tv.alexnet(), tmp_path, input_size=64, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg16"])
def test_torchvision_vgg_loads(name, device, tmp_path):
    tv = torchvision_models()
    assert_loads_same(name, getattr(tv, name)(), tmp_path, input_size=32, device=device)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg13", "vgg13_bn", "vgg16_bn", "vgg19", "vgg19_bn"])
def test_torchvision_vgg_loads_all(name, tmp_path):
    tv = torchvision_models()
    assert_loads_same(name, getattr(tv, name)(), tmp_path, input_size=32)


VGGS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def test_each_vgg_layout_fits_exactly_one_model_and_map():
    """All eight torchvision layouts, by keys and shapes (on the meta device: no memory): each
    checkpoint converts into its own model through exactly one map, and into no other model."""
    tv = torchvision_models()
    with torch.device("meta"):
        theirs = {n: getattr(tv, n)().state_dict() for n in VGGS}
        ours = {n: create_model(n) for n in VGGS}
    vgg_maps = [k for k in KEYMAPS if "vgg" in k.families]
    assert len(vgg_maps) == 8
    for name, state in theirs.items():
        expected = {k: v.shape for k, v in ours[name].state_dict().items()}
        fits = [k.source for k in vgg_maps
                if {a: v.shape for a, v in k.apply(state, ours[name]).items()} == expected]
        assert fits == [f"torchvision.models.vgg ({name})"]
        for other in VGGS:
            assert (convert(state, ours[other]) is not None) == (other == name), (name, other)


def test_torchvision_alexnet_does_not_fit_the_paper_layout():
    tv = torchvision_models()
    with torch.device("meta"):
        state = tv.alexnet().state_dict()
        assert convert(state, create_model("alexnet")) is not None
        assert convert(state, create_model("alexnet_original")) is None


# --------------------------------------------------------------------------- AlexNet, the paper
@pytest.fixture(scope="module")
def original():
    torch.manual_seed(0)
    return create_model("alexnet_original").eval()


# Krizhevsky et al. 2012, §3.5 and Fig. 2, typed from the paper: (kernels K, size F, input maps
# C, groups) per convolution, then (outputs, inputs) per fully connected layer.
PAPER_CONVS = {"conv1": (96, 11, 3, 1), "conv2": (256, 5, 96, 2), "conv3": (384, 3, 256, 1),
               "conv4": (384, 3, 384, 2), "conv5": (256, 3, 384, 2)}
PAPER_FCS = {"fc1": (4096, 256 * 6 * 6), "fc2": (4096, 4096), "fc": (1000, 4096)}


def _conv_params(k, f, c, groups):
    return k * (f * f * c // groups + 1)


def test_alexnet_original_parameter_count_from_layer_table(original):
    per_layer = {n: _conv_params(*row) for n, row in PAPER_CONVS.items()}
    per_layer.update({n: o * (i + 1) for n, (o, i) in PAPER_FCS.items()})
    assert per_layer == {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                         "conv5": 442_624, "fc1": 37_752_832, "fc2": 16_781_312, "fc": 4_097_000}
    total = sum(per_layer.values())
    assert round(total / 1e6) == 61 and 60e6 < total < 61e6  # the paper: "60 million parameters"
    modules = dict(original.named_modules())
    counted = {n: sum(p.numel() for p in modules[path].parameters()) for n, path in [
        ("conv1", "stages.0.conv1"), ("conv2", "stages.1.conv2"), ("conv3", "stages.2.conv3"),
        ("conv4", "stages.2.conv4"), ("conv5", "stages.2.conv5"),
        ("fc1", "head.fc1"), ("fc2", "head.fc2"), ("fc", "head.fc")]}
    assert counted == per_layer
    assert model_info("alexnet_original")["params"] == total == get_entry("alexnet_original").reference_params


def test_alexnet_torchvision_parameter_count_from_layer_table():
    widths, sizes, c = (64, 192, 384, 256, 256), (11, 5, 3, 3, 3), 3
    total = 0
    for k, f in zip(widths, sizes):
        total += _conv_params(k, f, c, 1)
        c = k
    total += 4096 * (256 * 36 + 1) + 4096 * 4097 + 1000 * 4097
    assert total == model_info("alexnet")["params"] == 61_100_840


def test_alexnet_original_groups_are_the_two_gpu_split(original):
    convs = {n: m for n, m in original.named_modules() if isinstance(m, nn.Conv2d)}
    shapes = {n.split(".")[2]: (tuple(m.weight.shape), m.groups) for n, m in convs.items()}
    assert shapes == {
        "conv1": ((96, 3, 11, 11), 1),
        "conv2": ((256, 48, 5, 5), 2),  # each half sees only its own GPU's 48 conv1 maps
        "conv3": ((384, 256, 3, 3), 1),  # conv3 sees all conv2 maps (§3.5)
        "conv4": ((384, 192, 3, 3), 2),
        "conv5": ((256, 192, 3, 3), 2),
    }
    # And it behaves as a split: conv2's first 128 maps ignore conv1's second 48.
    conv2 = original.stages[1].conv2.conv
    x = torch.randn(1, 96, 9, 9)
    y = x.clone()
    y[:, 48:] = torch.randn(1, 48, 9, 9)
    with torch.no_grad():
        a, b = conv2(x), conv2(y)
    torch.testing.assert_close(a[:, :128], b[:, :128])
    assert not torch.allclose(a[:, 128:], b[:, 128:])


def test_alexnet_original_lrn_after_relu_before_pool(original):
    names = [[n for n, _ in stage.named_children()] for stage in original.stages]
    assert names == [["conv1", "lrn1", "pool"], ["conv2", "lrn2", "pool"], ["conv3", "conv4", "conv5", "pool"]]
    for stage, conv in ((0, "conv1"), (1, "conv2")):
        unit = getattr(original.stages[stage], conv)
        assert isinstance(unit.norm, nn.Identity) and isinstance(unit.act, nn.ReLU)  # ReLU, then LRN
        lrn = getattr(original.stages[stage], f"lrn{stage + 1}")
        assert isinstance(lrn, nn.LocalResponseNorm) and lrn.size == 5 and lrn.k == 2 and lrn.beta == 0.75
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in create_model("alexnet", **get_entry(
        "alexnet").extra["tiny"]).modules())


def test_lrn_is_the_papers_formula(original):
    """§3.3: b_i = a_i / (k + alpha * sum over j in [i - n/2, i + n/2] of a_j^2)^beta, with k=2,
    n=5, alpha=1e-4, beta=0.75 and alpha NOT divided by n (torch's convention divides it)."""
    a = torch.rand(1, 7, 3, 3) * 60  # large enough that alpha * sum matters
    expected = torch.empty_like(a)
    for i in range(7):
        window = a[:, max(0, i - 2):min(7, i + 3)].square().sum(1)
        expected[:, i] = a[:, i] / (2 + 1e-4 * window) ** 0.75
    torch.testing.assert_close(original.stages[0].lrn1(a), expected)
    caffe = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)(a)
    assert not torch.allclose(caffe, expected, rtol=1e-3, atol=0)


def test_alexnet_original_input_227_gives_figure_2_sizes(original):
    sizes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[1:])))
             for n, m in original.named_modules() if n.endswith(("conv1", "conv2", "conv5", "pool"))]
    with torch.no_grad():
        out = original(torch.randn(1, 3, 227, 227))
    for h in hooks:
        h.remove()
    assert out.shape == (1, 1000)
    # Fig. 2: 55x55x96, 27x27x256, 13x13x256, and 6x6x256 = 9216 inputs to fc6.
    assert sizes["stages.0.conv1"] == (96, 55, 55) and sizes["stages.0.pool"] == (96, 27, 27)
    assert sizes["stages.1.conv2"] == (256, 27, 27) and sizes["stages.1.pool"] == (256, 13, 13)
    assert sizes["stages.2.conv5"] == (256, 13, 13) and sizes["stages.2.pool"] == (256, 6, 6)
    assert get_entry("alexnet_original").input_size == 227
    # The paper's 224 does not tile: (224 - 11) / 4 + 1 = 54.25.
    assert (224 - 11) % 4 and (227 - 11) % 4 == 0


def test_alexnet_original_paper_init():
    fresh = create_model("alexnet_original")
    ones = {"stages.1.conv2.conv", "stages.2.conv4.conv", "stages.2.conv5.conv", "head.fc1", "head.fc2"}
    for name, m in fresh.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.all(m.bias == (1.0 if name in ones else 0.0)), name
            assert abs(m.weight.std().item() - 0.01) < 1e-3, name


@pytest.mark.parametrize("name,after", [("alexnet_original", True), ("alexnet", False)])
def test_dropout_placement(name, after):
    """The paper drops the outputs of fc6 and fc7 (§4.2); torchvision drops their inputs. In
    training mode, the inputs each linear layer receives tell the two apart."""
    model = tiny_model(name, 2, in_channels=3).train()
    head = model.head
    seen = {}
    hooks = [getattr(head, n).register_forward_pre_hook(lambda m, a, n=n: seen.__setitem__(n, a[0].clone()))
             for n in ("fc1", "fc2", "fc")]
    with torch.no_grad():
        feats = model.forward_features(torch.randn(4, 3, 67, 67))
        pooled = head.pool(feats).flatten(1)
        head(feats)
        clean_fc_in = torch.relu(head.fc2(seen["fc2"]))
    for h in hooks:
        h.remove()

    def dropped_from(x, ref):  # every entry 0 or 1/(1-p) = 2 times the reference, some zeroed
        return bool(((x == 0) | torch.isclose(x, 2 * ref)).all()) and not torch.equal(x, ref)

    assert head.dropout_after_fc is after
    if after:
        assert torch.equal(seen["fc1"], pooled)
        assert dropped_from(seen["fc"], clean_fc_in)
    else:
        assert dropped_from(seen["fc1"], pooled)
        torch.testing.assert_close(seen["fc"], clean_fc_in)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_original"])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_alexnet_every_dim_reaches_the_6x6_head(name, spatial_dims):
    model = tiny_model(name, spatial_dims, pool_size=6).eval()
    s = get_entry(name).extra["test_input"]
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 2, *([s] * spatial_dims)))
        pooled = model.head.pool(feats)
    assert pooled.shape[2:] == (6,) * spatial_dims
    assert model.head.fc1.in_features == 16 * 6 ** spatial_dims


# --------------------------------------------------------------------------- LeNet-1
def test_lenet1_layer_shapes():
    """NIPS 2, p. 400: 28x28 -> H1 4@24x24 -> H2 4@12x12 -> H3 12@8x8 -> H4 12@4x4 -> 10."""
    model = create_model("lenet1").eval()
    x = torch.randn(2, 1, 28, 28)
    shapes = {}
    for name, layer in model.features.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    assert {k: v for k, v in shapes.items() if k.startswith("h")} == {
        "h1": (4, 24, 24), "h2": (4, 12, 12), "h3": (12, 8, 8), "h4": (12, 4, 4)}
    assert model.head(x).shape == (2, 10)
    for d in (1, 3):
        m = create_model("lenet1", spatial_dims=d)
        assert m.forward_features(torch.randn(1, 1, *([28] * d))).shape == (1, 12) + (4,) * d
        assert m.head.fc.in_features == 12 * 4 ** d


def test_lenet1_parameters_per_layer():
    """H1 4 x (25 + 1); H2, H4 a coefficient and a bias per map; H3 20 connections of 25 weights
    plus 12 biases; the output 10 x (192 + 1): 2,578 (p. 402), "about 2,600" in 1995."""
    expected = {"h1": 4 * (5 * 5 + 1), "h2": 4 * 2, "h3": 20 * 25 + 12, "h4": 12 * 2, "fc": 10 * (12 * 4 * 4 + 1)}
    model = create_model("lenet1")
    counted = {n: sum(p.numel() for p in getattr(model.features, n).parameters()) for n in ("h1", "h2", "h3", "h4")}
    counted["fc"] = sum(p.numel() for p in model.head.fc.parameters())
    assert counted == expected
    assert sum(expected.values()) == 2_578 == model_info("lenet1")["params"]
    assert abs(2_578 - 2_600) / 2_600 < 0.01


def test_lenet1_h3_table_is_two_modules():
    """Table 1: each H3 map sees one or two 5x5 neighbourhoods; maps 1-6 read H2 maps 1-2 only
    and maps 7-12 read 3-4 only; maps 1, 4, 7, 10 see a single map."""
    assert sum(len(t) for t in H3_TABLE) == 20
    assert all(set(t) <= {0, 1} for t in H3_TABLE[:6]) and all(set(t) <= {2, 3} for t in H3_TABLE[6:])
    assert [i for i, t in enumerate(H3_TABLE) if len(t) == 1] == [0, 3, 6, 9]
    h3 = create_model("lenet1").features.h3
    x = torch.randn(1, 4, 12, 12)
    y = x.clone()
    y[:, 2:] = torch.randn(1, 2, 12, 12)
    with torch.no_grad():
        a, b = h3(x), h3(y)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_lenet1_fixed_input_and_registry():
    entry = get_entry("lenet1")
    assert (entry.family, entry.year, entry.input_size, entry.fixed_input_size) == ("lenet", 1989, 28, True)
    model = create_model("lenet1")
    with pytest.raises(ValueError, match=r"expects spatial size \(28, 28\), got \(32, 32\)"):
        model(torch.randn(1, 1, 32, 32))
    full = create_model("lenet1", partial_h3=False)
    assert sum(p.numel() for p in full.parameters()) == 2_578 + 28 * 25  # the 28 absent connections
