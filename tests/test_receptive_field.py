"""Receptive fields: the published figures, and the theoretical geometry of every registered
model against an independent measurement (the input gradient of a linearised network)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import input_size, tiny_model
from convnet import layers as L
from convnet.analysis.receptive_field import RF, UnknownGeometry, receptive_field, receptive_fields
from convnet.analysis.rf_measurement import clipped_extent, measure_receptive_field
from convnet.models import create_model, get_entry, list_models

# Models whose geometry cannot be computed: none today. (The neocognitron's V-cell inhibition is
# nonlinear but keeps the gradient non-zero with positive weights, so it is measured too.)
# ViT prepends its class token along the flattened token axis, for which the tracer has no rule
# (the field is the whole input after the first attention layer anyway).
UNCOMPUTABLE: dict[str, str] = {n: "ViT: the class token is concatenated along the token axis"
                                for n in ("vit_s_16", "vit_b_16", "vit_l_16")}


@pytest.mark.parametrize("name, size, expected", [
    ("alexnet", 224, 195),   # Araujo et al. 2019, Table 1 (alexnet_v2 conv features)
    ("vgg16", 224, 212),     # ibid. (vgg_16 after pool5)
    ("resnet50", 224, 427),  # torchvision layout: stride in the 3x3 convolution
])
def test_published_receptive_fields(name, size, expected):
    model = create_model(name)
    rf = receptive_field(model, (3, size, size))
    assert rf.size == (expected, expected) and rf.jump == (32, 32) and rf.whole == (False, False)


def test_per_layer_fields_alexnet():
    rfs = receptive_fields(create_model("alexnet"), (3, 224, 224))
    first = next(iter(rfs.values()))
    assert first == RF((11, 11), (4, 4), (3.0, 3.0))  # conv 11/4 pad 2: centre of unit 0 at 5 - 2
    assert rfs["head.fc"].whole == (True, True) and rfs["head.fc"].size == (224, 224)


def _measure(model, size):
    model.eval()
    rf = receptive_field(model, size)
    with torch.no_grad():
        shape = model.forward_features(torch.zeros(1, *size)).shape[2:]
    return clipped_extent(rf, shape, size[1:]), measure_receptive_field(model, size), rf


def _check(name, spatial_dims, size=None):
    if name in UNCOMPUTABLE:
        pytest.skip(UNCOMPUTABLE[name])
    model = tiny_model(name, spatial_dims=spatial_dims)
    n = size or input_size(name)
    expected, measured, rf = _measure(model, (model.in_channels, *([n] * spatial_dims)))
    assert measured == expected, f"{name}: theoretical {rf} -> {expected}, measured {measured}"
    return rf


@pytest.mark.parametrize("name", list_models(task="classify"))
def test_matches_gradient_2d(name):
    """At the contract tests' input; the field is often clipped to the whole input there."""
    _check(name, 2)


# One model per family runs in the default suite; the rest of the registry (and the slower wide
# fields of the Inception line) carry the slow marker.
FAST_1D = {"alexnet", "vgg11_bn", "resnet18", "resnet50", "resnet20_cifar", "preact_resnet18", "densenet40_cifar",
           "seresnet50", "resnext50_32x4d", "lenet1", "lenet5", "neocognitron", "wrn28_10_cifar"}


@pytest.mark.parametrize("name", [n if n in FAST_1D else pytest.param(n, marks=pytest.mark.slow)
                                  for n in list_models(task="classify")])
def test_matches_gradient_1d_unclipped(name):
    """In 1-D the input can be made longer than the field, so the measured extent is the full
    field of the centre unit: size, jump and start are all checked, not only the clipped span."""
    if name in UNCOMPUTABLE:
        pytest.skip(UNCOMPUTABLE[name])
    entry = get_entry(name)
    if entry.fixed_input_size:
        rf = _check(name, 1)  # its layers only fit one size
    else:
        model = tiny_model(name, spatial_dims=1)
        rf = receptive_field(model, (model.in_channels, input_size(name)))
        length = max(rf.size[0] + 4 * rf.jump[0], input_size(name))
        rf = _check(name, 1, length)
        if not rf.whole[0]:
            expected = clipped_extent(rf, [(length - 1) // rf.jump[0]], (length,))
            assert expected[0][1] - expected[0][0] + 1 == rf.size[0] or expected[0][0] == 0


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "lenet5_modern",
                                  pytest.param("inception_v3", marks=pytest.mark.slow),
                                  pytest.param("xception", marks=pytest.mark.slow)])
def test_matches_gradient_3d(name):
    _check(name, 3)


def test_branches_dilation_groups_and_asymmetric_padding():
    """A hand-made graph: a dilated, grouped branch added to a strided one, concatenated with a
    pool after an asymmetric F.pad. The theoretical field is checked by hand and measured."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = L.conv(2, 4, 4, 3, dilation=3, groups=2)   # k_eff 7, pad 3
            self.b = L.conv(2, 4, 4, 5, stride=1, padding=2, depthwise=True)
            self.pool = L.max_pool(2, 3, 2)
            self.c = L.conv(2, 8, 4, 3, stride=2, padding=1)

        def forward_features(self, x):
            y = self.a(x) + self.b(x)                              # union: 7 wide
            z = self.pool(F.pad(x, (1, 2, 0, 3)))                  # 3 wide, shifted by the pad
            y = self.pool(F.pad(y, (1, 2, 0, 3)))
            return torch.relu(self.c(torch.cat([y, z], 1)))

    net = Net()
    rf = receptive_field(net, (4, 64, 48))
    # after the pool: size 7 + 2 = 9, jump 2; after c: 9 + 2 * 2 = 13, jump 4.
    assert rf.size == (13, 13) and rf.jump == (4, 4)
    # unit 0 of the pool starts at -pad (-0 on H, -1 on W) - 3 (conv a's padding); c pads 1 more at jump 2.
    assert rf.start == (-3 - 0 - 2 + 6.0, -3 - 1 - 2 + 6.0)
    measured = measure_receptive_field(net, (4, 64, 48))
    with torch.no_grad():
        shape = net.forward_features(torch.zeros(1, 4, 64, 48)).shape[2:]
    assert measured == clipped_extent(rf, shape, (64, 48))


def test_meta_device_costs_nothing_and_leaves_model_alone():
    model = create_model("resnet50").train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    rf = receptive_field(model, (3, 1024, 1024))
    assert rf.size == (427, 427) and model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_global_context_and_unknown_ops():
    se = create_model("seresnet50")
    assert receptive_field(se, (3, 224, 224)).whole == (True, True)  # the SE gate sees everything
    assert receptive_field(se, (3, 224, 224), ignore_global_context=True).size == (427, 427)

    class Up(nn.Module):
        def forward_features(self, x):
            return F.interpolate(x, scale_factor=2.0)

        forward = forward_features

    with pytest.raises(UnknownGeometry, match="upsample"):
        receptive_field(Up(), (1, 8, 8))
    assert receptive_fields(Up(), (1, 8, 8)) == {}
