"""EfficientNet: M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019 (arXiv:1905.11946), and EfficientNetV2: M. Tan, Q. V. Le,
"EfficientNetV2: Smaller Models and Faster Training", ICML 2021 (arXiv:2104.00298).

EfficientNet-B0 (Table 1) is a 3x3/2 stem of 32 channels, seven stages of MBConv blocks
(MobileNetV2's inverted residual with a linear bottleneck, plus squeeze-and-excitation with a
bottleneck of a quarter of the block's *input* channels), a 1x1 conv to 1280 channels, global
average pooling, dropout and a linear classifier; SiLU ("swish") everywhere.

B1-B7 come from B0 by compound scaling (§3.3, Eq. 3): depth d = alpha^phi, width w = beta^phi,
resolution r = gamma^phi with alpha * beta^2 * gamma^2 ~ 2, so that FLOPs (proportional to
d * w^2 * r^2) grow by about 2^phi; the grid search on B0 gave alpha = 1.2, beta = 1.1,
gamma = 1.15. Widths are rounded with make_divisible(c * w, 8) and depths with ceil(n * d), as in
the authors' code. The *released* B1-B7 do not use alpha^phi etc. literally: the authors' code
(efficientnet_builder.py, params_dict) lists hand-rounded coefficients, which torchvision and timm
copy; :data:`RELEASED_COEFFICIENTS` holds them and :func:`compound_scale` returns them for
phi = 0..7 at the default alpha, beta, gamma (the formula otherwise, or with ``released=False``).

EfficientNetV2 (Tan & Le 2021, Table 4 for V2-S) replaces the MBConv of the early, high-resolution
stages by Fused-MBConv (Fig. 2: the 1x1 expansion and the depthwise conv fused into one k x k
conv), uses smaller expansion ratios and no SE there; V2-M and V2-L follow the authors' released
configurations (as torchvision has them).

Layout (torchvision's, whose checkpoints load through weights/keymaps/efficientnet.py):
``stem`` (ConvNormAct), ``stages[i].blocks[j]`` (layers.InvertedResidual), ``conv_head`` (1x1
ConvNormAct), ``head`` (ClassifierHead). Stochastic depth grows linearly with the block index,
p_i = drop_path_rate * i / n_blocks (torchvision's rule).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage, init_he
from ._registry import register


class MBStage(NamedTuple):
    """One row of Table 1 (V1) / Table 4 (V2): a run of ``layers`` identical blocks, the first
    strided; ``expand_ratio`` is the "6" of "MBConv6". A tuple, so that a ``stages`` override
    is saved in config.json (as lists, which the model reads back as rows)."""

    block: str  # "mbconv" or "fused" (Fused-MBConv)
    expand_ratio: float
    kernel_size: int
    stride: int
    out_channels: int
    layers: int


@dataclass(frozen=True)
class EfficientNetSpec:
    """One row of the EfficientNet spec table.

    ``width_mult`` and ``depth_mult`` scale ``stages``/``stem_width``/``head_width`` when the model
    is built (make_divisible(c * w, divisor), ceil(n * d)); :meth:`scaled` applies them ahead of time.
    """

    stages: tuple[MBStage, ...]
    stem_width: int = 32
    head_width: int | None = None  # None: 4x the last stage (B0: 4 * 320 = 1280)
    width_mult: float = 1.0
    depth_mult: float = 1.0
    se_ratio: float = 0.25  # SE bottleneck / block input channels, MBConv blocks only
    drop_rate: float = 0.2  # dropout before the classifier
    drop_path_rate: float = 0.2  # stochastic depth of the last block (torchvision's default)
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    divisor: int = 8

    def scaled(self, width: float = 1.0, depth: float = 1.0) -> EfficientNetSpec:
        """This spec with widths times ``width * width_mult`` and depths times ``depth *
        depth_mult``, rounded as the authors' code rounds (make_divisible to ``divisor``, ceil);
        the result has both multipliers 1."""
        w, d = width * self.width_mult, depth * self.depth_mult

        def ch(c: int) -> int:
            return L.make_divisible(c * w, self.divisor)

        rows = (MBStage(*row) for row in self.stages)  # rows may come back from JSON as lists
        stages = tuple(s._replace(out_channels=ch(s.out_channels), layers=math.ceil(s.layers * d))
                       for s in rows)
        head = None if self.head_width is None else ch(self.head_width)
        return dataclasses.replace(self, stages=stages, stem_width=ch(self.stem_width), head_width=head,
                                   width_mult=1.0, depth_mult=1.0)


# Table 1 of Tan & Le 2019: EfficientNet-B0's stages 2-8 (stage 1 is the stem, 9 the head).
_MB = "mbconv"
B0_STAGES = (
    MBStage(_MB, expand_ratio=1, kernel_size=3, stride=1, out_channels=16, layers=1),  # MBConv1, k3x3, 112^2
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=2, out_channels=24, layers=2),  # MBConv6, k3x3, 112^2
    MBStage(_MB, expand_ratio=6, kernel_size=5, stride=2, out_channels=40, layers=2),  # MBConv6, k5x5, 56^2
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=2, out_channels=80, layers=3),  # MBConv6, k3x3, 28^2
    MBStage(_MB, expand_ratio=6, kernel_size=5, stride=1, out_channels=112, layers=3),  # MBConv6, k5x5, 14^2
    MBStage(_MB, expand_ratio=6, kernel_size=5, stride=2, out_channels=192, layers=4),  # MBConv6, k5x5, 14^2
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=320, layers=1),  # MBConv6, k3x3, 7^2
)
EFFICIENTNET_B0 = EfficientNetSpec(B0_STAGES)

class Released(NamedTuple):
    """The coefficients of one released model (efficientnet_builder.py's params_dict)."""

    width: float
    depth: float
    resolution: int
    dropout: float


# The released coefficients by phi, as torchvision and timm use them.
RELEASED_COEFFICIENTS: dict[int, Released] = {
    0: Released(width=1.0, depth=1.0, resolution=224, dropout=0.2),  # B0
    1: Released(width=1.0, depth=1.1, resolution=240, dropout=0.2),  # B1
    2: Released(width=1.1, depth=1.2, resolution=260, dropout=0.3),  # B2
    3: Released(width=1.2, depth=1.4, resolution=300, dropout=0.3),  # B3
    4: Released(width=1.4, depth=1.8, resolution=380, dropout=0.4),  # B4
    5: Released(width=1.6, depth=2.2, resolution=456, dropout=0.4),  # B5
    6: Released(width=1.8, depth=2.6, resolution=528, dropout=0.5),  # B6
    7: Released(width=2.0, depth=3.1, resolution=600, dropout=0.5),  # B7
}
_PAPER_COEFFS = (1.2, 1.1, 1.15)  # alpha, beta, gamma of §3.3 (grid search on B0)


@dataclass(frozen=True)
class CompoundScaling:
    """What :func:`compound_scale` returns.

    Attributes:
        phi: the compound coefficient.
        depth, width, resolution_mult: the multipliers d, w, r of Eq. 3.
        resolution: the input size per axis, base resolution x r rounded (the table's for released).
        drop_rate: the released dropout for phi = 0..7 (None from the formula: keep the base's).
        released: True when the values are the authors' released table, False for the formula.
        spec: the base spec scaled by (w, d) with the paper's rounding, when a base was given.
    """

    phi: float
    depth: float
    width: float
    resolution_mult: float
    resolution: int
    drop_rate: float | None
    released: bool
    spec: EfficientNetSpec | None = None


def compound_scale(phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15,
                   base: EfficientNetSpec | None = None, *, base_resolution: int = 224,
                   released: bool = True) -> CompoundScaling:
    """Compound scaling (Tan & Le 2019, §3.3, Eq. 3): d = alpha^phi, w = beta^phi, r = gamma^phi.

    With the paper's alpha, beta, gamma, an integer phi in 0..7 and ``released=True`` this returns
    the coefficients of the released B0-B7 (:data:`RELEASED_COEFFICIENTS`), which the authors
    rounded by hand from the formula (B7: d = 3.1 vs 1.2^7 = 3.58, w = 2.0 vs 1.1^7 = 1.95,
    600 px vs 224 * 1.15^7 = 596 px); any other phi or coefficients use the formula itself.

    Args:
        phi: the compound coefficient (resources grow by about (alpha * beta^2 * gamma^2)^phi).
        alpha, beta, gamma: depth, width and resolution bases.
        base: a spec to scale (default None: only the multipliers); EfficientNet-B0 is
            :data:`EFFICIENTNET_B0`. Its channels are rounded by make_divisible(c * w, 8) and its
            depths by ceil(n * d), and a released dropout replaces its drop_rate.
        base_resolution: the base network's input size per axis (B0: 224).
        released: False forces the formula even where the released table exists.

    Returns:
        A CompoundScaling with the multipliers, the resolution and (given ``base``) the scaled spec.
    """
    if released and (alpha, beta, gamma) == _PAPER_COEFFS and float(phi).is_integer() and int(phi) in RELEASED_COEFFICIENTS:
        w, d, res, drop = RELEASED_COEFFICIENTS[int(phi)]
        r = res / 224  # the table's sizes are for B0's 224
        resolution, from_table = round(base_resolution * r), True
    else:
        d, w, r, drop = alpha ** phi, beta ** phi, gamma ** phi, None
        resolution, from_table = round(base_resolution * r), False
    spec = None
    if base is not None:
        spec = base.scaled(w, d)
        if drop is not None:
            spec = dataclasses.replace(spec, drop_rate=drop)
    return CompoundScaling(phi, d, w, r, resolution, drop, from_table, spec)


def _block(spatial_dims: int, row: MBStage, in_channels: int, stride: int, spec: EfficientNetSpec,
           act_layer: str, norm_layer: str, drop_path: float) -> L.InvertedResidual:
    # torchvision rounds the expanded width to a multiple of 8 (adjust_channels) and sizes the
    # SE bottleneck from the block's input: max(1, C_in // 4) (Tan & Le 2019 §4, ratio 0.25).
    mid = L.make_divisible(in_channels * row.expand_ratio, spec.divisor)
    fused = row.block == "fused"
    if row.block not in ("mbconv", "fused"):
        raise ValueError(f"stage block must be 'mbconv' or 'fused', got {row.block!r}")
    se = 0 if fused or not spec.se_ratio else max(1, int(in_channels * spec.se_ratio))
    return L.InvertedResidual(spatial_dims, in_channels, row.out_channels, row.kernel_size, stride,
                              expanded_channels=mid, fused=fused, se_channels=se, se_act=act_layer,
                              se_gate="sigmoid", act_layer=act_layer, norm_layer=norm_layer,
                              drop_path=drop_path,
                              norm_kwargs={"eps": spec.norm_eps, "momentum": spec.norm_momentum})


class EfficientNet(ConvNetClassifier):
    """EfficientNet V1/V2 in 1, 2 or 3 dims: ``stem``, ``stages[i].blocks[j]``, ``conv_head``, ``head``.

    Args:
        spec: the architecture (multipliers are applied here, see EfficientNetSpec.scaled).
        spatial_dims, in_channels, num_classes: as every model.
        act_layer: SiLU in both papers.
        norm_layer: batch norm with the spec's eps and momentum.
        drop_rate: dropout before the classifier; None: the spec's (the paper's) value.
        drop_path_rate: stochastic depth of the last block; None: the spec's value.
    """

    def __init__(self, spec: EfficientNetSpec = EFFICIENTNET_B0, spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, act_layer: str = "silu", norm_layer: str = "batch",
                 drop_rate: float | None = None, drop_path_rate: float | None = None):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        s = spec.scaled()
        drop_rate = s.drop_rate if drop_rate is None else drop_rate
        drop_path_rate = s.drop_path_rate if drop_path_rate is None else drop_path_rate
        norm_kwargs = {"eps": s.norm_eps, "momentum": s.norm_momentum}

        def norm_fn(channels: int) -> nn.Module:
            return L.norm(norm_layer, d, channels, **norm_kwargs)

        self.stem = L.ConvNormAct(d, in_channels, s.stem_width, 3, 2, norm_layer=norm_fn, act_layer=act_layer)
        channels, reduction = s.stem_width, 2
        # torchvision's rule: block i of n drops with drop_path_rate * i / n (the last below the rate).
        drop_path_rates = iter(L.drop_path_rates(sum(r.layers for r in s.stages), drop_path_rate, endpoint=False))
        self.stages, self.feature_info = nn.ModuleList(), []
        for i, row in enumerate(s.stages):
            blocks = []
            for j in range(row.layers):
                stride = row.stride if j == 0 else 1
                blocks.append(_block(d, row, channels, stride, s, act_layer, norm_layer, next(drop_path_rates)))
                channels = row.out_channels
            reduction *= row.stride
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        head_width = s.head_width if s.head_width is not None else 4 * channels
        self.conv_head = L.ConvNormAct(d, channels, head_width, 1, norm_layer=norm_fn, act_layer=act_layer)
        # The 1x1 head conv is the last feature map (what forward_features returns, CAM reads).
        self.feature_info.append(FeatureInfo(head_width, reduction, "conv_head"))
        self.head = ClassifierHead(head_width, num_classes, drop_rate=drop_rate)
        self.cam_layer = "conv_head"
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's: He (fan_out) convs, unit norms, classifier U(-1/sqrt(out), 1/sqrt(out)).
        init_he(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stages(x)  # (B, C, *S) -> (B, last stage, *S/32)
        return self.conv_head(x)  # (B, head_width, *S/32)


# -- EfficientNetV2 (Tan & Le 2021) --------------------------------------------------------------
_F = "fused"
# Table 4: V2-S, after a Conv3x3 stem of 24 and before a Conv1x1 head of 1280. BN eps 1e-3 (torchvision).
V2_S = EfficientNetSpec((
    MBStage(_F, expand_ratio=1, kernel_size=3, stride=1, out_channels=24, layers=2),  # Fused-MBConv1, k3x3
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=48, layers=4),  # Fused-MBConv4, k3x3
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=64, layers=4),  # Fused-MBConv4, k3x3
    MBStage(_MB, expand_ratio=4, kernel_size=3, stride=2, out_channels=128, layers=6),  # MBConv4, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=160, layers=9),  # MBConv6, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=2, out_channels=256, layers=15),  # MBConv6, SE0.25
), stem_width=24, head_width=1280, drop_rate=0.2, norm_eps=1e-3)
# V2-M and V2-L: the authors' effnetv2_configs.py (not tabulated in the paper), as torchvision.
V2_M = EfficientNetSpec((
    MBStage(_F, expand_ratio=1, kernel_size=3, stride=1, out_channels=24, layers=3),  # Fused-MBConv1
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=48, layers=5),  # Fused-MBConv4
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=80, layers=5),  # Fused-MBConv4
    MBStage(_MB, expand_ratio=4, kernel_size=3, stride=2, out_channels=160, layers=7),  # MBConv4, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=176, layers=14),  # MBConv6, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=2, out_channels=304, layers=18),  # MBConv6, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=512, layers=5),  # MBConv6, SE0.25
), stem_width=24, head_width=1280, drop_rate=0.3, norm_eps=1e-3)
V2_L = EfficientNetSpec((
    MBStage(_F, expand_ratio=1, kernel_size=3, stride=1, out_channels=32, layers=4),  # Fused-MBConv1
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=64, layers=7),  # Fused-MBConv4
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=96, layers=7),  # Fused-MBConv4
    MBStage(_MB, expand_ratio=4, kernel_size=3, stride=2, out_channels=192, layers=10),  # MBConv4, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=224, layers=19),  # MBConv6, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=2, out_channels=384, layers=25),  # MBConv6, SE0.25
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=640, layers=7),  # MBConv6, SE0.25
), stem_width=32, head_width=1280, drop_rate=0.4, norm_eps=1e-3)

_PAPER = "Tan, Le. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. ICML 2019"
_PAPER_V2 = "Tan, Le. EfficientNetV2: Smaller Models and Faster Training. ICML 2021"
_TV = "torchvision.models.efficientnet"


def _scaled_b0(phi: int) -> dict:
    """B0 scaled by compound_scale(phi) with the released coefficients, at their resolution.
    torchvision uses BN eps 1e-3 / momentum 0.01 (TF's 0.99) for B5-B7; B0-B4 keep PyTorch's."""
    scaling = compound_scale(phi, base=EFFICIENTNET_B0)
    spec = scaling.spec if phi < 5 else dataclasses.replace(scaling.spec, norm_eps=1e-3, norm_momentum=0.01)
    return dict(spec=spec, input_size=scaling.resolution)


# B0-B7 = compound_scale(phi, base=B0); reference_params: torchvision's counts.
EFFICIENTNET_SPECS: dict[str, dict] = {
    "efficientnet_b0": dict(**_scaled_b0(0), reference_params=5_288_548),  # w 1.0, d 1.0, 224
    "efficientnet_b1": dict(**_scaled_b0(1), reference_params=7_794_184),  # w 1.0, d 1.1, 240
    "efficientnet_b2": dict(**_scaled_b0(2), reference_params=9_109_994),  # w 1.1, d 1.2, 260
    "efficientnet_b3": dict(**_scaled_b0(3), reference_params=12_233_232),  # w 1.2, d 1.4, 300
    "efficientnet_b4": dict(**_scaled_b0(4), reference_params=19_341_616),  # w 1.4, d 1.8, 380
    "efficientnet_b5": dict(**_scaled_b0(5), reference_params=30_389_784),  # w 1.6, d 2.2, 456
    "efficientnet_b6": dict(**_scaled_b0(6), reference_params=43_040_704),  # w 1.8, d 2.6, 528
    "efficientnet_b7": dict(**_scaled_b0(7), reference_params=66_347_960),  # w 2.0, d 3.1, 600
}

# Input sizes: torchvision's evaluation crops (the paper trains progressively up to 300/380/380).
EFFICIENTNET_V2_SPECS: dict[str, dict] = {
    "efficientnet_v2_s": dict(spec=V2_S, input_size=384, reference_params=21_458_488),  # Table 4
    "efficientnet_v2_m": dict(spec=V2_M, input_size=480, reference_params=54_139_356),  # authors' config
    "efficientnet_v2_l": dict(spec=V2_L, input_size=480, reference_params=118_515_272),  # authors' config
}

# Contract tests: three one-block stages (every block kind: MBConv1 without expansion, strided
# MBConv with SE, Fused-MBConv with and without expansion); no stochastic depth, since with a
# batch of 2 a dropped branch would leave parameters without gradient.
_TINY = {"stages": (
    MBStage(_MB, expand_ratio=1, kernel_size=3, stride=1, out_channels=8, layers=1),  # MBConv1: no expansion
    MBStage(_MB, expand_ratio=4, kernel_size=5, stride=2, out_channels=16, layers=1),  # strided, with SE
    MBStage(_MB, expand_ratio=4, kernel_size=3, stride=2, out_channels=16, layers=1),
), "stem_width": 8, "head_width": 32, "drop_path_rate": 0.0}
_TINY_V2 = {"stages": (
    MBStage(_F, expand_ratio=1, kernel_size=3, stride=1, out_channels=8, layers=1),  # Fused-MBConv1: one conv
    MBStage(_F, expand_ratio=4, kernel_size=3, stride=2, out_channels=16, layers=1),  # Fused-MBConv4
    MBStage(_MB, expand_ratio=4, kernel_size=3, stride=2, out_channels=16, layers=1),
), "stem_width": 8, "head_width": 32, "drop_path_rate": 0.0}

for _name, _row in EFFICIENTNET_SPECS.items():
    register(_name, EfficientNet, family="efficientnet", paper=_PAPER, year=2019, reference=_TV,
             extra={"tiny": _TINY}, **_row)

for _name, _row in EFFICIENTNET_V2_SPECS.items():
    register(_name, EfficientNet, family="efficientnet_v2", paper=_PAPER_V2, year=2021, reference=_TV,
             extra={"tiny": _TINY_V2}, **_row)
