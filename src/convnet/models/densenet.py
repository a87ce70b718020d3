"""DenseNet: G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017 (arXiv:1608.06993).

Inside a dense block every layer receives the concatenation of all earlier feature maps of the
block and adds ``k`` (the growth rate) new ones: x_l = H_l([x_0, x_1, ..., x_{l-1}]) (Eq. 2).
H_l is the pre-activation composite BN-ReLU-Conv3x3 (§3, "Composite function"); DenseNet-B puts
a BN-ReLU-Conv1x1 bottleneck of ``bn_size * k`` = 4k maps in front of it ("Bottleneck layers").
Between blocks a transition BN-ReLU-Conv1x1-AvgPool2 halves the resolution and, in DenseNet-C,
compresses the m maps to floor(theta * m) with theta = 0.5 ("Compression"); DenseNet-BC has both.
A final BN-ReLU precedes global average pooling and the linear classifier.

Two stems: ImageNet (Table 1) uses a 7x7/2 convolution of 2k maps with BN-ReLU and a 3x3/2 max
pool, the layout of torchvision's densenet121/169/201/161 (whose counts these reproduce); the
CIFAR networks (§4.2, Table 2) use one bare 3x3 convolution of 16 maps (2k for DenseNet-BC) that
the first dense layer pre-activates, as the authors' code (liuzhuang13/DenseNet, densenet.lua).

Layout: ``stem``, ``stages[i]`` (``transition`` from stage 1 on, then ``blocks[j]``: dense layers
with ``bottleneck`` and ``conv`` units), ``final_norm``, ``final_act``, ``head``. ``stages[i]``
returns dense block i's output, so feature_info has one entry per dense block.

``memory_efficient=True`` recomputes the concatenation and the first BN-ReLU-Conv of each dense
layer in the backward pass instead of storing them (Pleiss et al. 2017, "Memory-Efficient
Implementation of DenseNets"; torchvision's ``memory_efficient``): memory grows linearly rather
than quadratically with depth. Unlike a plain ``torch.utils.checkpoint``, the recomputation here
leaves the batch-norm running statistics untouched, so they match the ordinary forward exactly.
"""
from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, init_he
from ._registry import register


@dataclass(frozen=True)
class DenseNetSpec:
    """One row of the DenseNet spec table (Table 1 for ImageNet, Table 2 for CIFAR)."""

    growth_rate: int = 32  # k, maps each dense layer adds
    depths: tuple[int, ...] = (6, 12, 24, 16)  # dense layers per block
    stem_width: int = 64  # maps before the first dense block (2k in DenseNet-BC)
    bn_size: int = 4  # bottleneck width in multiples of k; 0: no bottleneck (plain DenseNet)
    compression: float = 0.5  # theta of the transitions; 1.0: no compression
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv-BN-ReLU + 3x3/2 max pool; "cifar": 3x3 conv


class PreActConv(nn.Sequential):
    """Normalisation, activation, then a bias-free convolution (the composite function H, §3)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int,
                 norm_layer: str = "batch", act_layer: str = "relu"):
        super().__init__()
        self.norm = L.norm(norm_layer, spatial_dims, in_channels)
        # In place only after a norm that made a fresh tensor: otherwise the activation would
        # overwrite the concatenated features other layers (and feature hooks) still read.
        self.act = L.act(act_layer, inplace=not isinstance(self.norm, nn.Identity))
        self.conv = L.conv(spatial_dims, in_channels, out_channels, kernel_size, bias=False)


class Transition(PreActConv):
    """BN-ReLU-Conv1x1 to ``out_channels`` (compression), then 2x average pooling (§3)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 norm_layer: str = "batch", act_layer: str = "relu"):
        super().__init__(spatial_dims, in_channels, out_channels, 1, norm_layer, act_layer)
        self.pool = L.avg_pool(spatial_dims, 2, 2)


@contextlib.contextmanager
def _frozen_norm_statistics(module: nn.Module) -> Iterator[None]:
    """Run a recomputation without touching batch-norm running statistics.

    The recomputed forward normalises with the batch statistics exactly as the first pass did;
    momentum 0 keeps the running averages, and the batch counter is restored afterwards.
    """
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training:
            saved.append((m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class DenseLayer(nn.Module):
    """H_l of Eq. 2 on the concatenation of all earlier maps: [BN-ReLU-Conv1x1 (``bottleneck``,
    bn_size*k maps)], BN-ReLU-Conv3x3 (``conv``, k maps), optional dropout."""

    def __init__(self, spatial_dims: int, in_channels: int, growth_rate: int, bn_size: int = 4,
                 norm_layer: str = "batch", act_layer: str = "relu",
                 drop_rate: float = 0.0, memory_efficient: bool = False):
        super().__init__()
        d = spatial_dims
        if bn_size > 0:
            self.bottleneck = PreActConv(d, in_channels, bn_size * growth_rate, 1, norm_layer, act_layer)
            self.conv = PreActConv(d, bn_size * growth_rate, growth_rate, 3, norm_layer, act_layer)
        else:
            self.bottleneck = None
            self.conv = PreActConv(d, in_channels, growth_rate, 3, norm_layer, act_layer)
        # Dropout after the layer's output, as torchvision's drop_rate (the paper's C10/C100
        # runs without augmentation use 0.2 after each convolution, §4.2).
        self.drop = L.dropout(None, drop_rate)
        self.memory_efficient = memory_efficient

    def _first_unit(self) -> nn.Module:
        return self.bottleneck if self.bottleneck is not None else self.conv

    def _concat_first(self, *features: torch.Tensor) -> torch.Tensor:
        # The concatenation and the BN-ReLU on it are the wide tensors (all earlier maps).
        return self._first_unit()(torch.cat(features, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: the block input and every earlier layer's output, each (B, C_i, *S)."""
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            unit = self._first_unit()
            x = checkpoint(self._concat_first, *features, use_reentrant=False,
                           context_fn=lambda: (contextlib.nullcontext(), _frozen_norm_statistics(unit)))
        else:
            x = self._concat_first(*features)
        if self.bottleneck is not None:
            x = self.conv(x)
        return self.drop(x)  # (B, k, *S)


class DenseStage(nn.Module):
    """A transition (stages after the first) and one dense block; returns the block's output,
    the concatenation of its input and every layer's k new maps."""

    def __init__(self, transition: nn.Module, blocks: list[DenseLayer]):
        super().__init__()
        self.transition = transition
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.transition(x)]
        for block in self.blocks:
            features.append(block(features))
        return torch.cat(features, 1)  # (B, C_in + n*k, *S)


class DenseNet(ConvNetClassifier):
    """DenseNet in 1, 2 or 3 dims: ``stem``, ``stages[i].transition``, ``stages[i].blocks[j]``,
    ``final_norm``, ``final_act``, ``head``.

    Args:
        spec: the variant (growth rate, layers per block, stem, bottleneck, compression).
        act_layer, norm_layer: the activation and normalisation of every composite function.
        drop_rate: dropout before the classifier.
        dense_drop_rate: dropout on each dense layer's new maps.
        memory_efficient: recompute concatenations in the backward pass (see module docstring).
    """

    def __init__(self, spec: DenseNetSpec = DenseNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, act_layer: str = "relu", norm_layer: str = "batch",
                 drop_rate: float = 0.0, dense_drop_rate: float = 0.0, memory_efficient: bool = False):
        super().__init__()
        _check_spec(spec)
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        if spec.stem == "imagenet":
            # Table 1: 7x7 conv, stride 2, then 3x3 max pool, stride 2 (as ResNet's stem).
            self.stem = L.resnet_stem(d, in_channels, spec.stem_width, norm_layer=norm_layer, act_layer=act_layer)
            reduction = 4
        else:
            # §3 "Implementation details": one 3x3 convolution; no BN-ReLU, the first dense
            # layer's pre-activation normalises it (authors' densenet.lua, bias removed).
            self.stem = nn.Sequential(OrderedDict(conv=L.ConvNormAct(d, in_channels, spec.stem_width, 3, 1,
                                                                     norm_layer=None, act_layer=None, bias=False)))
            reduction = 1
        channels = spec.stem_width
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i, depth in enumerate(spec.depths):
            if i == 0:
                transition: nn.Module = nn.Identity()
            else:
                # §3 "Compression": a transition emits floor(theta * m) maps.
                out = math.floor(spec.compression * channels)
                transition = Transition(d, channels, out, norm_layer, act_layer)
                channels, reduction = out, reduction * 2
            blocks = []
            for j in range(depth):
                blocks.append(DenseLayer(d, channels + j * spec.growth_rate, spec.growth_rate, spec.bn_size,
                                         norm_layer, act_layer, dense_drop_rate, memory_efficient))
            channels += depth * spec.growth_rate  # Eq. 2: each layer adds k maps
            self.stages.append(DenseStage(transition, blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        # The last block's maps only pass through BN-ReLU before pooling (Table 1, "7x7 global
        # average pool"); as timm, the last feature entry is that normalised map.
        self.final_norm = L.norm(norm_layer, d, channels)
        self.final_act = L.act(act_layer)  # not in place: it is the CAM layer, hooks read it
        self.feature_info[-1] = FeatureInfo(channels, reduction, "final_act")
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = "final_act"
        self._init_weights()

    def _init_weights(self) -> None:
        # The authors' code: N(0, sqrt(2 / (k*k*out))) convolutions ("following ResNet", i.e. He
        # fan-out), BN weight 1 and bias 0, zero linear bias.
        init_he(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stages(x)
        return self.final_act(self.final_norm(x))


def _check_spec(spec: DenseNetSpec) -> None:
    if spec.stem not in ("imagenet", "cifar"):
        raise ValueError(f"DenseNetSpec.stem must be 'imagenet' or 'cifar', got {spec.stem!r}")
    if not 0.0 < spec.compression <= 1.0:
        raise ValueError(f"DenseNetSpec.compression (theta) must be in (0, 1], got {spec.compression!r}")
    if spec.growth_rate < 1 or spec.stem_width < 1 or spec.bn_size < 0:
        raise ValueError(f"DenseNetSpec needs growth_rate >= 1, stem_width >= 1, bn_size >= 0; got {spec}")
    if not spec.depths or any(n < 1 for n in spec.depths):
        raise ValueError(f"DenseNetSpec.depths needs at least one block of >= 1 layers, got {spec.depths!r}")


_PAPER = ("Huang, Liu, van der Maaten, Weinberger. Densely Connected Convolutional Networks. "
          "CVPR 2017")
_TV = "torchvision.models.densenet"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# ImageNet, Table 1 (DenseNet-BC); counts from torchvision's reference implementation.
DENSENET_SPECS: dict[str, dict] = {
    "densenet121": dict(spec=DenseNetSpec(growth_rate=32, depths=(6, 12, 24, 16), stem_width=64),  # k = 32
                        reference_params=7_978_856),
    "densenet169": dict(spec=DenseNetSpec(growth_rate=32, depths=(6, 12, 32, 32), stem_width=64),  # k = 32
                        reference_params=14_149_480),
    "densenet201": dict(spec=DenseNetSpec(growth_rate=32, depths=(6, 12, 48, 32), stem_width=64),  # k = 32
                        reference_params=20_013_928),
    "densenet161": dict(spec=DenseNetSpec(growth_rate=48, depths=(6, 12, 36, 24), stem_width=96),  # k = 48, 2k stem
                        reference_params=28_681_000),
}

# CIFAR, Table 2 (10 classes, 32x32): three blocks of (L - 4) / 3 layers, halved for the
# bottleneck variants (authors' densenet.lua: N = (depth - 4) / 3, / 2 with bottleneck).
# Table 2 rounds the counts (0.8M, 15.3M, 1.0M); the exact ones are derived layer by layer in
# tests/test_densenet.py and the BC-100 one equals osmr/imgclsmob's DenseNet-BC-100 (k=12)
# CIFAR-10 table (769,162).
CIFAR_SPECS: dict[str, dict] = {
    # DenseNet-BC, L=100, k=12: 0.8M in Table 2.
    "densenet_bc100_cifar": dict(spec=DenseNetSpec(growth_rate=12, depths=(16, 16, 16), stem_width=24, bn_size=4,
                                                   compression=0.5, stem="cifar"),
                                 reference_params=769_162,
                                 reference="Table 2 (0.8M); exact: osmr/imgclsmob CIFAR-10 table, derived in tests"),
    # DenseNet-BC, L=250, k=24: 15.3M in Table 2.
    "densenet_bc250_cifar": dict(spec=DenseNetSpec(growth_rate=24, depths=(41, 41, 41), stem_width=48, bn_size=4,
                                                   compression=0.5, stem="cifar"),
                                 reference_params=15_324_406,
                                 reference="Table 2 (15.3M); exact count derived layer by layer in tests"),
    # DenseNet, L=40, k=12, no bottleneck, no compression, 16-map stem (§3): 1.0M in Table 2.
    "densenet40_cifar": dict(spec=DenseNetSpec(growth_rate=12, depths=(12, 12, 12), stem_width=16, bn_size=0,
                                               compression=1.0, stem="cifar"),
                             reference_params=1_019_722,
                             reference="Table 2 (1.0M); exact count derived layer by layer in tests"),
}


def _tiny(spec: DenseNetSpec) -> dict:
    return {"growth_rate": 4, "stem_width": 8, "depths": (1,) * len(spec.depths), "bn_size": min(spec.bn_size, 2)}


for _name, _row in DENSENET_SPECS.items():
    register(_name, DenseNet, family="densenet", paper=_PAPER, year=2017, reference=_TV,
             extra={"tiny": _tiny(_row["spec"])}, **_row)

for _name, _row in CIFAR_SPECS.items():
    register(_name, DenseNet, family="densenet", paper=_PAPER, year=2017, num_classes=10, input_size=32,
             mean=CIFAR_MEAN, std=CIFAR_STD, extra={"tiny": _tiny(_row["spec"])}, **_row)
