"""Effective receptive field (Luo et al. 2016): the Gaussian of a uniform conv stack, its sqrt
growth with depth, the 95% energy share, 1/2/3 dims, and `convnet erf`."""
import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_model
from test_cam import fake_run  # noqa: F401  (a fixture: a small run directory)
from torch import nn

from convnet import layers as L
from convnet.analysis.erf import (
    effective_receptive_field,
    moments,
    smallest_region_share,
)
from convnet.cli import main


def uniform_stack(k: int, spatial_dims: int = 2, kernel: int = 3) -> nn.Sequential:
    """k linear convolutions with all-ones kernels: the input gradient of a unit is the k-fold
    convolution of a box, a binomial-like bump with variance k (kernel^2 - 1) / 12 per axis."""
    cls = L.conv_class(spatial_dims)
    convs = [cls(1, 1, kernel, padding=kernel // 2, bias=False) for _ in range(k)]
    for c in convs:
        nn.init.ones_(c.weight)
    return nn.Sequential(*convs)


def test_uniform_stack_sigma_grows_like_sqrt_depth():
    """Luo et al. section 2.2: sigma of k stacked uniform 3x3 kernels = sqrt(2k/3), ~ sqrt(k)."""
    sigmas = {}
    for k in (2, 4, 8, 16):
        r = effective_receptive_field(uniform_stack(k), (1, 41, 41), n_inputs=2)
        assert r.sigma[0] == pytest.approx(r.sigma[1], rel=1e-6)
        assert r.sigma[0] == pytest.approx(math.sqrt(2 * k / 3), rel=1e-3)
        assert r.center == pytest.approx((20.0, 20.0), abs=1e-6)
        # The theoretical field of k 3x3 convs is 2k + 1; the gradient is nonzero on all of it.
        assert r.rf_size == (2 * k + 1, 2 * k + 1)
        assert 0 < r.share95 < 1
        sigmas[k] = r.sigma[0]
    # sqrt growth: quadrupling the depth doubles sigma; the share of the field shrinks.
    assert sigmas[8] / sigmas[2] == pytest.approx(2.0, rel=0.01)
    assert sigmas[16] / sigmas[4] == pytest.approx(2.0, rel=0.01)
    shares = [effective_receptive_field(uniform_stack(k), (1, 41, 41), n_inputs=1).share95 for k in (2, 8)]
    assert shares[1] < shares[0]


@pytest.mark.parametrize("spatial_dims,size", [(1, 41), (3, 13)])
def test_uniform_stack_other_dims(spatial_dims, size):
    r = effective_receptive_field(uniform_stack(3, spatial_dims), (1,) + (size,) * spatial_dims, n_inputs=1)
    assert r.heatmap.shape == (size,) * spatial_dims and r.energy.shape == r.heatmap.shape
    assert r.sigma == pytest.approx((math.sqrt(2.0),) * spatial_dims, rel=1e-3)  # 3 * 2/3
    assert r.rf_size == (7,) * spatial_dims and 0 < r.share95 < 1


def test_one_channel_and_energy_region():
    """channel= picks one output channel: a 1x1 channel has a one-pixel field, the 5x5 one not."""
    conv = nn.Conv2d(1, 2, 5, padding=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = 1.0
        conv.weight[1, 0, 2, 2] = 3.0
    one = effective_receptive_field(conv, (1, 15, 15), n_inputs=1, channel=1)
    # The theoretical field is the convolution's 5x5 (the weights do not matter to it).
    assert one.rf_source == "receptive_field" and one.rf_size == (5, 5)
    assert one.area95 == 1 and one.sigma == (0.0, 0.0) and one.share95 == pytest.approx(1 / 25)
    both = effective_receptive_field(conv, (1, 15, 15), n_inputs=1)
    # Energy: the centre (1 + 3)^2 = 16 and 24 ones, 40 in all; 95% = 38 = 16 + 22 ones: 23 pixels.
    assert both.rf_size == (5, 5) and both.area95 == 23 and both.share95 == pytest.approx(23 / 25)


def test_fallback_measures_the_nonzero_gradient_extent(monkeypatch):
    """Where the theoretical field cannot be derived (an op without a rule), the field is the
    bounding box of nonzero gradients."""
    import importlib

    rf_module = importlib.import_module("convnet.analysis.receptive_field")

    def no_rule(*args, **kwargs):
        raise rf_module.UnknownGeometry("no rule for this op")

    monkeypatch.setattr(rf_module, "receptive_field", no_rule)
    conv = nn.Conv2d(1, 2, 5, padding=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1, 0, 1:4, 2] = 1.0  # a vertical 3x1 bar
    r = effective_receptive_field(conv, (1, 15, 15), n_inputs=1, channel=1)
    assert r.rf_source == "gradient-extent" and r.rf_size == (3, 1) and r.share95 == pytest.approx(1.0)


def test_field_clipped_to_the_input():
    r = effective_receptive_field(uniform_stack(10), (1, 11, 31), n_inputs=1)
    assert r.rf_size == (11, 21)


def test_smallest_region_and_moments_by_hand():
    e = np.array([[0.0, 1.0, 0.0], [1.0, 16.0, 1.0], [0.0, 1.0, 0.0]])
    assert smallest_region_share(e, 0.95) == 4  # 95% of 20 = 19 = 16 + three of the 1s
    assert smallest_region_share(e, 0.96) == 5
    assert smallest_region_share(e, 0.80) == 1
    center, sigma = moments(e)
    assert center == pytest.approx((1.0, 1.0)) and sigma == pytest.approx((math.sqrt(2 / 20),) * 2)


def test_registered_model_averages_real_inputs_and_restores_mode():
    model = tiny_model("resnet18", in_channels=3).train()
    x = torch.randn(6, 3, 32, 32)
    r = effective_receptive_field(model, inputs=x, batch_size=4)
    assert model.training  # restored
    assert r.n_inputs == 6 and r.heatmap.shape == (32, 32) and np.isfinite(r.heatmap).all()
    assert r.heatmap.sum() > 0 and 0 < r.share95 <= 1
    # Averaging: the mean over two halves is the mean of the halves' means.
    a = effective_receptive_field(model, inputs=x[:3])
    b = effective_receptive_field(model, inputs=x[3:])
    np.testing.assert_allclose(r.heatmap, (a.heatmap + b.heatmap) / 2, rtol=1e-5, atol=1e-12)


def test_cli_erf_model_and_run(tmp_path, fake_run, capsys):  # noqa: F811 (the imported fixture)
    out = tmp_path / "erf.png"
    assert main(["erf", "lenet5", "--n", "2", "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert out.stat().st_size > 1000 and len(d["init"]["sigma"]) == 2 and 0 < d["init"]["share95"] <= 1
    out2 = tmp_path / "erf-run.png"
    assert main(["erf", "--run", str(fake_run), "--n", "4", "--out", str(out2)]) == 0
    text = capsys.readouterr().out
    assert "init:" in text and "trained:" in text and out2.stat().st_size > 1000
    assert main(["erf", "--run", str(fake_run), "--n", "4", "--inputs", "data", "--out", str(out2), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["init"]["n_inputs"] == 4 and d["init"]["sigma"] != d["trained"]["sigma"]


def test_run_initialisation_is_rebuilt_under_the_run_seed(fake_run):  # noqa: F811 (the imported fixture)
    """`convnet erf --run` compares with the run's architecture freshly built under its seed, and
    leaves the global random state alone."""
    from convnet.cli import _fresh_run_model
    from convnet.models import create_model

    state = torch.random.get_rng_state()
    fresh = _fresh_run_model(str(fake_run), seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(5)
    ref = create_model("lenet5")
    for (k, a), b in zip(fresh.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
