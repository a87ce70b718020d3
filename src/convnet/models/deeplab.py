"""DeepLab: atrous spatial pyramid pooling on a dilated backbone, and the lite R-ASPP head.

- DeepLabV3: L.-C. Chen, G. Papandreou, F. Schroff, H. Adam, "Rethinking Atrous Convolution for
  Semantic Image Segmentation", arXiv:1706.05587, 2017. ASPP (§3.3): a 1x1 convolution, three 3x3
  convolutions with atrous rates (6, 12, 18) at output stride 16, doubled to (12, 24, 36) at
  output stride 8, and image-level features (global average pooling, 1x1 conv, upsampled), each
  with 256 filters and BN, concatenated and fused by a 1x1 conv. torchvision's
  ``deeplabv3_*`` layout: output stride 8 for ResNets, rates (12, 24, 36), dropout 0.5 after the
  fusion, then a 3x3 conv, BN, ReLU and the classifier (``DeepLabHead``); an auxiliary FCNHead.
- DeepLabV3+: L.-C. Chen, Y. Zhu, G. Papandreou, F. Schroff, H. Adam, "Encoder-Decoder with
  Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018. An encoder at output
  stride 16 (ASPP rates 6, 12, 18) and a decoder (§3.1, Fig. 2): the encoder features upsampled
  by 4 are concatenated with the stride-4 low-level features reduced to 48 channels by a 1x1
  conv (Table 1: 48 works best), refined by two 3x3 convs of 256 filters (Table 2: "[3x3, 256]
  x 2"), classified and upsampled by 4. The ResNet version uses plain (not separable) convs.
- LR-ASPP: A. Howard et al., "Searching for MobileNetV3", ICCV 2019, §6.3, Fig. 10: on the
  output-stride-16 features, a 1x1 conv (128, BN, ReLU) gated by a squeeze branch (global
  pooling, 1x1 conv, sigmoid), upsampled and classified, plus a classifier on the stride-8
  features; torchvision's ``lraspp_mobilenet_v3_large`` layout (its pooling is global, not the
  paper's 49x49 average pool with stride 16x20).

torchvision's MobileNetV3 models dilate the last stage (``dilated=True``: output stride 16) and tap
the stride-8 stage at its first, strided block ("C2").
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
from .fcn import TINY, SimpleSegmentationModel, SimpleSegSpec


class ASPPPooling(nn.Module):
    """Image-level features (§3.3): global average pooling, 1x1 conv, BN, ReLU, broadcast back
    to the map's size (torchvision upsamples the 1x1 map bilinearly, which is the same)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = L.GlobalPool("avg", flatten=False)
        self.conv = L.ConvNormAct(spatial_dims, in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.pool(x))  # (B, C, 1, ...)
        return y.expand(-1, -1, *x.shape[2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``branches[0]`` 1x1, ``branches[1..]`` 3x3 at each rate,
    ``pooling``; concatenated and fused by ``project`` (1x1, BN, ReLU, dropout 0.5)."""

    def __init__(self, spatial_dims: int, in_channels: int, rates: tuple[int, ...], out_channels: int = 256,
                 drop_rate: float = 0.5):
        super().__init__()
        d = spatial_dims
        self.branches = nn.ModuleList([L.ConvNormAct(d, in_channels, out_channels, 1)])
        for rate in rates:
            self.branches.append(L.ConvNormAct(d, in_channels, out_channels, 3, dilation=rate))
        self.pooling = ASPPPooling(d, in_channels, out_channels)
        self.project = nn.Sequential()
        self.project.add_module("conv", L.ConvNormAct(d, (len(rates) + 2) * out_channels, out_channels, 1))
        self.project.add_module("drop", L.dropout(d, drop_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [branch(x) for branch in self.branches] + [self.pooling(x)]
        return self.project(torch.cat(parts, dim=1))  # (B, (rates + 2) * C, *S) -> (B, C, *S)


class DeepLabHead(nn.Sequential):
    """torchvision's DeepLabHead: ``aspp``, a 3x3 ``conv`` (BN, ReLU), the 1x1 ``classifier``."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, rates: tuple[int, ...] = (12, 24, 36),
                 channels: int = 256):
        super().__init__()
        self.aspp = ASPP(spatial_dims, in_channels, rates, channels)
        self.conv = L.ConvNormAct(spatial_dims, channels, channels, 3)
        self.classifier = L.conv(spatial_dims, channels, num_classes, 1)


@dataclass(frozen=True)
class DeepLabSpec(SimpleSegSpec):
    """A DeepLabV3 row: the torchvision layout plus the ASPP."""

    aspp_rates: tuple[int, ...] = (12, 24, 36)
    aspp_channels: int = 256


class DeepLabV3(SimpleSegmentationModel):
    """DeepLabV3 in torchvision's layout: dilated backbone, DeepLabHead, auxiliary FCNHead."""

    spec: DeepLabSpec

    def make_head(self, in_channels: int, num_classes: int) -> nn.Module:
        return DeepLabHead(self.spatial_dims, in_channels, num_classes, self.spec.aspp_rates, self.spec.aspp_channels)


# -- DeepLabV3+ -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeepLabV3PlusSpec:
    """Chen et al. 2018's encoder-decoder."""

    backbone: str = "resnet50"
    output_stride: int = 16  # §4: output stride 16 for training and the speed/accuracy trade-off
    aspp_rates: tuple[int, ...] = (6, 12, 18)  # at output stride 16 (§3.1)
    aspp_channels: int = 256
    low_level_reduction: int = 4  # "Conv2 before striding in ResNet-101" (§4.1): the stride-4 stage
    low_level_channels: int = 48  # Table 1
    decoder_channels: int = 256  # Table 2: two [3x3, 256] convs
    decoder_convs: int = 2


class DeepLabV3PlusDecoder(nn.Module):
    """``project`` (1x1 to 48, BN, ReLU) of the low-level features; ``refine``: 3x3 convs on
    the concatenation with the upsampled encoder output; ``classifier``."""

    def __init__(self, spatial_dims: int, low_channels: int, encoder_channels: int, num_classes: int,
                 spec: DeepLabV3PlusSpec):
        super().__init__()
        d = spatial_dims
        self.project = L.ConvNormAct(d, low_channels, spec.low_level_channels, 1)
        refine, channels = [], spec.low_level_channels + encoder_channels
        for _ in range(spec.decoder_convs):
            refine.append(L.ConvNormAct(d, channels, spec.decoder_channels, 3))
            channels = spec.decoder_channels
        self.refine = nn.Sequential(*refine)
        self.classifier = L.conv(d, channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = resize(high, low.shape[2:])  # output stride 16 -> 4
        x = torch.cat([high, self.project(low)], dim=1)  # (B, 256 + 48, *S/4)
        return self.classifier(self.refine(x))


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+: ``backbone`` (stride-4 and deepest stages), ``aspp``, ``decoder``."""

    def __init__(self, spec: DeepLabV3PlusSpec = DeepLabV3PlusSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 21, backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        trunk, original = segmentation_backbone(spec.backbone, d, in_channels, spec.output_stride, backbone_overrides)
        low = tap(trunk, original, spec.low_level_reduction)
        high = trunk.feature_info[-1]
        self.backbone = FeatureExtractor(trunk, feature_info=[low, high])
        self.feature_info = [FeatureInfo(f.channels, f.reduction, f"backbone.{f.module}")
                             for f in self.backbone.feature_info]
        self.aspp = ASPP(d, high.channels, spec.aspp_rates, spec.aspp_channels)
        self.decoder = DeepLabV3PlusDecoder(d, low.channels, spec.aspp_channels, num_classes, spec)
        self.cam_layer = "decoder.refine"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        low, high = self.backbone(x)
        out = self.decoder(low, self.aspp(high))  # (B, classes, *S/4)
        return resize(out, x.shape[2:])


# -- LR-ASPP --------------------------------------------------------------------------------------

class LRASPPHead(nn.Module):
    """``cbr`` (1x1, BN, ReLU) times ``scale`` (global pool, 1x1, sigmoid) on the high features,
    upsampled to the low ones; ``low_classifier`` + ``high_classifier``."""

    def __init__(self, spatial_dims: int, low_channels: int, high_channels: int, num_classes: int,
                 inter_channels: int = 128):
        super().__init__()
        d = spatial_dims
        self.cbr = L.ConvNormAct(d, high_channels, inter_channels, 1)
        self.scale = nn.Sequential()
        self.scale.add_module("pool", L.GlobalPool("avg", flatten=False))
        self.scale.add_module("conv", L.conv(d, high_channels, inter_channels, 1, bias=False))
        self.scale.add_module("gate", nn.Sigmoid())
        self.low_classifier = L.conv(d, low_channels, num_classes, 1)
        self.high_classifier = L.conv(d, inter_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = resize(x, low.shape[2:])  # output stride 16 -> 8
        return self.low_classifier(low) + self.high_classifier(x)


@dataclass(frozen=True)
class LRASPPSpec:
    backbone: str = "mobilenet_v3_large"
    output_stride: int = 16  # torchvision: mobilenet_v3_large(dilated=True)
    low_reduction: int = 8  # "C2": the first block at output stride 8
    high_reduction: int = 32  # the last stage and final 1x1 conv, dilated to 16
    tap_first_block: bool = True
    inter_channels: int = 128


class LRASPP(SegmentationModel):
    """Lite R-ASPP: ``backbone`` (low and high features), ``head``."""

    def __init__(self, spec: LRASPPSpec = LRASPPSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 21, backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        trunk, original = segmentation_backbone(spec.backbone, d, in_channels, spec.output_stride, backbone_overrides)
        low = tap(trunk, original, spec.low_reduction, spec.tap_first_block)
        high = tap(trunk, original, spec.high_reduction)
        self.backbone = FeatureExtractor(trunk, feature_info=[low, high])
        self.feature_info = [FeatureInfo(f.channels, f.reduction, f"backbone.{f.module}")
                             for f in self.backbone.feature_info]
        self.head = LRASPPHead(d, low.channels, high.channels, num_classes, spec.inter_channels)
        self.cam_layer = "head.cbr"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        low, high = self.backbone(x)
        return resize(self.head(low, high), x.shape[2:])


# -- spec tables and registration -----------------------------------------------------------------

_V3 = ("Chen, Papandreou, Schroff, Adam. Rethinking Atrous Convolution for Semantic Image Segmentation. "
       "arXiv:1706.05587, 2017")
_V3PLUS = ("Chen, Zhu, Papandreou, Schroff, Adam. Encoder-Decoder with Atrous Separable Convolution for Semantic "
           "Image Segmentation. ECCV 2018")
_MNV3 = ("Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam. Searching for MobileNetV3. "
         "ICCV 2019")
_TV = "torchvision.models.segmentation.{} (weights meta num_params, 21 classes, aux head included)"
_TINY_MOBILENET = {"backbone_overrides": {"width_mult": 0.25, "max_blocks_per_stage": 1}}
_TINY_ASPP = {"aspp_channels": 16}

# torchvision's MobileNetV3-Large taps: "C2" (the first block at stride 8) and the final 1x1 conv.
_MOBILENET = dict(backbone="mobilenet_v3_large", output_stride=16, out_reduction=32, aux_reduction=8,
                  tap_first_block=True)

# name: (spec, reference_params)
DEEPLABV3_SPECS: dict[str, tuple[DeepLabSpec, int]] = {
    "deeplabv3_resnet50": (DeepLabSpec(backbone="resnet50"), 42_004_074),
    "deeplabv3_resnet101": (DeepLabSpec(backbone="resnet101"), 60_996_202),
    "deeplabv3_mobilenet_v3_large": (DeepLabSpec(**_MOBILENET), 11_029_328),
}

for _name, (_spec, _params) in DEEPLABV3_SPECS.items():
    _tiny = _TINY_MOBILENET if "mobilenet" in _name else TINY
    register(_name, DeepLabV3, _spec, family="deeplabv3", paper=_V3, year=2017, task="segment", num_classes=21,
             input_size=520, reference_params=_params, reference=_TV.format(_name),
             extra={"tiny": {**_tiny, **_TINY_ASPP}})

register("lraspp_mobilenet_v3_large", LRASPP, LRASPPSpec(), family="lraspp", paper=_MNV3, year=2019,
         task="segment", num_classes=21, input_size=520, reference_params=3_221_538,
         reference="torchvision.models.segmentation.lraspp_mobilenet_v3_large (weights meta num_params, 21 classes)",
         extra={"tiny": {**_TINY_MOBILENET, "inter_channels": 16}})

# The count is derived layer by layer in tests/test_segmentation_models.py (no reference library
# ships this exact layout with a ResNet-50: smp's decoder uses separable convs and one 3x3 conv).
register("deeplabv3plus_resnet50", DeepLabV3Plus, DeepLabV3PlusSpec(), family="deeplabv3plus", paper=_V3PLUS,
         year=2018, task="segment", num_classes=21, input_size=513, reference_params=40_352_181,
         reference="Chen et al. 2018 layout (§3.1, Tables 1-2) on torchvision's ResNet-50, counted by hand "
                   "in tests/test_segmentation_models.py",
         extra={"tiny": {**TINY, **_TINY_ASPP, "low_level_channels": 8, "decoder_channels": 16}})
