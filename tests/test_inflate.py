"""I3D inflation: a 2-D network on an image equals its inflated 3-D network on that image
repeated in time."""
import pytest
import torch

from conftest import input_size, tiny_model
from convnet import from_pretrained, save_pretrained
from convnet.layers import InflatedConv
from convnet.models import get_entry, inflate, list_models

# Layers with no 3-D counterpart: inflate refuses them by name.
NOT_INFLATABLE = {"lenet5": "ConnectionTableConv", "lenet1": "ConnectionTableConv", "neocognitron": "SCellLayer",
                  # T repeated frames give T copies of each patch token against one class token.
                  "vit_s_16": "PositionEmbedding", "vit_b_16": "PositionEmbedding", "vit_l_16": "PositionEmbedding"}
INFLATABLE = [n for n in list_models(task="classify") if 2 in get_entry(n).spatial_dims and n not in NOT_INFLATABLE]


@pytest.mark.parametrize("name", INFLATABLE)
def test_inflated_output_equals_2d_on_repeated_frames(name):
    model = tiny_model(name, 2).eval()
    model3d = inflate(model, time_kernel=3).eval()
    s = input_size(name)
    image = torch.randn(2, 2, s, s)
    clip = image.unsqueeze(2).expand(-1, -1, 5, -1, -1).contiguous()  # (B, C, T, H, W)
    with torch.no_grad():
        expected, actual = model(image), model3d(clip)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert model3d.spatial_dims == 3 and model.spatial_dims == 2  # the original is untouched


def test_kernels_repeat_along_time_and_sum_to_the_2d_kernel():
    model = tiny_model("resnet18", 2)
    model3d = inflate(model, time_kernel=5)
    w2 = model.stem.conv.conv.weight
    w3 = model3d.stem.conv.conv.weight
    assert isinstance(model3d.stem.conv.conv, InflatedConv)
    assert w3.shape == (w2.shape[0], w2.shape[1], 5, *w2.shape[2:])
    torch.testing.assert_close(w3.sum(2), w2)
    torch.testing.assert_close(w3[:, :, 0], w3[:, :, 4])
    # 1x1 projections stay 1 in time, as in I3D.
    assert model3d.stages[1].blocks[0].shortcut.conv.weight.shape[2] == 1


def test_time_is_not_padded_with_zeros():
    # Zero padding in time would dim the first and last frames of a constant clip.
    model3d = inflate(tiny_model("vgg11", 2).eval(), time_kernel=3).eval()
    clip = torch.randn(1, 2, 1, 32, 32).expand(-1, -1, 4, -1, -1)
    feats = model3d.forward_features(clip)
    torch.testing.assert_close(feats[:, :, 0], feats[:, :, 2])


def test_inflated_model_round_trips_through_save_pretrained(tmp_path):
    model3d = inflate(tiny_model("resnet18", 2), time_kernel=3).eval()
    save_pretrained(model3d, tmp_path)
    loaded = from_pretrained(tmp_path).eval()
    clip = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), model3d(clip))


@pytest.mark.parametrize("name", sorted(NOT_INFLATABLE))
def test_refusals_are_named(name):
    with pytest.raises(TypeError, match=NOT_INFLATABLE[name]):
        inflate(tiny_model(name, 2))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="odd"):
        inflate(tiny_model("resnet18", 2), time_kernel=2)
    with pytest.raises(ValueError, match="2-D model"):
        inflate(tiny_model("resnet18", 3))
