"""torchvision and timm as test oracles.

Their Linux wheels are CUDA builds whose compiled ops do not register against a CPU torch, so
the pure-Python model code is imported with ``torch.library.register_fake`` replaced by a no-op
for the duration of the import (DESIGN.md). Where even that fails, a test skips with the reason,
except under ``CONVNET_REQUIRE_ORACLES=1`` (set by ``make test`` and CI), where it fails: a
broken install must not silently remove the main independent checks.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from convnet import create_model
from convnet.weights import load_pretrained, save_tensors

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def _import(name: str):
    original = torch.library.register_fake

    def no_op(*args, **kwargs):
        return lambda fn: fn

    torch.library.register_fake = no_op
    try:
        return importlib.import_module(name)
    except Exception as e:  # any failure means: no oracle on this machine
        reason = f"{name} cannot be imported here: {type(e).__name__}: {e}"
        if oracles_required():
            pytest.fail(f"{reason} (CONVNET_REQUIRE_ORACLES=1: the oracle must be installed)", pytrace=False)
        pytest.skip(reason)
    finally:
        torch.library.register_fake = original


def oracles_required() -> bool:
    """Whether a missing oracle fails the test instead of skipping it (CONVNET_REQUIRE_ORACLES=1)."""
    return os.environ.get("CONVNET_REQUIRE_ORACLES", "").strip() not in ("", "0")


def torchvision_models():
    """``torchvision.models``, or skip."""
    return _import("torchvision.models")


def timm():
    """The ``timm`` package, or skip."""
    return _import("timm")


def torchvision_ops_misc():
    """``torchvision.ops.misc`` (pure-Python layers such as FrozenBatchNorm2d), or skip."""
    return _import("torchvision.ops.misc")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer non-trivial statistics and affine parameters, so that a converter
    that swaps or drops them cannot pass unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def assert_loads_same(name: str, theirs: nn.Module, tmp_path: Path, input_size: int = 64,
                      device: str = "cpu", fmt: str = "pth", rtol: float = 1e-5, **overrides) -> nn.Module:
    """Save ``theirs`` as a checkpoint file, load it into ``create_model(name)`` with
    ``load_pretrained``, and check that both give the same logits in eval mode (fp32): the
    largest absolute difference must stay below ``rtol`` times the largest logit."""
    theirs = randomize_batchnorm(theirs).eval()
    path = tmp_path / f"theirs.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_tensors(theirs.state_dict(), path)
    else:
        torch.save(theirs.state_dict(), path)
    ours = load_pretrained(create_model(name, **overrides), path).eval()
    x = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(1))
    theirs, ours, x = theirs.to(device), ours.to(device), x.to(device)
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    if isinstance(expected, tuple):  # inception's (logits, aux) in some modes
        expected = expected[0]
    assert actual.shape == expected.shape
    err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert err < rtol, f"{name}: max relative error {err:.2e} against {type(theirs).__name__}"
    return ours
