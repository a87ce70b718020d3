"""convnet.summary: per-layer shapes, parameters, MACs, other ops, memory and receptive fields.

MAC formulas are checked on single layers by hand; the totals of whole networks against the
published figures (torchvision's model cards give ResNet-50 "4.09 GFLOPS", which are MACs).
Big models are built on the meta device, where nothing is computed, so the pins are instant.
"""
import json
import math

import pytest
import torch
from conftest import input_size, tiny_model
from torch import nn

from convnet import create_model, list_models
from convnet import layers as L
from convnet.analysis.summary import ModelSummary, summary
from convnet.models.lenet import C3_TABLE


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def _row(s: ModelSummary, name: str):
    return next(r for r in s.rows if r.name == name)


def _single(layer: nn.Module, shape: tuple[int, ...], **kw) -> ModelSummary:
    return summary(nn.Sequential(layer), shape, receptive_field=False, **kw)


# Published conv + linear MACs at 224 x 224, 3 channels, 1000 classes (torchvision model cards:
# ResNet-50 4.09 G, VGG-16 15.47 G, AlexNet 0.71 G; they call them GFLOPS but count MACs).
@pytest.mark.parametrize("name, gmacs", [("resnet50", 4.09), ("vgg16", 15.47), ("alexnet", 0.71)])
def test_published_macs(name, gmacs):
    s = summary(_meta(name), (3, 224, 224), receptive_field=False)
    assert round(s.total_macs / 1e9, 2) == gmacs
    assert s.total_flops == 2 * s.total_macs
    assert s.uncounted == []


@pytest.mark.parametrize("layer, shape, macs", [
    # output elements x (in / groups) x kernel volume
    (L.conv(2, 8, 16, 3, groups=4), (8, 10, 10), 16 * 10 * 10 * 2 * 9),
    (L.conv(2, 8, 8, 3, depthwise=True), (8, 10, 10), 8 * 10 * 10 * 1 * 9),
    (L.conv(2, 4, 6, 3, padding=0, dilation=2), (4, 12, 12), 6 * 8 * 8 * 4 * 9),  # 12 - 2*(3-1) = 8
    (L.conv(2, 4, 6, 3, stride=2), (4, 11, 11), 6 * 6 * 6 * 4 * 9),  # (11 + 2 - 3) // 2 + 1 = 6
    (L.conv(1, 3, 5, 7), (3, 20), 5 * 20 * 3 * 7),
    (L.conv(3, 2, 4, 3, stride=(1, 2, 2)), (2, 5, 8, 8), 4 * 5 * 4 * 4 * 2 * 27),
    # a transposed convolution: input elements x (out / groups) x kernel volume
    (L.conv_transpose(2, 4, 6, 2, stride=2), (4, 5, 5), 4 * 5 * 5 * 6 * 4),
    (nn.Linear(20, 30), (20,), 20 * 30),
    (nn.Linear(20, 30), (7, 20), 7 * 20 * 30),  # a 3-D input goes through a batched matmul
])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_layer_macs(layer, shape, macs, batch_size):
    s = _single(layer, shape, batch_size=batch_size)
    assert s.total_macs == macs and s.rows[0].macs == macs
    assert s.total_flops == 2 * macs and s.rows[0].flops == 2 * macs


def test_same_conv_counts_its_inner_convolution():
    s = _single(L.conv(2, 4, 6, 3, stride=2, padding="same"), (4, 11, 11))  # ceil(11 / 2) = 6
    row = _row(s, "0.conv")
    assert row.macs == s.total_macs == 6 * 6 * 6 * 4 * 9
    assert (row.kernel, row.stride, row.dilation) == ((3, 3), (2, 2), (1, 1))
    assert s.output_shape == (6, 6, 6)


def test_inflated_conv():
    conv = L.InflatedConv(4, 6, (3, 3, 3), padding=(0, 1, 1), time_pad=1)
    s = _single(conv, (4, 5, 7, 7))
    assert s.output_shape == (6, 5, 7, 7)
    assert s.total_macs == 6 * 5 * 7 * 7 * 4 * 27


def test_connection_table_counts_only_real_connections():
    """LeNet-5's C3 (LeCun et al. 1998, Table I): 60 of the 6 x 16 input/output pairs."""
    s = summary(create_model("lenet5"), receptive_field=False)
    c3 = _row(s, "features.c3")
    connections = sum(len(t) for t in C3_TABLE)
    assert connections == 60 and c3.output_shape == (16, 10, 10)
    assert c3.macs == connections * 25 * 10 * 10 < 16 * 6 * 25 * 10 * 10
    assert c3.params == connections * 25 + 16 and s.total_params == 60_000
    assert s.total_macs == sum(r.macs for r in s.rows)


def test_functional_matmul_and_other_ops():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(12, 3))
            self.lrn = L.LocalResponseNorm()

        def forward(self, x):  # x (B, 12, 4, 4)
            y = self.lrn(x).relu()
            return y.mean((2, 3)) @ self.w + torch.nn.functional.conv1d(y.flatten(2), torch.ones(3, 12, 2))[:, :, 0]

    s = summary(Functional(), (12, 4, 4), receptive_field=False)
    lrn = _row(s, "lrn")
    assert lrn.macs == 0 and lrn.other_ops > 0  # LocalResponseNorm is not a MAC layer
    model = _row(s, "")
    assert model.macs == 12 * 3 + 3 * 15 * 12 * 2  # matmul + functional 1-D conv over 16 - 1 positions
    assert model.kernel == (2,)  # a functional convolution's kernel is reported too
    # relu 192 + mean 192 (one op per input element) + add 3 = 387, plus the LRN's own ops
    assert model.other_ops == 192 + 192 + 3
    assert s.other_ops == lrn.other_ops + model.other_ops and s.uncounted == []


def test_pooling_and_activation_other_ops():
    s = _single(L.max_pool(2, 3, 2), (4, 9, 9))  # out 4 x 4 x 4, a 3 x 3 window each
    assert s.total_macs == 0 and s.other_ops == 4 * 4 * 4 * 9
    assert (s.rows[0].kernel, s.rows[0].stride) == ((3, 3), (2, 2))
    s = _single(nn.BatchNorm2d(4), (4, 5, 5))
    assert s.other_ops == 4 * 25


def test_activation_memory_is_the_sum_of_layer_outputs():
    model = nn.Sequential(L.conv(2, 3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10))
    s = summary(model, (3, 6, 6), batch_size=4, receptive_field=False)
    assert [r.output_shape for r in s.rows] == [(8, 6, 6), (8, 6, 6), (8, 6, 6), (288,), (10,)]
    # batch x numel x float32 of every output; the flatten is a view of the ReLU's, not new memory
    expected = sum(4 * math.prod(r.output_shape) * 4 for r in s.rows if r.type != "Flatten")
    assert s.rows[3].output_bytes == 0
    assert s.activation_bytes == expected == sum(r.output_bytes for r in s.rows)
    assert max(r.output_bytes for r in s.rows) <= s.peak_activation_bytes <= expected + 4 * 3 * 36 * 4
    # An in-place activation writes into its input: its output is not new memory either.
    model[2] = nn.ReLU(inplace=True)
    s2 = summary(model, (3, 6, 6), batch_size=4, receptive_field=False)
    assert s2.rows[2].output_bytes == 0 and s2.activation_bytes == expected - 4 * 288 * 4
    # Half precision halves it (meta device: no half kernels needed on CPU).
    s3 = summary(model, (3, 6, 6), batch_size=4, device="meta", dtype=torch.float16, receptive_field=False)
    assert s3.activation_bytes * 2 == s2.activation_bytes and s3.dtype == "float16"


def test_meta_device_counts_like_cpu_and_leaves_the_model_alone():
    model = tiny_model("resnet18")
    cpu = summary(model, (2, 32, 32), receptive_field=False)
    meta = summary(model, (2, 32, 32), device="meta", receptive_field=False)
    assert next(model.parameters()).device.type == "cpu"
    # The peak may differ by a few bytes of backend-specific temporaries (batch-norm statistics).
    assert cpu.peak_activation_bytes == pytest.approx(meta.peak_activation_bytes, rel=0.01)
    cpu.peak_activation_bytes = meta.peak_activation_bytes
    assert cpu.to_dict() == meta.to_dict()


def test_uncounted_ops_are_listed():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs()

    class Idle(nn.Module):  # owns a parameter but computes nothing with it
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x

    s = summary(nn.Sequential(Spectral(), Idle()), (2, 8), receptive_field=False)
    assert len(s.uncounted) == 2
    assert s.uncounted[0].startswith("0 (Spectral): aten._fft_r2c")
    assert s.uncounted[1].startswith("1 (Idle): owns parameters")
    assert "Uncounted ops: 0 (Spectral)" in s.table()


@pytest.mark.parametrize("name", list_models(task="classify"))
def test_every_model_summarises(name):
    size = input_size(name)
    model = tiny_model(name)
    s = summary(model, (2, size, size), device="meta")  # counts as on the CPU (tested above), faster
    assert s.uncounted == []
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.total_macs == sum(r.macs for r in s.rows) > 0
    assert s.other_ops == sum(r.other_ops for r in s.rows)
    assert s.activation_bytes == sum(r.output_bytes for r in s.rows) > 0
    assert s.output_shape == (5,)


# The pinned receptive fields (torchvision layouts, 224 x 224): AlexNet's conv features
# 195, VGG-16 after pool5 212, ResNet-50 427; jump = product of the strides, 32 in all three.
@pytest.mark.parametrize("name, size", [("alexnet", 195), ("vgg16", 212), ("resnet50", 427)])
def test_receptive_field_of_features(name, size):
    s = summary(_meta(name), (3, 224, 224))
    assert s.receptive_field == (size, size) and s.receptive_jump == (32, 32)
    assert f"Receptive field of forward_features: {size}x{size} (jump 32x32)" in s.table()


def test_receptive_field_per_layer():
    s = summary(create_model("lenet5"))
    # r_out = r_in + (k - 1) * jump_in, jump_out = jump_in * stride (LeNet-5: conv 5, pool 2, ...)
    expected = {"features.c1": (5, 1), "features.s2.window": (6, 2), "features.c3": (14, 2),
                "features.s4.window": (16, 4), "features.c5": (32, 4)}
    for name, (rf, jump) in expected.items():
        row = _row(s, name)
        assert (row.receptive_field, row.jump) == ((rf, rf), (jump, jump)), name
    assert "14x14/2x2" in s.table()


def test_no_receptive_field_through_a_transposed_convolution():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = L.conv_transpose(2, 2, 2)

        def forward_features(self, x):
            return self.up(x)

        forward = forward_features

    s = summary(Up(), (2, 4, 4))
    assert s.receptive_field is None and s.total_macs == 2 * 4 * 4 * 2 * 4


def test_table_and_json():
    s = summary(create_model("lenet5"), receptive_field=False)
    text = s.table()
    for header in ("Layer (type)", "Output shape", "Params", "MACs", "Kernel/Stride", "RF/Jump"):
        assert header in text
    assert "features.c3 (ConnectionTableConv)" in text and "5x5/1x1" in text
    assert f"MACs (conv + linear): 326.52 K ({s.total_macs:,})" in text
    assert f"FLOPs (2 x MACs): 653.04 K ({2 * s.total_macs:,})" in text
    assert "Other ops" in text and "Activation memory (float32)" in text and "Uncounted ops: none" in text
    d = json.loads(s.to_json())
    assert d["total_flops"] == 2 * d["total_macs"] == 2 * s.total_macs
    assert d["rows"][0]["flops"] == 2 * d["rows"][0]["macs"]
    for key in ("other_ops", "activation_bytes", "peak_activation_bytes", "receptive_field", "uncounted"):
        assert key in d
    assert {"kernel", "stride", "dilation", "receptive_field", "jump", "output_bytes"} <= set(d["rows"][0])


@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_other_dimensions(spatial_dims):
    model = tiny_model("resnet18", spatial_dims=spatial_dims)
    s = summary(model, (2,) + (32,) * spatial_dims, device="meta")
    conv = _row(s, "stem.conv.conv")
    assert conv.kernel == (7,) * spatial_dims and conv.receptive_field == (7,) * spatial_dims
    assert s.uncounted == [] and len(s.receptive_field) == spatial_dims
    assert s.total_macs == sum(r.macs for r in s.rows) > 0


def test_cli_summary_is_instant_on_meta(capsys):
    from convnet.cli import main

    assert main(["summary", "vgg16", "--input-size", "3,224,224"]) == 0
    out = capsys.readouterr().out
    assert "MACs (conv + linear): 15.47 G (15,470,264,320)" in out
    assert "Receptive field of forward_features: 212x212 (jump 32x32)" in out
    assert main(["summary", "alexnet", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert round(d["total_macs"] / 1e9, 2) == 0.71 and d["receptive_field"] == [195, 195]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_input_size_with_or_without_the_batch(spatial_dims):
    """As torchinfo: (B, C, *S) works as well as (C, *S); the model's spatial_dims tells them apart."""
    model = tiny_model("resnet18", spatial_dims=spatial_dims)
    size = (2,) + (32,) * spatial_dims
    plain = summary(model, size, receptive_field=False)
    batched = summary(model, (3, *size), receptive_field=False)
    assert batched.batch_size == 3 and plain.batch_size == 1
    assert batched.input_shape == plain.input_shape == size
    assert batched.total_macs == plain.total_macs and [r.output_shape for r in batched.rows] == \
        [r.output_shape for r in plain.rows]
    assert batched.activation_bytes == 3 * plain.activation_bytes
    assert summary(model, (1, *size), batch_size=1, receptive_field=False).batch_size == 1
    with pytest.raises(ValueError, match="has batch 3, but batch_size=2"):
        summary(model, (3, *size), batch_size=2)
    with pytest.raises(ValueError, match=f"spatial_dims={spatial_dims} is"):
        summary(model, (1, *size, 4))
