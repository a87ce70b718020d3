"""The article's formulas against real layers, and the input-size solver against real models."""
import pytest
import torch

from conftest import tiny_model
from convnet import layers as L
from convnet.analysis.formulas import (
    conv_output_size,
    conv_params,
    dilated_kernel_size,
    input_size_info,
    stacked_receptive_field,
)
from convnet.analysis.receptive_field import receptive_field


@pytest.mark.parametrize("size, k, s, p, d", [(224, 7, 2, 3, 1), (227, 11, 4, 0, 1), (32, 3, 1, 1, 1),
                                              (65, 3, 2, 2, 2), (17, 5, 3, 0, 1), (9, 3, 1, 0, 4)])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_conv_output_size_matches_layers(size, k, s, p, d, dims):
    conv = L.conv(dims, 1, 1, k, stride=s, padding=p, dilation=d)
    out = conv(torch.zeros(1, 1, *([size] * dims), device="meta")).shape[2]
    assert conv_output_size(size, k, s, p, d, exact=False) == out
    f = dilated_kernel_size(k, d)
    if (size - f + 2 * p) % s:
        with pytest.raises(ValueError, match="not an integer"):
            conv_output_size(size, k, s, p, d)
    else:
        assert conv_output_size(size, k, s, p, d) == out


def test_conv_output_size_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(4, 3, dilation=3)
    with pytest.raises(RuntimeError):  # torch agrees
        L.conv(2, 1, 1, 3, padding=0, dilation=3)(torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("dims, k, cin, cout, groups, bias", [(2, 3, 64, 128, 1, True), (2, 5, 3, 6, 1, True),
                                                               (3, 3, 8, 16, 4, False), (1, 7, 32, 32, 32, True),
                                                               (2, 1, 10, 20, 2, False)])
def test_conv_params_matches_layers(dims, k, cin, cout, groups, bias):
    conv = L.conv(dims, cin, cout, k, groups=groups, bias=bias)
    assert conv_params(cout, k, cin, dims, groups, bias) == sum(p.numel() for p in conv.parameters())


@pytest.mark.parametrize("k, r", [(3, 1), (3, 2), (3, 4), (5, 3), (1, 7)])
def test_dilated_kernel_matches_layer_field(k, r):
    conv = L.conv(1, 1, 1, k, dilation=r, padding=0)
    assert dilated_kernel_size(k, r) == receptive_field(conv, (1, 64)).size[0]
    assert dilated_kernel_size(k, r) == k + (k - 1) * (r - 1)


@pytest.mark.parametrize("layers, f", [(1, 3), (2, 3), (3, 3), (4, 5), (6, 7)])
def test_stacked_field_matches_a_real_stack(layers, f):
    stack = torch.nn.Sequential(*[L.conv(2, 1, 1, f) for _ in range(layers)])
    assert receptive_field(stack, (1, 64, 64)).size == (stacked_receptive_field(layers, f),) * 2


def test_two_3x3_see_what_one_5x5_sees():
    two = torch.nn.Sequential(L.conv(2, 1, 1, 3), L.conv(2, 1, 1, 3))
    one = L.conv(2, 1, 1, 5)
    assert receptive_field(two, (1, 32, 32)) == receptive_field(one, (1, 32, 32))
    assert stacked_receptive_field(2, 3) == stacked_receptive_field(1, 5) == 5
    # and with fewer parameters: 2 x 3^2 C^2 against 5^2 C^2 (Simonyan & Zisserman, §2.3)
    assert 2 * conv_params(8, 3, 8, bias=False) < conv_params(8, 5, 8, bias=False)


def test_resnet_sizes():
    model = tiny_model("resnet50", spatial_dims=1)
    info = input_size_info(model, range(1, 100))
    # Every layer is padded, so any size computes; the model takes its total stride and more
    # (check_input: below it the last stages downsample a one-pixel map).
    assert info.minimum == 32 == model.min_spatial_size() and info.runs == tuple(range(32, 100))
    assert info.aligned == (32, 64, 96) and info.stride == 32
    assert info.padding_for(70) == 26 and info.padding_for(64) == 0
    # exact (no layer floors): the 7/2 pad 3 stem needs W - 1 even at every stride-2 layer.
    assert info.exact == (33, 65, 97)


def test_inception_v3_minimum_is_75():
    info = input_size_info(tiny_model("inception_v3", spatial_dims=1), range(70, 80))
    assert info.minimum == 75 and info.runs == tuple(range(75, 80))
    with pytest.raises(ValueError, match="no aligned"):
        info.padding_for(79)


def test_alexnet_sizes():
    info = input_size_info(tiny_model("alexnet_original", spatial_dims=1), range(60, 240))
    # Krizhevsky's 227: (227 - 11)/4 + 1 = 55, then 3/2 pools: 27, 13, 6, all exact.
    assert 227 in info.exact and 224 not in info.exact and 224 in info.runs
    for n in info.exact:  # the solver agrees with the formula, layer by layer
        size = conv_output_size(n, 11, 4)
        assert size > 0
    assert info.minimum == min(info.runs)
    assert input_size_info(tiny_model("alexnet", spatial_dims=1), range(60, 70)).minimum == 63
