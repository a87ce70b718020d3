"""MobileNets, three generations in one layout.

- V1: A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam,
  "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
  arXiv:1704.04861, 2017. A 3x3/2 stem and 13 depthwise separable units (Table 1), a width
  multiplier alpha that thins every layer (§3.3, Table 6).
- V2: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted Residuals and
  Linear Bottlenecks", CVPR 2018. Inverted residual blocks with linear bottlenecks (Table 1),
  the (t, c, n, s) rows of Table 2, a final 1x1 conv to 1280 channels.
- V3: A. Howard, M. Sandler, G. Chu, L.-C. Chen, B. Chen, M. Tan, W. Wang, Y. Zhu, R. Pang,
  V. Vasudevan, Q. V. Le, H. Adam, "Searching for MobileNetV3", ICCV 2019. The searched rows of
  Tables 1 (Large) and 2 (Small): kernel, expansion size, squeeze-and-excitation with a hard
  sigmoid gate (§5.3), h-swish in the deeper half (§5.2), and the efficient last stage (§5.1,
  Fig. 5): 1x1 conv, pool, then a 1280/1024 linear layer with h-swish before the classifier.

Layouts are those of the reference implementations whose checkpoints load here: timm's
``mobilenetv1_100`` (ReLU6 as in the TensorFlow-slim original; the paper's Fig. 3 says ReLU,
``act_layer="relu"`` gives that), torchvision's ``mobilenet_v2`` and ``mobilenet_v3_*`` (V3's
batch norms use eps 1e-3, momentum 0.01). Channel counts round with ``make_divisible`` (multiples
of 8, never below 90%), as every reference does.

Blocks (L.DepthwiseSeparable, L.InvertedResidual) are shared layers; this file only arranges them:
``stem``, ``stages[i].blocks[j]`` (a new stage at each stride 2), ``final_conv``, ``head``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage, init_he
from ._registry import register


@dataclass(frozen=True)
class BlockRow:
    """One row of a MobileNet table: ``repeats`` blocks, the first with ``stride``.

    V2 gives the expansion as a factor t of the input (``expand_ratio``); V3 as an absolute
    "exp size" at width 1.0 (``expanded_channels``, scaled by the width multiplier).
    """

    kernel_size: int
    out_channels: int
    stride: int = 1
    repeats: int = 1
    expand_ratio: float = 1.0
    expanded_channels: int = 0
    se: bool = False
    act_layer: str | None = None  # None: the spec's


@dataclass(frozen=True)
class MobileNetSpec:
    """One MobileNet variant."""

    block: str = "inverted"  # "separable" (V1) or "inverted" (V2, V3)
    rows: tuple[BlockRow, ...] = ()
    stem_width: int = 32
    act_layer: str = "relu6"  # stem, final conv and rows without their own
    final_width: int = 0  # 1x1 conv after the last block (V2: 1280, V3: 576 / 960); 0: none
    final_width_floor: bool = False  # V2 §6.1: widths < 1 do not thin the final conv
    head_width: int = 0  # V3's hidden linear layer (1024 / 1280); 0: a plain linear classifier
    head_act: str = "hard_swish"
    width_mult: float = 1.0  # V1's alpha (§3.3), V2's and V3's width multiplier
    se_ratio: float = 0.25  # V3: SE squeezes to 1/4 of the expansion, rounded to 8
    se_gate: str = "hard_sigmoid"
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    drop_rate: float = 0.0  # dropout before the classifier (torchvision V2/V3: 0.2)
    max_blocks_per_stage: int = 0  # keep only the first N blocks of each stage (small test models); 0: all


def _stage_plan(spec: MobileNetSpec) -> list[list[tuple[BlockRow, int]]]:
    """The rows unrolled into blocks (row, stride) and grouped into stages: a stage starts at every
    stride-2 block, so each stage is one resolution and ``feature_info`` one entry per stage."""
    stages: list[list[tuple[BlockRow, int]]] = []
    for row in spec.rows:
        for r in range(row.repeats):
            stride = row.stride if r == 0 else 1
            if not stages or (stride > 1 and stages[-1]):
                stages.append([])
            stages[-1].append((row, stride))
    if spec.max_blocks_per_stage:
        stages = [s[:spec.max_blocks_per_stage] for s in stages]
    return stages


class MobileNetV3Head(nn.Module):
    """V3's efficient last stage after the pool (Fig. 5): a linear layer to ``hidden_features``
    with h-swish, dropout, then the classifier ``fc``. Running the wide layer on the pooled 1x1
    map instead of the 7x7 one is what saves its cost (§5.1)."""

    def __init__(self, in_features: int, hidden_features: int, num_classes: int,
                 act_layer: str = "hard_swish", drop_rate: float = 0.0):
        super().__init__()
        self.hidden_features = hidden_features
        self.pool = L.GlobalPool("avg", flatten=True)
        self.hidden = nn.Linear(in_features, hidden_features)
        self.act = L.get_act(act_layer, inplace=True)
        self.drop = L.dropout(None, drop_rate)
        self.fc = nn.Linear(hidden_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.hidden_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)  # (B, C, *S) -> (B, C)
        x = self.act(self.hidden(x))  # (B, hidden), on the pooled map: the saving of §5.1
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class MobileNet(ConvNetClassifier):
    """MobileNet V1, V2 or V3 in 1, 2 or 3 dims: ``stem``, ``stages[i].blocks[j]``,
    ``final_conv`` (V2, V3), ``head``."""

    def __init__(self, spec: MobileNetSpec = MobileNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, norm_layer: str = "batch", drop_path_rate: float = 0.0):
        super().__init__()
        if spec.block not in ("separable", "inverted"):
            raise ValueError(f"block must be 'separable' or 'inverted', got {spec.block!r}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        w = spec.width_mult
        norm_kwargs = {"eps": spec.norm_eps, "momentum": spec.norm_momentum} if norm_layer == "batch" else {}
        norm = functools.partial(L.norm, norm_layer, d, **norm_kwargs) if norm_kwargs else norm_layer

        channels = L.make_divisible(spec.stem_width * w)
        self.stem = L.ConvNormAct(d, in_channels, channels, 3, 2, norm_layer=norm, act_layer=spec.act_layer)
        plan = _stage_plan(spec)
        reduction = 2
        # Stochastic depth grows linearly with depth (Huang et al. 2016); off by default.
        drop_path_rates = iter(L.drop_path_rates(sum(len(s) for s in plan), drop_path_rate))
        self.stages, self.feature_info = nn.ModuleList(), []
        for i, stage in enumerate(plan):
            blocks = []
            for row, stride in stage:
                out = L.make_divisible(row.out_channels * w)
                act = row.act_layer or spec.act_layer
                if spec.block == "separable":
                    blocks.append(L.DepthwiseSeparable(d, channels, out, row.kernel_size, stride, act_layer=act,
                                                       norm_layer=norm_layer, norm_kwargs=norm_kwargs))
                else:
                    mid = L.make_divisible(row.expanded_channels * w) if row.expanded_channels else None
                    mid_channels = mid or round(channels * row.expand_ratio)
                    se = L.make_divisible(mid_channels * spec.se_ratio) if row.se else 0
                    blocks.append(L.InvertedResidual(
                        d, channels, out, row.kernel_size, stride, row.expand_ratio, expanded_channels=mid,
                        se_channels=se, se_act="relu", se_gate=spec.se_gate, act_layer=act,
                        norm_layer=norm_layer, norm_kwargs=norm_kwargs, drop_path=next(drop_path_rates)))
                channels, reduction = out, reduction * stride
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.cam_layer = f"stages.{len(plan) - 1}"
        self.final_conv = None
        if spec.final_width:
            final = L.make_divisible(spec.final_width * (max(1.0, w) if spec.final_width_floor else w))
            self.final_conv = L.ConvNormAct(d, channels, final, 1, norm_layer=norm, act_layer=spec.act_layer)
            channels = final
            # As timm's feature maps: the last entry is what the head pools (same resolution).
            self.feature_info[-1] = FeatureInfo(channels, reduction, "final_conv")
            self.cam_layer = "final_conv"
        if spec.head_width:
            self.head = MobileNetV3Head(channels, L.make_divisible(spec.head_width * w), num_classes,
                                        spec.head_act, spec.drop_rate)
        else:
            self.head = ClassifierHead(channels, num_classes, drop_rate=spec.drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's MobileNet initialisation: He (fan_out) convs, N(0, 0.01) linear layers.
        init_he(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stages(x)
        return self.final_conv(x) if self.final_conv is not None else x


# -- spec tables -------------------------------------------------------------------------------

# V1, Table 1: the 13 depthwise separable units (a 3x3 depthwise conv, then a 1x1 to the width).
# The table prints the second-to-last unit with stride 2 on a 7x7 input; the maps say stride 1,
# as every implementation has it.
_V1_ROWS = (
    BlockRow(kernel_size=3, out_channels=64),  # 112^2
    BlockRow(kernel_size=3, out_channels=128, stride=2),  # -> 56^2
    BlockRow(kernel_size=3, out_channels=128),
    BlockRow(kernel_size=3, out_channels=256, stride=2),  # -> 28^2
    BlockRow(kernel_size=3, out_channels=256),
    BlockRow(kernel_size=3, out_channels=512, stride=2),  # -> 14^2
    BlockRow(kernel_size=3, out_channels=512, repeats=5),  # "5x"
    BlockRow(kernel_size=3, out_channels=1024, stride=2),  # -> 7^2
    BlockRow(kernel_size=3, out_channels=1024),
)

# V2, Table 2: the bottleneck rows (t, c, n, s) = (expand_ratio, out_channels, repeats, stride), 3x3.
_V2_ROWS = (
    BlockRow(kernel_size=3, expand_ratio=1, out_channels=16, repeats=1, stride=1),  # 112^2
    BlockRow(kernel_size=3, expand_ratio=6, out_channels=24, repeats=2, stride=2),  # -> 56^2
    BlockRow(kernel_size=3, expand_ratio=6, out_channels=32, repeats=3, stride=2),  # -> 28^2
    BlockRow(kernel_size=3, expand_ratio=6, out_channels=64, repeats=4, stride=2),  # -> 14^2
    BlockRow(kernel_size=3, expand_ratio=6, out_channels=96, repeats=3, stride=1),
    BlockRow(kernel_size=3, expand_ratio=6, out_channels=160, repeats=3, stride=2),  # -> 7^2
    BlockRow(kernel_size=3, expand_ratio=6, out_channels=320, repeats=1, stride=1),
)

# V3, Tables 1 (Large) and 2 (Small): the bneck rows' kernel, exp size, #out, SE, NL (RE: ReLU,
# HS: h-swish) and stride s, one block each.
_RE, _HS = "relu", "hard_swish"
_V3_LARGE_ROWS = (
    BlockRow(kernel_size=3, expanded_channels=16, out_channels=16, se=False, act_layer=_RE, stride=1),  # 112^2
    BlockRow(kernel_size=3, expanded_channels=64, out_channels=24, se=False, act_layer=_RE, stride=2),  # -> 56^2
    BlockRow(kernel_size=3, expanded_channels=72, out_channels=24, se=False, act_layer=_RE, stride=1),
    BlockRow(kernel_size=5, expanded_channels=72, out_channels=40, se=True, act_layer=_RE, stride=2),  # -> 28^2
    BlockRow(kernel_size=5, expanded_channels=120, out_channels=40, se=True, act_layer=_RE, stride=1),
    BlockRow(kernel_size=5, expanded_channels=120, out_channels=40, se=True, act_layer=_RE, stride=1),
    BlockRow(kernel_size=3, expanded_channels=240, out_channels=80, se=False, act_layer=_HS, stride=2),  # -> 14^2
    BlockRow(kernel_size=3, expanded_channels=200, out_channels=80, se=False, act_layer=_HS, stride=1),
    BlockRow(kernel_size=3, expanded_channels=184, out_channels=80, se=False, act_layer=_HS, stride=1),
    BlockRow(kernel_size=3, expanded_channels=184, out_channels=80, se=False, act_layer=_HS, stride=1),
    BlockRow(kernel_size=3, expanded_channels=480, out_channels=112, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=3, expanded_channels=672, out_channels=112, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=672, out_channels=160, se=True, act_layer=_HS, stride=2),  # -> 7^2
    BlockRow(kernel_size=5, expanded_channels=960, out_channels=160, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=960, out_channels=160, se=True, act_layer=_HS, stride=1),
)
_V3_SMALL_ROWS = (
    BlockRow(kernel_size=3, expanded_channels=16, out_channels=16, se=True, act_layer=_RE, stride=2),  # -> 56^2
    BlockRow(kernel_size=3, expanded_channels=72, out_channels=24, se=False, act_layer=_RE, stride=2),  # -> 28^2
    BlockRow(kernel_size=3, expanded_channels=88, out_channels=24, se=False, act_layer=_RE, stride=1),
    BlockRow(kernel_size=5, expanded_channels=96, out_channels=40, se=True, act_layer=_HS, stride=2),  # -> 14^2
    BlockRow(kernel_size=5, expanded_channels=240, out_channels=40, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=240, out_channels=40, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=120, out_channels=48, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=144, out_channels=48, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=288, out_channels=96, se=True, act_layer=_HS, stride=2),  # -> 7^2
    BlockRow(kernel_size=5, expanded_channels=576, out_channels=96, se=True, act_layer=_HS, stride=1),
    BlockRow(kernel_size=5, expanded_channels=576, out_channels=96, se=True, act_layer=_HS, stride=1),
)

V1 = MobileNetSpec(block="separable", rows=_V1_ROWS, stem_width=32)
V2 = MobileNetSpec(rows=_V2_ROWS, final_width=1280, final_width_floor=True, drop_rate=0.2)
_V3_COMMON: dict[str, Any] = {"stem_width": 16, "act_layer": "hard_swish", "norm_eps": 1e-3,
                               "norm_momentum": 0.01, "drop_rate": 0.2}
V3_LARGE = MobileNetSpec(rows=_V3_LARGE_ROWS, final_width=960, head_width=1280, **_V3_COMMON)
V3_SMALL = MobileNetSpec(rows=_V3_SMALL_ROWS, final_width=576, head_width=1024, **_V3_COMMON)

_V1_PAPER = ("Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam. MobileNets: Efficient "
             "Convolutional Neural Networks for Mobile Vision Applications. arXiv:1704.04861, 2017")
_V2_PAPER = "Sandler, Howard, Zhu, Zhmoginov, Chen. MobileNetV2: Inverted Residuals and Linear Bottlenecks. CVPR 2018"
_V3_PAPER = "Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam. Searching for MobileNetV3. ICCV 2019"
_TIMM_V1 = "timm.models.efficientnet._gen_mobilenet_v1 (channel_multiplier={}); Howard et al. 2017 Table 6: {}M"
# Contract tests build every variant at a quarter width with one block per stage.
_TINY = {"width_mult": 0.25, "max_blocks_per_stage": 1}

_V1 = dict(family="mobilenet_v1", paper=_V1_PAPER, year=2017)
MOBILENET_SPECS: dict[str, dict] = {
    # Width multipliers alpha of Table 6 (4.2M / 2.6M / 1.3M / 0.5M); exact counts of timm's
    # generator at that channel_multiplier (every width is already a multiple of 8).
    "mobilenet_v1": dict(spec=V1, reference_params=4_231_976,  # alpha = 1
                         reference="timm mobilenetv1_100; Howard et al. 2017 Table 6: 4.2M", **_V1),
    "mobilenet_v1_075": dict(spec=MobileNetSpec(block="separable", rows=_V1_ROWS, width_mult=0.75),  # alpha = 0.75
                             reference_params=2_585_560, reference=_TIMM_V1.format(0.75, 2.6), **_V1),
    "mobilenet_v1_050": dict(spec=MobileNetSpec(block="separable", rows=_V1_ROWS, width_mult=0.5),  # alpha = 0.5
                             reference_params=1_331_592, reference=_TIMM_V1.format(0.5, 1.3), **_V1),
    "mobilenet_v1_025": dict(spec=MobileNetSpec(block="separable", rows=_V1_ROWS, width_mult=0.25),  # alpha = 0.25
                             reference_params=470_072, reference=_TIMM_V1.format(0.25, 0.5), **_V1),
    # V2 at width 1.0, V3 Large and Small: torchvision's counts.
    "mobilenet_v2": dict(spec=V2, reference_params=3_504_872, family="mobilenet_v2", paper=_V2_PAPER, year=2018,
                         reference="torchvision.models.mobilenet_v2"),
    "mobilenet_v3_small": dict(spec=V3_SMALL, reference_params=2_542_856, family="mobilenet_v3", paper=_V3_PAPER,
                               year=2019, reference="torchvision.models.mobilenet_v3_small"),
    "mobilenet_v3_large": dict(spec=V3_LARGE, reference_params=5_483_032, family="mobilenet_v3", paper=_V3_PAPER,
                               year=2019, reference="torchvision.models.mobilenet_v3_large"),
}

# V2's linear bottleneck feeds a 1x1 conv and a BatchNorm, which cancels any constant shift: the
# bias of the last projection's norm has no gradient in theory (in torchvision's model too).
# With a 1-position last map and a batch of 2 the cancellation is exact in floating point and the
# contract test's "every parameter gets a gradient" check fails; a 64 input gives that map 2^d
# positions.
_TEST_INPUT = {"mobilenet_v2": 64}

for _name, _row in MOBILENET_SPECS.items():
    _extra: dict[str, Any] = {"tiny": _TINY}
    if _name in _TEST_INPUT:
        _extra["test_input"] = _TEST_INPUT[_name]
    register(_name, MobileNet, extra=_extra, **_row)
