"""Inception: GoogLeNet, BN-Inception and Inception-v3, in 1, 2 and 3 dims.

- ``googlenet``: C. Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842),
  Table 1, in torchvision's layout (``torchvision.models.googlenet``): batch norm (eps 1e-3)
  after every convolution and no local response norm, so its checkpoints load. Two quirks of
  torchvision are kept for that reason: the "5x5" branch is a 3x3 convolution (pytorch/vision
  issue #906; ``branch5x5_kernel=5`` builds the paper's), and max pool 4 is 2x2/2 where Table 1
  has 3x3/2 (same output size at 224). Main dropout is torchvision's 0.2 (the paper's §5: 0.4).
- ``inception_bn``: S. Ioffe, C. Szegedy, "Batch Normalization: Accelerating Deep Network
  Training by Reducing Internal Covariate Shift", ICML 2015 (arXiv:1502.03167), Appendix,
  Figure 5: GoogLeNet's 5x5 replaced by two 3x3, three modules at 28x28 (3a-3c), modules 3c and
  4e reduce the grid with stride-2 convolutions and a max pool before the concatenation, average
  or max pooling inside modules, BN everywhere, no dropout (§4.2.1). The table was checked
  against the Caffe model ported by Cadene's ``pretrainedmodels.bninception`` (convolutions
  keep their bias there, and here, so that its 11,295,240 parameters are the reference count).
- ``inception_v3``: C. Szegedy et al., "Rethinking the Inception Architecture for Computer
  Vision", CVPR 2016 (arXiv:1512.00567), Table 1 and Figures 5-7, in torchvision's layout
  (``torchvision.models.inception_v3``): an unpadded stem for 299 inputs (75 is the smallest
  input that fits), 5x5 factorised into 3x3s, n x n into 1 x n and n x 1 (§3.2), efficient
  grid reduction (§5), and the label-smoothing-era auxiliary head on 17x17.

Beyond 2-D: a factorised n x n (Inception-v3's 1x7 then 7x1) becomes one 1-D kernel of length n
per axis, applied in turn (in 2-D torchvision's order: 1x7 before 7x1 is "last axis first"),
so a 3-D 7x7x7 costs three 1-D convolutions; the parallel 1x3 / 3x1 pair of the expanded
module (Figure 7) becomes one 1-D convolution per axis side by side, so that module's output
has 384 channels per axis in each of its two factorised branches (2-D: 2048 out of Mixed_7c;
1-D: 1280; 3-D: 2816). Every other kernel k becomes k^d. BN-Inception's stride-2 max pool in
3c/4e uses TensorFlow's "same" rule (equal to Caffe's ceil-mode pooling at even sizes, so at
224), which keeps the pooled branch aligned with the strided convolutions at odd sizes too.

Auxiliary classifiers (``aux_logits=True``, default False) are built for training:
``forward(x)`` always returns the main logits only (the model contract); ``forward_aux(x)``
returns ``(logits, *aux_logits)``: ``(logits, aux1, aux2)`` for GoogLeNet (after 4a and 4d;
the paper weights each aux loss by 0.3, §5), ``(logits, aux)`` for Inception-v3 (after the last
17x17 module; its head needs a 17x17 map there, i.e. a 299 input). Checkpoints of torchvision
carry aux weights; they are dropped when the model has no aux heads (weights/keymaps).

torchvision's pretrained GoogLeNet and Inception-v3 weights were trained on inputs scaled to
[-1, 1] (torchvision's ``transform_input=True`` converts ImageNet-normalised input to that);
these models do not convert, so their ``default_cfg`` mean and std are 0.5, which gives the
same input to the first convolution from an image in [0, 1].

``width_mult`` (every variant's spec) scales every channel count, for cheap test models.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo
from ._registry import register

Row = tuple[int, ...]


def _scale(channels: int, width_mult: float) -> int:
    return max(1, int(channels * width_mult + 0.5))


def _batch_norm(spatial_dims: int, eps: float) -> Callable[[int], nn.Module]:
    return functools.partial(L.norm, "batch", spatial_dims, eps=eps)


class Concat(nn.Module):
    """Runs every child on the same input and concatenates their outputs along channels:
    the filter concatenation of an Inception module (and of Figure 7's parallel 1xn / nx1)."""

    def __init__(self, branches: dict[str, nn.Module] | list[nn.Module], out_channels: int):
        super().__init__()
        items = branches.items() if isinstance(branches, dict) else enumerate(branches)
        for name, branch in items:
            self.add_module(str(name), branch)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


class Stage(nn.Module):
    """An optional grid reduction (``pool``), then Inception modules (``blocks``). ``taps``
    maps a block index to a callback that sees that block's output (auxiliary heads)."""

    def __init__(self, blocks: list[nn.Module], pool: nn.Module | None = None):
        super().__init__()
        self.pool = pool
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, taps: dict[int, Callable[[torch.Tensor], None]] | None = None) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        for j, block in enumerate(self.blocks):
            x = block(x)
            if taps and j in taps:
                taps[j](x)
        return x


class InceptionNet(ConvNetClassifier):
    """What the three share: ``stem``, ``stages[i]`` (pool, blocks), ``head``, and auxiliary
    heads named in ``aux_taps`` (head attribute -> (stage, block) whose output it reads)."""

    aux_taps: dict[str, tuple[int, int]]

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(logits, *aux_logits)`` in the order of ``aux_taps``, in train or eval mode.

        Raises:
            ValueError: the model was built with ``aux_logits=False``.
        """
        if not self.aux_taps:
            raise ValueError(f"{self.default_cfg.get('name', type(self).__name__)} has no auxiliary "
                             "heads; build it with aux_logits=True")
        self.check_input(x)
        outputs: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            taps = {j: functools.partial(self._record, outputs, name)
                    for name, (s, j) in self.aux_taps.items() if s == i}
            x = stage(x, taps)
        return (self.forward_head(x), *(outputs[name] for name in self.aux_taps))

    def _record(self, outputs: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> None:
        outputs[name] = getattr(self, name)(x)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for name in self.aux_taps:  # auxiliary logits must count the same classes
            getattr(self, name).reset(num_classes)

    def _set_common(self, spatial_dims: int, in_channels: int, num_classes: int) -> int:
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.aux_taps = {}
        return d

    def _init_trunc_normal(self, std: float) -> None:
        # torchvision's scheme for both ports: truncated normal convolutions and linear layers,
        # unit BN. (Its bounds a=-2, b=2 are absolute, i.e. hardly any truncation.)
        for m in self.modules():
            if isinstance(m, (*L.CONV_TYPES, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# GoogLeNet (Inception v1)


class GoogLeNetModule(NamedTuple):
    """One Inception module row of Table 1 (Szegedy et al. 2015); the module outputs
    n1x1 + n3x3 + n5x5 + pool_proj channels. A tuple, so that a ``stages`` override is saved in
    config.json (as lists, which the model reads back as rows)."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int


_G = GoogLeNetModule


@dataclass(frozen=True)
class GoogLeNetSpec:
    """Table 1 of Szegedy et al. 2015: the stem and the Inception modules stage by stage."""

    stem_widths: Row = (64, 64, 192)  # conv 7x7/2, conv 1x1 (reduce), conv 3x3
    stages: tuple[tuple[GoogLeNetModule, ...], ...] = (
        (  # 28x28
            _G(n1x1=64, n3x3_reduce=96, n3x3=128, n5x5_reduce=16, n5x5=32, pool_proj=32),  # 3a: 256
            _G(n1x1=128, n3x3_reduce=128, n3x3=192, n5x5_reduce=32, n5x5=96, pool_proj=64),  # 3b: 480
        ),
        (  # 14x14
            _G(n1x1=192, n3x3_reduce=96, n3x3=208, n5x5_reduce=16, n5x5=48, pool_proj=64),  # 4a: 512
            _G(n1x1=160, n3x3_reduce=112, n3x3=224, n5x5_reduce=24, n5x5=64, pool_proj=64),  # 4b: 512
            _G(n1x1=128, n3x3_reduce=128, n3x3=256, n5x5_reduce=24, n5x5=64, pool_proj=64),  # 4c: 512
            _G(n1x1=112, n3x3_reduce=144, n3x3=288, n5x5_reduce=32, n5x5=64, pool_proj=64),  # 4d: 528
            _G(n1x1=256, n3x3_reduce=160, n3x3=320, n5x5_reduce=32, n5x5=128, pool_proj=128),  # 4e: 832
        ),
        (  # 7x7
            _G(n1x1=256, n3x3_reduce=160, n3x3=320, n5x5_reduce=32, n5x5=128, pool_proj=128),  # 5a: 832
            _G(n1x1=384, n3x3_reduce=192, n3x3=384, n5x5_reduce=48, n5x5=128, pool_proj=128),  # 5b: 1024
        ),
    )
    stage_pools: Row = (3, 3, 2)  # max pool k x k / 2 before each stage (torchvision: 2 before 5a)
    branch5x5_kernel: int = 3  # torchvision's quirk; 5 is the paper's
    aux_widths: Row = (128, 1024)  # aux head: conv 1x1, fc (§5)
    bn_eps: float = 1e-3
    width_mult: float = 1.0


def googlenet_module(spatial_dims: int, in_channels: int, row: GoogLeNetModule, spec: GoogLeNetSpec) -> Concat:
    """Figure 2(b): 1x1, 1x1 -> 3x3, 1x1 -> "5x5", 3x3/1 max pool -> 1x1, concatenated."""
    d, norm = spatial_dims, _batch_norm(spatial_dims, spec.bn_eps)
    n1, n3r, n3, n5r, n5, proj = (_scale(c, spec.width_mult) for c in row)

    def conv(cin: int, cout: int, k: int) -> nn.Module:
        return L.ConvNormAct(d, cin, cout, k, norm_layer=norm)

    return Concat({
        "branch1x1": conv(in_channels, n1, 1),
        "branch3x3": nn.Sequential(conv(in_channels, n3r, 1), conv(n3r, n3, 3)),
        "branch5x5": nn.Sequential(conv(in_channels, n5r, 1), conv(n5r, n5, spec.branch5x5_kernel)),
        "branch_pool": nn.Sequential(L.SamePool("max", d), conv(in_channels, proj, 1)),
    }, n1 + n3 + n5 + proj)


class GoogLeNetAux(nn.Module):
    """§5: average pool to 4x4, 1x1 conv (128), fc (1024) + ReLU, dropout 0.7, fc to classes.
    torchvision pools adaptively (the paper: 5x5/3), so any input size works."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, spec: GoogLeNetSpec,
                 drop_rate: float = 0.7):
        super().__init__()
        width, fc_width = (_scale(c, spec.width_mult) for c in spec.aux_widths)
        self.pool = L.adaptive_avg_pool(spatial_dims, 4)
        norm = _batch_norm(spatial_dims, spec.bn_eps)
        self.conv = L.ConvNormAct(spatial_dims, in_channels, width, 1, norm_layer=norm)
        self.fc1 = nn.Linear(width * 4 ** spatial_dims, fc_width)
        self.act = nn.ReLU(inplace=True)
        self.drop = L.dropout(None, drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc2 = nn.Linear(self.fc1.out_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)  # (B, C, 4, ...)
        x = self.conv(x).flatten(1)  # (B, 128 * 4^d)
        x = self.act(self.fc1(x))  # (B, 1024)
        x = self.drop(x)
        return self.fc2(x)


class GoogLeNet(InceptionNet):
    """GoogLeNet: ``stem`` (conv1 7x7/2, pool, conv2 1x1, conv3 3x3), ``stages`` 3, 4, 5 of
    Table 1 (``stages[0].blocks`` = 3a, 3b, ...), ``head``; ``aux1``/``aux2`` if aux_logits."""

    def __init__(self, spec: GoogLeNetSpec = GoogLeNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, aux_logits: bool = False, drop_rate: float = 0.2,
                 aux_drop_rate: float = 0.7):
        super().__init__()
        self.spec = spec
        d = self._set_common(spatial_dims, in_channels, num_classes)
        norm = _batch_norm(d, spec.bn_eps)
        w1, w2, w3 = (_scale(c, spec.width_mult) for c in spec.stem_widths)
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", L.ConvNormAct(d, in_channels, w1, 7, 2, norm_layer=norm))
        self.stem.add_module("pool", L.max_pool(d, 3, 2, ceil_mode=True))
        self.stem.add_module("conv2", L.ConvNormAct(d, w1, w2, 1, norm_layer=norm))
        self.stem.add_module("conv3", L.ConvNormAct(d, w2, w3, 3, norm_layer=norm))
        channels, reduction = w3, 4
        self.feature_info = [FeatureInfo(channels, reduction, "stem")]
        self.stages = nn.ModuleList()
        taps_at: dict[tuple[int, int], int] = {}
        for i, (rows, pool) in enumerate(zip(spec.stages, spec.stage_pools)):
            blocks = []
            for j, row in enumerate(rows):
                blocks.append(googlenet_module(d, channels, row, spec))
                channels = blocks[-1].out_channels
                taps_at[(i, j)] = channels
            reduction *= 2
            self.stages.append(Stage(blocks, L.max_pool(d, pool, 2, ceil_mode=True)))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        if aux_logits:
            # §5: "on top of the output of the Inception (4a) and (4d) modules".
            for name, tap in (("aux1", (1, 0)), ("aux2", (1, 3))):
                setattr(self, name, GoogLeNetAux(d, taps_at[tap], num_classes, spec, aux_drop_rate))
                self.aux_taps[name] = tap
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        self._init_trunc_normal(0.01)


# --------------------------------------------------------------------------------------------
# BN-Inception (Inception v2 of the Batch Normalization paper)


class BNInceptionModule(NamedTuple):
    """One Inception module row of Figure 5 (Ioffe & Szegedy 2015). With stride 2, n1x1 = 0 and
    pool_proj = 0 it is a reduction module whose max pool passes its input through."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    double_3x3_reduce: int
    double_3x3: int
    pool: str  # "avg" or "max"
    pool_proj: int
    stride: int


_B = BNInceptionModule


@dataclass(frozen=True)
class BNInceptionSpec:
    """Figure 5 of Ioffe & Szegedy 2015: the stem and the Inception modules stage by stage."""

    stem_widths: Row = (64, 64, 192)  # conv 7x7/2, conv 1x1 (3x3 reduce), conv 3x3
    stages: tuple[tuple[BNInceptionModule, ...], ...] = (
        (  # 28x28
            _B(n1x1=64, n3x3_reduce=64, n3x3=64, double_3x3_reduce=64, double_3x3=96, pool="avg", pool_proj=32,
               stride=1),  # 3a
            _B(n1x1=64, n3x3_reduce=64, n3x3=96, double_3x3_reduce=64, double_3x3=96, pool="avg", pool_proj=64,
               stride=1),  # 3b
        ),
        (  # 3c reduces 28 -> 14
            _B(n1x1=0, n3x3_reduce=128, n3x3=160, double_3x3_reduce=64, double_3x3=96, pool="max", pool_proj=0,
               stride=2),  # 3c
            _B(n1x1=224, n3x3_reduce=64, n3x3=96, double_3x3_reduce=96, double_3x3=128, pool="avg", pool_proj=128,
               stride=1),  # 4a
            _B(n1x1=192, n3x3_reduce=96, n3x3=128, double_3x3_reduce=96, double_3x3=128, pool="avg", pool_proj=128,
               stride=1),  # 4b
            _B(n1x1=160, n3x3_reduce=128, n3x3=160, double_3x3_reduce=128, double_3x3=160, pool="avg",
               pool_proj=128, stride=1),  # 4c
            _B(n1x1=96, n3x3_reduce=128, n3x3=192, double_3x3_reduce=160, double_3x3=192, pool="avg", pool_proj=128,
               stride=1),  # 4d
        ),
        (  # 4e reduces 14 -> 7
            _B(n1x1=0, n3x3_reduce=128, n3x3=192, double_3x3_reduce=192, double_3x3=256, pool="max", pool_proj=0,
               stride=2),  # 4e
            _B(n1x1=352, n3x3_reduce=192, n3x3=320, double_3x3_reduce=160, double_3x3=224, pool="avg",
               pool_proj=128, stride=1),  # 5a
            _B(n1x1=352, n3x3_reduce=192, n3x3=320, double_3x3_reduce=192, double_3x3=224, pool="max",
               pool_proj=128, stride=1),  # 5b
        ),
    )
    stage_pools: Row = (3, 0, 0)  # max pool k x k / 2 before a stage (0: the stage reduces itself)
    conv_bias: bool = True  # the Caffe reference keeps a bias before every BN
    bn_eps: float = 1e-5
    width_mult: float = 1.0


def bn_inception_module(spatial_dims: int, in_channels: int, row: BNInceptionModule, spec: BNInceptionSpec) -> Concat:
    """Figure 5's module: 1x1, 1x1 -> 3x3, 1x1 -> 3x3 -> 3x3, pool (-> 1x1), concatenated;
    with stride 2 the last convolution of each 3x3 branch and the max pool reduce the grid."""
    d, norm = spatial_dims, _batch_norm(spatial_dims, spec.bn_eps)
    n1, n3r, n3, nd3r, nd3, pool_type, proj, stride = row
    n1, n3r, n3, nd3r, nd3 = (_scale(c, spec.width_mult) if c else 0 for c in (n1, n3r, n3, nd3r, nd3))
    proj = _scale(proj, spec.width_mult) if proj else 0

    def conv(cin: int, cout: int, k: int, s: int = 1) -> nn.Module:
        return L.ConvNormAct(d, cin, cout, k, s, norm_layer=norm, bias=spec.conv_bias)

    branches: dict[str, nn.Module] = {}
    if n1:
        branches["branch1x1"] = conv(in_channels, n1, 1)
    branches["branch3x3"] = nn.Sequential(conv(in_channels, n3r, 1), conv(n3r, n3, 3, stride))
    branches["branch3x3dbl"] = nn.Sequential(conv(in_channels, nd3r, 1), conv(nd3r, nd3, 3), conv(nd3, nd3, 3, stride))
    # 3x3/1 pad 1 as Caffe's (or, with stride 2, ceil-mode 3x3/2 at even sizes; see layers.SamePool).
    pool = L.SamePool("max" if stride > 1 else pool_type, d, 3, stride)
    branches["branch_pool"] = nn.Sequential(pool, conv(in_channels, proj, 1)) if proj else pool
    return Concat(branches, n1 + n3 + nd3 + (proj or in_channels))


class BNInception(InceptionNet):
    """BN-Inception: ``stem`` (conv1 7x7/2, pool, conv2 1x1, conv3 3x3), ``stages`` 3, 4, 5 of
    Figure 5 (``stages[0].blocks`` = 3a, 3b; ``stages[1]`` = 3c, 4a-4d; ``stages[2]`` = 4e,
    5a, 5b), ``head`` (global average pool, fc; no dropout)."""

    def __init__(self, spec: BNInceptionSpec = BNInceptionSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.0):
        super().__init__()
        self.spec = spec
        d = self._set_common(spatial_dims, in_channels, num_classes)
        norm = _batch_norm(d, spec.bn_eps)
        w1, w2, w3 = (_scale(c, spec.width_mult) for c in spec.stem_widths)
        conv = functools.partial(L.ConvNormAct, d, norm_layer=norm, bias=spec.conv_bias)
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", conv(in_channels, w1, 7, 2))
        self.stem.add_module("pool", L.max_pool(d, 3, 2, ceil_mode=True))
        self.stem.add_module("conv2", conv(w1, w2, 1))
        self.stem.add_module("conv3", conv(w2, w3, 3))
        channels, reduction = w3, 4
        self.feature_info = [FeatureInfo(channels, reduction, "stem")]
        self.stages = nn.ModuleList()
        for i, (rows, pool) in enumerate(zip(spec.stages, spec.stage_pools)):
            blocks = []
            for row in rows:
                blocks.append(bn_inception_module(d, channels, row, spec))
                channels = blocks[-1].out_channels
                reduction *= row[-1]
            if pool:
                reduction *= 2
            self.stages.append(Stage(blocks, L.max_pool(d, pool, 2, ceil_mode=True) if pool else None))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        for m in self.modules():
            if isinstance(m, L.CONV_TYPES):
                # The Caffe model's "xavier" filler: uniform +-sqrt(3 / fan_in).
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Inception-v3


@dataclass(frozen=True)
class InceptionV3Spec:
    """Table 1 of Szegedy et al. 2016 with torchvision's widths: stem 32, 32, 64, (pool), 80,
    192; 3 x Figure 5 modules (pool features per module), grid reduction, 4 x Figure 6 modules
    (7x7 width per module), grid reduction, 2 x Figure 7 modules."""

    pool_features: Row = (32, 64, 64)  # Mixed_5b-5d
    channels_7x7: Row = (128, 160, 160, 192)  # Mixed_6b-6e
    factor_kernel: int = 7  # n of the 1xn / nx1 factorisation on the 17x17 grid (§3.2)
    bn_eps: float = 1e-3
    width_mult: float = 1.0


def _factorized(d: int, norm: Callable, in_channels: int, mid: int, out_channels: int, k: int,
                axes: tuple[int, ...]) -> list[nn.Module]:
    """A k^d kernel as one 1-D kernel of length k per axis, in the order of ``axes`` (§3.2)."""
    layers = []
    for i, axis in enumerate(axes):
        kernel = [1] * d
        kernel[axis] = k
        cout = out_channels if i == len(axes) - 1 else mid
        layers.append(L.ConvNormAct(d, in_channels if i == 0 else mid, cout, kernel, norm_layer=norm))
    return layers


class _V3Builder:
    """The five module types of torchvision's Inception-v3 (A-E), any dimension, any width."""

    def __init__(self, d: int, spec: InceptionV3Spec):
        self.d, self.spec = d, spec
        self.norm = _batch_norm(d, spec.bn_eps)
        self.last_axis_first = tuple(reversed(range(d)))  # 2-D: 1x7 then 7x1
        self.first_axis_first = tuple(range(d))  # 2-D: 7x1 then 1x7

    def w(self, channels: int) -> int:
        return _scale(channels, self.spec.width_mult)

    def conv(self, cin: int, cout: int, k, stride: int = 1, padding=None) -> nn.Module:
        return L.ConvNormAct(self.d, cin, cout, k, stride, padding, norm_layer=self.norm)

    def avg_pool_branch(self, cin: int, cout: int) -> nn.Module:
        return nn.Sequential(L.SamePool("avg", self.d), self.conv(cin, cout, 1))

    def module_a(self, cin: int, pool_features: int) -> Concat:
        """Figure 5: the 35x35 module, 5x5 kept as torchvision's 1x1 -> 5x5 branch, and a
        1x1 -> 3x3 -> 3x3 branch."""
        w, c = self.w, self.conv
        return Concat({
            "branch1x1": c(cin, w(64), 1),
            "branch5x5": nn.Sequential(c(cin, w(48), 1), c(w(48), w(64), 5)),
            "branch3x3dbl": nn.Sequential(c(cin, w(64), 1), c(w(64), w(96), 3), c(w(96), w(96), 3)),
            "branch_pool": self.avg_pool_branch(cin, pool_features),
        }, 2 * w(64) + w(96) + pool_features)

    def reduction_b(self, cin: int) -> Concat:
        """Figure 10: 35 -> 17 grid reduction by parallel stride-2 convolutions and max pool."""
        w, c = self.w, self.conv
        return Concat({
            "branch3x3": c(cin, w(384), 3, 2, "valid"),
            "branch3x3dbl": nn.Sequential(c(cin, w(64), 1), c(w(64), w(96), 3), c(w(96), w(96), 3, 2, "valid")),
            "branch_pool": L.max_pool(self.d, 3, 2),
        }, w(384) + w(96) + cin)

    def module_c(self, cin: int, c7: int) -> Concat:
        """Figure 6: the 17x17 module with n x n factorised into 1-D kernels (n = 7)."""
        w, c, k = self.w, self.conv, self.spec.factor_kernel
        f = functools.partial(_factorized, self.d, self.norm)
        return Concat({
            "branch1x1": c(cin, w(192), 1),
            "branch7x7": nn.Sequential(c(cin, c7, 1), *f(c7, c7, w(192), k, self.last_axis_first)),
            "branch7x7dbl": nn.Sequential(c(cin, c7, 1), *f(c7, c7, c7, k, self.first_axis_first),
                                          *f(c7, c7, w(192), k, self.first_axis_first)),
            "branch_pool": self.avg_pool_branch(cin, w(192)),
        }, 4 * w(192))

    def reduction_d(self, cin: int) -> Concat:
        """17 -> 8 grid reduction (§5), one branch through a factorised 7x7 first."""
        w, c, k = self.w, self.conv, self.spec.factor_kernel
        factorized = _factorized(self.d, self.norm, w(192), w(192), w(192), k, self.last_axis_first)
        return Concat({
            "branch3x3": nn.Sequential(c(cin, w(192), 1), c(w(192), w(320), 3, 2, "valid")),
            "branch7x7x3": nn.Sequential(c(cin, w(192), 1), *factorized, c(w(192), w(192), 3, 2, "valid")),
            "branch_pool": L.max_pool(self.d, 3, 2),
        }, w(320) + w(192) + cin)

    def module_e(self, cin: int) -> Concat:
        """Figure 7: the expanded 8x8 module; each 3x3 ends in one 1-D kernel per axis side by side."""
        w, c = self.w, self.conv

        def per_axis(cin_: int) -> Concat:
            convs = [c(cin_, w(384), [3 if a == axis else 1 for a in range(self.d)]) for axis in self.last_axis_first]
            return Concat(convs, w(384) * self.d)

        return Concat({
            "branch1x1": c(cin, w(320), 1),
            "branch3x3": nn.Sequential(c(cin, w(384), 1), per_axis(w(384))),
            "branch3x3dbl": nn.Sequential(c(cin, w(448), 1), c(w(448), w(384), 3), per_axis(w(384))),
            "branch_pool": self.avg_pool_branch(cin, w(192)),
        }, w(320) + 2 * w(384) * self.d + w(192))


class InceptionV3Aux(nn.Module):
    """torchvision's auxiliary head on the 17x17 grid (§4, with BN): 5x5/3 average pool,
    1x1 conv (128), 5x5 conv (768, unpadded), global average pool, fc."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, spec: InceptionV3Spec):
        super().__init__()
        d, norm = spatial_dims, _batch_norm(spatial_dims, spec.bn_eps)
        width, out = _scale(128, spec.width_mult), _scale(768, spec.width_mult)
        self.pool = L.avg_pool(d, 5, 3)
        self.conv0 = L.ConvNormAct(d, in_channels, width, 1, norm_layer=norm)
        self.conv1 = L.ConvNormAct(d, width, out, 5, padding="valid", norm_layer=norm)
        self.global_pool = L.GlobalPool("avg", flatten=True)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        out = self.conv1.conv.out_channels
        self.fc = nn.Linear(out, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)  # 5x5/3: 17 -> 5 per axis
        x = self.conv0(x)  # 1x1: (B, 128, 5, ...)
        x = self.conv1(x)  # 5x5 unpadded: (B, 768, 1, ...) at a 17 input
        x = self.global_pool(x)  # (B, 768)
        return self.fc(x)


class InceptionV3(InceptionNet):
    """Inception-v3: ``stem`` (three 3x3), ``stages[0]`` (pool, 1x1, 3x3), ``stages[1]``
    (pool, Mixed_5b-5d), ``stages[2]`` (Mixed_6a-6e), ``stages[3]`` (Mixed_7a-7c), ``head``;
    ``aux`` after Mixed_6e if aux_logits."""

    # The unpadded convolutions and reductions: 75 -> 37 -> 35 -> 35 -> 17 -> 15 -> 7 -> 3 -> 1
    # (74 leaves Mixed_7a's 3x3/2 a 2-pixel map).
    min_input_size = 75

    def __init__(self, spec: InceptionV3Spec = InceptionV3Spec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, aux_logits: bool = False, drop_rate: float = 0.5):
        super().__init__()
        self.spec = spec
        d = self._set_common(spatial_dims, in_channels, num_classes)
        b = _V3Builder(d, spec)
        w = b.w
        # Table 1's stem, unpadded except the third conv: 299 -> 149 -> 147 -> 147.
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", b.conv(in_channels, w(32), 3, 2, "valid"))
        self.stem.add_module("conv2", b.conv(w(32), w(32), 3, padding="valid"))
        self.stem.add_module("conv3", b.conv(w(32), w(64), 3))
        stages = [
            # 147 -> 73 -> 71 (80 and 192 wide).
            ([b.conv(w(64), w(80), 1), b.conv(w(80), w(192), 3, padding="valid")], L.max_pool(d, 3, 2)),
        ]
        channels = w(192)
        mixed5 = []
        for pf in spec.pool_features:  # 71 -> 35
            mixed5.append(b.module_a(channels, w(pf)))
            channels = mixed5[-1].out_channels
        stages.append((mixed5, L.max_pool(d, 3, 2)))
        mixed6 = [b.reduction_b(channels)]  # 35 -> 17
        for c7 in spec.channels_7x7:
            mixed6.append(b.module_c(mixed6[-1].out_channels, w(c7)))
        stages.append((mixed6, None))
        mixed7 = [b.reduction_d(mixed6[-1].out_channels)]  # 17 -> 8
        for _ in range(2):
            mixed7.append(b.module_e(mixed7[-1].out_channels))
        stages.append((mixed7, None))

        self.feature_info = [FeatureInfo(w(64), 2, "stem")]
        self.stages = nn.ModuleList()
        reduction = 2
        for i, (blocks, pool) in enumerate(stages):
            self.stages.append(Stage(blocks, pool))
            reduction *= 2
            self.feature_info.append(FeatureInfo(blocks[-1].out_channels if i else w(192), reduction, f"stages.{i}"))
        channels = self.feature_info[-1].channels
        if aux_logits:
            self.aux = InceptionV3Aux(d, mixed6[-1].out_channels, num_classes, spec)
            self.aux_taps["aux"] = (2, len(mixed6) - 1)
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        self._init_trunc_normal(0.1)
        if aux_logits:  # torchvision's per-layer stddev for the aux head
            nn.init.trunc_normal_(self.aux.conv1.conv.weight, std=0.01, a=-2, b=2)
            nn.init.trunc_normal_(self.aux.fc.weight, std=0.001, a=-2, b=2)


# --------------------------------------------------------------------------------------------
# Registration

_INCEPTION_MEAN = (0.5, 0.5, 0.5)  # torchvision's ported weights see inputs in [-1, 1]
_INCEPTION_STD = (0.5, 0.5, 0.5)

register("googlenet", GoogLeNet, GoogLeNetSpec(), family="inception",
         paper="Szegedy et al. Going Deeper with Convolutions. CVPR 2015", year=2015,
         mean=_INCEPTION_MEAN, std=_INCEPTION_STD,
         reference_params=6_624_904, reference="torchvision.models.googlenet (aux_logits=False)",
         extra={"tiny": {"width_mult": 0.125}})
register("inception_bn", BNInception, BNInceptionSpec(), family="inception",
         paper="Ioffe, Szegedy. Batch Normalization: Accelerating Deep Network Training by Reducing "
               "Internal Covariate Shift. ICML 2015", year=2015,
         reference_params=11_295_240,
         reference="pretrainedmodels.bninception (Caffe port; also osmr/imgclsmob bninception)",
         extra={"tiny": {"width_mult": 0.125}})
register("inception_v3", InceptionV3, InceptionV3Spec(), family="inception",
         paper="Szegedy et al. Rethinking the Inception Architecture for Computer Vision. CVPR 2016",
         year=2016, input_size=299, mean=_INCEPTION_MEAN, std=_INCEPTION_STD,
         reference_params=23_834_568,
         reference="torchvision.models.inception_v3 (aux_logits=False; 27,161,264 with aux)",
         extra={"tiny": {"width_mult": 0.0625}, "test_input": 75})
