"""int8 post-training static quantisation (convnet.deploy.quantize_int8)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model
from oracle import randomize_batchnorm
from torch import nn

from convnet import create_model
from convnet import layers as L
from convnet.data.datasets import load_digits
from convnet.deploy import int8_modules, quantize_int8, remaining_batchnorms


@pytest.fixture(scope="module")
def digits_lenet() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """LeNet-5 (modern) trained briefly on the digits: 60 Adam steps of 128 images."""
    data = load_digits()
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    torch.manual_seed(0)
    model = create_model("lenet5_modern")
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    # One thread: tiny kernels gain nothing from two, and on a busy machine OpenMP's spinning
    # threads make this loop ~50x slower.
    torch.set_num_threads(1)
    try:
        for _ in range(60):
            idx = torch.randint(0, len(x_train), (128,), generator=g)
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), x_train, x_test, y_test


def test_int8_agrees_with_fp32_on_digits(digits_lenet) -> None:
    model, x_train, x_test, y_test = digits_lenet
    q = quantize_int8(model, x_train[:100].split(50))  # two calibration batches, 100 images
    assert q.calibration_batches == 2
    with torch.no_grad():
        fp32, int8 = model(x_test).argmax(1), q(x_test).argmax(1)
    fp32_acc = (fp32 == y_test).float().mean().item()
    assert fp32_acc > 0.8, "the float model did not learn; the comparison would mean nothing"
    assert (fp32 == int8).float().mean().item() >= 0.97
    assert abs((int8 == y_test).float().mean().item() - fp32_acc) <= 0.03
    # Every convolution and linear layer is quantised, with int8 weights.
    kinds = int8_modules(q)
    assert {"model.features.c1", "model.features.c3", "model.features.c5", "model.head.f6",
            "model.head.output"} <= set(kinds)
    assert set(kinds.values()) == {torch.qint8}
    assert model.features.c1.weight.dtype == torch.float32  # the float model is untouched


def test_int8_weights_are_per_channel_symmetric_roundings(digits_lenet) -> None:
    """Weight w of output channel o is stored as clamp(round(w / s_o), -128, 127) with
    s_o = max|w_o| / 127.5 (symmetric per-channel min-max: the int8 range has 255 steps)."""
    model, x_train, _, _ = digits_lenet
    q = quantize_int8(model, [x_train[:100]])
    w = model.features.c3.weight.detach()
    qw = q.model.features.c3.weight()
    scales = qw.q_per_channel_scales()  # float64
    amax = w.abs().flatten(1).amax(1).double()
    torch.testing.assert_close(scales, amax / 127.5, rtol=1e-6, atol=1e-10)
    # torch divides in fp32 (w * (1 / s)); a quotient within an ulp of .5 may round either way.
    quotient = w.double() / scales.view(-1, 1, 1, 1)
    expected = torch.clamp(torch.round(quotient), -128, 127)
    stored = qw.int_repr().double()
    near_tie = (quotient.abs().frac() - 0.5).abs() < 1e-4
    assert torch.equal(stored[~near_tie], expected[~near_tie])
    assert (stored - expected).abs().max().item() <= 1
    assert qw.int_repr().dtype == torch.int8


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_quantize_folds_norms_and_keeps_pooling_float(spatial_dims: int) -> None:
    """A ResNet (batch norms, residual adds, global pooling over x.ndim axes) in every dim:
    every convolution int8, no norm left, logits close to float."""
    model = randomize_batchnorm(tiny_model("resnet18", spatial_dims=spatial_dims), seed=1).eval()
    n_convs = sum(isinstance(m, L.CONV_TYPES) for m in model.modules())
    x = torch.randn(8, model.in_channels, *([32] * spatial_dims), generator=torch.Generator().manual_seed(2))
    q = quantize_int8(model, [x])
    kinds = int8_modules(q)
    assert len(kinds) == n_convs + 1  # + the classifier
    assert not remaining_batchnorms(q)
    with torch.no_grad():
        expected, actual = model(x), q(x)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= 0.2


def test_empty_calibration_is_refused() -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(create_model("lenet5_modern"), [])
