"""V-Net: F. Milletari, N. Navab, S.-A. Ahmadi, "V-Net: Fully Convolutional Neural Networks for
Volumetric Medical Image Segmentation", 3DV 2016 (arXiv:1606.04797), §2 and Fig. 2.

A U-shaped network of residual stages (§2: "at each stage, a residual function is learnt": the
input of a stage is added to the output of its last convolution) of 5x5x5 convolutions with
"same" padding and PReLU non-linearities. The compression path has five stages of 1, 2, 3, 3, 3
convolutions on 16, 32, 64, 128, 256 channels, joined by 2x2x2 convolutions of stride 2 that
double the channels ("we replace pooling operations with convolutional ones"). The decompression
path mirrors it: a 2x2x2 de-convolution of stride 2 to half of the stage's channels, concatenation
with the compression stage of that resolution ("fine grained features"), a residual stage of 3, 3,
2, 1 convolutions on 256, 128, 64, 32 channels, and a final 1x1x1 convolution to two channels
(foreground and background; the paper applies a voxel-wise soft-max, here left to the loss and
the postprocess).

Documented choices where the paper leaves room:
- Stage 1 adds its input to a 16-channel output: the authors' Caffe model (faustomilletari/VNet,
  ``train_noPooling_ResNet_cinque.prototxt``) tiles the 1-channel input 16 times; with C input
  channels this model repeats them cyclically to 16 (parameter-free, the same for C = 1).
- The PReLUs have one slope per channel (Caffe's default, ``channel_shared: false``) and follow
  every convolution, down- and up-convolution; after a stage's last convolution the PReLU comes
  after the residual addition (as in the prototxt).
- The released prototxt differs from the paper's figure (compression stages of 1, 1, 2, 3, 3
  convolutions, decompression 3, 2, 1 plus a 5x5x5 convolution before the output); the spec
  follows the paper (``encoder_convs``, ``decoder_convs`` make either reachable) and no BN.

The layout holds in any dimension (1, 2 or 3). Children: ``encoder[i]`` (residual stages),
``down[i]``, ``up[i]``, ``decoder[i]`` (deepest first), ``classifier``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import FeatureInfo
from ._registry import register
from ._segmentation import SegmentationModel


@dataclass(frozen=True)
class VNetSpec:
    """One V-Net row."""

    base_width: int = 16  # stage 1's channels; each compression stage doubles them
    encoder_convs: tuple[int, ...] = (1, 2, 3, 3, 3)  # Fig. 2, left: convolutions per stage
    decoder_convs: tuple[int, ...] = (3, 3, 2, 1)  # Fig. 2, right: deepest first
    kernel_size: int = 5  # "volumetric kernels having size 5x5x5 voxels"


def _prelu(channels: int) -> nn.Module:
    return nn.PReLU(channels)


class ResidualStage(nn.Module):
    """``convs`` (k^d, same padding, PReLU after all but the last); the stage's input (or a given
    residual) is added to the last output, then ``act`` (PReLU)."""

    def __init__(self, spatial_dims: int, in_channels: int, channels: int, num_convs: int, kernel_size: int):
        super().__init__()
        units = []
        for i in range(num_convs):
            act = None if i == num_convs - 1 else functools.partial(_prelu, channels)  # the last: after the sum
            units.append(L.ConvNormAct(spatial_dims, in_channels if i == 0 else channels, channels, kernel_size,
                                       norm_layer=None, act_layer=act))
        self.convs = nn.Sequential(*units)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.act(self.convs(x) + (x if residual is None else residual))


def _resample(conv: nn.Module, channels: int) -> nn.Sequential:
    # A 2x2x2 stride-2 (de)convolution followed by its PReLU.
    out = nn.Sequential()
    out.add_module("conv", conv)
    out.add_module("act", nn.PReLU(channels))
    return out


class VNet(SegmentationModel):
    """V-Net in 1, 2 or 3 dims."""

    def __init__(self, spec: VNetSpec = VNetSpec(), spatial_dims: int = 3, in_channels: int = 1, num_classes: int = 2):
        super().__init__()
        if len(spec.decoder_convs) != len(spec.encoder_convs) - 1:
            raise ValueError(f"decoder_convs needs one entry per compression stage but the last "
                             f"({len(spec.encoder_convs) - 1}), got {spec.decoder_convs}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        k = spec.kernel_size
        widths = [spec.base_width * 2 ** i for i in range(len(spec.encoder_convs))]
        self.size_divisor = 2 ** (len(widths) - 1)
        self.encoder, self.down = nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for i, (w, n) in enumerate(zip(widths, spec.encoder_convs)):
            if i > 0:
                self.down.append(_resample(L.conv(d, c, w, 2, 2, padding=0), w))  # doubles the channels
            self.encoder.append(ResidualStage(d, w if i > 0 else c, w, n, k))
            c = w
        self.up, self.decoder = nn.ModuleList(), nn.ModuleList()
        for w, n in zip(reversed(widths[:-1]), spec.decoder_convs):
            self.up.append(_resample(L.conv_transpose(d, c, w, 2, 2), w))
            self.decoder.append(ResidualStage(d, 2 * w, 2 * w, n, k))  # on the concatenation, 2w channels
            c = 2 * w
        self.classifier = L.conv(d, c, num_classes, 1)
        self.feature_info = [FeatureInfo(w, 2 ** i, f"encoder.{i}") for i, w in enumerate(widths)]
        self.cam_layer = f"decoder.{len(self.decoder) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        # Stage 1's residual: the input repeated to base_width channels (the prototxt's 16 copies).
        index = torch.arange(self.spec.base_width, device=x.device) % x.shape[1]
        skips = [self.encoder[0](x, residual=x.index_select(1, index))]
        for down, stage in zip(self.down, list(self.encoder)[1:]):
            skips.append(stage(down(skips[-1])))  # (B, C, *S) -> (B, 2C, *S/2)
        y = skips.pop()
        for up, stage in zip(self.up, self.decoder):
            y = torch.cat([up(y), skips.pop()], dim=1)  # (B, w, *2S) with the skip -> (B, 2w, *2S)
            y = stage(y)
        return self.classifier(y)


_PAPER = ("Milletari, Navab, Ahmadi. V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image "
          "Segmentation. 3DV 2016")

register("vnet", VNet, VNetSpec(), family="vnet", paper=_PAPER, year=2016, task="segment", in_channels=1,
         num_classes=2, input_size=128, mean=(0.5,), std=(0.5,), default_spatial_dims=3,
         reference_params=65_175_314,
         reference="Milletari et al. 2016 Fig. 2 (1 channel, 2 classes, per-channel PReLU), counted by hand in "
                   "tests/test_segmentation_models.py",
         extra={"tiny": {"base_width": 4, "kernel_size": 3, "encoder_convs": (1, 2, 2), "decoder_convs": (2, 1)},
                "test_input": 16})
