"""Grad-CAM and Grad-CAM++: localisation on a model built to look at one region, the Grad-CAM++
weights against a hand computation, shapes in 1/2/3 dims, every registered model's cam_layer,
and `convnet cam` / `convnet features` on a run directory."""
import json

import numpy as np
import pytest
import torch
from conftest import input_size, tiny_model
from PIL import Image
from torch import nn

from convnet import layers as L
from convnet.analysis.cam import (
    cam_layer_name,
    grad_cam,
    grad_cam_pp_weights,
    grad_cam_weights,
)
from convnet.cli import main
from convnet.models import create_model, get_entry, list_models


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A run directory as `convnet train` writes it (config.json with model/train/data sections and
    model.safetensors), for a LeNet-5 whose weights were moved away from their initialisation."""
    from convnet.data import load_digits
    from convnet.train import TrainConfig
    from convnet.weights import save_pretrained

    run = tmp_path_factory.mktemp("analysis") / "run"
    torch.manual_seed(3)
    model = create_model("lenet5")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    save_pretrained(model, run)
    data = load_digits()
    cfg = {"model": model.model_config, "train": TrainConfig().to_dict(),
           "data": {"name": "digits", "classes": data.classes, "preprocess": data.preprocess.to_dict()}}
    (run / "config.json").write_text(json.dumps(cfg))
    return run


class RegionMask(nn.Module):
    """Channel 0 keeps the first half of every axis (the top-left quarter in 2-D), channel 1
    the rest: two detectors, each blind outside its region."""

    def forward(self, x):
        mask = torch.zeros_like(x)
        mask[(slice(None), 0) + tuple(slice(0, s // 2) for s in x.shape[2:])] = 1
        mask[:, 1] = 1 - mask[:, 0]
        return x * mask


class RegionNet(nn.Module):
    """Two channels of ReLU(input), each masked to one region, globally averaged; the logit of
    class 1 reads channel 0 only, so it depends only on the first region of the input."""

    def __init__(self, spatial_dims: int = 2):
        super().__init__()
        cls = L.conv_class(spatial_dims)
        self.body = cls(1, 2, 1, bias=False)
        nn.init.ones_(self.body.weight)
        self.act = nn.ReLU()
        self.mask = RegionMask()
        self.default_cfg = {"cam_layer": "mask"}

    def forward(self, x):
        a = self.mask(self.act(self.body(x))).flatten(2).mean(2)  # (B, 2)
        return torch.stack([a[:, 1], a[:, 0]], 1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_cam_highlights_the_region_the_logit_reads(method, spatial_dims):
    size = (16,) * spatial_dims
    x = torch.rand(2, 1, *size) + 0.1
    r = grad_cam(RegionNet(spatial_dims), x, target=1, method=method)
    assert r.cam.shape == (2, *size) and r.layer == "mask" and (r.classes == 1).all()
    inside = r.cam[(slice(None),) + tuple(slice(0, 8) for _ in size)]
    mask = torch.zeros(size, dtype=torch.bool)
    mask[tuple(slice(0, 8) for _ in size)] = True
    # Away from the region's edge (one upsampling tap) nothing outside is lit.
    far = torch.ones(size, dtype=torch.bool)
    far[tuple(slice(0, 9) for _ in size)] = False
    assert inside.mean() > 0.2 and r.cam[:, far].max() == 0
    assert r.cam.max() == pytest.approx(1.0)
    other = grad_cam(RegionNet(spatial_dims), x, target=0, method=method).cam
    assert other[:, mask].max() < 1e-6 and other[:, ~mask].max() > 0.5


def test_gradcam_weights_and_map_by_hand():
    """Grad-CAM (Selvaraju et al. eq. 1): alpha_k = mean of the gradient; map = ReLU(sum alpha A)."""
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])  # (1, 2, 2, 2)
    g = torch.tensor([[[[1.0, -1.0], [2.0, 2.0]], [[-4.0, 0.0], [0.0, 0.0]]]])
    np.testing.assert_allclose(grad_cam_weights(a, g).numpy(), [[1.0, -1.0]])


def test_gradcam_pp_weights_by_hand():
    """Grad-CAM++ (Chattopadhay et al. eq. 19) computed position by position in plain Python."""
    a = [[1.0, 2.0, 0.0, 3.0], [0.5, 0.0, 1.0, 1.0]]  # two channels, four positions
    g = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -0.5, 0.25]]
    expected = []
    for ak, gk in zip(a, g):
        s = sum(ak)
        w = 0.0
        for gij in gk:
            if gij == 0:
                continue
            alpha = gij ** 2 / (2 * gij ** 2 + s * gij ** 3)
            w += alpha * max(gij, 0.0)
        expected.append(w)
    # channel 0: s = 6: 0.25/(0.5+0.75)*0.5 + 1/(2-6)*0 + 4/(8+48)*2 = 0.1 + 1/7
    assert expected[0] == pytest.approx(0.1 + 1 / 7)
    got = grad_cam_pp_weights(torch.tensor(a).view(1, 2, 2, 2), torch.tensor(g).view(1, 2, 2, 2))
    np.testing.assert_allclose(got.numpy(), [expected], rtol=1e-6)


def test_gradcam_pp_end_to_end_on_a_linear_head():
    """score = sum_k w_k mean(A_k): g = w_k / n is constant per channel, so eq. 19 has a closed form."""
    torch.manual_seed(0)
    feats = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2, bias=False))
    model = nn.Sequential(feats, head)
    x = torch.randn(1, 1, 6, 6)
    r = grad_cam(model, x, target=1, layer="0", method="gradcam++")
    w = head[2].weight[1].detach()
    n = 36
    acts = feats(x).detach()
    for k in range(3):
        gk = w[k].item() / n
        alpha = gk ** 2 / (2 * gk ** 2 + acts[0, k].sum().item() * gk ** 3)
        assert r.weights[0, k].item() == pytest.approx(alpha * max(gk, 0) * n, rel=1e-5)
    plain = grad_cam(model, x, target=1, layer="0")
    np.testing.assert_allclose(plain.weights[0].numpy(), (w / n).numpy(), rtol=1e-6)
    expected = torch.relu((plain.weights[0].view(3, 1, 1) * acts[0]).sum(0))
    np.testing.assert_allclose(plain.raw[0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_shapes_on_a_registered_model(spatial_dims):
    model = tiny_model("resnet18", spatial_dims=spatial_dims)
    x = torch.randn(2, 2, *(32,) * spatial_dims)  # resnet18's minimum: its total stride
    for method in ("gradcam", "gradcam++"):
        r = grad_cam(model, x, method=method)
        assert r.cam.shape == (2, *(32,) * spatial_dims)
        assert r.layer == model.default_cfg["cam_layer"] and r.raw.ndim == spatial_dims + 1
        assert torch.isfinite(r.cam).all() and r.cam.min() >= 0 and r.cam.max() <= 1
        assert torch.equal(r.classes, r.logits.argmax(1))


def test_explicit_layer_and_bad_names():
    model = tiny_model("vgg11")
    x = torch.randn(1, 2, 32, 32)
    r = grad_cam(model, x, layer="stages.1", target=[3])
    assert r.layer == "stages.1" and r.classes.tolist() == [3] and r.cam.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="no layer"):
        grad_cam(model, x, layer="nope")
    with pytest.raises(ValueError, match="target"):
        grad_cam(model, x, target=99)


@pytest.mark.parametrize("name", list_models(task="classify"))
def test_every_registered_cam_layer_works(name):
    """Each family's default cam_layer is a spatial map on the path to the logits (tiny, 2-D)."""
    entry = get_entry(name)
    if 2 not in entry.spatial_dims:
        pytest.skip("no 2-D variant")
    model = tiny_model(name)
    assert cam_layer_name(model) == model.default_cfg["cam_layer"] and model.default_cfg["cam_layer"]
    n = input_size(name)
    x = torch.randn(1, model.in_channels, n, n)
    r = grad_cam(model, x)
    assert r.cam.shape == (1, n, n) and torch.isfinite(r.cam).all()
    assert r.activations.ndim == 4 and r.gradients.abs().sum() > 0


def _digit_png(path, invert=False):
    from sklearn.datasets import load_digits as sk_digits

    img = sk_digits().images[0]
    img = np.round(img * 255 / 16).astype(np.uint8)
    Image.fromarray(255 - img if invert else img, mode="L").save(path)
    return path


def test_cli_cam_and_features(fake_run, tmp_path, capsys):
    png = _digit_png(tmp_path / "digit.png")
    out = tmp_path / "cam.png"
    assert main(["cam", "--run", str(fake_run), str(png), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "layer features.c3" in line and out.stat().st_size > 1000
    assert main(["cam", "--run", str(fake_run), str(png), "--plus", "--class", "7", "--layer", "features.c1",
                 "--out", str(out)]) == 0
    assert "class 7" in capsys.readouterr().out
    feats, filters = tmp_path / "f.png", tmp_path / "w.png"
    assert main(["features", "--run", str(fake_run), str(png), "--layer", "features.c1", "--out", str(feats),
                 "--filters", str(filters)]) == 0
    assert feats.stat().st_size > 1000 and filters.stat().st_size > 1000
    assert main(["cam", "--run", str(fake_run), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["cam", "--run", str(fake_run), str(png), "--layer", "nope"]) == 2
