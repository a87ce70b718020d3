"""U-Nets: the valid-convolution originals in 2-D and 3-D, and a U-Net decoder over any encoder.

- U-Net: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical
  Image Segmentation", MICCAI 2015 (arXiv:1505.04597), Fig. 1 and §2. The contracting path
  repeats two unpadded 3x3 convolutions (each followed by a ReLU) and a 2x2 max pooling of
  stride 2, doubling the channels at each step (64 ... 1024); the expansive path upsamples with a
  2x2 "up-convolution" that halves the channels, concatenates the correspondingly cropped map of
  the contracting path ("cropping is necessary due to the loss of border pixels in every
  convolution") and applies two 3x3 convolutions; a final 1x1 convolution maps the 64 channels
  to the classes. No normalisation. A 572x572 tile gives a 388x388 map (Fig. 1). With one input
  channel and two classes it has 31,030,658 parameters.
- 3-D U-Net: O. Cicek, A. Abdulkadir, S. S. Lienkamp, T. Brox, O. Ronneberger, "3D U-Net:
  Learning Dense Volumetric Segmentation from Sparse Annotation", MICCAI 2016, §2, Fig. 1. Each
  analysis layer has two 3x3x3 convolutions "each followed by a ReLU" with batch normalisation
  "before each ReLU", then 2x2x2 max pooling; the channels double *before* each pooling (32-64,
  64-128, 128-256, bottom 256-512) "to avoid bottlenecks"; each synthesis layer a 2x2x2
  up-convolution (keeping the channels: 512 -> 512), concatenation and two 3x3x3 convolutions; a
  final 1x1x1 convolution to the 3 labels. Valid convolutions: a 132x132x116 input gives
  44x44x28. "The architecture has 19069955 parameters in total" (3 input channels, 3 labels).
  That figure is reproduced exactly by counting every convolution's weights *and biases*, the
  up-convolutions' weights *without bias*, and *no* BN scale and shift (``conv_bias=True,
  upconv_bias=False, norm_affine=False``, the defaults of ``unet3d``); with BN affine parameters
  and up-convolution biases (``norm_affine=True, upconv_bias=True``) the count is 19,075,523.
- Encoder U-Net (``create_model("unet", encoder="resnet34")``): the decoder is built from the
  encoder's ``feature_info`` alone (one skip per reduction: of stages sharing one, the deepest).
  From the deepest stage up, each level upsamples by the ratio of neighbouring reductions
  (nearest neighbour, to the skip's exact size), concatenates the skip and applies two 3x3
  ConvNormAct (padded); decoder widths are the skips' channels capped at 256. When the shallowest
  stage is itself reduced (ResNet's stride 4) the map is upsampled to the input size for a last
  block without skip (half the width, at least 16); a 1x1 convolution classifies. Inputs must be
  multiples of the deepest reduction (``size_divisor``), as in segmentation_models_pytorch, so
  that every skip lines up with the upsampled map.

Every model runs in 1, 2 or 3 dims (the layouts hold in any dimension). Children: ``encoder``
(levels of the contracting path), ``bottom``, ``decoder`` (levels, deepest first, each with
``up`` and ``convs``), ``classifier``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._base import FeatureInfo
from ._features import FeatureExtractor
from ._registry import create_model, get_entry, register
from ._segmentation import SegmentationModel, center_crop, norm_without_affine


@dataclass(frozen=True)
class UNetSpec:
    """One row of the U-Net table."""

    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)  # output channels of each level, the last is the bottom
    convs_per_level: int = 2
    kernel_size: int = 3
    padding: str = "valid"  # "valid" (the papers: no padding, output smaller) or "same"
    first_conv_halves: bool = False  # Cicek: the first conv of an analysis level outputs half (32 then 64)
    upconv_halves: bool = True  # Ronneberger: the up-conv halves the channels; Cicek: it keeps them
    norm_layer: str | None = None  # None (Ronneberger) or "batch" (Cicek)
    norm_affine: bool = True  # BN scale and shift (Cicek's count has none)
    conv_bias: bool = True  # Cicek's count includes conv biases even before BN
    upconv_bias: bool = True  # Cicek's count has none


class ConvBlock(nn.Sequential):
    """``convs_per_level`` k x k ConvNormAct units (``conv0``, ``conv1``, ...)."""

    def __init__(self, spatial_dims: int, channels: Sequence[int], kernel_size: int, padding: str | None,
                 norm_layer: Any, bias: bool | None):
        super().__init__()
        for i, (a, b) in enumerate(zip(channels, channels[1:])):
            self.add_module(f"conv{i}", L.ConvNormAct(spatial_dims, a, b, kernel_size, padding=padding,
                                                      norm_layer=norm_layer, bias=bias))


class DecoderLevel(nn.Module):
    """Upsample ``x`` (``up``), crop the skip to its size, concatenate (skip first, as Fig. 1
    draws it), ``convs``."""

    def __init__(self, up: nn.Module, convs: nn.Module):
        super().__init__()
        self.up = up
        self.convs = convs

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, C, *S) -> (B, C', *2S)
        skip = center_crop(skip, x.shape[2:])
        return self.convs(torch.cat([skip, x], dim=1))


class UNet(SegmentationModel):
    """Ronneberger's U-Net and Cicek's 3-D U-Net (valid convolutions by default)."""

    def __init__(self, spec: UNetSpec = UNetSpec(), spatial_dims: int = 2, in_channels: int = 1,
                 num_classes: int = 2):
        super().__init__()
        if len(spec.widths) < 2:
            raise ValueError(f"a U-Net needs at least two levels, got widths {spec.widths}")
        if spec.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {spec.padding!r}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        norm: Any = spec.norm_layer
        if spec.norm_layer == "batch" and not spec.norm_affine:
            norm = norm_without_affine(d)
        padding = "valid" if spec.padding == "valid" else None
        bias = spec.conv_bias
        k, n = spec.kernel_size, spec.convs_per_level
        self.levels = len(spec.widths)
        self.size_divisor = 1 if spec.padding == "valid" else 2 ** (self.levels - 1)

        def channels(c_in: int, width: int, analysis: bool) -> list[int]:
            first = width // 2 if analysis and spec.first_conv_halves else width
            return [c_in, first] + [width] * (n - 1)

        self.encoder = nn.ModuleList()
        c = in_channels
        for w in spec.widths[:-1]:
            self.encoder.append(ConvBlock(d, channels(c, w, True), k, padding, norm, bias))
            c = w
        self.pool = L.max_pool(d, 2, 2)
        self.bottom = ConvBlock(d, channels(c, spec.widths[-1], True), k, padding, norm, bias)
        c = spec.widths[-1]
        self.decoder = nn.ModuleList()
        for w in reversed(spec.widths[:-1]):
            up_channels = c // 2 if spec.upconv_halves else c
            up = L.conv_transpose(d, c, up_channels, 2, 2, bias=spec.upconv_bias)
            self.decoder.append(DecoderLevel(up, ConvBlock(d, channels(w + up_channels, w, False), k, padding,
                                                           norm, bias)))
            c = w
        self.classifier = L.conv(d, c, num_classes, 1)
        self.feature_info = [FeatureInfo(w, 2 ** i, f"encoder.{i}") for i, w in enumerate(spec.widths[:-1])]
        self.feature_info.append(FeatureInfo(spec.widths[-1], 2 ** (self.levels - 1), "bottom"))
        self.cam_layer = f"decoder.{self.levels - 2}"

    def axis_output_size(self, size: int) -> int:
        """Ronneberger's size arithmetic along one axis: every valid k x k conv takes k - 1,
        every pooling needs an even extent and halves it, every up-convolution doubles."""
        if size < 1:
            raise ValueError(f"an extent must be positive, got {size}")
        shrink = self.spec.convs_per_level * (self.spec.kernel_size - 1) if self.spec.padding == "valid" else 0
        s = size
        for level in range(self.levels - 1):
            s -= shrink
            if s < 2:
                raise ValueError(f"the maps of level {level} would be {s} wide before pooling")
            if s % 2:
                raise ValueError(f"level {level}'s maps would be {s} wide, odd before a 2x2 pooling")
            s //= 2
        s -= shrink
        if s < 1:
            raise ValueError(f"the bottom level's maps would be {s} wide")
        for _ in range(self.levels - 1):
            s = 2 * s - shrink
        if s < 1:
            raise ValueError(f"the output would be {s} wide")
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
            x = self.pool(x)  # (B, C, *S) -> (B, C, *S/2)
        x = self.bottom(x)
        for level, skip in zip(self.decoder, reversed(skips)):
            x = level(x, skip)
        return self.classifier(x)


# -- a U-Net decoder over any encoder ---------------------------------------------------------------

class SkipLevel(nn.Module):
    """One level of the encoder U-Net's decoder: nearest-neighbour upsampling of ``x`` to the
    skip's size (the ratio of the two reductions when the encoder pads; also right for encoders
    whose unpadded stems leave maps a few positions short of size / reduction), concatenation
    (skip first), ``convs``."""

    def __init__(self, convs: nn.Module, scale: int):
        super().__init__()
        self.convs = convs
        self.scale = scale  # reduction ratio to the deeper level, for the reader

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")  # (B, C, *S/r') -> (B, C, *S/r)
        return self.convs(torch.cat([skip, x], dim=1))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class EncoderUNet(SegmentationModel):
    """A U-Net decoder on the stages of a registered classifier: ``encoder`` (FeatureExtractor),
    ``decoder`` (deepest first), ``final`` (upsampling to the input when needed), ``classifier``."""

    def __init__(self, encoder: str, spatial_dims: int = 2, in_channels: int = 3, num_classes: int = 2,
                 encoder_overrides: dict[str, Any] | None = None, decoder_channels: Sequence[int] | None = None,
                 decoder_max_channels: int = 256, norm_layer: str = "batch"):
        super().__init__()
        if get_entry(encoder).task != "classify":
            raise ValueError(f"encoder {encoder!r} is a {get_entry(encoder).task} model; choose a classifier "
                             "(convnet.list_models(task='classify'))")
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        trunk = create_model(encoder, spatial_dims=d, in_channels=in_channels, **(encoder_overrides or {}))
        # One skip per reduction: of stages sharing a reduction, the deepest.
        info: list[FeatureInfo] = []
        for f in trunk.feature_info:
            if info and info[-1].reduction == f.reduction:
                info[-1] = f
            else:
                info.append(f)
        self.encoder = FeatureExtractor(trunk, feature_info=info)
        self.feature_info = [FeatureInfo(f.channels, f.reduction, f"encoder.{f.module}")
                             for f in self.encoder.feature_info]
        skips = info[:-1]
        if decoder_channels is None:
            decoder_channels = [min(f.channels, decoder_max_channels) for f in skips]
        decoder_channels = list(decoder_channels)
        if len(decoder_channels) != len(skips):
            raise ValueError(f"decoder_channels needs one width per skip level ({len(skips)}: reductions "
                             f"{[f.reduction for f in skips]}), got {decoder_channels}")
        self.size_divisor = info[-1].reduction
        self.decoder = nn.ModuleList()
        c = info[-1].channels
        for f, deeper, width in reversed(list(zip(skips, info[1:], decoder_channels))):
            convs = ConvBlock(d, [c + f.channels, width, width], 3, None, norm_layer, None)
            self.decoder.append(SkipLevel(convs, deeper.reduction // f.reduction))
            c = width
        self.final = None
        if info[0].reduction > 1:  # a last block, without skip, at the input's resolution
            width = max(16, c // 2)
            self.final = ConvBlock(d, [c, width, width], 3, None, norm_layer, None)
            c = width
        self.classifier = L.conv(d, c, num_classes, 1)
        self.cam_layer = "final" if self.final is not None else f"decoder.{len(self.decoder) - 1}"
        if not self.decoder and self.final is None:
            self.cam_layer = self.feature_info[-1].module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.encoder(x)
        y = features[-1]
        for level, skip in zip(self.decoder, reversed(features[:-1])):
            y = level(y, skip)
        if self.final is not None:
            y = self.final(F.interpolate(y, size=x.shape[2:], mode="nearest"))  # to the input's size
        return self.classifier(y)


def unet(spec: UNetSpec = UNetSpec(), spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
         encoder: str | None = None, encoder_overrides: dict[str, Any] | None = None,
         decoder_channels: Sequence[int] | None = None) -> SegmentationModel:
    """The ``unet`` entry: Ronneberger's U-Net, or with ``encoder`` (a registered classifier's
    name) an :class:`EncoderUNet` on it (``encoder_overrides`` go to its spec, e.g. small widths)."""
    if encoder is None:
        if encoder_overrides or decoder_channels:
            raise ValueError("encoder_overrides and decoder_channels need an encoder (unet(encoder='resnet34'))")
        return UNet(spec, spatial_dims, in_channels, num_classes)
    return EncoderUNet(encoder, spatial_dims, in_channels, num_classes, encoder_overrides, decoder_channels)


_RONNEBERGER = ("Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
                "MICCAI 2015")
_CICEK = ("Cicek, Abdulkadir, Lienkamp, Brox, Ronneberger. 3D U-Net: Learning Dense Volumetric Segmentation from "
          "Sparse Annotation. MICCAI 2016")

UNET_SPEC = UNetSpec()  # Fig. 1: 64-128-256-512-1024, valid 3x3 convs, 2x2 up-convs halving
UNET3D_SPEC = UNetSpec(widths=(64, 128, 256, 512),  # Fig. 1: 32-64, 64-128, 128-256, bottom 256-512
                       first_conv_halves=True,  # "double the number of channels already before max pooling"
                       upconv_halves=False,  # the up-convolution keeps 512 (then 768 after concatenation)
                       norm_layer="batch", norm_affine=False, upconv_bias=False)  # as the paper counts

register("unet", unet, UNET_SPEC, family="unet", paper=_RONNEBERGER, year=2015, task="segment", in_channels=1,
         num_classes=2, input_size=572, mean=(0.5,), std=(0.5,), reference_params=31_030_658,
         reference="Ronneberger et al. 2015 Fig. 1, counted layer by layer (1 channel, 2 classes)",
         extra={"tiny": {"widths": (4, 8, 16)}, "test_input": 44})
register("unet3d", UNet, UNET3D_SPEC, family="unet", paper=_CICEK, year=2016, task="segment", in_channels=3,
         num_classes=3, input_size=132, mean=(0.5,), std=(0.5,), default_spatial_dims=3,
         reference_params=19_069_955,
         reference="Cicek et al. 2016 §2: 'The architecture has 19069955 parameters in total' (3 channels, 3 labels)",
         extra={"tiny": {"widths": (4, 8, 16)}, "test_input": 44})
