"""Time-series classifiers: FCN and ResNet of Wang, Yan & Oates, and InceptionTime.

- ``tsc_fcn`` and ``tsc_resnet``: Z. Wang, W. Yan, T. Oates, "Time Series Classification from
  Scratch with Deep Neural Networks: A Strong Baseline", IJCNN 2017 (arXiv:1611.06455), Fig. 1.
  FCN: three convolutions of 128, 256, 128 filters with kernels 8, 5, 3, each followed by batch
  norm and ReLU, then global average pooling and a softmax classifier. ResNet: three residual
  blocks of 64, 128, 128 filters, each three convolutions (kernels 8, 5, 3, BN, ReLU after the
  first two), a shortcut (1x1 convolution + BN where the width changes, BN alone where it does
  not), the addition, ReLU; then global average pooling and the classifier.
- ``inception_time``: H. Ismail Fawaz et al., "InceptionTime: Finding AlexNet for Time Series
  Classification", Data Mining and Knowledge Discovery 34, 2020 (arXiv:1909.04939), §3 and
  Fig. 1-2: six Inception modules, a residual connection (1x1 convolution + BN) over every
  three, global average pooling and the classifier. A module: a 1x1 bottleneck of 32 filters
  (only where the input has more than one channel), three convolutions of 32 filters with
  kernels 40, 20, 10 on it, a 3-wide max pool (stride 1) on the module's input followed by a
  1x1 convolution of 32 filters, the four concatenated (128 channels), BN, ReLU.

Layouts follow the authors' published Keras code, which fixes what the papers leave open:
hfawaz/dl-4-tsc ``classifiers/fcn.py`` and ``classifiers/resnet.py`` (convolutions keep their
bias before BN, "same" padding) and hfawaz/InceptionTime ``classifiers/inception.py``
(``kernel_size=41`` minus one, halved twice: 40, 20, 10, the even kernels padded "same" with the
extra element after the sequence as TensorFlow does; no bias in any module or shortcut
convolution; the bottleneck skipped for a univariate input). Keras' batch norm defaults are kept
(epsilon 1e-3, moving-average momentum 0.99, i.e. torch momentum 0.01), and so is its
Glorot-uniform initialisation of convolutions and the classifier.

InceptionTime "is an ensemble of five Inception networks, each one initialised randomly" (§3.1)
whose softmax outputs are averaged. The trainer trains one network per run, so the ensemble is
a helper over trained members rather than a registered model: train ``inception_time`` five
times (five seeds) and wrap the five networks in :class:`SoftmaxEnsemble`.

Every network here is N-d (the house rule): the 1-D networks of the papers are the default
(``create_model("inception_time")`` builds 1-D), and ``spatial_dims=2`` or 3 gives the same
layout with k x k (x k) kernels. Input: (B, channels, length) float, z-normalised per series
(see ``convnet.data.timeseries``); any length.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage
from ._registry import register


def _keras_batch_norm(spatial_dims: int) -> Callable[[int], nn.Module]:
    # Keras' BatchNormalization defaults: epsilon 1e-3, momentum 0.99 (torch counts 1 - 0.99).
    return functools.partial(L.norm, "batch", spatial_dims, eps=1e-3, momentum=0.01)


def _init_glorot(model: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform kernels, zero biases; BN weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, (*L.CONV_TYPES, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# FCN and ResNet (Wang, Yan, Oates 2017)


@dataclass(frozen=True)
class WangSpec:
    """One row of the FCN / ResNet table (Wang et al. 2017, Fig. 1)."""

    widths: tuple[int, ...] = (128, 256, 128)  # filters per convolution (FCN) or per block (ResNet)
    kernels: tuple[int, ...] = (8, 5, 3)  # the kernels of the three convolutions (of each block)
    residual: bool = False  # False: FCN (one convolution per stage); True: ResNet blocks


class ResidualBlock(nn.Module):
    """Wang et al.'s ResNet block: conv-BN-ReLU, conv-BN-ReLU, conv-BN; a shortcut (1x1 conv + BN
    where the width changes, BN alone where it does not, as dl-4-tsc's third block); add; ReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, width: int, kernels: Sequence[int]):
        super().__init__()
        d, norm = spatial_dims, _keras_batch_norm(spatial_dims)
        convs, channels = [], in_channels
        for i, k in enumerate(kernels):
            last = i == len(kernels) - 1
            convs.append(L.ConvNormAct(d, channels, width, k, padding="same", norm_layer=norm,
                                       act_layer=None if last else "relu", bias=True))
            channels = width
        self.convs = nn.Sequential(*convs)
        if in_channels != width:
            self.shortcut = L.ConvNormAct(d, in_channels, width, 1, norm_layer=norm, act_layer=None, bias=True)
        else:
            self.shortcut = norm(width)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class WangNet(ConvNetClassifier):
    """FCN or ResNet of Wang et al.: ``stages[i]`` (one convolution or one residual block each),
    ``head`` (global average pooling, linear classifier). No stride anywhere: every stage keeps
    the input's length."""

    def __init__(self, spec: WangSpec = WangSpec(), spatial_dims: int = 1, in_channels: int = 1,
                 num_classes: int = 2, drop_rate: float = 0.0):
        super().__init__()
        if len(spec.widths) < 1 or (not spec.residual and len(spec.kernels) != len(spec.widths)):
            raise ValueError(f"FCN needs one kernel per width, got widths {spec.widths} and kernels {spec.kernels}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        norm = _keras_batch_norm(d)
        self.stem = nn.Identity()  # the first stage already reads the raw series
        self.stages = nn.ModuleList()
        self.feature_info = []
        channels = in_channels
        for i, width in enumerate(spec.widths):
            if spec.residual:
                block = ResidualBlock(d, channels, width, spec.kernels)
            else:
                block = L.ConvNormAct(d, channels, width, spec.kernels[i], padding="same", norm_layer=norm, bias=True)
            self.stages.append(Stage([block]))
            channels = width
            self.feature_info.append(FeatureInfo(channels, 1, f"stages.{i}"))
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"  # Wang et al. §3 draw their CAM there
        _init_glorot(self)


# --------------------------------------------------------------------------------------------
# InceptionTime (Ismail Fawaz et al. 2020)


@dataclass(frozen=True)
class InceptionTimeSpec:
    """InceptionTime's hyperparameters (§3, and hfawaz/InceptionTime's defaults)."""

    depth: int = 6  # Inception modules
    filters: int = 32  # per branch: a module outputs 4 x filters channels
    bottleneck: int = 32  # 1x1 bottleneck width (0: none)
    kernels: tuple[int, ...] = (40, 20, 10)  # the reference code's kernel_size 41 - 1, halved twice
    residual_every: int = 3  # a shortcut over every this many modules (0: none)


class InceptionModule(nn.Module):
    """Fig. 2: bottleneck, three convolutions of different lengths on it, and max pool + 1x1 on
    the module's input; concatenated, BN, ReLU. Convolutions have no bias (the reference)."""

    def __init__(self, spatial_dims: int, in_channels: int, spec: InceptionTimeSpec):
        super().__init__()
        d = spatial_dims
        # The reference skips the bottleneck when the input has a single channel.
        use_bottleneck = spec.bottleneck > 0 and in_channels > 1
        self.bottleneck = L.conv(d, in_channels, spec.bottleneck, 1, bias=False) if use_bottleneck else nn.Identity()
        mid = spec.bottleneck if use_bottleneck else in_channels
        self.branches = nn.ModuleList(L.conv(d, mid, spec.filters, k, padding="same", bias=False)
                                      for k in spec.kernels)
        # MaxPool1D(3, strides=1, padding="same"): pad 1 each side, padded values never win.
        self.pool = L.max_pool(d, 3, 1, 1)
        self.pool_proj = L.conv(d, in_channels, spec.filters, 1, bias=False)
        self.out_channels = spec.filters * (len(spec.kernels) + 1)
        self.norm = _keras_batch_norm(d)(self.out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        outs = [branch(z) for branch in self.branches]
        outs.append(self.pool_proj(self.pool(x)))
        return self.act(self.norm(torch.cat(outs, 1)))  # (B, 4 * filters, *S)


class InceptionStage(Stage):
    """``blocks`` (Inception modules) and, over them, the residual ``shortcut`` of §3.1:
    1x1 convolution (no bias) + BN on the stage's input, added to the last module's output, ReLU.
    ``shortcut`` is None for a trailing run of modules shorter than ``residual_every``."""

    def __init__(self, blocks: list[nn.Module], shortcut: nn.Module | None):
        super().__init__(blocks)
        self.shortcut = shortcut
        self.act = nn.ReLU(inplace=True) if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        if self.shortcut is None:
            return out
        return self.act(out + self.shortcut(x))


class InceptionTime(ConvNetClassifier):
    """One InceptionTime network: ``stages[i]`` (``residual_every`` modules and their shortcut),
    ``head`` (global average pooling, linear classifier)."""

    def __init__(self, spec: InceptionTimeSpec = InceptionTimeSpec(), spatial_dims: int = 1, in_channels: int = 1,
                 num_classes: int = 2, drop_rate: float = 0.0):
        super().__init__()
        if spec.depth < 1 or spec.filters < 1 or not spec.kernels:
            raise ValueError(f"InceptionTime needs depth >= 1, filters >= 1 and kernels, got {spec}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        norm = _keras_batch_norm(d)
        group = spec.residual_every or spec.depth
        self.stem = nn.Identity()
        self.stages = nn.ModuleList()
        self.feature_info = []
        channels = in_channels
        for start in range(0, spec.depth, group):
            stage_in = channels
            blocks = []
            for _ in range(min(group, spec.depth - start)):
                blocks.append(InceptionModule(d, channels, spec))
                channels = blocks[-1].out_channels
            residual = spec.residual_every and len(blocks) == spec.residual_every
            shortcut = (L.ConvNormAct(d, stage_in, channels, 1, norm_layer=norm, act_layer=None, bias=False)
                        if residual else None)
            self.stages.append(InceptionStage(blocks, shortcut))
            self.feature_info.append(FeatureInfo(channels, 1, f"stages.{len(self.stages) - 1}"))
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        _init_glorot(self)


class SoftmaxEnsemble(nn.Module):
    """The average of the members' softmax outputs (InceptionTime's ensemble, §3.1).

    ``forward`` returns the logarithm of the averaged probabilities: valid logits (a softmax of
    them gives the ensemble's probabilities back, argmax its prediction, cross-entropy its
    loss), so the ensemble drops in wherever a classifier's logits are expected.

    Args:
        models: trained classifiers of the same classes (e.g. five ``inception_time`` runs).
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("SoftmaxEnsemble needs at least one model")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(-1) for m in self.members])  # (M, B, K)
        return probs.mean(0).clamp_min(torch.finfo(torch.float32).tiny).log()


# --------------------------------------------------------------------------------------------
# Registration

_WANG = "Wang, Yan, Oates. Time Series Classification from Scratch with Deep Neural Networks: A Strong Baseline. IJCNN 2017"
_INCEPTION_TIME = ("Ismail Fawaz, Lucas, Forestier, Pelletier, Schmidt, Weber, Webb, Idoumghar, Muller, Petitjean. "
                   "InceptionTime: Finding AlexNet for Time Series Classification. DMKD 2020")
# Univariate series of two classes (GunPoint's length 150) unless told; z-normalised input.
_TS = dict(family="timeseries", in_channels=1, num_classes=2, input_size=150, mean=(0.0,), std=(1.0,),
           default_spatial_dims=1)

# name: (class, spec, paper, year, tiny) -- tiny kernels are odd so that the contract tests'
# inflation (I3D) applies; the papers' even kernels are padded asymmetrically.
TIMESERIES_SPECS = {
    "tsc_fcn": (WangNet, WangSpec(widths=(128, 256, 128), kernels=(8, 5, 3)),  # Fig. 1(b)
                _WANG, 2017, {"widths": (8, 16, 8), "kernels": (7, 5, 3)}),
    "tsc_resnet": (WangNet, WangSpec(widths=(64, 128, 128), kernels=(8, 5, 3), residual=True),  # Fig. 1(c)
                   _WANG, 2017, {"widths": (4, 8, 8), "kernels": (7, 5, 3)}),
    "inception_time": (InceptionTime, InceptionTimeSpec(),  # §3 and the reference code's defaults
                       _INCEPTION_TIME, 2020, {"filters": 4, "bottleneck": 4, "kernels": (9, 5, 3), "depth": 4}),
}

for _name, (_cls, _spec, _paper, _year, _tiny) in TIMESERIES_SPECS.items():
    # No published parameter count exists (it depends on channels and classes); the counts are
    # derived layer by layer in tests/test_timeseries.py.
    register(_name, _cls, _spec, paper=_paper, year=_year, extra={"tiny": _tiny}, **_TS)
