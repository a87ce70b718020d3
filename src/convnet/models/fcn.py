"""FCN: J. Long, E. Shelhamer, T. Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (arXiv:1411.4038), in the layout of torchvision's reference models.

A classifier becomes a dense predictor by dropping its pooled head and classifying every position
of its last feature map, then upsampling the class scores to the input size (§3). torchvision's
``fcn_resnet50/101`` keep Long et al.'s idea with a stronger trunk instead of the paper's VGG-16
skip architecture (FCN-32s/16s/8s): a ResNet whose last two stages are dilated (output stride 8,
``replace_stride_with_dilation=[False, True, True]``), an ``FCNHead`` (3x3 conv to C/4, BN, ReLU,
dropout 0.1, 1x1 classifier) on ``layer4`` and an auxiliary ``FCNHead`` on ``layer3`` for a
deep-supervision loss during training; both outputs are upsampled bilinearly to the input size.

:class:`SimpleSegmentationModel` is that layout (torchvision's ``_SimpleSegmentationModel``) for
any registered classifier in 1, 2 or 3 dims; DeepLabV3 (deeplab.py) and PSPNet (pspnet.py) reuse
it with other heads. Children: ``backbone`` (a FeatureExtractor returning the aux and main stages),
``head``, ``aux_head``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import layers as L
from ._base import FeatureInfo
from ._features import FeatureExtractor
from ._registry import register
from ._segmentation import SegmentationModel, resize, segmentation_backbone, tap


@dataclass(frozen=True)
class SimpleSegSpec:
    """One row of the torchvision-layout tables (FCN, DeepLabV3, PSPNet)."""

    backbone: str = "resnet50"  # a registered classifier
    output_stride: int | None = 8  # dilate the backbone to this stride (None: keep its strides)
    out_reduction: int = 32  # the stage the head reads, by its reduction before dilation
    aux_reduction: int | None = 16  # the auxiliary head's stage ("layer3"); None: no aux head
    tap_first_block: bool = False  # tap a stage's first (strided) block: torchvision's MobileNetV3 "C2"
    head_channels: int = 0  # the head's inner width; 0: the family's default (FCN: C/4)
    drop_rate: float = 0.1  # dropout before the classifier (FCNHead: 0.1)


class FCNHead(nn.Sequential):
    """torchvision's FCNHead: 3x3 conv to ``inter_channels`` (C/4 by default), BN, ReLU, dropout,
    1x1 classifier. Children ``conv`` (ConvNormAct), ``drop``, ``classifier``."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, inter_channels: int = 0,
                 drop_rate: float = 0.1):
        super().__init__()
        inter = inter_channels or in_channels // 4
        self.conv = L.ConvNormAct(spatial_dims, in_channels, inter, 3)
        self.drop = L.dropout(spatial_dims, drop_rate)
        self.classifier = L.conv(spatial_dims, inter, num_classes, 1)


class SimpleSegmentationModel(SegmentationModel):
    """A (dilated) classifier, a head on its deepest tapped stage and an optional auxiliary head
    on a shallower one; both upsampled to the input size (torchvision's layout). Subclasses give
    the head with :meth:`make_head`."""

    head_cam_layer = "head.conv"  # the last spatial layer before the classifier (Grad-CAM's target)

    def __init__(self, spec: SimpleSegSpec = SimpleSegSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 21, backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        trunk, original = segmentation_backbone(spec.backbone, d, in_channels, spec.output_stride, backbone_overrides)
        taps = [tap(trunk, original, spec.out_reduction)]
        if spec.aux_reduction is not None:
            taps.insert(0, tap(trunk, original, spec.aux_reduction, spec.tap_first_block))
        self.backbone = FeatureExtractor(trunk, feature_info=taps)
        self.feature_info = [FeatureInfo(f.channels, f.reduction, f"backbone.{f.module}")
                             for f in self.backbone.feature_info]
        self.head = self.make_head(taps[-1].channels, num_classes)
        self.aux_head = (FCNHead(d, taps[0].channels, num_classes, drop_rate=0.1)
                         if spec.aux_reduction is not None else None)
        self.cam_layer = self.head_cam_layer

    def make_head(self, in_channels: int, num_classes: int) -> nn.Module:
        return FCNHead(self.spatial_dims, in_channels, num_classes, self.spec.head_channels, self.spec.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        self.check_input(x)
        size = x.shape[2:]
        features = self.backbone(x)  # [aux stage,] main stage
        out = resize(self.head(features[-1]), size)  # (B, classes, *S / stride) -> (B, classes, *S)
        aux = None
        if self.aux_head is not None and (self.training or self.return_aux):
            aux = resize(self.aux_head(features[0]), size)
        return self.outputs(out, aux)


class FCN(SimpleSegmentationModel):
    """FCN in torchvision's layout: dilated backbone, FCNHead, auxiliary FCNHead."""


_PAPER = "Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. CVPR 2015"
# Contract tests: a one-block-per-stage ResNet of 8-16 channels (bottleneck out 64).
_TINY_RESNET = {"layers": (1, 1, 1, 1), "widths": (8, 16, 16, 16), "stem_width": 8}
TINY = {"backbone_overrides": _TINY_RESNET}

# name: (spec, reference_params). Counts with 21 classes (VOC), auxiliary head included, from
# torchvision 0.29's weight metadata (FCN_ResNet50_Weights / FCN_ResNet101_Weights "num_params").
FCN_SPECS: dict[str, tuple[SimpleSegSpec, int]] = {
    "fcn_resnet50": (SimpleSegSpec(backbone="resnet50"), 35_322_218),
    "fcn_resnet101": (SimpleSegSpec(backbone="resnet101"), 54_314_346),
}

for _name, (_spec, _params) in FCN_SPECS.items():
    register(_name, FCN, _spec, family="fcn", paper=_PAPER, year=2015, task="segment", num_classes=21,
             input_size=520, reference_params=_params,
             reference=f"torchvision.models.segmentation.{_name} (weights meta num_params, aux head included)",
             extra={"tiny": TINY})
