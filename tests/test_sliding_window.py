"""Sliding-window inference and padding to valid sizes (convnet.tasks.sliding_window), and the
input-size solver (convnet.analysis.segment_sizes)."""
import math

import pytest
import torch
from torch import nn

from conftest import tiny_model
from convnet import create_model
from convnet import layers as L
from convnet.analysis.segment_sizes import check_input_size, input_size_table, size_rule, valid_input_sizes
from convnet.tasks.sliding_window import (gaussian_importance, pad_for_model, pad_to_multiple,
                                          sliding_window_inference)


def _padded_net(spatial_dims: int) -> nn.Module:
    """Two padded 3x3 convs: a fully convolutional model whose receptive-field radius is 2."""
    torch.manual_seed(0)
    return nn.Sequential(L.conv(spatial_dims, 2, 4, 3), nn.Tanh(), L.conv(spatial_dims, 4, 3, 3)).eval()


class _Recorder(nn.Module):
    """Counts the windows a model sees per call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.model(x)


@pytest.mark.parametrize("spatial_dims,size,window", [(1, (70,), 16), (2, (40, 37), 16), (3, (21, 18, 20), 8)])
def test_blend_equals_whole_input_inference(spatial_dims, size, window):
    """With a margin of the receptive-field radius, every blended prediction is one a window made
    with its whole context: the result equals running the model on the whole input."""
    model = _Recorder(_padded_net(spatial_dims))
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        full = model.model(x)
    out = sliding_window_inference(model, x, window, overlap=0.5, gaussian=True, batch_size=3, margin=2)
    assert out.shape == full.shape
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)
    # The model never saw more than batch_size windows of the window's size at once.
    assert all(s[0] <= 3 and s[2:] == (window,) * spatial_dims for s in model.shapes)
    assert len(model.shapes) > 1
    # Negative control: without the margin, window borders (zero padding inside the input) show.
    seams = sliding_window_inference(model.model, x, window, overlap=0.5, margin=0)
    assert (seams - full).abs().max() > 1e-3


def test_valid_convolution_unet_tiles_exactly():
    """A valid-convolution U-Net needs no margin: each window's output saw all of its context."""
    model = create_model("unet", widths=(4, 8), in_channels=1, num_classes=2).eval()
    assert model.output_size(28) == (12, 12)  # window 28 -> 12 (a margin of 8 per side)
    x = torch.randn(1, 1, 60, 60)
    with torch.no_grad():
        full = model(x)
    assert full.shape == (1, 2, 44, 44)
    out = sliding_window_inference(model, x, 28, overlap=0.5, batch_size=2)
    assert out.shape == full.shape
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)
    model1d = create_model("unet", spatial_dims=1, widths=(4, 8), in_channels=1, num_classes=2).eval()
    x = torch.randn(1, 1, 92)
    with torch.no_grad():
        torch.testing.assert_close(sliding_window_inference(model1d, x, 28, overlap=0.25), model1d(x),
                                   rtol=1e-5, atol=1e-5)


def test_segmentation_model_in_three_dims_and_small_inputs():
    model = tiny_model("vnet", 3, in_channels=1, num_classes=2).eval()
    assert model.output_stride == 4
    x = torch.randn(1, 1, 20, 24, 12)
    out = sliding_window_inference(model, x, 8, overlap=0.25, batch_size=4)
    assert out.shape == (1, 2, 20, 24, 12) and torch.isfinite(out).all()
    # An input smaller than the window is padded, and the output cropped back.
    small = torch.randn(1, 1, 5, 6, 7)
    assert sliding_window_inference(model, small, 8).shape == (1, 2, 5, 6, 7)
    # Dict outputs (aux heads) use "out".
    fcn = tiny_model("fcn_resnet50", in_channels=3, num_classes=4).eval()
    fcn.return_aux = True
    assert sliding_window_inference(fcn, torch.randn(1, 3, 40, 40), 32).shape == (1, 4, 40, 40)


def test_gaussian_importance_map():
    w = gaussian_importance((16, 16))
    assert w.shape == (16, 16) and w.max().item() == pytest.approx(1.0, abs=0.02)
    torch.testing.assert_close(w, w.flip(0))
    torch.testing.assert_close(w, w.T)
    assert w.min() > 0
    # sigma = 16 / 8 = 2: one sigma from the centre (7.5) along one axis is exp(-1/2) of the centre.
    line = gaussian_importance((17,))
    assert line[8].item() == 1.0 and line[10].item() == pytest.approx(math.exp(-0.5 * (2 / 17 * 8) ** 2), rel=1e-6)


def test_sliding_window_errors():
    model = _padded_net(2)
    x = torch.randn(1, 2, 32, 32)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        sliding_window_inference(model, x, 16, overlap=1.0)
    with pytest.raises(ValueError, match="leaves positions no window predicts; use overlap >= 0.5"):
        sliding_window_inference(model, x, 16, overlap=0.25, margin=4)
    with pytest.raises(ValueError, match="window .* has 3 entries"):
        sliding_window_inference(model, x, (8, 8, 8))
    unet = create_model("unet", widths=(4, 8, 16)).eval()
    with pytest.raises(ValueError, match="extent 50 .* nearest valid: 48 or 52"):
        sliding_window_inference(unet, torch.randn(1, 1, 64, 64), 50)


# -- padding ----------------------------------------------------------------------------------------

def test_pad_to_multiple_and_crop_back():
    x = torch.randn(2, 3, 18, 33, 16)
    padded, crop = pad_to_multiple(x, 8)
    assert padded.shape == (2, 3, 24, 40, 16)
    assert torch.equal(padded[crop], x)
    padded, crop = pad_to_multiple(x, (4, 1, 16), mode="reflect")
    assert padded.shape == (2, 3, 20, 33, 16) and torch.equal(padded[crop], x)
    with pytest.raises(ValueError, match="divisor must be positive"):
        pad_to_multiple(x, 0)
    # A model with a divisor: pad, run, crop back to the input's size.
    vnet = tiny_model("vnet", 3, in_channels=3, num_classes=2).eval()
    with pytest.raises(ValueError, match="pad_to_multiple"):
        vnet(x)
    padded, crop = pad_to_multiple(x, vnet.size_divisor)
    with torch.no_grad():
        assert vnet(padded)[crop].shape == (2, 2, 18, 33, 16)


def test_pad_for_model_is_ronnebergers_overlap_tile():
    """Mirror the input by the U-Net's margin so that the output covers every input pixel."""
    model = create_model("unet", widths=(4, 8, 16)).eval()
    x = torch.randn(1, 1, 50, 61)
    padded, crop = pad_for_model(model, x)
    assert all(model.valid_size(s) for s in padded.shape[2:])
    with torch.no_grad():
        out = model(padded)[crop]
    assert out.shape == (1, 2, 50, 61)
    # The padding is a mirror image: the row just before the input repeats the second row.
    top = crop[2].start + (padded.shape[2] - model.output_size(padded.shape[2:])[0]) // 2
    assert torch.equal(padded[0, 0, top - 1], padded[0, 0, top + 1])
    fcn = tiny_model("fcn_resnet50").eval()
    padded, crop = pad_for_model(fcn, torch.randn(1, 2, 37, 41))
    assert padded.shape == (1, 2, 37, 41)  # any size: nothing to pad


# -- the input-size solver --------------------------------------------------------------------------

def test_valid_input_sizes_for_every_segmentation_model():
    rows = {r["name"]: r for r in input_size_table()}
    assert rows["unet"]["valid"] == [556, 572] and rows["unet"]["output"] == [372, 388]
    assert rows["unet3d"]["valid"] == [124, 132] and rows["unet3d"]["output"] == [36, 44]
    assert rows["vnet"]["size_divisor"] == 16 and rows["vnet"]["valid"] == [112, 128]
    assert rows["fcn_resnet50"]["size_divisor"] == 1
    assert "multiples of 16" in rows["vnet"]["rule"]
    assert "valid convolutions" in rows["unet"]["rule"] and "188 -> 4" in rows["unet"]["rule"]
    assert valid_input_sizes("unet", count=3) == [188, 204, 220]
    assert valid_input_sizes("vnet", near=100, count=2) == [96, 112]
    assert check_input_size("unet", 572) == (388, 388)
    with pytest.raises(ValueError, match="nearest valid: 96 or 112"):
        check_input_size("vnet", 100)
    encoder_unet = create_model("unet", encoder="resnet18", in_channels=3)
    assert size_rule(encoder_unet) == "multiples of 32 (output = input size)"
    with pytest.raises(ValueError, match="not a segmentation model"):
        valid_input_sizes("resnet18")
