"""Xception: F. Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
CVPR 2017 (arXiv:1610.02357).

Figure 5: the data go through an entry flow (two 3x3 convolutions, 32 and 64 filters, the first
at stride 2, both unpadded; then three residual modules of two separable 3x3 convolutions and a
3x3/2 max pool, 128, 256 and 728 filters), a middle flow repeated eight times (residual modules
of three separable 728-filter convolutions, identity shortcuts) and an exit flow (a residual
module going 728 -> 1024 with a max pool, separable convolutions of 1536 and 2048 filters with
ReLU), then global average pooling and the classifier (dropout 0.5 before it, §4.3). Every
convolution and separable convolution is followed by batch normalisation (§3); the shortcuts
that change shape are 1x1/2 convolutions with BN. A separable convolution is a depthwise k^d
convolution (one filter per channel: groups = channels) then a pointwise 1x1 one, without a
nonlinearity in between (§4.7, Fig. 10).

Layout and numbers follow timm's ``legacy_xception`` (the Keras weights ported by Cadene), so
its checkpoints load (weights/keymaps/xception.py): BatchNorm at PyTorch's epsilon 1e-5, the
residual modules' ReLU before each separable convolution (none before the first of the first
module), 22,855,952 parameters.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage, init_he
from ._registry import register


@dataclass(frozen=True)
class XceptionSpec:
    """One Xception layout (Fig. 5).

    Attributes:
        stem_widths: the entry flow's two plain convolutions.
        entry_widths: the entry flow's three reducing residual modules.
        middle_depth: middle-flow modules (8), each of ``middle_reps`` separable convolutions.
        middle_reps: separable convolutions per middle-flow module.
        exit_widths: the exit flow's residual module (728 -> 1024) and its two separable
            convolutions (1536, 2048).
        width_divisor: every width is divided by this (1 = the paper; larger for tests).
        bn_eps: BatchNorm epsilon.
    """

    stem_widths: tuple[int, int] = (32, 64)
    entry_widths: tuple[int, int, int] = (128, 256, 728)
    middle_depth: int = 8
    middle_reps: int = 3
    exit_widths: tuple[int, int, int] = (1024, 1536, 2048)
    width_divisor: int = 1
    bn_eps: float = 1e-5


class SeparableConv(nn.Module):
    """Depthwise k^d convolution (groups = in_channels) then pointwise 1x1, both without bias."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1):
        super().__init__()
        self.depthwise = L.conv(spatial_dims, in_channels, in_channels, kernel_size, stride, depthwise=True,
                                bias=False)
        self.pointwise = L.conv(spatial_dims, in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class PreActSeparableConv(nn.Sequential):
    """ReLU, separable 3x3 convolution, BN: one step of a residual module (Fig. 5)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: functools.partial,
                 act: nn.Module):
        super().__init__(OrderedDict(
            act=act, conv=SeparableConv(spatial_dims, in_channels, out_channels), norm=norm(out_channels)))


class SeparableConvNormAct(nn.Sequential):
    """Separable 3x3 convolution, BN, ReLU: the exit flow's last two layers (Fig. 5)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: functools.partial):
        super().__init__(OrderedDict(conv=SeparableConv(spatial_dims, in_channels, out_channels),
                                     norm=norm(out_channels), act=nn.ReLU(inplace=True)))


class XceptionBlock(nn.Module):
    """A residual module: ``reps`` x (ReLU, separable conv, BN), a 3x3 max pool when it
    strides, plus the input through a shortcut (1x1 strided conv + BN where the shape changes).

    ``grow_first``: the first separable convolution changes the width (entry and middle flows);
    otherwise the last does (the exit flow's 728 -> 728 -> 1024).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, reps: int, stride: int,
                 norm: functools.partial, start_with_act: bool = True, grow_first: bool = True):
        super().__init__()
        d = spatial_dims
        units = []
        for i in range(reps):
            if grow_first:
                cin, cout = (in_channels if i == 0 else out_channels), out_channels
            else:
                cin, cout = in_channels, (in_channels if i < reps - 1 else out_channels)
            # The first ReLU must not overwrite the input: the shortcut still needs it.
            act = (nn.ReLU(inplace=False) if start_with_act else nn.Identity()) if i == 0 else nn.ReLU(inplace=True)
            units.append(PreActSeparableConv(d, cin, cout, norm, act))
        self.units = nn.Sequential(*units)
        self.pool = L.max_pool(d, 3, stride, 1) if stride != 1 else nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = L.ConvNormAct(d, in_channels, out_channels, 1, stride, norm_layer=norm, act_layer=None)
        else:
            self.shortcut = nn.Identity()

    def zero_init_last(self) -> None:
        """Start as the identity where the shortcut is: the last BN's scale at zero."""
        nn.init.zeros_(self.units[-1].norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.units(x)  # reps x (ReLU, separable 3x3, BN): (B, C_out, *S)
        out = self.pool(out)  # 3x3 max pool where the module strides: (B, C_out, *S / stride)
        return out + self.shortcut(x)


class Xception(ConvNetClassifier):
    """Xception in 1, 2 or 3 dims: ``stem`` (conv1, conv2), ``stages`` = entry, middle and exit
    flows (``stages[i].blocks[j]``), ``head``."""

    def __init__(self, spec: XceptionSpec = XceptionSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.5):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        norm = functools.partial(L.norm, "batch", d, eps=spec.bn_eps)

        def w(c: int) -> int:
            return max(1, c // spec.width_divisor)

        s1, s2 = w(spec.stem_widths[0]), w(spec.stem_widths[1])
        self.stem = nn.Sequential(OrderedDict(
            conv1=L.ConvNormAct(d, in_channels, s1, 3, 2, "valid", norm_layer=norm),
            conv2=L.ConvNormAct(d, s1, s2, 3, 1, "valid", norm_layer=norm),
        ))
        self.feature_info = [FeatureInfo(s2, 2, "stem")]
        channels, entry = s2, []
        for i, width in enumerate(spec.entry_widths):
            entry.append(XceptionBlock(d, channels, w(width), 2, 2, norm, start_with_act=i > 0))
            channels = w(width)
            if i < len(spec.entry_widths) - 1:  # the entry flow's last (r16) output feeds the middle flow
                self.feature_info.append(FeatureInfo(channels, 2 ** (i + 2), f"stages.0.blocks.{i}"))
        middle = [XceptionBlock(d, channels, channels, spec.middle_reps, 1, norm) for _ in range(spec.middle_depth)]
        self.feature_info.append(FeatureInfo(channels, 16, "stages.1"))
        c1, c2, c3 = (w(c) for c in spec.exit_widths)
        exit_flow = [XceptionBlock(d, channels, c1, 2, 2, norm, grow_first=False),
                     SeparableConvNormAct(d, c1, c2, norm), SeparableConvNormAct(d, c2, c3, norm)]
        self.stages = nn.ModuleList([Stage(entry), Stage(middle), Stage(exit_flow)])
        self.feature_info.append(FeatureInfo(c3, 32, "stages.2"))
        self.head = ClassifierHead(c3, num_classes, drop_rate=drop_rate)
        self.cam_layer = "stages.2"
        self._init_weights()

    def _init_weights(self) -> None:
        init_he(self)


_PAPER = "Chollet. Xception: Deep Learning with Depthwise Separable Convolutions. CVPR 2017"

register("xception", Xception, XceptionSpec(), family="xception", paper=_PAPER, year=2017, input_size=299,
         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), reference_params=22_855_952,
         reference="timm.models.xception legacy_xception (timm 1.0.31)",
         # 7 pixels per axis pass the unpadded stem, but below 39 the exit flow runs at 1 pixel, where
         # the BN after a separable conv cancels the biases before it (zero gradients); 39 gives 2.
         extra={"tiny": {"width_divisor": 16, "middle_depth": 1}, "test_input": 39})
