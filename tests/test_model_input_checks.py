"""Input a classifier cannot take is refused by its forward with one line naming the expected and
the actual dtype or size (models/_base.py ``check_input``), instead of a raw torch error or a
silent run on a map of padding."""
from __future__ import annotations

import pytest
import torch

from conftest import input_size, tiny_model
from convnet.models import get_entry, inflate, list_models

CLASSIFIERS = list_models(task="classify")
# Families whose unpadded layers need more than their total stride, and that do not declare it
# yet (ConvNetClassifier.min_input_size, set in the family file): at their total stride the
# network fails inside torch. Remove a name once its family sets min_input_size.


def test_resnet50_at_8x8_names_the_minimum_size():
    model = tiny_model("resnet50", 2, in_channels=3)
    assert model.min_spatial_size() == 32 == model.feature_info[-1].reduction
    with pytest.raises(ValueError, match=r"^resnet50 expects spatial size at least \(32, 32\), got \(8, 8\) "
                                         r"\(its layers downsample by 32 in all; resize or pad the input\)$"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"at least \(32, 32\), got \(64, 31\)"):  # every axis counts
        model(torch.randn(1, 3, 64, 31))
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])
def test_a_dtype_the_model_does_not_take_names_both(dtype):
    model = tiny_model("resnet18", 2, in_channels=3)
    x = torch.zeros(1, 3, 32, 32, dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match=rf"^resnet18 expects input of dtype float32 \(its parameters'\), got {name}; "
                                         rf"convert with x\.to\(torch\.float32\)$"):
        model(x)


def test_the_expected_dtype_follows_the_parameters_and_autocast():
    model = tiny_model("resnet18", 2, in_channels=3).eval()
    assert model.double()(torch.zeros(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match="expects input of dtype float64.*got float32"):
        model(torch.zeros(1, 3, 32, 32))
    model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for the layers: any float goes in
        assert model(torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16
        with pytest.raises(ValueError, match="got int64"):
            model(torch.zeros(1, 3, 32, 32, dtype=torch.int64))


def test_an_inflated_model_checks_height_and_width_only():
    model = inflate(tiny_model("resnet18", 2, in_channels=3)).eval()
    assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 5)  # two frames: time is not reduced
    with pytest.raises(ValueError, match=r"at least \(32, 32\), got \(4, 16, 16\)"):
        model(torch.randn(1, 3, 4, 16, 16))


CASES = [(n, d) for n in CLASSIFIERS for d in get_entry(n).spatial_dims]


@pytest.mark.parametrize("name,spatial_dims", CASES)
def test_every_classifier_refuses_below_its_minimum_and_accepts_its_test_input(name, spatial_dims):
    model = tiny_model(name, spatial_dims)
    s = input_size(name)
    model.check_input(torch.zeros(1, 2, *([s] * spatial_dims)))
    minimum = model.min_spatial_size()
    if minimum is None:  # a fixed size instead
        assert get_entry(name).fixed_input_size
        return
    assert minimum <= s
    model.check_input(torch.zeros(1, 2, *([minimum] * spatial_dims)))
    if minimum > 1:
        small = [minimum] * spatial_dims
        small[-1] = minimum - 1
        with pytest.raises(ValueError, match=rf"at least \({minimum},"):
            model.check_input(torch.zeros(1, 2, *small))


@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if not get_entry(n).fixed_input_size])
def test_every_classifier_runs_at_its_minimum(name):
    """The minimum check_input names is one the network takes."""
    model = tiny_model(name, 2).eval()
    m = model.min_spatial_size()
    with torch.no_grad():
        assert model(torch.randn(1, 2, m, m)).shape == (1, 5)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_original", "inception_v3", "inception_v4",
                                  "inception_resnet_v2"])
def test_declared_minimum_is_the_smallest_input_the_layers_take(name):
    """Families whose unpadded layers need more than the total stride declare it, and it is tight:
    with the check lowered, one pixel less fails inside the network."""
    model = tiny_model(name, 2).eval()
    m = model.min_spatial_size()
    assert m > model.total_stride()
    model.min_input_size = 1  # let the input through check_input to reach the layers
    with torch.no_grad():
        assert model(torch.randn(1, 2, m, m)).shape == (1, 5)
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 2, m - 1, m - 1))
