"""ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016 (arXiv:1512.03385), and the post-activation descendants that share its layout.

ImageNet layout of torchvision's reference implementation: a 7x7/2 stem and 3x3/2 max pool, four
stages of residual blocks (basic: two 3x3 convs; bottleneck: 1x1, 3x3, 1x1 with 4x expansion),
projection shortcuts (1x1 conv + BN, "option B") where the shape changes, global average pool
and a linear classifier. The stride of a bottleneck sits in its 3x3 conv (torchvision's "V1.5",
more accurate); ``stride_in_1x1=True`` puts it in the first 1x1 as in the paper.

CIFAR layout (§4.2): one 3x3 conv of 16 filters, three stages of n basic blocks on 16, 32, 64
channels (maps of 32, 16, 8), 6n+2 layers in all, and "option A" shortcuts: identity, with
stride-2 subsampling and zero-padded extra channels where the shape changes, so that "all
shortcuts are parameter-free" (§4.2, Table 6).

Relatives built from the same blocks (rows of the spec table below):
- ResNeXt (S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He, "Aggregated Residual Transformations for
  Deep Neural Networks", CVPR 2017): grouped 3x3 convs, ``groups`` x ``width_per_group``.
- Wide ResNet-50-2/101-2 (S. Zagoruyko, N. Komodakis, "Wide Residual Networks", BMVC 2016), as
  torchvision has them: bottlenecks with twice the inner width.
- SE-ResNet/SE-ResNeXt (J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018):
  a squeeze-and-excitation gate (reduction r = 16, §6.1) on the residual branch after its last
  BN, before the addition (Fig. 3), in timm's layout.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage, init_he
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
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": one 3x3 conv
    shortcut: str = "B"  # "A": parameter-free (subsample + zero channels); "B": 1x1 projection
    se_ratio: float = 0.0  # squeeze-and-excitation reduction 1/r; 0 for none


def se_channels(channels: int, ratio: float, divisor: int = 8) -> int:
    """The SE bottleneck width: channels * ratio rounded to a multiple of ``divisor`` (timm's
    rule; C/16 of every standard width is already a multiple of 8, so this is Hu et al.'s C/r)."""
    return max(divisor, int(channels * ratio + divisor / 2) // divisor * divisor)


def _se(spatial_dims: int, channels: int, spec: ResNetSpec) -> nn.Module:
    if not spec.se_ratio:
        return nn.Identity()
    return L.SqueezeExcite(spatial_dims, channels, rd_channels=se_channels(channels, spec.se_ratio))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (an SE gate after the second BN if the spec asks) and a shortcut."""

    expansion = 1

    def __init__(self, spatial_dims: int, in_channels: int, width: int, stride: int = 1,
                 act_layer: str = "relu", norm_layer: str = "batch", drop_path: float = 0.0,
                 spec: ResNetSpec | None = None):
        super().__init__()
        spec = spec or ResNetSpec()
        out_channels = width * self.expansion
        d = spatial_dims
        self.conv1 = L.ConvNormAct(d, in_channels, width, 3, stride, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = L.ConvNormAct(d, width, out_channels, 3, norm_layer=norm_layer, act_layer=None)
        self.se = _se(d, out_channels, spec)
        self.shortcut = _shortcut(d, in_channels, out_channels, stride, norm_layer, spec.shortcut)
        self.drop_path = L.DropPath(drop_path)
        self.drop_block = nn.Identity()  # ResNet(drop_block_rate=...) replaces it in the last two stages
        self.act = L.get_act(act_layer, inplace=True)

    def zero_init_last(self) -> None:
        """Start as the identity: the last BN scales the branch to zero (Goyal et al. 2017, §5.1)."""
        _zero_weight(self.conv2.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)  # (B, width, *S / stride): the stride sits in the first 3x3
        out = self.conv2(out)  # (B, out_channels, *S / stride), no activation before the add
        out = self.se(out)  # the SE gate after the last BN, before the addition (Hu et al. Fig. 3)
        out = self.drop_block(out)
        out = self.drop_path(out)
        shortcut = self.shortcut(x)  # identity, or a projection / zero padding to the new shape
        shortcut = self.drop_block(shortcut)  # DropBlock on the skip too (Ghiasi et al. 2018, §4.1)
        return self.act(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by 4, an optional SE gate, a shortcut."""

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
        self.se = _se(d, out_channels, spec)
        self.shortcut = _shortcut(d, in_channels, out_channels, stride, norm_layer, spec.shortcut)
        self.drop_path = L.DropPath(drop_path)
        self.drop_block = nn.Identity()  # ResNet(drop_block_rate=...) replaces it in the last two stages
        self.act = L.get_act(act_layer, inplace=True)

    def zero_init_last(self) -> None:
        """Start as the identity: the last BN scales the branch to zero (Goyal et al. 2017, §5.1)."""
        _zero_weight(self.conv3.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)  # 1x1 reduce: (B, mid, *S)
        out = self.conv2(out)  # 3x3, grouped for ResNeXt, strided (V1.5): (B, mid, *S / stride)
        out = self.conv3(out)  # 1x1 expand: (B, 4 * width, *S / stride), no activation before the add
        out = self.se(out)  # the SE gate after the last BN, before the addition (Hu et al. Fig. 3)
        out = self.drop_block(out)
        out = self.drop_path(out)
        shortcut = self.shortcut(x)  # identity, or a projection / zero padding to the new shape
        shortcut = self.drop_block(shortcut)  # DropBlock on the skip too (Ghiasi et al. 2018, §4.1)
        return self.act(out + shortcut)


def _zero_weight(norm: nn.Module) -> None:
    if getattr(norm, "weight", None) is not None:  # a norm without a scale (or none) has nothing to zero
        nn.init.zeros_(norm.weight)


class ZeroPadShortcut(nn.Module):
    """Option A (§3.3, §4.2): the identity, subsampled by ``stride`` along every spatial axis
    and widened with zero channels; no parameters. The zeros are split around the input channels
    (half before, half after) as in the widely used CIFAR reimplementation
    akamaster/pytorch_resnet_cifar10 (whose counts the spec table pins); the paper does not say
    where the zeros go, and fb.resnet.torch appends them."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A shortcut cannot reduce channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.time_axis = False  # set by inflation: the first spatial axis is time, never strided

    def inflated(self, time_kernel: int) -> ZeroPadShortcut:
        """The 3-D counterpart for layers.inflate_module: time is kept, as inflated convs keep it."""
        new = ZeroPadShortcut(self.in_channels, self.out_channels, self.stride)
        new.time_axis = True
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, *S) -> (B, C, *ceil(S / stride)): the same grid as a 3x3/stride conv, padding 1.
        strided = (slice(None, None, self.stride),) * (x.ndim - 2 - self.time_axis)
        x = x[(slice(None), slice(None)) + (slice(None),) * self.time_axis + strided]
        extra = self.out_channels - self.in_channels
        if not extra:
            return x
        before = extra // 2
        shape = list(x.shape)
        zeros = [x.new_zeros([shape[0], n] + shape[2:]) for n in (before, extra - before)]
        return torch.cat([zeros[0], x, zeros[1]], dim=1)  # (B, out_channels, *S')

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def _shortcut(spatial_dims: int, in_channels: int, out_channels: int, stride: int, norm_layer: str,
              kind: str = "B") -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind != "B":
        raise ValueError(f"shortcut must be 'A' (zero padding) or 'B' (projection), got {kind!r}")
    return L.ConvNormAct(spatial_dims, in_channels, out_channels, 1, stride, norm_layer=norm_layer, act_layer=None)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_stages(spatial_dims: int, spec: ResNetSpec, block_cls: type[nn.Module], reduction: int,
                act_layer: str, norm_layer: str, drop_path_rate: float) -> tuple[nn.ModuleList, list[FeatureInfo], int]:
    """The residual stages after a stem of ``spec.stem_width`` channels and the given reduction:
    stage i holds ``spec.layers[i]`` blocks, the first of stages 2.. strides by 2. Returns the
    stages, their feature_info and the output channels."""
    # Stochastic depth grows linearly over all blocks of all stages (Huang et al. 2016).
    drop_path_rates = iter(L.drop_path_rates(sum(spec.layers), drop_path_rate))
    channels = spec.stem_width
    stages, info = nn.ModuleList(), []
    for i, (depth, width) in enumerate(zip(spec.layers, spec.widths)):
        stride = 1 if i == 0 else 2
        blocks = []
        for j in range(depth):
            blocks.append(block_cls(spatial_dims, channels, width, stride if j == 0 else 1, act_layer,
                                    norm_layer, next(drop_path_rates), spec))
            channels = width * block_cls.expansion
        reduction *= stride
        stages.append(Stage(blocks))
        info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
    return stages, info, channels


class ResNet(ConvNetClassifier):
    """ResNet in 1, 2 or 3 dims: ``stem``, ``stages[i].blocks[j]``, ``head``."""

    def __init__(self, spec: ResNetSpec = ResNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, act_layer: str = "relu", norm_layer: str = "batch",
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, drop_block_rate: float = 0.0,
                 drop_block_size: int = 7):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        block_cls = BLOCKS[spec.block]
        if spec.stem == "imagenet":
            self.stem = L.resnet_stem(d, in_channels, spec.stem_width, norm_layer=norm_layer, act_layer=act_layer)
            reduction = 4
        elif spec.stem == "cifar":
            # §4.2: "The first layer is 3x3 convolutions", no pooling: 32x32 maps in stage 1.
            self.stem = nn.Sequential(OrderedDict(conv=L.ConvNormAct(d, in_channels, spec.stem_width, 3, 1,
                                                                     norm_layer=norm_layer, act_layer=act_layer)))
            reduction = 1
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {spec.stem!r}")
        self.stages, self.feature_info, channels = make_stages(d, spec, block_cls, reduction, act_layer,
                                                               norm_layer, drop_path_rate)
        if drop_block_rate > 0:
            # Ghiasi et al. 2018, §4.1: DropBlock on the convolution branch and the skip connection
            # of every block in groups 3 and 4 (the last two stages), block_size 7.
            for stage in list(self.stages)[-2:]:
                for block in stage.blocks:
                    block.drop_block = L.DropBlock(drop_block_rate, drop_block_size)
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(spec.layers) - 1}"
        self._init_weights()

    def _init_weights(self) -> None:
        init_he(self)
        if self.spec.zero_init_residual:
            # Each residual block starts as the identity (Goyal et al. 2017); a block knows how.
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()


_PAPER = "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016"
_RESNEXT = "Xie, Girshick, Dollar, Tu, He. Aggregated Residual Transformations for Deep Neural Networks. CVPR 2017"
_WRN = "Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016"
_SE = "Hu, Shen, Sun. Squeeze-and-Excitation Networks. CVPR 2018"
_TV = "torchvision.models.resnet"
_TIMM = "timm.models.resnet"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# Contract tests build every variant at this size.
_TINY = dict(stem_width=8, widths=(8, 16, 16, 16), layers=(1, 1, 1, 1))
_TINY_GROUPED = dict(_TINY, groups=2, width_per_group=32)  # 8 * 32 / 64 * 2 = 8 inner channels
_TINY_CIFAR = dict(stem_width=4, widths=(4, 8, 8), layers=(1, 1, 1))

_B = "bottleneck"
# The ImageNet ResNets of Table 1 (He et al. 2016); counts of torchvision's models.
_RESNET = dict(family="resnet", paper=_PAPER, year=2016, reference=_TV, extra={"tiny": _TINY})
RESNET_SPECS: dict[str, dict] = {
    "resnet18": dict(spec=ResNetSpec(block="basic", layers=(2, 2, 2, 2)), reference_params=11_689_512),  # 18-layer
    "resnet34": dict(spec=ResNetSpec(block="basic", layers=(3, 4, 6, 3)), reference_params=21_797_672),  # 34-layer
    "resnet50": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 6, 3)), reference_params=25_557_032),  # 50-layer
    "resnet101": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 23, 3)), reference_params=44_549_160),  # 101-layer
    "resnet152": dict(spec=ResNetSpec(block=_B, layers=(3, 8, 36, 3)), reference_params=60_192_808),  # 152-layer
}

# CIFAR-10 ResNets of §4.2, 6n + 2 layers with option A (Table 6: 0.27M, 0.46M, 0.66M, 0.85M,
# 1.7M). The exact counts (10 classes) are those of the option-A reimplementation
# akamaster/pytorch_resnet_cifar10; option B would add 2,752.
_CIFAR = dict(family="resnet", paper=_PAPER, year=2016, num_classes=10, input_size=32, mean=CIFAR_MEAN,
              std=CIFAR_STD, extra={"tiny": _TINY_CIFAR},
              reference="He et al. 2016 Table 6 (rounded); exact: akamaster/pytorch_resnet_cifar10 option A")
_CIFAR_LAYOUT = dict(block="basic", widths=(16, 32, 64), stem_width=16, stem="cifar", shortcut="A")
CIFAR_SPECS: dict[str, dict] = {
    "resnet20_cifar": dict(spec=ResNetSpec(layers=(3, 3, 3), **_CIFAR_LAYOUT), reference_params=269_722),  # n = 3
    "resnet32_cifar": dict(spec=ResNetSpec(layers=(5, 5, 5), **_CIFAR_LAYOUT), reference_params=464_154),  # n = 5
    "resnet44_cifar": dict(spec=ResNetSpec(layers=(7, 7, 7), **_CIFAR_LAYOUT), reference_params=658_586),  # n = 7
    "resnet56_cifar": dict(spec=ResNetSpec(layers=(9, 9, 9), **_CIFAR_LAYOUT), reference_params=853_018),  # n = 9
    "resnet110_cifar": dict(spec=ResNetSpec(layers=(18, 18, 18), **_CIFAR_LAYOUT),  # n = 18
                            reference_params=1_727_962),
}

# Relatives built from the same blocks, each with its paper and reference count.
VARIANT_SPECS: dict[str, dict] = {
    # ResNeXt-50 (32x4d), Xie et al. 2017 Table 1: 32 groups of 4 channels in the first stage.
    "resnext50_32x4d": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 6, 3), groups=32, width_per_group=4),
                            reference_params=25_028_904, family="resnext", paper=_RESNEXT, year=2017,
                            reference=_TV, extra={"tiny": _TINY_GROUPED}),
    # ResNeXt-101 (32x8d), torchvision's wider 101-layer variant.
    "resnext101_32x8d": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 23, 3), groups=32, width_per_group=8),
                             reference_params=88_791_336, family="resnext", paper=_RESNEXT, year=2017,
                             reference=_TV, extra={"tiny": _TINY_GROUPED}),
    # WRN-50-2: the bottleneck's inner width doubled (torchvision's wide_resnet50_2).
    "wide_resnet50_2": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 6, 3), width_per_group=128),
                            reference_params=68_883_240, family="wide_resnet", paper=_WRN, year=2016,
                            reference=_TV, extra={"tiny": _TINY}),
    # WRN-101-2: the same on ResNet-101.
    "wide_resnet101_2": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 23, 3), width_per_group=128),
                             reference_params=126_886_696, family="wide_resnet", paper=_WRN, year=2016,
                             reference=_TV, extra={"tiny": _TINY}),
    # SE-ResNet-50: SE after the last BN of the branch, r = 16 (Hu et al. §6.1); timm's count.
    "seresnet50": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 6, 3), se_ratio=1 / 16),
                       reference_params=28_088_024, family="seresnet", paper=_SE, year=2018,
                       reference=f"{_TIMM} (seresnet50)", extra={"tiny": _TINY}),
    # SE-ResNet-152, as above.
    "seresnet152": dict(spec=ResNetSpec(block=_B, layers=(3, 8, 36, 3), se_ratio=1 / 16),
                        reference_params=66_821_848, family="seresnet", paper=_SE, year=2018,
                        reference=f"{_TIMM} (seresnet152)", extra={"tiny": _TINY}),
    # SE-ResNeXt-50 (32x4d): the SE gate on ResNeXt's blocks.
    "seresnext50_32x4d": dict(spec=ResNetSpec(block=_B, layers=(3, 4, 6, 3), groups=32, width_per_group=4,
                                              se_ratio=1 / 16),
                              reference_params=27_559_896, family="seresnet", paper=_SE, year=2018,
                              reference=f"{_TIMM} (seresnext50_32x4d)", extra={"tiny": _TINY_GROUPED}),
}

for _name, _row in RESNET_SPECS.items():
    register(_name, ResNet, **_RESNET, **_row)

for _name, _row in CIFAR_SPECS.items():
    register(_name, ResNet, **_CIFAR, **_row)

for _name, _row in VARIANT_SPECS.items():
    register(_name, ResNet, **_row)
