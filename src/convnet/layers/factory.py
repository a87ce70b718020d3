"""The one place that picks a 1-D, 2-D or 3-D torch module by ``spatial_dims``.

Every model in convnet is written once and built for signals (1-D), images (2-D) or volumes and
clips (3-D) by passing ``spatial_dims``. The factories below resolve the dimension, and resolve
layer choices given by name (``act_layer="gelu"``, ``norm_layer="batch"``) or as callables.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_act
from .normalization import ChannelLayerNorm, GlobalResponseNorm, LocalResponseNorm

SPATIAL_DIMS = (1, 2, 3)

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


def _pick(spatial_dims: int, classes: tuple[type, type, type]) -> type:
    return classes[check_dims(spatial_dims) - 1]


def conv_class(spatial_dims: int) -> type[nn.Module]:
    return _pick(spatial_dims, (nn.Conv1d, nn.Conv2d, nn.Conv3d))


def default_padding(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Symmetric padding that keeps the size at stride 1 for odd kernels: d * (k - 1) // 2."""
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation))


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
        pads: list[int] = []
        # F.pad takes the last dimension first.
        # An inflated convolution pads its own time axis (layers.inflation.InflatedConv).
        own_time = 1 if getattr(c, "time_pad", None) is not None else 0
        for axis, (size, k, s, d) in reversed(list(enumerate(zip(x.shape[2:], c.kernel_size, c.stride, c.dilation)))):
            total = 0 if axis < own_time else max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
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
    cls = _pick(spatial_dims, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    return cls(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias)


NormLayer = str | Callable[..., nn.Module] | None


def norm(name: NormLayer, spatial_dims: int, channels: int, **kwargs) -> nn.Module:
    """A normalisation layer over (B, C, *S) by name or callable.

    Names: ``batch``, ``layer`` (over channels at each position, as ConvNeXt), ``group``
    (``num_groups``, default 32 or fewer to divide C), ``instance``, ``local_response`` (LRN,
    AlexNet's k=2, n=5, alpha=1e-4, beta=0.75 by default), ``grn`` (ConvNeXt V2), ``none``.
    A callable is called as ``fn(channels, **kwargs)``.
    """
    if name is None or name == "none":
        return nn.Identity()
    if callable(name):
        return name(channels, **kwargs)
    if name == "batch":
        return _pick(spatial_dims, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))(channels, **kwargs)
    if name == "instance":
        kwargs.setdefault("affine", True)
        return _pick(spatial_dims, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d))(
            channels, **kwargs
        )
    if name == "group":
        groups = kwargs.pop("num_groups", 32)
        groups = math.gcd(groups, channels)
        return nn.GroupNorm(groups, channels, **kwargs)
    if name == "layer":
        return ChannelLayerNorm(channels, **kwargs)
    if name == "local_response":
        return LocalResponseNorm(**kwargs)
    if name == "grn":
        return GlobalResponseNorm(channels, **kwargs)
    raise ValueError(
        f"unknown norm_layer {name!r}; choose from batch, layer, group, instance, "
        "local_response, grn, none, or pass a callable"
    )


def act(name: str | Callable[..., nn.Module] | None, **kwargs) -> nn.Module:
    """An activation module by name or callable (see ``activations.ACTIVATIONS``)."""
    return get_act(name, **kwargs)


def max_pool(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,
             padding: IntOrSeq = 0, ceil_mode: bool = False) -> nn.Module:
    cls = _pick(spatial_dims, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d))
    return cls(kernel_size, stride, padding, ceil_mode=ceil_mode)


def avg_pool(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,
             padding: IntOrSeq = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> nn.Module:
    cls = _pick(spatial_dims, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
    return cls(kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def pool(name: str, spatial_dims: int, kernel_size: IntOrSeq = 2, stride: IntOrSeq | None = None,
         padding: IntOrSeq = 0, ceil_mode: bool = False, channels: int | None = None) -> nn.Module:
    """A pooling layer by name: ``max``, ``avg``, ``subsample`` (LeNet's trainable one, needs
    ``channels``), ``global_avg``, ``global_max``."""
    if name == "max":
        return max_pool(spatial_dims, kernel_size, stride, padding, ceil_mode)
    if name == "avg":
        return avg_pool(spatial_dims, kernel_size, stride, padding, ceil_mode)
    if name in ("global_avg", "global_max"):
        from .pooling import GlobalPool

        return GlobalPool(name.removeprefix("global_"), flatten=False)
    if name == "subsample":
        from .pooling import TrainableSubsampling

        if channels is None:
            raise ValueError("pool('subsample') needs channels")
        return TrainableSubsampling(spatial_dims, channels, kernel_size)
    raise ValueError(f"unknown pool {name!r}; choose from max, avg, subsample, global_avg, global_max")


def adaptive_avg_pool(spatial_dims: int, output_size: IntOrSeq) -> nn.Module:
    cls = _pick(spatial_dims, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d))
    return cls(output_size)


def adaptive_max_pool(spatial_dims: int, output_size: IntOrSeq) -> nn.Module:
    cls = _pick(spatial_dims, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))
    return cls(output_size)


def dropout(spatial_dims: int | None, p: float, channelwise: bool = False) -> nn.Module:
    """Element-wise dropout, or (``channelwise=True``) dropout of whole feature maps."""
    if p <= 0:
        return nn.Identity()
    if not channelwise:
        return nn.Dropout(p)
    return _pick(spatial_dims or 2, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d))(p)


def memory_format(spatial_dims: int) -> torch.memory_format | None:
    """The channels-last layout of a (B, C, *S) tensor: ``channels_last`` in 2-D,
    ``channels_last_3d`` in 3-D, None in 1-D (PyTorch has no such format for rank 3)."""
    return {2: torch.channels_last, 3: torch.channels_last_3d}.get(check_dims(spatial_dims))


def linear_mode(spatial_dims: int) -> str:
    """F.interpolate's (multi)linear mode for ``spatial_dims`` axes."""
    return ("linear", "bilinear", "trilinear")[check_dims(spatial_dims) - 1]
