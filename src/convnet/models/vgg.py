"""VGG: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556).

Stacks of 3x3 convolutions (stride 1, padding 1) with ReLU, five 2x2/2 max pools, and three
fully connected layers (4096, 4096, classes) with dropout 0.5: configurations A, B, D, E of
Table 1 are vgg11, vgg13, vgg16, vgg19. Two stacked 3x3 convolutions see a 5x5 field and three
see 7x7, with fewer parameters and more non-linearities than one large kernel (§2.3). The
``_bn`` variants add batch normalisation after every convolution, as torchvision's reference
implementation (whose layout and parameter counts these follow, including the adaptive 7x7
average pool before the classifier).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ConvNetClassifier, FeatureInfo
from ._registry import register


@dataclass(frozen=True)
class VGGSpec:
    """One row of Table 1: convolutions per stage, and the stage widths."""

    depths: tuple[int, ...] = (2, 2, 3, 3, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    batch_norm: bool = False
    fc_width: int = 4096
    pool_size: int = 7  # adaptive average pool before the classifier, per axis


class VGGHead(nn.Module):
    """Adaptive pool, flatten, fc1-ReLU-dropout, fc2-ReLU-dropout, fc3 (``fc``)."""

    def __init__(self, spatial_dims: int, channels: int, spec: VGGSpec, num_classes: int, drop_rate: float):
        super().__init__()
        self.pool = L.adaptive_avg_pool(spatial_dims, spec.pool_size)
        self.in_features = spec.fc_width
        self.fc1 = nn.Linear(channels * spec.pool_size ** spatial_dims, spec.fc_width)
        self.fc2 = nn.Linear(spec.fc_width, spec.fc_width)
        self.act = nn.ReLU(inplace=True)
        self.drop = L.dropout(None, drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C, *S) -> (B, C * pool_size^d)
        x = self.fc1(x)  # (B, fc_width)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)  # (B, fc_width)
        x = self.act(x)
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class VGG(ConvNetClassifier):
    """VGG in 1, 2 or 3 dims: ``stages[i]`` (convolutions then max pool), ``head``."""

    def __init__(self, spec: VGGSpec = VGGSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.5):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        norm = "batch" if spec.batch_norm else None
        channels, reduction = in_channels, 1
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            stage = nn.Sequential()
            for j in range(depth):
                # The convolution keeps its bias even before BN, as torchvision's vgg*_bn (whose
                # checkpoints must load), though BN's shift makes it redundant.
                stage.add_module(f"conv{j}", L.ConvNormAct(d, channels, width, 3, 1, 1, norm_layer=norm,
                                                           act_layer="relu", bias=True))
                channels = width
            stage.add_module("pool", L.max_pool(d, 2, 2))
            reduction *= 2
            self.stages.append(stage)
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.head = VGGHead(d, channels, spec, num_classes, drop_rate)
        self.cam_layer = f"stages.{len(spec.depths) - 1}"
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme: He-normal convolutions, N(0, 0.01) linear layers, zero biases.
        for m in self.modules():
            if isinstance(m, L.CONV_TYPES):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


_PAPER = "Simonyan, Zisserman. Very Deep Convolutional Networks for Large-Scale Image Recognition. ICLR 2015"
_TV = "torchvision.models.vgg"
_TINY = dict(widths=(8, 8, 16, 16, 16), fc_width=32, pool_size=2)

# Table 1 configurations A, B, D, E, and each with BN; counts from torchvision's reference implementation.
VGG_SPECS: dict[str, dict] = {
    "vgg11": dict(spec=VGGSpec(depths=(1, 1, 2, 2, 2)), reference_params=132_863_336),  # A
    "vgg11_bn": dict(spec=VGGSpec(depths=(1, 1, 2, 2, 2), batch_norm=True), reference_params=132_868_840),
    "vgg13": dict(spec=VGGSpec(depths=(2, 2, 2, 2, 2)), reference_params=133_047_848),  # B
    "vgg13_bn": dict(spec=VGGSpec(depths=(2, 2, 2, 2, 2), batch_norm=True), reference_params=133_053_736),
    "vgg16": dict(spec=VGGSpec(depths=(2, 2, 3, 3, 3)), reference_params=138_357_544),  # D
    "vgg16_bn": dict(spec=VGGSpec(depths=(2, 2, 3, 3, 3), batch_norm=True), reference_params=138_365_992),
    "vgg19": dict(spec=VGGSpec(depths=(2, 2, 4, 4, 4)), reference_params=143_667_240),  # E
    "vgg19_bn": dict(spec=VGGSpec(depths=(2, 2, 4, 4, 4), batch_norm=True), reference_params=143_678_248),
}

for _name, _row in VGG_SPECS.items():
    register(_name, VGG, family="vgg", paper=_PAPER, year=2015, reference=_TV,
             extra={"tiny": dict(_TINY, depths=(1,) * len(_row["spec"].depths))}, **_row)
