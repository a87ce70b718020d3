"""Building blocks shared by the model families, all N-d."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_act
from .factory import IntOrSeq, Padding, conv
from .normalization import NormLayer, norm
from .pooling import max_pool


class ConvNormAct(nn.Sequential):
    """Convolution, then normalisation, then activation: the unit most CNNs are made of.

    The convolution has no bias when a normalisation with its own shift follows.
    Children are named ``conv``, ``norm``, ``act`` so checkpoints read naturally.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrSeq = 3,
        stride: IntOrSeq = 1,
        padding: Padding = None,
        dilation: IntOrSeq = 1,
        groups: int = 1,
        norm_layer: NormLayer = "batch",
        act_layer: str | Callable[..., nn.Module] | None = "relu",
        bias: bool | None = None,
        inplace: bool = True,
    ):
        has_norm = norm_layer not in (None, "none")
        super().__init__()
        self.conv = conv(spatial_dims, in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias=not has_norm if bias is None else bias)
        self.norm = norm(norm_layer, spatial_dims, out_channels)
        self.act = get_act(act_layer, inplace=inplace)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018): global pooling, a bottleneck of two 1x1 convs,
    a gate per channel. ``rd_channels`` (the reduced width) defaults to channels / rd_ratio."""

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        act_layer: str | Callable[..., nn.Module] = "relu",
        gate_layer: str | Callable[..., nn.Module] = "sigmoid",
    ):
        super().__init__()
        rd_channels = rd_channels or max(1, round(channels * rd_ratio))
        self.fc1 = conv(spatial_dims, channels, rd_channels, 1, bias=True)
        self.act = get_act(act_layer, inplace=True)
        self.fc2 = conv(spatial_dims, rd_channels, channels, 1, bias=True)
        self.gate = get_act(gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(tuple(range(2, x.ndim)), keepdim=True)  # squeeze: (B, C, 1, ...)
        s = self.act(self.fc1(s))  # the bottleneck: (B, rd_channels, 1, ...)
        s = self.gate(self.fc2(s))  # excite: a weight per channel in (0, 1)
        return x * s


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (Huang et al. 2016): drop the residual branch with
    probability p and scale survivors by 1/(1-p) so the expectation is unchanged; identity
    at evaluation."""
    if drop_prob <= 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if keep > 0.0:  # drop_prob=1 drops every sample; dividing by 0 would give NaN
        mask.div_(keep)
    return x * mask


def drop_path_rates(total: int, rate: float, *, endpoint: bool = True) -> list[float]:
    """The stochastic-depth rate of each of ``total`` blocks, growing linearly with depth from 0
    (Huang et al. 2016, §3, the "linear decay rule" p_l = l / L * p_L).

    ``endpoint=True`` reaches ``rate`` at the last block (rate * i / (total - 1), as timm and
    the ResNet, ConvNeXt and ViT references); ``endpoint=False`` stops one step short (rate * i
    / total, torchvision's EfficientNet rule).
    """
    denominator = max(total - 1, 1) if endpoint else total
    return [rate * i / denominator for i in range(total)]


class DropPath(nn.Module):
    """Module form of :func:`drop_path`, applied to a residual branch before the addition."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018): drop contiguous block_size^d regions of feature maps.

    Block centres are sampled with rate gamma (Eq. 1, generalised to d axes) inside the region
    where a whole block fits, expanded to blocks by max pooling, and the kept activations are
    rescaled by (number of units / number kept). Identity at evaluation.
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7):
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.block_size = int(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob <= 0.0:
            return x
        spatial = x.shape[2:]
        block = [min(self.block_size, s) for s in spatial]
        valid = [s - b + 1 for s, b in zip(spatial, block)]
        numel = 1
        fit = 1
        area = 1
        for s, b, v in zip(spatial, block, valid):
            numel, fit, area = numel * s, fit * v, area * b
        gamma = self.drop_prob * numel / (area * fit)
        # Sample centres only where the whole block fits, then pad back to the full size.
        seeds = x.new_empty(x.shape[:2] + tuple(valid)).bernoulli_(min(gamma, 1.0))
        pads: list[int] = []
        for b in reversed(block):
            pads += [(b - 1) // 2, b - 1 - (b - 1) // 2]
        seeds = F.pad(seeds, pads)
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(spatial) - 1]
        pads_per_axis = [b // 2 for b in block]
        dropped = pool(seeds, kernel_size=block, stride=1, padding=pads_per_axis)
        # Even block sizes make the pooled map one larger per axis; crop back.
        dropped = dropped[(..., *[slice(0, s) for s in spatial])]
        keep = 1.0 - dropped
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"


def resnet_stem(spatial_dims: int, in_channels: int, out_channels: int, *,
                norm_layer: NormLayer = "batch", act_layer: str | Callable[..., nn.Module] | None = "relu",
                pre_activation: bool = False) -> nn.Sequential:
    """ResNet's ImageNet stem (He et al. 2016, Table 1: "7x7, 64, stride 2" and the "3x3 max
    pool, stride 2" that opens conv2_x), shared by its descendants: a reduction of 4.

    Children: ``conv`` (ConvNormAct; with ``pre_activation`` a bare bias-free convolution,
    whose output the first pre-activation unit normalises, as He et al.'s Identity Mappings
    code) and ``pool`` (3x3/2, padding 1).
    """
    if pre_activation:
        stem_conv = conv(spatial_dims, in_channels, out_channels, 7, 2, bias=False)
    else:
        stem_conv = ConvNormAct(spatial_dims, in_channels, out_channels, 7, 2, norm_layer=norm_layer,
                                act_layer=act_layer)
    return nn.Sequential(OrderedDict(conv=stem_conv, pool=max_pool(spatial_dims, 3, 2, 1)))
