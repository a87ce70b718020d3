"""The independent check of :mod:`convnet.analysis.receptive_field`: the input pixels one output
unit of a linearised copy of the network depends on, found by backpropagation.

The theoretical field comes from geometry rules per operation; this measurement shares none of
that code, so the two agreeing (tests/test_receptive_field.py runs both over the registry) checks
the rules. :func:`clipped_extent` turns a theoretical field into what the measurement can see.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .receptive_field import RF, UnknownGeometry, _tup

_IDENTITY_FUNCS = {
    "relu", "relu_", "relu6", "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "silu", "mish", "hardtanh",
    "hardswish", "hardsigmoid", "elu", "leaky_relu", "softplus", "clamp_min", "clamp", "clip", "threshold",
    "celu", "selu", "prelu", "logsigmoid",
}


class _Linearise(torch.overrides.TorchFunctionMode):
    """Activations become the identity and max pooling becomes average pooling, so that every
    path from the input reaches the output with a non-zero gradient."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _IDENTITY_FUNCS and args and isinstance(args[0], torch.Tensor):
            return args[0] if name.endswith("_") else args[0] * 1
        if name.startswith(("max_pool", "_max_pool")) or name.startswith("boolean_dispatch"):
            return self._avg(name, args, kwargs)
        if name in ("amax", "max") and args and isinstance(args[0], torch.Tensor) and (len(args) > 1 or "dim" in kwargs):
            dim = args[1] if len(args) > 1 else kwargs["dim"]
            keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
            if name == "amax":
                return args[0].mean(dim, keepdim=keep)
        if name == "pad" and kwargs.get("value", args[3] if len(args) > 3 else 0) in (float("-inf"),):
            args = (args[0], args[1], "constant", 0.0)
            kwargs = {}
        return func(*args, **kwargs)

    @staticmethod
    def _avg(name: str, args, kwargs):
        x = args[0]
        n = x.ndim - 2
        a = list(args) + [None] * 6
        kernel = kwargs.get("kernel_size", a[1])
        stride = kwargs.get("stride", a[2]) or kernel
        padding = kwargs.get("padding", a[3] if a[3] is not None else 0)
        dilation = kwargs.get("dilation", a[4] if a[4] is not None else 1)
        ceil_mode = kwargs.get("ceil_mode", a[5] if a[5] is not None else False)
        if any(d != 1 for d in _tup(dilation, n)):
            raise UnknownGeometry("the measurement cannot linearise a dilated max pool")
        avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
        out = avg(x, kernel, stride, padding, ceil_mode, True)
        return (out, out) if kwargs.get("return_indices") or (len(args) > 6 and args[6]) else out


def measure_receptive_field(model: nn.Module, input_size: Sequence[int], *, dtype: torch.dtype = torch.float64,
                            seed: int = 0) -> tuple[tuple[int, int], ...]:
    """Measure, by backpropagation, the input pixels the centre unit of forward_features sees.

    The model is copied and linearised: every weight becomes positive (random in [0.5, 1],
    divided by its fan-in so activity stays of order 1), biases zero, BatchNorm the identity
    (eval mode, mean 0, variance 1), activations the identity and max pooling average pooling
    (:class:`_Linearise`). The input is random and positive. Then no path's contribution can
    cancel another's, and the input gradient of the output unit at the centre is non-zero exactly
    where some path reaches it.

    Returns:
        per spatial axis the (first, last) input pixel with a non-zero gradient.
    """
    g = torch.Generator().manual_seed(seed)
    m = copy.deepcopy(model).to(dtype=dtype).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim > 1:
                p.copy_((torch.rand(p.shape, generator=g, dtype=dtype) * 0.5 + 0.5) / max(p[0].numel(), 1))
            else:
                p.copy_(torch.rand(p.shape, generator=g, dtype=dtype) * 0.5 + 0.5)
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)
    x = (torch.rand((1, *input_size), generator=g, dtype=dtype) + 0.5).requires_grad_(True)
    fwd = m.forward_features if hasattr(m, "forward_features") else m
    with _Linearise():
        y = fwd(x)
    centre = tuple(n // 2 for n in y.shape[2:])
    y[(0, slice(None), *centre)].sum().backward()
    grad = x.grad.abs().sum((0, 1))
    extents = []
    for axis in range(grad.ndim):
        other = tuple(i for i in range(grad.ndim) if i != axis)
        hit = (grad.sum(other) if other else grad).nonzero().flatten()
        if hit.numel() == 0:
            raise UnknownGeometry("the centre unit's gradient is zero everywhere")
        extents.append((int(hit.min()), int(hit.max())))
    return tuple(extents)


def clipped_extent(rf: RF, output_shape: Sequence[int], input_spatial: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Per axis the (first, last) input pixel of the centre unit's theoretical field, clipped to
    the input: what :func:`measure_receptive_field` should find."""
    out = []
    for (lo, hi), whole, n in zip(rf.interval([s // 2 for s in output_shape]), rf.whole, input_spatial):
        if whole:
            lo, hi = 0, n - 1
        out.append((max(int(math.ceil(lo)), 0), min(int(math.floor(hi)), n - 1)))
    return tuple(out)
