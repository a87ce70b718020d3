"""Key maps: other libraries' checkpoints load into convnet models and predict the same."""
import pytest
import torch

from convnet import create_model
from convnet.weights import load_state
from oracle import DEVICES, assert_loads_same, torchvision_models


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet(name, device, tmp_path):
    tv = torchvision_models()
    assert_loads_same(name, getattr(tv, name)(), tmp_path, device=device)


def test_torchvision_safetensors_file(tmp_path):
    tv = torchvision_models()
    assert_loads_same("resnet18", tv.resnet18(), tmp_path, fmt="safetensors")


def test_unknown_layout_lists_keys():
    model = create_model("resnet18", layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8)
    state = {"backbone.weird.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"missing keys: head\.fc\.bias.*unexpected keys: backbone\.weird\.weight"):
        load_state(model, state, "x.pth")
