"""PNG pictures: first-layer filters, feature maps, CAM overlays and ERF heatmaps in 1/2/3 dims."""
import numpy as np
import pytest
import torch
from conftest import tiny_model
from PIL import Image

from convnet.analysis.cam import grad_cam
from convnet.analysis.erf import effective_receptive_field
from convnet.analysis.visualize import (
    first_conv,
    layer_output,
    plot_cam_overlay,
    plot_erf,
    plot_feature_maps,
    plot_filters,
    stack_path,
    to_plane,
)


def _png_ok(path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 500
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_filters(tmp_path, spatial_dims, in_channels):
    model = tiny_model("resnet18", spatial_dims=spatial_dims, in_channels=in_channels)
    name, conv = first_conv(model)
    assert conv.weight.ndim == spatial_dims + 2 and name.startswith("stem")
    w, h = _png_ok(plot_filters(model, tmp_path / "f.png"))
    assert w > 100 and h > 100


def test_filters_of_a_named_layer_and_errors(tmp_path):
    model = tiny_model("vgg11")
    _png_ok(plot_filters(model, tmp_path / "f.png", layer="stages.1.conv0.conv", max_filters=4))
    with pytest.raises(ValueError, match="not a convolution"):
        plot_filters(model, tmp_path / "g.png", layer="head.fc")


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_feature_maps(tmp_path, spatial_dims):
    model = tiny_model("resnet18", spatial_dims=spatial_dims)
    x = torch.randn(1, 2, *(32,) * spatial_dims)  # resnet18's minimum input: its total stride
    maps = layer_output(model, x, "stages.0")
    assert maps.shape[:2] == (1, model.feature_info[0].channels) and maps.ndim == spatial_dims + 2
    _png_ok(plot_feature_maps(maps[0], tmp_path / "m.png", title="stages.0", max_maps=6))
    with pytest.raises(ValueError, match="no layer"):
        layer_output(model, x, "nope")
    with pytest.raises(ValueError, match="feature maps"):
        plot_feature_maps(np.zeros(5), tmp_path / "bad.png")


@pytest.mark.parametrize("spatial_dims,channels", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_cam_overlay(tmp_path, spatial_dims, channels):
    model = tiny_model("resnet18", spatial_dims=spatial_dims, in_channels=channels)
    x = torch.randn(1, channels, *(32,) * spatial_dims)
    r = grad_cam(model, x)
    _png_ok(plot_cam_overlay(x[0], r.cam[0], tmp_path / "cam.png", title="t"))
    with pytest.raises(ValueError, match="disagree"):
        plot_cam_overlay(x[0], r.cam[0][..., :8], tmp_path / "bad.png")


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_erf_plot(tmp_path, spatial_dims):
    model = tiny_model("resnet18", spatial_dims=spatial_dims)
    size = (2,) + (16,) * spatial_dims
    a = effective_receptive_field(model, size, n_inputs=2)
    b = effective_receptive_field(model, size, n_inputs=2, seed=1)
    w1, _ = _png_ok(plot_erf({"init": a}, tmp_path / "one.png"))
    w2, _ = _png_ok(plot_erf({"init": a, "trained": b}, tmp_path / "two.png", title="x"))
    assert w2 > 1.5 * w1  # side by side
    with pytest.raises(ValueError):
        plot_erf({}, tmp_path / "none.png")


def test_helpers():
    a = np.arange(24).reshape(2, 3, 4)
    assert to_plane(a).shape == (3, 4) and (to_plane(a) == a[1]).all()
    assert to_plane(np.arange(5)).shape == (5,)
    assert stack_path("out/erf.png", "init").as_posix() == "out/erf-init.png"
