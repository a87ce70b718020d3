"""The efficient-network blocks: depthwise separable convolution (MobileNetV1), the inverted
residual with linear bottleneck (MobileNetV2, V3, EfficientNet's MBConv) and Fused-MBConv
(EfficientNetV2), plus layer scale (ConvNeXt) and the channel rounding these papers share.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .blocks import ConvNormAct, DropPath, SqueezeExcite
from .normalization import NormLayer, norm


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNetV2's rule, used by V3 and
    EfficientNet): to the nearest multiple, but never below 90% of ``value``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _norm(norm_layer: NormLayer, spatial_dims: int, norm_kwargs: dict[str, Any] | None) -> NormLayer:
    # ConvNormAct takes a name or a factory of channels; options (EfficientNet's eps) need the factory.
    if not norm_kwargs or norm_layer in (None, "none"):
        return norm_layer
    return lambda channels: norm(norm_layer, spatial_dims, channels, **norm_kwargs)


class DepthwiseSeparable(nn.Module):
    """MobileNetV1's unit (Howard et al. 2017, Fig. 3): a k x k depthwise convolution with norm
    and activation, an optional squeeze-and-excitation, then a 1x1 pointwise convolution with
    norm and activation. It costs 1/N + 1/k^d of a standard convolution."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, act_layer: str | Callable[..., nn.Module] = "relu",
                 norm_layer: NormLayer = "batch", se_channels: int = 0, se_act: str = "relu",
                 se_gate: str = "sigmoid", norm_kwargs: dict[str, Any] | None = None):
        super().__init__()
        nl = _norm(norm_layer, spatial_dims, norm_kwargs)
        self.depthwise = ConvNormAct(spatial_dims, in_channels, in_channels, kernel_size, stride,
                                     groups=in_channels, norm_layer=nl, act_layer=act_layer)
        self.se = (SqueezeExcite(spatial_dims, in_channels, rd_channels=se_channels, act_layer=se_act,
                                 gate_layer=se_gate) if se_channels else nn.Identity())
        self.pointwise = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm_layer=nl, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(x)  # k x k per channel, strided: (B, C_in, *S / stride)
        x = self.se(x)
        return self.pointwise(x)  # 1x1 mixes the channels: (B, C_out, *S / stride)


class InvertedResidual(nn.Module):
    """The inverted residual with a linear bottleneck (Sandler et al. 2018, Table 1): a 1x1
    expansion to ``mid`` channels, a k x k depthwise convolution, an optional
    squeeze-and-excitation (MobileNetV3, EfficientNet), and a 1x1 projection with no activation
    (the "linear bottleneck"); the input is added back when the shape allows.

    ``fused=True`` is EfficientNetV2's Fused-MBConv (Tan & Le 2021, Fig. 2): the expansion and
    the depthwise convolution become one k x k convolution. Children present only when used:
    ``expand``, ``depthwise``, ``se``, ``project``, ``drop_path``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, expand_ratio: float = 6.0, *, expanded_channels: int | None = None,
                 fused: bool = False, se_channels: int = 0, se_act: str | Callable[..., nn.Module] = "relu",
                 se_gate: str | Callable[..., nn.Module] = "sigmoid",
                 act_layer: str | Callable[..., nn.Module] = "relu6", norm_layer: NormLayer = "batch",
                 drop_path: float = 0.0, norm_kwargs: dict[str, Any] | None = None):
        super().__init__()
        d, nl = spatial_dims, _norm(norm_layer, spatial_dims, norm_kwargs)
        mid = expanded_channels or round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        if fused:
            # Fused-MBConv with ratio 1 is a single k x k conv (the projection then is the conv).
            if mid == in_channels:
                self.expand = None
                self.project = ConvNormAct(d, in_channels, out_channels, kernel_size, stride, norm_layer=nl,
                                           act_layer=act_layer)
            else:
                self.expand = ConvNormAct(d, in_channels, mid, kernel_size, stride, norm_layer=nl, act_layer=act_layer)
            self.depthwise = None
        else:
            self.expand = (ConvNormAct(d, in_channels, mid, 1, norm_layer=nl, act_layer=act_layer)
                           if mid != in_channels else None)
            self.depthwise = ConvNormAct(d, mid, mid, kernel_size, stride, groups=mid, norm_layer=nl,
                                         act_layer=act_layer)
        self.se = (SqueezeExcite(d, mid, rd_channels=se_channels, act_layer=se_act, gate_layer=se_gate)
                   if se_channels else None)
        if not (fused and self.expand is None):
            self.project = ConvNormAct(d, mid, out_channels, 1, norm_layer=nl, act_layer=None)
        self.drop_path = DropPath(drop_path) if self.use_residual and drop_path > 0 else None

    def zero_init_last(self) -> None:
        """Start as the identity where the input is added back: the projection's norm scale at 0."""
        if getattr(self.project.norm, "weight", None) is not None:
            nn.init.zeros_(self.project.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand is not None:
            out = self.expand(out)  # 1x1 up to the expanded width (Fused-MBConv: k x k, strided)
        if self.depthwise is not None:
            out = self.depthwise(out)  # k x k depthwise, strided: (B, mid, *S / stride)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)  # 1x1 down, no activation: the linear bottleneck
        if not self.use_residual:
            return out
        if self.drop_path is not None:
            out = self.drop_path(out)
        return out + x


class LayerScale(nn.Module):
    """A learnable scale per channel (Touvron et al. 2021, CaiT; ConvNeXt): x * gamma along
    axis 1, starting small so that a residual branch starts close to zero."""

    def __init__(self, channels: int, init_value: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, *([1] * (x.ndim - 2)))
