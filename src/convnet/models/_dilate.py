"""Dilated (atrous) backbones: a classifier converted to keep its feature maps at an output stride.

Chen et al. ("Rethinking Atrous Convolution for Semantic Image Segmentation", 2017, §3.1) keep
dense feature maps by removing the last strides of a classifier and dilating the convolutions
after them by the stride removed, so every filter still sees the same input pixels (the weights
and the parameter count do not change). :func:`dilate` does it in place on any built classifier
from its ``feature_info`` alone:

- the stages whose cumulative reduction exceeds ``output_stride`` are converted;
- their modules are walked in registration order (the execution order in every convnet family);
- a strided convolution or pool gets stride 1; every later convolution with a kernel wider than 1
  gets the running dilation (the product of the strides removed so far) and the padding that
  keeps its size;
- which dilation the strided convolution itself gets differs between the references, and is kept
  per family:

  - ``"previous"`` (the default): the dilation before the stride. torchvision's ResNet with
    ``replace_stride_with_dilation=[False, True, True]`` (``_make_layer``: the first block of a
    dilated stage is built with ``previous_dilation``, the others with the new one);
  - ``"new"``: the dilation after it. torchvision's ``mobilenet_v3_large(dilated=True)``, whose
    ``InvertedResidual`` gives the depthwise convolution ``cnf.dilation`` and stride 1 for every
    block of the dilated last stage, the first included.

Strided convolutions and pools with an even kernel (ConvNeXt's 2x2/2 downsampling, DenseNet's 2x2
average pools) have no symmetric padding that keeps the size at stride 1; they get a pre-forward
pad of d(k - 1) split as "same" padding does (zeros for convolutions, edge replication for pools).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._base import FeatureInfo

# family -> the dilation of a dilated stage's strided convolution ("previous" or "new").
STRIDED_CONV_DILATION: dict[str, str] = {"mobilenet_v3": "new"}
RULES = ("previous", "new")

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * n


class _SamePad:
    """A forward pre-hook padding d(k - 1) per axis (low side gets the floor), so that a
    convolution or pool of even kernel keeps the size at stride 1."""

    def __init__(self, kernel: tuple[int, ...], dilation: tuple[int, ...], mode: str):
        self.pads: list[int] = []
        for k, d in reversed(list(zip(kernel, dilation))):  # F.pad takes the last axis first
            total = d * (k - 1)
            self.pads += [total // 2, total - total // 2]
        self.mode = mode

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (F.pad(args[0], self.pads, mode=self.mode),) + tuple(args[1:])


def _levels(backbone: nn.Module, info: list[FeatureInfo]) -> list[list[tuple[str, nn.Module]]]:
    """The modules of each feature level in registration order: level i holds what comes after
    level i-1's module (and its children) up to the end of its own module."""
    named = list(backbone.named_modules())
    ends = []
    for f in info:
        inside = [j for j, (n, _) in enumerate(named) if n == f.module or n.startswith(f.module + ".")]
        if not inside:
            raise ValueError(f"feature_info names {f.module!r}, not a module of {type(backbone).__name__}")
        ends.append(max(inside))
    levels: list[list[tuple[str, nn.Module]]] = [[] for _ in info]
    for j, item in enumerate(named):
        level = next((i for i, end in enumerate(ends) if j <= end), None)
        if level is not None:
            levels[level].append(item)
    return levels


def _dims(module: nn.Module) -> int:
    return int(type(module).__name__[-2])  # Conv2d, MaxPool3d, ... name their dimension


def _dilate_conv(name: str, conv: nn.Module, strided: bool, factor: int, own_padding: bool) -> None:
    """Give ``conv`` stride 1 (if ``strided``) and multiply its dilation by ``factor``, with the
    padding that keeps the size."""
    n = _dims(conv)
    kernel, stride = tuple(conv.kernel_size), _tuple(conv.stride, n)
    old_dilation = _tuple(conv.dilation, n)
    if strided:
        conv.stride = (1,) * n
    if all(k == 1 for k in kernel):
        return
    dilation = tuple(d * factor for d in old_dilation)
    if isinstance(conv.padding, str) or not own_padding:
        # padding="same" (stride 1) or a SameConv wrapper: the padding follows the dilation by itself.
        conv.dilation = dilation
        return
    padding = _tuple(conv.padding, n)
    symmetric = tuple(d * (k - 1) // 2 for k, d in zip(kernel, old_dilation))
    if all(k % 2 for k in kernel) and padding == symmetric:
        conv.dilation = dilation
        conv.padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    elif strided and padding == (0,) * n and kernel == stride:
        # Patchify-style k x k / k downsampling (ConvNeXt): "same" padding by a pre-forward pad.
        conv.dilation = dilation
        conv.register_forward_pre_hook(_SamePad(kernel, dilation, "constant"))
    else:
        raise ValueError(f"cannot dilate {name}: kernel {kernel}, stride {stride}, padding {padding}, "
                         f"dilation {old_dilation} has no size-keeping form at stride 1")


def dilate(backbone: nn.Module, output_stride: int, strided_conv_dilation: str | None = None) -> nn.Module:
    """Convert a built classifier in place so that its feature maps stop shrinking at
    ``output_stride``; returns it. ``feature_info`` reductions are updated.

    Args:
        backbone: a classifier with ``feature_info`` (its module names locate the stages).
        output_stride: the reduction to keep, one of the reductions in ``feature_info`` (8 and 16
            are DeepLab's choices).
        strided_conv_dilation: ``"previous"`` or ``"new"`` (see the module docstring); None picks
            the family's rule from ``STRIDED_CONV_DILATION`` (default ``"previous"``).

    Raises:
        ValueError: an output stride the stages do not reach, or a strided module that has no
            dilated equivalent.
    """
    info = list(getattr(backbone, "feature_info", None) or [])
    if not info:
        raise ValueError(f"{type(backbone).__name__} has no feature_info to dilate")
    reductions = [f.reduction for f in info]
    if output_stride not in reductions:
        raise ValueError(f"output_stride {output_stride} is not a stage reduction of "
                         f"{type(backbone).__name__}; choose from {sorted(set(reductions))}")
    family = getattr(backbone, "default_cfg", {}).get("family", "")
    rule = strided_conv_dilation or STRIDED_CONV_DILATION.get(family, "previous")
    if rule not in RULES:
        raise ValueError(f"strided_conv_dilation must be one of {RULES}, got {rule!r}")
    same_conv_children = {f"{n}.conv" for n, m in backbone.named_modules() if type(m).__name__ == "SameConv"}

    dilation, previous = 1, 1  # running dilation; reduction of the level before
    for i, (f, modules) in enumerate(zip(info, _levels(backbone, info))):
        ratio = f.reduction // previous if previous else 1
        previous = f.reduction
        if f.reduction <= output_stride or ratio == 1:
            continue
        removed = 1  # stride removed so far in this level, capped at its ratio (parallel branches)
        for name, m in modules:
            stride = getattr(m, "stride", None)
            if stride is None:
                continue
            if isinstance(m, L.CONV_TYPES):
                s = max(_tuple(m.stride, _dims(m)))
                own_padding = name not in same_conv_children
                if s > 1:
                    before = dilation * removed
                    removed = min(removed * s, ratio)
                    after = dilation * removed
                    _dilate_conv(name, m, True, before if rule == "previous" else after, own_padding)
                else:
                    _dilate_conv(name, m, False, dilation * removed, own_padding)
            elif isinstance(m, _POOLS):
                dims = _dims(m)
                s, kernel = _tuple(m.stride, dims), _tuple(m.kernel_size, dims)
                if max(s) == 1:
                    continue
                removed = min(removed * max(s), ratio)
                m.stride = (1,) * dims
                padding = _tuple(m.padding, dims)
                if all(k % 2 for k in kernel) and padding == tuple((k - 1) // 2 for k in kernel):
                    continue  # a 3x3/2 pool with padding 1 keeps the size at stride 1
                if padding == (0,) * dims and kernel == s:
                    m.register_forward_pre_hook(_SamePad(kernel, (1,) * dims, "replicate"))
                    continue
                raise ValueError(f"cannot dilate {name}: pool kernel {kernel}, stride {s}, padding {padding}")
            elif isinstance(stride, int):
                if stride > 1:  # ResNet's option-A shortcut and other parameter-free subsamplers
                    m.stride = 1
                    removed = min(removed * stride, ratio)
            else:
                raise ValueError(f"cannot dilate {name} ({type(m).__name__} with stride {stride})")
        if removed != ratio:
            raise ValueError(f"dilating level {i} ({f.module}) removed a stride of {removed}, "
                             f"its reduction needs {ratio}")
        dilation *= ratio
    backbone.feature_info = [dataclasses.replace(f, reduction=min(f.reduction, output_stride)) for f in info]
    return backbone
