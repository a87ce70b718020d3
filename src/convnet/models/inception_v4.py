"""Inception-v4 and Inception-ResNet-v2: C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi,
"Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017
(arXiv:1602.07261).

Inception-v4 (Fig. 9): the stem of Fig. 3 (valid 3x3 convolutions and two "filter concat"
reductions, 299 -> 35), 4 x Inception-A (Fig. 4), Reduction-A (Fig. 7 with Table 1's k, l, m,
n = 192, 224, 256, 384), 7 x Inception-B (Fig. 5), Reduction-B (Fig. 8), 3 x Inception-C
(Fig. 6), average pooling, dropout (keep 0.8) and the classifier.

Inception-ResNet-v2 (Fig. 15) follows the TF-slim / timm layout its released checkpoint uses:
an Inception-v3-style stem ending in a 35x35x320 "Mixed_5b" module, 10 x Inception-ResNet-A
(Fig. 16), Reduction-A (Fig. 7, Table 1: k, l, m, n = 256, 256, 384, 384), 20 x
Inception-ResNet-B (Fig. 17), Reduction-B (Fig. 18), 9 x Inception-ResNet-C (Fig. 19), a last
Inception-ResNet-C without scaling or ReLU, and a 1x1 convolution to 1536 maps. (The figure
draws 5/10/5 blocks; the released net, which reaches the paper's accuracy, has 10/20/10.)
Every residual block sums its branches' concatenation, expanded back to the input width by a
linear 1x1 convolution, scaled by 0.17, 0.10 and 0.20 (§3.3: "scaling factors between 0.1 and
0.3") onto its input (Fig. 20).

Both follow timm (``timm.models.inception_v4``, ``timm.models.inception_resnet_v2``) exactly in
2-D: BatchNorm epsilon 0.001, no bias before BN, count_include_pad=False average pools, the
same branch order, so that timm's checkpoints load (weights/keymaps/inception_v4.py) and give
the same outputs. The 299 input shrinks by valid convolutions: the smallest input is 75.

In 1-D and 3-D the factorised convolutions generalise one 1-D kernel per axis (§2's 1xn then
nx1 of Inception-v3): a chain "1x7, 7x1" becomes d convolutions, one along each axis, the last
one giving the block's width and the others the intermediate one; the parallel "1x3 | 3x1"
pairs of Inception-C become d parallel convolutions sharing the same total width. In 2-D both are
timm's convolutions, in timm's order.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, init_he
from ._registry import register


@dataclass(frozen=True)
class InceptionV4Spec:
    """Inception-v4 (Fig. 9).

    Attributes:
        depths: Inception-A, -B and -C blocks (4, 7, 3).
        width_divisor: every width is divided by this (1 = the paper; larger for tests).
        bn_eps: BatchNorm epsilon (TensorFlow's 0.001, as the released checkpoint).
    """

    depths: tuple[int, int, int] = (4, 7, 3)
    width_divisor: int = 1
    bn_eps: float = 1e-3


@dataclass(frozen=True)
class InceptionResNetV2Spec:
    """Inception-ResNet-v2 (Fig. 15, TF-slim's layout).

    Attributes:
        depths: scaled Inception-ResNet-A, -B and -C blocks (10, 20, 9); one unscaled -C block
            without ReLU follows the last stage's.
        residual_scales: the residual scaling of the A, B and C blocks (§3.3, Fig. 20).
        width_divisor: every width is divided by this (1 = the paper; larger for tests).
        bn_eps: BatchNorm epsilon (TensorFlow's 0.001).
    """

    depths: tuple[int, int, int] = (10, 20, 9)
    residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20)
    width_divisor: int = 1
    bn_eps: float = 1e-3


@dataclass(frozen=True)
class Convs:
    """Builds one network's conv-BN-ReLU units: spatial dims, BN epsilon, width divisor."""

    spatial_dims: int
    bn_eps: float = 1e-3
    width_divisor: int = 1

    def width(self, channels: int) -> int:
        return max(1, channels // self.width_divisor)

    def unit(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...] = 1,
             stride: int = 1, padding: int | str | None = None) -> L.ConvNormAct:
        """A conv-BN-ReLU of exactly ``out_channels``; padding None keeps the size at stride 1."""
        norm = functools.partial(L.norm, "batch", self.spatial_dims, eps=self.bn_eps)
        return L.ConvNormAct(self.spatial_dims, in_channels, out_channels, kernel_size, stride, padding,
                             norm_layer=norm, act_layer="relu")

    def axis_kernel(self, k: int, axis: int) -> tuple[int, ...]:
        """A 1-D kernel of size k along ``axis``: in 2-D axis 1 is 1xk, axis 0 is kx1."""
        return tuple(k if a == axis else 1 for a in range(self.spatial_dims))

    def axes(self, from_last: bool) -> list[int]:
        return list(range(self.spatial_dims))[::-1] if from_last else list(range(self.spatial_dims))

    def max_pool(self) -> nn.Module:
        return L.max_pool(self.spatial_dims, 3, 2)  # 3x3/2 valid ("V" in Figs. 3, 7, 8, 18)

    def avg_pool(self) -> nn.Module:
        # TensorFlow's "SAME" average over real inputs only, as timm (count_include_pad=False).
        return L.SamePool("avg", self.spatial_dims, 3, 1, count_include_pad=False)


class Concat(nn.Module):
    """Parallel branches over one input, concatenated along channels ("Filter concat")."""

    def __init__(self, branches: list[nn.Module], out_channels: int):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class Branch:
    """A builder of one branch: a run of units with its channel count tracked (paper widths in,
    divided widths out)."""

    def __init__(self, convs: Convs, in_channels: int):
        self.c, self.channels, self.modules = convs, in_channels, []

    def conv(self, width: int, kernel_size: int | tuple[int, ...] = 1, stride: int = 1,
             padding: int | str | None = None) -> Branch:
        out = self.c.width(width)
        self.modules.append(self.c.unit(self.channels, out, kernel_size, stride, padding))
        self.channels = out
        return self

    def factorised(self, mid: int, out: int, k: int, from_last: bool) -> Branch:
        """A k^d convolution as d 1-D ones (2-D: 1xk then kx1 if ``from_last``, else kx1 then
        1xk); the last gives ``out`` channels, the others ``mid``."""
        axes = self.c.axes(from_last)
        for i, axis in enumerate(axes):
            self.conv(out if i == len(axes) - 1 else mid, self.c.axis_kernel(k, axis))
        return self

    def split(self, total: int, k: int) -> Branch:
        """Parallel 1-D convolutions, one per axis (2-D: 1xk | kx1), ``total`` channels in all."""
        total, d = self.c.width(total), self.c.spatial_dims
        if total < d:
            raise ValueError(f"a split over {d} axes needs at least {d} channels, got {total}")
        widths = [total // d + (i < total % d) for i in range(d)]
        convs = [self.c.unit(self.channels, w, self.c.axis_kernel(k, axis))
                 for w, axis in zip(widths, self.c.axes(from_last=True))]
        self.modules.append(Concat(convs, total))
        self.channels = total
        return self

    def pool(self, module: nn.Module) -> Branch:
        self.modules.append(module)
        return self

    def build(self) -> nn.Module:
        return self.modules[0] if len(self.modules) == 1 else nn.Sequential(*self.modules)


def concat(branches: list[Branch]) -> Concat:
    return Concat([b.build() for b in branches], sum(b.channels for b in branches))


# Inception-v4's stem (Fig. 3) after its three plain convolutions.
def mixed_3a(c: Convs, cin: int) -> Concat:
    return concat([Branch(c, cin).pool(c.max_pool()), Branch(c, cin).conv(96, 3, 2, "valid")])


def mixed_4a(c: Convs, cin: int) -> Concat:
    return concat([
        Branch(c, cin).conv(64).conv(96, 3, padding="valid"),
        Branch(c, cin).conv(64).factorised(64, 64, 7, from_last=True).conv(96, 3, padding="valid"),
    ])


def mixed_5a(c: Convs, cin: int) -> Concat:
    return concat([Branch(c, cin).conv(192, 3, 2, "valid"), Branch(c, cin).pool(c.max_pool())])


def inception_a(c: Convs, cin: int) -> Concat:
    """Fig. 4: the 35x35 module."""
    return concat([
        Branch(c, cin).conv(96),
        Branch(c, cin).conv(64).conv(96, 3),
        Branch(c, cin).conv(64).conv(96, 3).conv(96, 3),
        Branch(c, cin).pool(c.avg_pool()).conv(96),
    ])


def reduction_a(c: Convs, cin: int, filters: tuple[int, int, int, int]) -> Concat:
    """Fig. 7: 35 -> 17, with Table 1's filter counts (k, l, m, n)."""
    k, l, m, n = filters
    return concat([
        Branch(c, cin).conv(n, 3, 2, "valid"),
        Branch(c, cin).conv(k).conv(l, 3).conv(m, 3, 2, "valid"),
        Branch(c, cin).pool(c.max_pool()),
    ])


def inception_b(c: Convs, cin: int) -> Concat:
    """Fig. 5: the 17x17 module, 7x7 convolutions factorised into 1x7 and 7x1."""
    return concat([
        Branch(c, cin).conv(384),
        Branch(c, cin).conv(192).factorised(224, 256, 7, from_last=True),
        Branch(c, cin).conv(192).factorised(192, 224, 7, from_last=False).factorised(224, 256, 7, from_last=False),
        Branch(c, cin).pool(c.avg_pool()).conv(128),
    ])


def reduction_b(c: Convs, cin: int) -> Concat:
    """Fig. 8: 17 -> 8."""
    return concat([
        Branch(c, cin).conv(192).conv(192, 3, 2, "valid"),
        Branch(c, cin).conv(256).factorised(256, 320, 7, from_last=True).conv(320, 3, 2, "valid"),
        Branch(c, cin).pool(c.max_pool()),
    ])


def inception_c(c: Convs, cin: int) -> Concat:
    """Fig. 6: the 8x8 module with "expanded filter bank outputs" (parallel 1x3 | 3x1)."""
    return concat([
        Branch(c, cin).conv(256),
        Branch(c, cin).conv(384).split(512, 3),
        Branch(c, cin).conv(384).factorised(448, 512, 3, from_last=False).split(512, 3),
        Branch(c, cin).pool(c.avg_pool()).conv(256),
    ])


class Stage(nn.Module):
    """An optional reduction module, then a run of blocks at one resolution."""

    def __init__(self, blocks: list[nn.Module], reduction: nn.Module | None = None):
        super().__init__()
        self.reduction = reduction if reduction is not None else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.reduction(x))


class _InceptionBase(ConvNetClassifier):
    """Weight init and forward shared by both nets."""

    # Fig. 3's unpadded stem and the unpadded grid reductions (299 -> 35 -> 17 -> 8) leave one
    # pixel for the last reduction at 75; 74 leaves it a 2-pixel map.
    min_input_size = 75

    def _init_weights(self) -> None:
        init_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stages(x)
        return self.final_conv(x)


class InceptionV4(_InceptionBase):
    """Inception-v4 in 1, 2 or 3 dims: ``stem`` (Fig. 3), ``stages[i].reduction`` and
    ``stages[i].blocks[j]`` (Inception-A/B/C), ``head``."""

    def __init__(self, spec: InceptionV4Spec = InceptionV4Spec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.2):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        c = Convs(d, spec.bn_eps, spec.width_divisor)
        w32, w64 = c.width(32), c.width(64)
        self.stem = nn.Sequential(OrderedDict(
            conv1=c.unit(in_channels, w32, 3, 2, "valid"),
            conv2=c.unit(w32, w32, 3, 1, "valid"),
            conv3=c.unit(w32, w64, 3),
        ))
        channels = w64
        for name, build in (("mixed_3a", mixed_3a), ("mixed_4a", mixed_4a), ("mixed_5a", mixed_5a)):
            block = build(c, channels)
            self.stem.add_module(name, block)
            channels = block.out_channels
        self.feature_info = [FeatureInfo(w64, 2, "stem.conv3"),
                             FeatureInfo(self.stem.mixed_3a.out_channels, 4, "stem.mixed_3a")]
        self.stages = nn.ModuleList()
        reductions = (None, functools.partial(reduction_a, filters=(192, 224, 256, 384)), reduction_b)
        for i, (depth, reduce, block) in enumerate(zip(spec.depths, reductions, (inception_a, inception_b, inception_c))):
            reduction = reduce(c, channels) if reduce else None
            channels = reduction.out_channels if reduction else channels
            blocks = [block(c, channels) for _ in range(depth)]
            channels = blocks[-1].out_channels if blocks else channels
            self.stages.append(Stage(blocks, reduction))
            self.feature_info.append(FeatureInfo(channels, 2 ** (i + 3), f"stages.{i}"))
        self.final_conv = nn.Identity()
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = "stages.2"
        self._init_weights()


# Inception-ResNet-v2 (TF-slim's layout).
def mixed_5b(c: Convs, cin: int) -> Concat:
    """The 35x35 Inception module that ends TF-slim's stem (320 maps)."""
    return concat([
        Branch(c, cin).conv(96),
        Branch(c, cin).conv(48).conv(64, 5),
        Branch(c, cin).conv(64).conv(96, 3).conv(96, 3),
        Branch(c, cin).pool(c.avg_pool()).conv(64),
    ])


def reduction_b_resnet(c: Convs, cin: int) -> Concat:
    """Fig. 18: Inception-ResNet-v2's 17 -> 8 reduction."""
    return concat([
        Branch(c, cin).conv(256).conv(384, 3, 2, "valid"),
        Branch(c, cin).conv(256).conv(288, 3, 2, "valid"),
        Branch(c, cin).conv(256).conv(288, 3).conv(320, 3, 2, "valid"),
        Branch(c, cin).pool(c.max_pool()),
    ])


def _resnet_a_branches(c: Convs, cin: int) -> list[Branch]:  # Fig. 16
    return [Branch(c, cin).conv(32), Branch(c, cin).conv(32).conv(32, 3),
            Branch(c, cin).conv(32).conv(48, 3).conv(64, 3)]


def _resnet_b_branches(c: Convs, cin: int) -> list[Branch]:  # Fig. 17
    return [Branch(c, cin).conv(192), Branch(c, cin).conv(128).factorised(160, 192, 7, from_last=True)]


def _resnet_c_branches(c: Convs, cin: int) -> list[Branch]:  # Fig. 19
    return [Branch(c, cin).conv(192), Branch(c, cin).conv(192).factorised(224, 256, 3, from_last=True)]


class InceptionResNetBlock(nn.Module):
    """Figs. 16, 17, 19 and 20: relu(x + scale * expand(concat(branches(x)))), where ``expand``
    is the linear 1x1 convolution (with bias, no BN) back to the input width."""

    def __init__(self, convs: Convs, channels: int, branches: list[Branch], scale: float, act: bool = True,
                 drop_path: float = 0.0):
        super().__init__()
        self.branches = nn.ModuleList([b.build() for b in branches])
        self.expand = L.conv(convs.spatial_dims, sum(b.channels for b in branches), channels, 1, bias=True)
        self.scale = scale
        self.drop_path = L.DropPath(drop_path)
        self.act = L.get_act("relu" if act else None, inplace=True)

    def zero_init_last(self) -> None:
        """Start as the identity (after the ReLU): the expanding convolution's weight at zero."""
        nn.init.zeros_(self.expand.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.cat([branch(x) for branch in self.branches], 1)  # (B, sum of branch widths, *S)
        residual = self.expand(branches)  # linear 1x1 back to the input width: (B, C, *S)
        residual = self.drop_path(residual * self.scale)  # scaled down to keep training stable (§3.3)
        return self.act(x + residual)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class InceptionResNetV2(_InceptionBase):
    """Inception-ResNet-v2 in 1, 2 or 3 dims: ``stem``, ``stages[i].reduction`` and
    ``stages[i].blocks[j]`` (Inception-ResNet-A/B/C), ``final_conv`` (1x1 to 1536), ``head``."""

    def __init__(self, spec: InceptionResNetV2Spec = InceptionResNetV2Spec(), spatial_dims: int = 2,
                 in_channels: int = 3, num_classes: int = 1000, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        c = Convs(d, spec.bn_eps, spec.width_divisor)
        w = c.width
        self.stem = nn.Sequential(OrderedDict(
            conv1=c.unit(in_channels, w(32), 3, 2, "valid"),
            conv2=c.unit(w(32), w(32), 3, 1, "valid"),
            conv3=c.unit(w(32), w(64), 3),
            pool1=c.max_pool(),
            conv4=c.unit(w(64), w(80), 1),
            conv5=c.unit(w(80), w(192), 3, 1, "valid"),
            pool2=c.max_pool(),
            mixed_5b=mixed_5b(c, w(192)),
        ))
        channels = self.stem.mixed_5b.out_channels
        self.feature_info = [FeatureInfo(w(64), 2, "stem.conv3"), FeatureInfo(w(192), 4, "stem.conv5")]
        reductions = (None, functools.partial(reduction_a, filters=(256, 256, 384, 384)), reduction_b_resnet)
        branch_sets = (_resnet_a_branches, _resnet_b_branches, _resnet_c_branches)
        # Stochastic depth grows linearly with depth (Huang et al. 2016), over every block.
        drop_path_rates = iter(L.drop_path_rates(sum(spec.depths) + 1, drop_path_rate))
        self.stages = nn.ModuleList()
        for i, (depth, reduce, branches, scale) in enumerate(
                zip(spec.depths, reductions, branch_sets, spec.residual_scales)):
            reduction = reduce(c, channels) if reduce else None
            channels = reduction.out_channels if reduction else channels
            last = i == len(spec.depths) - 1
            blocks = []
            # TF-slim ends with one more Inception-ResNet-C, unscaled and without ReLU.
            for s, act in [(scale, True)] * depth + ([(1.0, False)] if last else []):
                blocks.append(InceptionResNetBlock(c, channels, branches(c, channels), s, act, next(drop_path_rates)))
            self.stages.append(Stage(blocks, reduction))
            if not last:
                self.feature_info.append(FeatureInfo(channels, 2 ** (i + 3), f"stages.{i}"))
        self.final_conv = c.unit(channels, w(1536), 1)
        channels = w(1536)
        self.feature_info.append(FeatureInfo(channels, 32, "final_conv"))
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = "final_conv"
        self._init_weights()


_PAPER = ("Szegedy, Ioffe, Vanhoucke, Alemi. Inception-v4, Inception-ResNet and the Impact of Residual "
          "Connections on Learning. AAAI 2017")
# TensorFlow-trained checkpoints take inputs scaled to [-1, 1].
_MEAN = _STD = (0.5, 0.5, 0.5)
# 3-D at 75^3 stays cheap with widths / 16 and one block per stage.
_TINY = {"width_divisor": 16, "depths": (1, 1, 1)}

# reference_params: counted in timm 1.0.31 with timm.create_model(name).
INCEPTION_V4_SPECS: dict[str, dict] = {
    "inception_v4": dict(cls=InceptionV4, spec=InceptionV4Spec(), reference_params=42_679_816,  # Fig. 9
                         reference="timm.models.inception_v4 (timm 1.0.31)"),
    "inception_resnet_v2": dict(cls=InceptionResNetV2, spec=InceptionResNetV2Spec(),  # Fig. 15, TF-slim's
                                reference_params=55_843_464, reference="timm.models.inception_resnet_v2 (timm 1.0.31)"),
}

for _name, _row in INCEPTION_V4_SPECS.items():
    register(_name, family="inception_v4", paper=_PAPER, year=2017, input_size=299, mean=_MEAN, std=_STD,
             extra={"tiny": _TINY, "test_input": 75}, **_row)
