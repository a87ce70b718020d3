"""The one place that picks a 1-D, 2-D or 3-D torch module by ``spatial_dims``.

Every model in convnet is written once and built for signals (1-D), images (2-D) or volumes and
clips (3-D) by passing ``spatial_dims``. The factories below resolve the dimension of
convolutions, dropout and layouts; normalisations and pools chosen by name live in their own
registries (``normalization.NORMS``, ``pooling.POOLS``), which build on the helpers here.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_act

SPATIAL_DIMS = (1, 2, 3)
# Every convolution layer `conv` can return, for isinstance checks outside layers/.
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

IntOrSeq = int | Sequence[int]
Padding = int | Sequence[int] | str | None


def check_dims(spatial_dims: int) -> int:
    """Validate ``spatial_dims`` and return it."""
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def ntuple(value: IntOrSeq, spatial_dims: int, name: str = "value") -> tuple[int, ...]:
    """Broadcast an int to a ``spatial_dims``-tuple, or check a sequence's length."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise ValueError(f"{name} {value} has {len(value)} entries, expected {spatial_dims}")
    return value


def pick(spatial_dims: int, classes: tuple[type, type, type]) -> type:
    """The 1-D, 2-D or 3-D one of ``classes`` (validating ``spatial_dims``)."""
    return classes[check_dims(spatial_dims) - 1]


def conv_class(spatial_dims: int) -> type[nn.Module]:
    return pick(spatial_dims, CONV_TYPES)


def default_padding(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Symmetric padding that keeps the size at stride 1 for odd kernels: d * (k - 1) // 2."""
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation))


def same_padding(sizes: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int] | None = None) -> list[int]:
    """TensorFlow's "same" padding for a window over axes of ``sizes``: out = ceil(in / stride).

    Returns F.pad's list (last axis first, (before, after) per axis); where the total is odd the
    far side takes the extra pixel, as TensorFlow does. The total is what makes the last window
    end at the last pixel: (ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, at least 0.
    """
    dilation = dilation if dilation is not None else (1,) * len(sizes)
    pads: list[int] = []
    for size, k, s, d in reversed(list(zip(sizes, kernel_size, stride, dilation))):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


class SameConv(nn.Module):
    """Convolution with TensorFlow's "same" padding at any stride: out = ceil(in / stride).

    torch only accepts ``padding="same"`` at stride 1; strided "same" needs padding that depends
    on the input size (and may be asymmetric), so it is computed in forward.
    """

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        pads = same_padding(x.shape[2:], c.kernel_size, c.stride, c.dilation)
        if getattr(c, "time_pad", None) is not None:
            # An inflated convolution pads its own time axis (layers.inflation.InflatedConv):
            # the first spatial axis, the last pair of F.pad's list.
            pads[-2:] = [0, 0]
        return c(F.pad(x, pads))


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrSeq = 3,
    stride: IntOrSeq = 1,
    padding: Padding = None,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    bias: bool = True,
    depthwise: bool = False,
) -> nn.Module:
    """An N-d convolution.

    Args:
        spatial_dims: 1, 2 or 3.
        kernel_size, stride, dilation: an int for every axis, or one value per axis.
        padding: an int or per-axis ints; ``None`` for symmetric d*(k-1)//2; ``"valid"`` for 0;
            ``"same"`` for out = ceil(in / stride) at any stride (TensorFlow's rule).
        groups: channel groups; ``depthwise=True`` sets groups = in_channels.
    """
    if depthwise:
        groups = in_channels
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible "
            f"by groups ({groups})"
        )
    k = ntuple(kernel_size, spatial_dims, "kernel_size")
    s = ntuple(stride, spatial_dims, "stride")
    d = ntuple(dilation, spatial_dims, "dilation")
    cls = conv_class(spatial_dims)
    if padding == "same" and any(v != 1 for v in s):
        return SameConv(cls(in_channels, out_channels, k, s, 0, d, groups, bias))
    if padding is None:
        padding = default_padding(k, d)
    elif padding == "valid":
        padding = 0
    elif not isinstance(padding, str):
        padding = ntuple(padding, spatial_dims, "padding")
    return cls(in_channels, out_channels, k, s, padding, d, groups, bias)


def conv_transpose(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrSeq = 2,
    stride: IntOrSeq = 2,
    padding: IntOrSeq = 0,
    output_padding: IntOrSeq = 0,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """An N-d transposed convolution (learned upsampling)."""
    cls = pick(spatial_dims, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    return cls(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias)


def act(name: str | Callable[..., nn.Module] | None, **kwargs) -> nn.Module:
    """An activation module by name or callable (see ``activations.ACTIVATIONS``)."""
    return get_act(name, **kwargs)


def dropout(spatial_dims: int | None, p: float, channelwise: bool = False) -> nn.Module:
    """Element-wise dropout, or (``channelwise=True``) dropout of whole feature maps."""
    if p <= 0:
        return nn.Identity()
    if not channelwise:
        return nn.Dropout(p)
    return pick(spatial_dims or 2, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d))(p)


def memory_format(spatial_dims: int) -> torch.memory_format | None:
    """The channels-last layout of a (B, C, *S) tensor: ``channels_last`` in 2-D,
    ``channels_last_3d`` in 3-D, None in 1-D (PyTorch has no such format for rank 3)."""
    return {2: torch.channels_last, 3: torch.channels_last_3d}.get(check_dims(spatial_dims))


def linear_mode(spatial_dims: int) -> str:
    """F.interpolate's (multi)linear mode for ``spatial_dims`` axes."""
    return ("linear", "bilinear", "trilinear")[check_dims(spatial_dims) - 1]
