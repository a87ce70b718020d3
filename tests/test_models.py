"""The model contract, over every registered model x spatial_dims (at the family's tiny size)."""
import pytest
import torch

from conftest import input_size, tiny_model
from convnet.models import get_entry, list_models

CASES = [(n, d) for n in list_models(task="classify") for d in get_entry(n).spatial_dims]


def _modules(model):
    return dict(model.named_modules())


@pytest.mark.parametrize("name,spatial_dims", CASES)
def test_forward_backward_and_surface(name, spatial_dims):
    model = tiny_model(name, spatial_dims, in_channels=2, num_classes=5)
    s = input_size(name)
    x = torch.randn(2, 2, *([s] * spatial_dims))
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not no_grad, f"parameters without gradient: {no_grad}"

    model.eval()  # dropout off: forward must equal forward_head(forward_features)
    out = model(x)
    feats = model.forward_features(x)
    assert feats.ndim == 2 + spatial_dims
    assert feats.shape[1] == model.feature_info[-1].channels
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.ndim == 2 and pre.shape[0] == 2
    torch.testing.assert_close(model.forward_head(feats), out)

    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert model.num_classes == 3

    cfg = model.default_cfg
    assert cfg["input_size"][0] == 2 and len(cfg["input_size"]) == 1 + spatial_dims
    assert len(cfg["mean"]) == len(cfg["std"]) == 2
    assert cfg["paper"] and cfg["year"]
    assert cfg["cam_layer"] in _modules(model)


@pytest.mark.parametrize("name,spatial_dims", CASES)
def test_feature_info_matches_feature_maps(name, spatial_dims):
    model = tiny_model(name, spatial_dims).eval()
    modules = _modules(model)
    info = model.feature_info
    assert [i.module for i in info] == [i.module for i in info if i.module in modules], "unknown module in feature_info"
    captured = {}
    hooks = [modules[i.module].register_forward_hook(lambda m, a, o, k=i.module: captured.__setitem__(k, o))
             for i in info]

    def run(size):
        captured.clear()
        with torch.no_grad():
            model(torch.randn(1, 2, *([size] * spatial_dims)))
        return {k: v.shape for k, v in captured.items()}

    if get_entry(name).fixed_input_size:
        shapes = run(input_size(name))
        for i in info:
            assert shapes[i.module][1] == i.channels
        return
    # The reduction is the jump between neighbouring outputs in input pixels: growing the
    # input by R pixels grows a map of reduction r by R / r, whatever the padding.
    r_max = max(i.reduction for i in info)
    start = max(r_max, input_size(name))
    small, large = run(start), run(start + r_max)
    for i in info:
        assert small[i.module][1] == large[i.module][1] == i.channels, i.module
        for a, b in zip(small[i.module][2:], large[i.module][2:]):
            assert b - a == r_max // i.reduction, f"{i.module}: sizes {a} -> {b}, reduction {i.reduction}"
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_wrong_input_is_named(name):
    model = tiny_model(name, 2, in_channels=3)
    s = input_size(name)
    with pytest.raises(ValueError, match=r"expects input \(B, 3, H, W\).*rank 3"):
        model(torch.randn(3, s, s))
    with pytest.raises(ValueError, match=r"expects 3 input channel.*got 1"):
        model(torch.randn(1, 1, s, s))


def test_lenet5_wrong_size_is_named():
    model = tiny_model("lenet5", 2, in_channels=1)
    with pytest.raises(ValueError, match=r"expects spatial size \(32, 32\), got \(28, 28\)"):
        model(torch.randn(1, 1, 28, 28))


def test_lenet5_any_channels_and_classes_every_dim():
    for d in (1, 2, 3):
        for c, k in ((1, 10), (3, 7), (4, 26)):
            model = tiny_model("lenet5", d, in_channels=c, num_classes=k)
            assert model(torch.randn(2, c, *([32] * d))).shape == (2, k)
