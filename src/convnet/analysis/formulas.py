"""The arithmetic of convolutional layers, and the input sizes a model accepts.

The formulas are those of the CS231n notes on convolutional networks (output size
(W - F + 2P)/S + 1, parameters K(F^d C + 1)) and of Yu and Koltun, "Multi-Scale Context
Aggregation by Dilated Convolutions", ICLR 2016 (dilated kernel k + (k - 1)(r - 1)); the
receptive field L(F - 1) + 1 of a stack of L stride-1 layers is Simonyan and Zisserman,
"Very Deep Convolutional Networks", ICLR 2015, §2.3 (two 3x3 layers see what one 5x5 sees).

:func:`input_size_info` answers the question U-Net users ask most: which input sizes does this
model take, and how much padding makes a given size one of them. It runs the model on the meta
device (no memory, no compute) and records every windowed operation (convolution, pooling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode


def dilated_kernel_size(kernel_size: int, dilation: int) -> int:
    """The extent of a dilated kernel: k + (k - 1)(r - 1)."""
    if kernel_size < 1 or dilation < 1:
        raise ValueError(f"kernel_size and dilation must be >= 1, got {kernel_size}, {dilation}")
    return kernel_size + (kernel_size - 1) * (dilation - 1)


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, *,
                     exact: bool = True) -> int:
    """(W - F + 2P) / S + 1 with F the dilated kernel.

    Args:
        exact: raise when S does not divide W - F + 2P (the layer would drop input); with False,
            floor as torch does.

    Raises:
        ValueError: the kernel does not fit the padded input, or (``exact``) the division is not integral.
    """
    f = dilated_kernel_size(kernel_size, dilation)
    span = size - f + 2 * padding
    if span < 0:
        raise ValueError(f"kernel {f} (dilated) does not fit input {size} with padding {padding}")
    if exact and span % stride:
        raise ValueError(f"(W - F + 2P) / S = ({size} - {f} + 2*{padding}) / {stride} is not an integer: "
                         f"the layer would ignore {span % stride} pixel(s); pad the input or change the stride")
    return span // stride + 1


def conv_params(out_channels: int, kernel_size: int | Sequence[int], in_channels: int, spatial_dims: int = 2,
                groups: int = 1, bias: bool = True) -> int:
    """K (F^d C / groups + 1): the weights and (if ``bias``) biases of a convolution."""
    ks = (kernel_size,) * spatial_dims if isinstance(kernel_size, int) else tuple(kernel_size)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups {groups} must divide in_channels {in_channels} and out_channels {out_channels}")
    return out_channels * (math.prod(ks) * in_channels // groups + int(bias))


def stacked_receptive_field(num_layers: int, kernel_size: int) -> int:
    """The receptive field L (F - 1) + 1 of L stride-1 layers of kernel F."""
    return num_layers * (kernel_size - 1) + 1


@dataclass(frozen=True)
class _Window:
    axis: int  # spatial axis index (0-based)
    size_in: int
    size_out: int
    kernel: int  # dilated
    stride: int
    padding: int  # total of both sides (explicit padding of the op itself)


class _WindowRecorder(TorchDispatchMode):
    """Records every convolution and pooling on the trailing ``spatial_dims`` axes."""

    def __init__(self, spatial_dims: int):
        super().__init__()
        self.d = spatial_dims
        self.windows: list[_Window] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func)
        first = out[0] if isinstance(out, (tuple, list)) else out
        aten = torch.ops.aten
        if func is aten.convolution.default and not args[6]:
            x, w, _, stride, padding, dilation = args[:6]
            n = w.ndim - 2
            if isinstance(padding, str):
                padding = [0] * n
            for i in range(n):
                self._add(x, first, i, n, dilation[i] * (w.shape[2 + i] - 1) + 1, stride[i], 2 * padding[i])
        elif "pool" in name and "adaptive" not in name and "backward" not in name:
            x = args[0]
            a = list(args) + [None] * 5
            n = len(a[1])
            stride = a[2] or a[1]
            padding = a[3] if a[3] is not None else [0] * n
            dil = a[4] if "max" in name and a[4] is not None else [1] * n
            st = lambda v, i: v[i] if len(v) > 1 else v[0]  # noqa: E731
            for i in range(n):
                self._add(x, first, i, n, st(dil, i) * (st(a[1], i) - 1) + 1, st(stride, i), 2 * st(padding, i))
        elif "adaptive" in name:
            x = args[0]
            n = len(args[1])
            for i in range(n):
                dim = x.ndim - n + i
                nin, nout = x.shape[dim], first.shape[dim]
                # Even windows when the sizes divide; otherwise an uneven pooling (never exact).
                k = nin // nout if nin % nout == 0 else 0
                self._add(x, first, i, n, k, k, 0)
        return out

    def _add(self, x, out, i, n, k, s, p):
        dim = x.ndim - n + i
        axis = dim - (x.ndim - self.d)
        if 0 <= axis < self.d:
            self.windows.append(_Window(axis, int(x.shape[dim]), int(out.shape[dim]), int(k), int(s), int(p)))


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.to("meta") for k, v in [*model.named_parameters(remove_duplicate=False),
                                         *model.named_buffers(remove_duplicate=False)]}


def _trace_windows(model: nn.Module, input_size: Sequence[int], state: dict[str, torch.Tensor]) -> list[_Window] | None:
    """The windows of one meta-device forward, or None when the model cannot take the size."""
    rec = _WindowRecorder(len(input_size) - 1)
    try:
        with torch.no_grad(), rec:
            functional_call(model, state, (torch.zeros((1, *input_size), device="meta"),), strict=False)
    except (RuntimeError, ValueError, IndexError, ZeroDivisionError):
        return None
    return rec.windows


@dataclass(frozen=True)
class InputSizeInfo:
    """The input sizes a model takes, per spatial axis (all axes set to the same size).

    Attributes:
        minimum: the smallest size that runs.
        runs: every size in the scanned range that runs at all.
        aligned: sizes at which every strided layer divides evenly (output x stride = input):
            feature maps stay aligned with the input grid, and an encoder-decoder (U-Net) gives
            back the input size with skip connections of matching shapes.
        exact: sizes at which no layer floors: every window tiles its padded input exactly,
            (W - F + 2P) divisible by S (e.g. 227 for the original AlexNet).
        stride: the spacing of the aligned sizes (the total stride, 32 for a ResNet).
    """

    minimum: int | None
    runs: tuple[int, ...]
    aligned: tuple[int, ...]
    exact: tuple[int, ...]
    stride: int

    def padding_for(self, size: int, kind: str = "aligned") -> int:
        """The padding (total, per axis) that turns ``size`` into the next valid size of ``kind``
        ("aligned", "exact" or "runs"); 0 when it already is one.

        Raises:
            ValueError: no valid size at or above ``size`` in the scanned range.
        """
        valid = getattr(self, kind)
        bigger = [v for v in valid if v >= size]
        if not bigger:
            raise ValueError(f"no {kind} input size >= {size} in the scanned range "
                             f"({self.runs[0] if self.runs else '-'}..{self.runs[-1] if self.runs else '-'})")
        return bigger[0] - size


def input_size_info(model: nn.Module, sizes: Iterable[int] | None = None, *, spatial_dims: int | None = None,
                    in_channels: int | None = None) -> InputSizeInfo:
    """Which input sizes ``model`` takes: the minimum, the sizes that run, the aligned and exact ones.

    Each size is tried by one forward pass on the meta device (no memory, no compute).

    Args:
        sizes: the candidate sizes per axis; default 1 .. 2 x the model's default input size
            (``default_cfg["input_size"]``), or 1 .. 512.
        spatial_dims, in_channels: default to the model's attributes.
    """
    d = spatial_dims or getattr(model, "spatial_dims", 2)
    c = in_channels or getattr(model, "in_channels", None)
    if c is None:
        raise ValueError("input_size_info needs in_channels for a model without an in_channels attribute")
    if sizes is None:
        default = getattr(model, "default_cfg", {}).get("input_size")
        top = 2 * max(default[1:]) if default else 512
        sizes = range(1, top + 1)
    was_training = model.training
    model.eval()
    runs, aligned, exact = [], [], []
    state = _meta_state(model)
    try:
        for n in sizes:
            windows = _trace_windows(model, (c, *([n] * d)), state)
            if windows is None:
                continue
            runs.append(n)
            if all(w.kernel and (w.size_in + w.padding - w.kernel) % w.stride == 0 for w in windows):
                exact.append(n)
            if all(w.stride == 1 or (w.kernel and w.size_out * w.stride == w.size_in) for w in windows):
                aligned.append(n)
    finally:
        model.train(was_training)
    return InputSizeInfo(minimum=runs[0] if runs else None, runs=tuple(runs), aligned=tuple(aligned),
                         exact=tuple(exact), stride=_period(aligned))


def _period(values: Sequence[int]) -> int:
    """The spacing of the aligned sizes (the gcd of their differences; 1 with fewer than two)."""
    g = 0
    for a, b in zip(values, values[1:]):
        g = math.gcd(g, b - a)
    return g or 1


def separable_conv_cost(in_channels: int, out_channels: int, kernel_size: int, spatial_size: int,
                        spatial_dims: int = 2) -> dict[str, float]:
    """Parameters and MACs of a standard k^d convolution against a depthwise separable one
    (a k^d depthwise conv, then a 1x1 pointwise conv), both stride 1 with "same" padding on a
    ``spatial_size``^d map and without biases, as Howard et al., "MobileNets", 2017, §3.1 count
    them: standard D_K^2 M N D_F^2, separable D_K^2 M D_F^2 + M N D_F^2 (Eqs. 2 and 5), so the
    separable one costs 1/N + 1/D_K^2 of the standard one (Eq. 5's ratio; 1/k^d in d dims).

    Returns:
        ``standard_params``, ``separable_params``, ``standard_macs``, ``separable_macs``,
        ``ratio`` (separable / standard, measured from the counts), ``paper_ratio``
        (1/N + 1/k^d) and ``saving`` (standard / separable).
    """
    if min(in_channels, out_channels, kernel_size, spatial_size) < 1:
        raise ValueError(f"channels, kernel_size and spatial_size must be >= 1, got {in_channels}, "
                         f"{out_channels}, {kernel_size}, {spatial_size}")
    positions = spatial_size ** spatial_dims
    standard = conv_params(out_channels, kernel_size, in_channels, spatial_dims, bias=False)
    separable = (conv_params(in_channels, kernel_size, in_channels, spatial_dims, groups=in_channels, bias=False)
                 + conv_params(out_channels, 1, in_channels, spatial_dims, bias=False))
    return {
        "standard_params": standard,
        "separable_params": separable,
        "standard_macs": standard * positions,  # every weight is used once per output position
        "separable_macs": separable * positions,
        "ratio": separable / standard,
        "paper_ratio": 1 / out_channels + 1 / kernel_size ** spatial_dims,
        "saving": standard / separable,
    }
