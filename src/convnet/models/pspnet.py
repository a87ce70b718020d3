"""PSPNet: H. Zhao, J. Shi, X. Qi, X. Wang, J. Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105).

A dilated ResNet (output stride 8, §3.2: "we use a pretrained ResNet model with the dilated
network strategy") feeds the pyramid pooling module (§3.2, Fig. 3): the feature map is average
pooled to 1x1, 2x2, 3x3 and 6x6 bins, each level reduced to 1/N of the channels by a 1x1 conv
(N = 4 levels: C/4 each), upsampled back (bilinearly) and concatenated with the map itself; a
3x3 conv (512, BN, ReLU), dropout 0.1 and a 1x1 classifier follow, as in the authors' released
models (hszhao/semseg ``PSPNet.cls``). Deep supervision (§3.3, Fig. 4): an auxiliary loss on
the stage-3 (res4b22) features through a 3x3 conv to 256, BN, ReLU, dropout 0.1, 1x1 classifier,
i.e. torchvision's FCNHead on ``layer3``.

The trunk is torchvision's ResNet-50 (a 7x7 stem); the authors' own ResNets use a three-conv
deep stem ("ResNet-50-C"), which this model does not reproduce. Built on :class:`SimpleSegmentationModel`
(fcn.py) with ``head`` = :class:`PSPHead` (``ppm``, ``bottleneck``, ``drop``, ``classifier``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._registry import register
from ._segmentation import resize
from .fcn import TINY, SimpleSegmentationModel, SimpleSegSpec


class PyramidPooling(nn.Module):
    """``levels[i]``: adaptive average pool to ``bins[i]`` per axis, 1x1 conv to C/len(bins), BN,
    ReLU; upsampled and concatenated after the input (Fig. 3)."""

    def __init__(self, spatial_dims: int, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6),
                 reduction_channels: int = 0):
        super().__init__()
        reduced = reduction_channels or in_channels // len(bins)
        self.levels = nn.ModuleList()
        for b in bins:
            level = nn.Sequential()
            level.add_module("pool", L.adaptive_avg_pool(spatial_dims, b))
            level.add_module("conv", L.ConvNormAct(spatial_dims, in_channels, reduced, 1))
            self.levels.append(level)
        self.out_channels = in_channels + len(bins) * reduced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        return torch.cat([x] + [resize(level(x), size) for level in self.levels], dim=1)  # (B, 2C, *S)


class PSPHead(nn.Module):
    """``ppm``, 3x3 ``bottleneck`` (BN, ReLU), ``drop``, 1x1 ``classifier``."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, bins: tuple[int, ...],
                 channels: int = 512, drop_rate: float = 0.1):
        super().__init__()
        self.ppm = PyramidPooling(spatial_dims, in_channels, bins)
        self.bottleneck = L.ConvNormAct(spatial_dims, self.ppm.out_channels, channels, 3)
        self.drop = L.dropout(spatial_dims, drop_rate)
        self.classifier = L.conv(spatial_dims, channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.bottleneck(self.ppm(x))))


@dataclass(frozen=True)
class PSPSpec(SimpleSegSpec):
    """A PSPNet row: the torchvision-style layout with the pyramid pooling head."""

    bins: tuple[int, ...] = (1, 2, 3, 6)  # §3.2: "1x1, 2x2, 3x3 and 6x6"
    head_channels: int = 512


class PSPNet(SimpleSegmentationModel):
    """PSPNet: dilated backbone (stride 8), pyramid pooling head, auxiliary FCNHead on stage 3."""

    spec: PSPSpec
    head_cam_layer = "head.bottleneck"

    def make_head(self, in_channels: int, num_classes: int) -> nn.Module:
        return PSPHead(self.spatial_dims, in_channels, num_classes, self.spec.bins, self.spec.head_channels,
                       self.spec.drop_rate)


_PAPER = "Zhao, Shi, Qi, Wang, Jia. Pyramid Scene Parsing Network. CVPR 2017"

register("pspnet_resnet50", PSPNet, PSPSpec(backbone="resnet50"), family="pspnet", paper=_PAPER, year=2017,
         task="segment", num_classes=21, input_size=473, reference_params=48_957_802,
         reference="Zhao et al. 2017 layout (§3.2-3.3) on torchvision's ResNet-50, counted by hand in "
                   "tests/test_segmentation_models.py",
         extra={"tiny": {**TINY, "head_channels": 16}})
