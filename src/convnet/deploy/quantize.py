"""int8 post-training static quantisation for x86 CPUs.

Static PTQ (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018): weights are quantised to int8 per output
channel (symmetric), activations to uint8 per tensor (affine) with scales and zero points
observed on a calibration set; convolutions and linear layers then run in integer arithmetic
(fbgemm/oneDNN through torch's ``x86`` quantized engine), and everything else runs in float
between a dequantise and a quantise.

Implementation: torch.ao.quantization's FX graph mode (``prepare_fx`` / ``convert_fx`` with the
``x86`` default qconfig mapping). It is what torch 2.13 ships in-tree for CPU int8: the PT2E flow
(``prepare_pt2e`` with ``X86InductorQuantizer``) moved to the separate ``torchao`` package, which
is not a dependency here. Batch norms are folded first (:func:`convnet.deploy.fold_batchnorm`),
FX then fuses conv + ReLU. The model is traced from ``forward_features`` to ``forward_head``
(``forward``'s input check reads shapes in Python, which symbolic tracing cannot);
shape-dependent modules (global pooling over ``x.ndim`` axes, TensorFlow "same" padding) are kept
as float leaves.
"""
from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..layers.factory import SameConv
from ..layers.pooling import GlobalPool, TrainableSubsampling
from ..layers.special import ConnectionTableConv, EuclideanRBF
from .optimize import fold_batchnorm

__all__ = ["int8_modules", "quantize_int8"]

# Modules whose forward branches on tensor shapes in Python (or indexes with buffers FX cannot
# carry through its quantised graph: LeNet-5's connection table): traced as opaque float calls.
# LeNet-5's C3, S-layers and RBF output thus stay float under FX; its C1, C5 and F6 quantise.
DEFAULT_LEAVES: tuple[type[nn.Module], ...] = (GlobalPool, SameConv, TrainableSubsampling, ConnectionTableConv,
                                               EuclideanRBF)


class _Logits(nn.Module):
    """forward_head(forward_features(x)): a classifier's forward without the shape check."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x))


def _engine(backend: str) -> None:
    if backend not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"quantize_int8: the {backend!r} quantized engine is not in this torch build "
                           f"(supported: {torch.backends.quantized.supported_engines})")
    # Quantized kernels dispatch on this process-wide setting at call time; x86 is torch's default
    # on x86 machines, so this only changes something where another engine was chosen.
    torch.backends.quantized.engine = backend


@torch.no_grad()
def quantize_int8(model: nn.Module, calibration: Iterable[torch.Tensor], *, backend: str = "x86",
                  leaf_modules: Sequence[type[nn.Module]] = (), qconfig_mapping: Any = None) -> nn.Module:
    """Post-training static int8 quantisation of ``model`` for CPU.

    Args:
        model: a float classifier (not modified).
        calibration: input batches (B, C, *S), float, representative of the data (about a
            hundred images is enough to fix the activation ranges); iterated once.
        backend: torch's quantized engine, ``x86`` (fbgemm + oneDNN) or ``onednn``/``fbgemm``.
        leaf_modules: extra module classes to keep as opaque float calls (for shape-dependent
            Python code that symbolic tracing cannot follow).

    Returns:
        A ``torch.fx.GraphModule`` on CPU taking the same float input and returning float logits,
        with int8 convolutions and linear layers.
    """
    _engine(backend)
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ValueError("quantize_int8: the calibration set is empty; give it a few batches of inputs")
    float_model = fold_batchnorm(copy.deepcopy(model).cpu().float(), inplace=True)
    traced = _Logits(float_model) if hasattr(float_model, "forward_features") else float_model
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call; the FX flow is still
        # the in-tree one in torch 2.13 (see the module docstring), so the notices are noise here.
        for notice in (".*torch.ao.quantization is deprecated.*", ".*quant_min and quant_max.*",
                       ".*quantize_per_tensor.*"):
            warnings.filterwarnings("ignore", message=notice)
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        leaves = list(DEFAULT_LEAVES) + list(leaf_modules)
        mapping = qconfig_mapping if qconfig_mapping is not None else get_default_qconfig_mapping(backend)
        prepared = prepare_fx(traced, mapping, (first.float().cpu(),),
                              prepare_custom_config=PrepareCustomConfig().set_non_traceable_module_classes(leaves))
        seen = 0
        for batch in itertools.chain([first], batches):  # the observers record activation ranges
            prepared(batch.float().cpu())
            seen += 1
        quantized = convert_fx(prepared).eval()
    quantized.calibration_batches = seen
    for attr in ("spatial_dims", "in_channels", "num_classes", "default_cfg"):
        if hasattr(model, attr):
            setattr(quantized, attr, getattr(model, attr))
    return quantized


def int8_modules(model: nn.Module) -> dict[str, torch.dtype]:
    """Name -> weight dtype of every quantized convolution and linear layer in ``model``."""
    from torch.ao.nn import quantized as nnq
    from torch.ao.nn.intrinsic import quantized as nniq

    kinds = (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.Linear, nniq.ConvReLU1d, nniq.ConvReLU2d,
             nniq.ConvReLU3d, nniq.LinearReLU)
    return {name: m.weight().dtype for name, m in model.named_modules() if isinstance(m, kinds)}
