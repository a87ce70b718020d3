"""The inference fast path (convnet.deploy.optimize): batch-norm folding, precision, layout,
compilation with an eager fallback, and the accuracy contract (fp32 <= 1e-5 relative to eager;
bf16 <= 3e-2 relative on logits and >= 99% top-1 agreement on real photographs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import input_size, tiny_model
from oracle import randomize_batchnorm, torchvision_models
from torch import nn

from convnet import create_model
from convnet.deploy import fold_batchnorm, optimize, remaining_batchnorms
from convnet.deploy.optimize import bf16_supported, resolve_dtype
from convnet.weights import load_pretrained


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|: the contract's relative error."""
    return ((actual.float() - expected).abs().max() / expected.abs().max()).item()


def eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def model_and_input(name: str, spatial_dims: int, batch: int = 2) -> tuple[nn.Module, torch.Tensor]:
    model = randomize_batchnorm(tiny_model(name, spatial_dims=spatial_dims), seed=3).eval()
    size = input_size(name)
    x = torch.randn(batch, model.in_channels, *([size] * spatial_dims), generator=torch.Generator().manual_seed(7))
    return model, x


# Every norm of these families follows a convolution and must fold; DenseNet and PreAct-ResNet
# normalise *before* their convolutions (BN -> ReLU -> conv): those norms cannot fold.
FULLY_FOLDABLE = ["resnet18", "resnext50_32x4d", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_small",
                  "efficientnet_b0", "efficientnet_v2_s"]
PRE_ACTIVATION = ["densenet121", "preact_resnet18"]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("name", FULLY_FOLDABLE + PRE_ACTIVATION)
def test_fold_batchnorm_keeps_outputs(name: str, spatial_dims: int) -> None:
    model, x = model_and_input(name, spatial_dims)
    before = remaining_batchnorms(model)
    folded = fold_batchnorm(model)
    # The reference is the unfolded eager model with its non-trivial running statistics.
    assert rel_error(eager(folded, x), eager(model, x)) <= 1e-5
    left = remaining_batchnorms(folded)
    if name in FULLY_FOLDABLE:
        assert before and not left, f"{name}: {len(left)} BatchNorms left: {left[:3]}"
    else:  # the stem's ConvNormAct folds; DenseNet's pre-activation norms stay
        assert 0 < len(left) < len(before)
    if name == "preact_resnet18":  # conv1 -> norm2 inside a custom forward: found by tracing it
        assert not [n for n in left if n.endswith("norm2")] and [n for n in left if n.endswith("norm1")]
    assert remaining_batchnorms(model) == before  # the original is untouched


def test_fold_batchnorm_formula_on_one_unit() -> None:
    """W' = W * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps), by hand."""
    from convnet.layers import ConvNormAct

    unit = randomize_batchnorm(ConvNormAct(2, 3, 4, 3, act_layer=None), seed=5).eval()
    conv, bn = unit.conv, unit.norm
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expected_w = conv.weight * scale[:, None, None, None]
    expected_b = bn.bias - bn.running_mean * scale
    folded = fold_batchnorm(unit)
    assert isinstance(folded.norm, nn.Identity)
    torch.testing.assert_close(folded.conv.weight, expected_w)
    torch.testing.assert_close(folded.conv.bias, expected_b)
    assert unit.conv.bias is None and isinstance(unit.norm, nn.BatchNorm2d)  # copy, not in place


def test_fold_batchnorm_returns_eval_copy_of_training_model() -> None:
    model = tiny_model("resnet18").train()
    folded = fold_batchnorm(model)
    assert model.training and not folded.training
    assert remaining_batchnorms(model)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_optimize_fp32_eager_path_within_1e5(spatial_dims: int) -> None:
    model, x = model_and_input("resnet18", spatial_dims)
    fast = optimize(model, dtype="fp32", compile=False)
    y = fast(x)
    assert y.dtype == torch.float32 and y.shape == (2, model.num_classes)
    assert rel_error(y, eager(model, x)) <= 1e-5
    weight = fast.module.stem.conv.conv.weight  # stem: ConvNormAct "conv"
    # channels_last in 2-D, channels_last_3d in 3-D; 1-D has no such layout.
    fmt = {1: torch.contiguous_format, 2: torch.channels_last, 3: torch.channels_last_3d}[spatial_dims]
    assert weight.is_contiguous(memory_format=fmt)
    if spatial_dims > 1:
        assert not weight.is_contiguous()
    assert fast.memory_format == (None if spatial_dims == 1 else fmt)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_optimize_bf16_logits_within_3e2(name: str) -> None:
    model, x = model_and_input(name, 2, batch=4)
    fast = optimize(model, dtype="bf16", compile=False)
    y = fast(x)
    assert y.dtype == torch.float32  # fp32 out, bf16 inside
    assert all(p.dtype == torch.bfloat16 for p in fast.module.parameters())
    assert rel_error(y, eager(model, x)) <= 3e-2


def test_optimize_rejects_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="dtype"):
        optimize(tiny_model("resnet18"), dtype="int4", compile=False)


def test_auto_dtype_follows_cpu_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert not bf16_supported("cpu") and resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert bf16_supported("cpu") and resolve_dtype("auto", "cpu") == torch.bfloat16
    assert optimize(tiny_model("resnet18"), compile=False).dtype == torch.bfloat16


def test_compile_unavailable_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    model, x = model_and_input("resnet18", 2)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        fast = optimize(model, dtype="fp32")
    assert not fast.compiled and isinstance(fast.compile_error, RuntimeError)
    assert rel_error(fast(x), eager(model, x)) <= 1e-5


def test_compile_failing_at_first_call_falls_back_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def lazy_failure(module, **kwargs):
        def run(x):
            calls.append(x.shape)
            raise RuntimeError("inductor: backend compiler failed")
        return run

    monkeypatch.setattr(torch, "compile", lazy_failure)
    model, x = model_and_input("resnet18", 2)
    fast = optimize(model, dtype="fp32")
    assert fast.compiled
    # Wrong input is the caller's error, not the compiler's: eager's message, no fallback.
    with pytest.raises(ValueError, match="input channel"):
        fast(torch.randn(1, model.in_channels + 1, 32, 32))
    assert fast.compiled
    with pytest.warns(RuntimeWarning, match="backend compiler failed"):
        y = fast(x)
    assert not fast.compiled and rel_error(y, eager(model, x)) <= 1e-5
    n = len(calls)
    fast(x)  # eager from now on: the compiled function is not tried again
    assert len(calls) == n


@pytest.mark.slow
def test_optimize_compiled_tiny_model() -> None:
    """torch.compile (inductor, freezing) really runs and meets both contracts (fp32 in 2-D,
    bf16 with channels_last_3d in 3-D), and leaves inductor's global config as it was."""
    from torch._inductor import config as inductor_config

    freezing_before = inductor_config.freezing
    model, x = model_and_input("resnet18", 2)
    fp32 = optimize(model, dtype="fp32", example_input=x)
    assert fp32.compiled, fp32.compile_error
    assert fp32.compile_seconds is not None
    assert rel_error(fp32(x), eager(model, x)) <= 1e-5
    model, x = model_and_input("resnet18", 3)
    bf16 = optimize(model, dtype="bf16", example_input=x)
    assert bf16.compiled, bf16.compile_error
    assert rel_error(bf16(x), eager(model, x)) <= 3e-2
    assert inductor_config.freezing == freezing_before


# Photographs shipped with scikit-image (no download): people, objects, astronomy, microscopy,
# textures, in colour and grey.
PHOTOS = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "hubble_deep_field",
          "immunohistochemistry", "clock", "brick", "grass", "gravel", "retina"]


def photo_crops(size: int = 112, per_axis: int = 3) -> torch.Tensor:
    """Each photo resized (short side 1.4 x size) and cut into per_axis^2 crops, ImageNet-normalised."""
    data = pytest.importorskip("skimage.data")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    crops = []
    for name in PHOTOS:
        image = torch.from_numpy(np.asarray(getattr(data, name)())).float() / 255
        image = image[..., None].expand(*image.shape, 3) if image.ndim == 2 else image[..., :3]
        image = image.permute(2, 0, 1)[None]  # (H, W, 3) -> (1, 3, H, W)
        h, w = image.shape[2:]
        s = 1.4 * size / min(h, w)
        image = F.interpolate(image, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)[0]
        height, width = image.shape[1:]
        for i in range(per_axis):
            for j in range(per_axis):
                y, x = (height - size) * i // (per_axis - 1), (width - size) * j // (per_axis - 1)
                crops.append((image[:, y:y + size, x:x + size] - mean) / std)
    return torch.stack(crops)


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_photos(tmp_path) -> None:
    """ResNet-18 with weights ported from torchvision through our converter (torchvision's own
    random initialisation with random BN statistics: no pretrained file can be downloaded here),
    on 126 crops of 14 real photographs: bf16 logits within 3e-2 of fp32, >= 99% same top-1."""
    theirs = randomize_batchnorm(torchvision_models().resnet18(weights=None)).eval()
    torch.save(theirs.state_dict(), tmp_path / "resnet18.pth")
    ours = load_pretrained(create_model("resnet18"), tmp_path / "resnet18.pth").eval()
    x = photo_crops()
    assert len(x) >= 100
    reference = eager(ours, x)
    y = optimize(ours, dtype="bf16", compile=False)(x)
    assert rel_error(y, reference) <= 3e-2
    assert (y.argmax(1) == reference.argmax(1)).float().mean().item() >= 0.99
