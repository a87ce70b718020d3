"""ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016 (arXiv:1512.03385).

Layout of torchvision's reference implementation: a 7x7/2 stem and 3x3/2 max pool, four
stages of residual blocks (basic: two 3x3 convs; bottleneck: 1x1, 3x3, 1x1 with 4x expansion),
projection shortcuts (1x1 conv + BN, "option B") where the shape changes, global average pool
and a linear classifier. The stride of a bottleneck sits in its 3x3 conv (torchvision's "V1.5",
more accurate); ``stride_in_1x1=True`` puts it in the first 1x1 as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo
from ._registry import register


@dataclass(frozen=True)
class ResNetSpec:
    """One row of the ResNet spec table."""

    block: str = "basic"  # "basic" or "bottleneck"
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck output is 4x these
    stem_width: int = 64
    groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = False
    zero_init_residual: bool = False


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or projection) shortcut."""

    expansion = 1

    def __init__(self, spatial_dims: int, in_channels: int, width: int, stride: int = 1,
                 act_layer: str = "relu", norm_layer: str = "batch", drop_path: float = 0.0,
                 spec: ResNetSpec | None = None):
        super().__init__()
        out_channels = width * self.expansion
        d = spatial_dims
        self.conv1 = L.ConvNormAct(d, in_channels, width, 3, stride, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = L.ConvNormAct(d, width, out_channels, 3, norm_layer=norm_layer, act_layer=None)
        self.shortcut = _shortcut(d, in_channels, out_channels, stride, norm_layer)
        self.drop_path = L.DropPath(drop_path)
        self.act = L.get_act(act_layer, inplace=True)

    def last_norm(self) -> nn.Module:
        return self.conv2.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.conv2(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by 4, and a shortcut."""

    expansion = 4

    def __init__(self, spatial_dims: int, in_channels: int, width: int, stride: int = 1,
                 act_layer: str = "relu", norm_layer: str = "batch", drop_path: float = 0.0,
                 spec: ResNetSpec | None = None):
        super().__init__()
        spec = spec or ResNetSpec(block="bottleneck")
        d = spatial_dims
        mid = int(width * spec.width_per_group / 64) * spec.groups
        out_channels = width * self.expansion
        s1, s3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
        self.conv1 = L.ConvNormAct(d, in_channels, mid, 1, s1, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = L.ConvNormAct(d, mid, mid, 3, s3, groups=spec.groups, norm_layer=norm_layer,
                                   act_layer=act_layer)
        self.conv3 = L.ConvNormAct(d, mid, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.shortcut = _shortcut(d, in_channels, out_channels, stride, norm_layer)
        self.drop_path = L.DropPath(drop_path)
        self.act = L.get_act(act_layer, inplace=True)

    def last_norm(self) -> nn.Module:
        return self.conv3.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.conv3(self.conv2(self.conv1(x)))) + self.shortcut(x))


def _shortcut(spatial_dims: int, in_channels: int, out_channels: int, stride: int, norm_layer: str) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return L.ConvNormAct(spatial_dims, in_channels, out_channels, 1, stride, norm_layer=norm_layer, act_layer=None)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class Stage(nn.Module):
    """A run of blocks at one resolution; the first may stride and project."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNet(ConvNetClassifier):
    """ResNet in 1, 2 or 3 dims: ``stem``, ``stages[i].blocks[j]``, ``head``."""

    def __init__(self, spec: ResNetSpec = ResNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, act_layer: str = "relu", norm_layer: str = "batch",
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        block_cls = BLOCKS[spec.block]
        self.stem = nn.Sequential()
        self.stem.add_module("conv", L.ConvNormAct(d, in_channels, spec.stem_width, 7, 2,
                                                   norm_layer=norm_layer, act_layer=act_layer))
        self.stem.add_module("pool", L.max_pool(d, 3, 2, 1))
        total_blocks = sum(spec.layers)
        channels, reduction, index = spec.stem_width, 4, 0
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i, (depth, width) in enumerate(zip(spec.layers, spec.widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                # Stochastic depth grows linearly with depth (Huang et al. 2016).
                dp = drop_path_rate * index / max(total_blocks - 1, 1)
                blocks.append(block_cls(d, channels, width, stride if j == 0 else 1, act_layer,
                                        norm_layer, dp, spec))
                channels = width * block_cls.expansion
                index += 1
            reduction *= stride
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(spec.layers) - 1}"
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.spec.zero_init_residual:
            # Each residual block starts as the identity (Goyal et al. 2017).
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and hasattr(m.last_norm(), "weight"):
                    nn.init.zeros_(m.last_norm().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


_PAPER = "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016"
_TV = "torchvision.models.resnet"
# Contract tests build every variant at this size.
_TINY = dict(stem_width=8, widths=(8, 16, 16, 16))

RESNET_SPECS: dict[str, tuple[ResNetSpec, int]] = {
    "resnet18": (ResNetSpec("basic", (2, 2, 2, 2)), 11_689_512),
    "resnet34": (ResNetSpec("basic", (3, 4, 6, 3)), 21_797_672),
    "resnet50": (ResNetSpec("bottleneck", (3, 4, 6, 3)), 25_557_032),
    "resnet101": (ResNetSpec("bottleneck", (3, 4, 23, 3)), 44_549_160),
    "resnet152": (ResNetSpec("bottleneck", (3, 8, 36, 3)), 60_192_808),
}

for _name, (_spec, _params) in RESNET_SPECS.items():
    register(_name, ResNet, _spec, family="resnet", paper=_PAPER, year=2016, reference_params=_params,
             reference=_TV, extra={"tiny": dict(_TINY, layers=(1,) * len(_spec.layers))})
