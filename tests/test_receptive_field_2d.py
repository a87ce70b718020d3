"""Receptive fields in 2-D at an input larger than the field: at the contract tests' input
(tests/test_receptive_field.py) most fields cover the whole input, where a wrong size or jump
would still measure "whole". Here the input is the field plus four jumps per axis, so the
measured extent of the centre unit is its whole field, and must equal the theoretical size.

One model per family whose field is finite (squeeze-and-excitation and attention make a field
global); the ones taking more than a few seconds on 2 cores carry the slow marker.
"""
import pytest
import torch

from conftest import input_size, tiny_model
from convnet.analysis.receptive_field import receptive_field
from convnet.analysis.rf_measurement import clipped_extent, measure_receptive_field

FAST = ["vgg11", "neocognitron", "preact_resnet18"]
SLOW = ["alexnet", "convnext_tiny", "densenet121", "googlenet", "inception_resnet_v2", "mobilenet_v1",
        "mobilenet_v2", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "xception"]


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_matches_gradient_2d_unclipped(name):
    model = tiny_model(name, 2).eval()
    n = input_size(name)
    rf = receptive_field(model, (model.in_channels, n, n))
    size = max(rf.size[0] + 4 * rf.jump[0], n)
    rf = receptive_field(model, (model.in_channels, size, size))
    assert rf.whole == (False, False) and rf.size[0] < size, f"{name}: field {rf.size} not inside {size}"
    with torch.no_grad():
        shape = model.forward_features(torch.zeros(1, model.in_channels, size, size)).shape[2:]
    expected = clipped_extent(rf, shape, (size, size))
    measured = measure_receptive_field(model, (model.in_channels, size, size))
    assert measured == expected, f"{name}: theoretical {rf} -> {expected}, measured {measured}"
    # Not clipped: the measured span is the whole field, on both axes.
    assert all(last - first + 1 == s for (first, last), s in zip(measured, rf.size)), (measured, rf.size)


def test_one_model_of_each_of_14_families():
    """What the README says of this test."""
    from convnet.models import get_entry

    names = FAST + SLOW
    assert len({get_entry(n).family for n in names}) == len(names) == 14
