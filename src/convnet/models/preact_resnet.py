"""Pre-activation ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual
Networks", ECCV 2016 (arXiv:1603.05027), and the Wide ResNets built on its unit.

The full pre-activation unit (Fig. 4(e)) moves BN and ReLU in front of each convolution and
leaves nothing after the addition, so x_{l+1} = x_l + F(x_l) and the identity path runs clean
from any unit to any other (Eqs. 4-5). Two details from the paper's appendix and the authors'
code (KaimingHe/resnet-1k-layers, resnet-pre-act.lua): where a unit changes the shape, its first
BN-ReLU is applied before the split, so the 1x1 projection (a bare conv, no BN) sees the
activated input; and the last unit is followed by an extra BN-ReLU before global pooling.

- ImageNet (``preact_resnet18`` .. ``152``): the 7x7/2 stem conv and 3x3/2 max pool of ResNet,
  stage widths and depths of the original, stride in the 3x3 conv. This is timm's ``resnetv2_*``
  layout (BN-ReLU of the first unit after the max pool; fb.resnet.torch's preresnet applies it
  before the pool instead, same parameter count), whose checkpoints load.
- CIFAR (``preact_resnet164_cifar``, ``preact_resnet1001_cifar``): a 3x3 conv of 16 filters,
  three stages of 9n+2-layer bottleneck units with outputs 64/128/256, stride in the first 1x1
  conv, as the authors' code.
- WRN-28-10 (S. Zagoruyko, N. Komodakis, "Wide Residual Networks", BMVC 2016): pre-activation
  basic units B(3,3) with widths 16k/32k/64k (k = 10), (28 - 4) / 6 = 4 per stage, and optional
  dropout between the two convs (§2.4; 0.3 in the paper's dropout runs: ``block_dropout=0.3``).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, init_he
from ._registry import register
from .resnet import make_stages


@dataclass(frozen=True)
class PreActResNetSpec:
    """One row of the pre-activation ResNet spec table."""

    block: str = "basic"  # "basic" or "bottleneck"
    layers: tuple[int, ...] = (2, 2, 2, 2)  # units per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck output is 4x these
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": one 3x3 conv
    stem_width: int = 64
    stride_in_1x1: bool = False  # bottleneck stride in the first 1x1 (authors' CIFAR code)
    block_dropout: float = 0.0  # dropout between the convs of a basic unit (WRN §2.4)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-(dropout)-conv3x3, plus the shortcut; nothing after the add."""

    expansion = 1

    def __init__(self, spatial_dims: int, in_channels: int, width: int, stride: int = 1,
                 act_layer: str = "relu", norm_layer: str = "batch", drop_path: float = 0.0,
                 spec: PreActResNetSpec | None = None):
        super().__init__()
        spec = spec or PreActResNetSpec()
        d = spatial_dims
        out_channels = width * self.expansion
        self.norm1 = L.norm(norm_layer, d, in_channels)
        self.act1 = L.get_act(act_layer, inplace=True)
        self.conv1 = L.conv(d, in_channels, width, 3, stride, bias=False)
        self.norm2 = L.norm(norm_layer, d, width)
        self.act2 = L.get_act(act_layer, inplace=True)
        self.drop = L.dropout(d, spec.block_dropout)
        self.conv2 = L.conv(d, width, out_channels, 3, bias=False)
        self.shortcut = _projection(d, in_channels, out_channels, stride)
        self.drop_path = L.DropPath(drop_path)

    def zero_init_last(self) -> None:
        """Start as the identity: the last convolution's weight at zero (timm's resnetv2)."""
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        pre = self.act1(pre)
        # A projection takes the activated input (shared BN-ReLU); the identity takes x itself.
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(pre)
        out = self.conv1(pre)  # (B, width, *S / stride)
        out = self.norm2(out)
        out = self.act2(out)
        out = self.drop(out)  # WRN's dropout between the two convolutions (§2.4)
        out = self.conv2(out)
        return self.drop_path(out) + shortcut  # nothing after the addition (Fig. 4(e))


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (4x wider), plus the shortcut."""

    expansion = 4

    def __init__(self, spatial_dims: int, in_channels: int, width: int, stride: int = 1,
                 act_layer: str = "relu", norm_layer: str = "batch", drop_path: float = 0.0,
                 spec: PreActResNetSpec | None = None):
        super().__init__()
        spec = spec or PreActResNetSpec(block="bottleneck")
        d = spatial_dims
        out_channels = width * self.expansion
        s1, s2 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
        self.norm1 = L.norm(norm_layer, d, in_channels)
        self.act1 = L.get_act(act_layer, inplace=True)
        self.conv1 = L.conv(d, in_channels, width, 1, s1, bias=False)
        self.norm2 = L.norm(norm_layer, d, width)
        self.act2 = L.get_act(act_layer, inplace=True)
        self.conv2 = L.conv(d, width, width, 3, s2, bias=False)
        self.norm3 = L.norm(norm_layer, d, width)
        self.act3 = L.get_act(act_layer, inplace=True)
        self.conv3 = L.conv(d, width, out_channels, 1, bias=False)
        self.shortcut = _projection(d, in_channels, out_channels, stride)
        self.drop_path = L.DropPath(drop_path)

    def zero_init_last(self) -> None:
        """Start as the identity: the last convolution's weight at zero (timm's resnetv2)."""
        nn.init.zeros_(self.conv3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        pre = self.act1(pre)
        # A projection takes the activated input (shared BN-ReLU); the identity takes x itself.
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(pre)
        out = self.conv1(pre)  # 1x1 reduce: (B, width, *S), strided in the authors' CIFAR code
        out = self.norm2(out)
        out = self.act2(out)
        out = self.conv2(out)  # 3x3: (B, width, *S / stride)
        out = self.norm3(out)
        out = self.act3(out)
        out = self.conv3(out)  # 1x1 expand: (B, 4 * width, *S / stride)
        return self.drop_path(out) + shortcut  # nothing after the addition (Fig. 4(e))


def _projection(spatial_dims: int, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    # A bare 1x1 conv: its input is already normalised, and the sum is normalised by the next
    # unit's BN (authors' code; timm's resnetv2 DownsampleConv with preact=True).
    return L.conv(spatial_dims, in_channels, out_channels, 1, stride, bias=False)


BLOCKS = {"basic": PreActBasicBlock, "bottleneck": PreActBottleneck}


class PreActResNet(ConvNetClassifier):
    """Pre-activation ResNet in 1, 2 or 3 dims: ``stem``, ``stages[i].blocks[j]``,
    ``final_norm``/``final_act`` (the BN-ReLU after the last unit), ``head``."""

    def __init__(self, spec: PreActResNetSpec = PreActResNetSpec(), spatial_dims: int = 2,
                 in_channels: int = 3, num_classes: int = 1000, act_layer: str = "relu",
                 norm_layer: str = "batch", drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        block_cls = BLOCKS[spec.block]
        # The stem is a bare conv: the first unit's BN-ReLU normalises its output.
        if spec.stem == "imagenet":
            self.stem = L.resnet_stem(d, in_channels, spec.stem_width, pre_activation=True)
            reduction = 4
        elif spec.stem == "cifar":
            self.stem = nn.Sequential(OrderedDict(conv=L.conv(d, in_channels, spec.stem_width, 3, 1, bias=False)))
            reduction = 1
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {spec.stem!r}")
        self.stages, self.feature_info, channels = make_stages(d, spec, block_cls, reduction, act_layer,
                                                               norm_layer, drop_path_rate)
        # Units end in an addition, so the last one needs the "extra activation" (appendix).
        self.final_norm = L.norm(norm_layer, d, channels)
        self.final_act = L.get_act(act_layer, inplace=True)
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = "final_act"
        self._init_weights()

    def _init_weights(self) -> None:
        init_he(self)  # std sqrt(2 / (k^d * out_channels)), as the authors' code

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stages(x)
        return self.final_act(self.final_norm(x))


_PAPER = "He, Zhang, Ren, Sun. Identity Mappings in Deep Residual Networks. ECCV 2016"
_WRN = "Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_TINY = dict(stem_width=8, widths=(8, 16, 16, 16), layers=(1, 1, 1, 1))
_TINY_CIFAR = dict(stem_width=4, widths=(4, 8, 8), layers=(1, 1, 1))
_B = "bottleneck"

# ImageNet: counts of timm's resnetv2_18/34/50/101/152 (same layout; tests load them).
IMAGENET_SPECS: dict[str, dict] = {
    "preact_resnet18": dict(spec=PreActResNetSpec(block="basic", layers=(2, 2, 2, 2)),  # ResNet-18's stages
                            reference_params=11_687_720),
    "preact_resnet34": dict(spec=PreActResNetSpec(block="basic", layers=(3, 4, 6, 3)),  # ResNet-34's
                            reference_params=21_795_880),
    "preact_resnet50": dict(spec=PreActResNetSpec(block=_B, layers=(3, 4, 6, 3)),  # ResNet-50's
                            reference_params=25_549_352),
    "preact_resnet101": dict(spec=PreActResNetSpec(block=_B, layers=(3, 4, 23, 3)),  # ResNet-101's
                             reference_params=44_541_480),
    "preact_resnet152": dict(spec=PreActResNetSpec(block=_B, layers=(3, 8, 36, 3)),  # ResNet-152's
                             reference_params=60_185_128),
}

# CIFAR (10 classes): depth 9n + 2 with n units per stage. The paper's CIFAR table gives 1.7M
# (ResNet-164) and 10.2M (ResNet-1001); the authors' resnet-pre-act.lua layout recounted here
# has 1,703,258 and 10,327,706, of which conv and fc weights alone are 1,679,034 and 10,178,490:
# the paper's 10.2M leaves out the 149,216 BN parameters.
_CIFAR_BOTTLENECK = dict(block=_B, widths=(16, 32, 64), stem="cifar", stem_width=16, stride_in_1x1=True)
CIFAR_SPECS: dict[str, dict] = {
    # ResNet-164: n = 18 bottleneck units per stage.
    "preact_resnet164_cifar": dict(spec=PreActResNetSpec(layers=(18, 18, 18), **_CIFAR_BOTTLENECK),
                                   reference_params=1_703_258, family="preact_resnet", paper=_PAPER,
                                   reference="KaimingHe/resnet-1k-layers layout, recounted (paper: 1.7M)"),
    # ResNet-1001: n = 111.
    "preact_resnet1001_cifar": dict(spec=PreActResNetSpec(layers=(111, 111, 111), **_CIFAR_BOTTLENECK),
                                    reference_params=10_327_706, family="preact_resnet", paper=_PAPER,
                                    reference="KaimingHe/resnet-1k-layers layout, recounted (paper: 10.2M without BN)"),
    # WRN-28-10: 4 basic units per stage, widths 16k/32k/64k with k = 10; 36.5M in Zagoruyko &
    # Komodakis Table 5 (CIFAR), the exact count of their layout.
    "wrn28_10_cifar": dict(spec=PreActResNetSpec(block="basic", layers=(4, 4, 4), widths=(160, 320, 640),
                                                 stem="cifar", stem_width=16),
                           reference_params=36_479_194, family="wide_resnet", paper=_WRN,
                           reference="Zagoruyko & Komodakis 2016 (36.5M), "
                                     "exact: szagoruyko/wide-residual-networks layout"),
}

for _name, _row in IMAGENET_SPECS.items():
    register(_name, PreActResNet, family="preact_resnet", paper=_PAPER, year=2016,
             reference=f"timm.models.resnetv2 ({_name.replace('preact_resnet', 'resnetv2_')})",
             extra={"tiny": _TINY}, **_row)

for _name, _row in CIFAR_SPECS.items():
    register(_name, PreActResNet, year=2016, num_classes=10, input_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
             extra={"tiny": _TINY_CIFAR}, **_row)
