"""Feature Pyramid Network: T.-Y. Lin, P. Dollar, R. Girshick, K. He, B. Hariharan, S. Belongie,
"Feature Pyramid Networks for Object Detection", CVPR 2017 (arXiv:1612.03144), in any number of
spatial dims, built from a backbone's ``feature_info``.

§3: each chosen backbone stage C_i gets a 1x1 lateral convolution to ``out_channels`` (the
``inner_blocks``); from the deepest down, the running map is upsampled by nearest-neighbour
interpolation to the next stage's size and added to its lateral ("top-down pathway and lateral
connections"), and every sum goes through a 3x3 convolution (``layer_blocks``) "to reduce the
aliasing effect of upsampling". The outputs P_i have ``out_channels`` (256 in the paper) and the
strides of their stages.

Extra levels past the deepest stage, as torchvision's ``ops.feature_pyramid_network``:

* :class:`LastLevelMaxPool`: P6 by subsampling P5 with stride 2 (§4.1: "a stride two
  subsampling of P5", for the RPN's 512^2 anchors), torchvision's ``max_pool2d(kernel 1,
  stride 2)``;
* :class:`LastLevelP6P7`: RetinaNet's P6 = 3x3/2 conv and P7 = 3x3/2 conv on ReLU(P6) (Lin et
  al., "Focal Loss for Dense Object Detection", ICCV 2017, §4), computed from P5 when its
  channels equal the output's (torchvision's choice; the paper computes P6 from C5).

The layout (``inner_blocks.i``, ``layer_blocks.i``, ``extra_blocks.p6/p7``) and initialisation
(Kaiming-uniform with a = 1, zero biases) are torchvision's, so its state dicts load through the
detection key maps.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ..layers.normalization import NormLayer


class LastLevelMaxPool(nn.Module):
    """One more level: the last output subsampled by 2 (a 1-wide max pool of stride 2), named ``pool``."""

    def __init__(self, spatial_dims: int = 2):
        super().__init__()
        self.pool = L.max_pool(spatial_dims, 1, 2)

    def forward(self, results: list[torch.Tensor], inputs: list[torch.Tensor], names: list[str]
                ) -> tuple[list[torch.Tensor], list[str]]:
        return results + [self.pool(results[-1])], names + ["pool"]


class LastLevelP6P7(nn.Module):
    """Two more levels, ``p6`` and ``p7``: strided 3x3 convolutions, the second after a ReLU.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: Channels of what P6 is computed from (P5's when equal to ``out_channels``,
            else the deepest backbone stage's).
        out_channels: The pyramid's channels.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__()
        self.p6 = L.conv(spatial_dims, in_channels, out_channels, 3, 2, 1)
        self.p7 = L.conv(spatial_dims, out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_p5 = in_channels == out_channels

    def forward(self, results: list[torch.Tensor], inputs: list[torch.Tensor], names: list[str]
                ) -> tuple[list[torch.Tensor], list[str]]:
        x = results[-1] if self.use_p5 else inputs[-1]
        p6 = self.p6(x)
        p7 = self.p7(F.relu(p6))
        return results + [p6, p7], names + ["p6", "p7"]


EXTRA_BLOCKS = {
    "none": lambda spatial_dims, in_channels, out_channels: None,
    "max_pool": lambda spatial_dims, in_channels, out_channels: LastLevelMaxPool(spatial_dims),
    "p6p7": LastLevelP6P7,
}


def extra_block(name: str, spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module | None:
    """An extra-levels block by name (``EXTRA_BLOCKS``)."""
    try:
        factory = EXTRA_BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown FPN extra block {name!r}; choose from {', '.join(EXTRA_BLOCKS)}") from None
    return factory(spatial_dims, in_channels, out_channels)


class FeaturePyramidNetwork(nn.Module):
    """Top-down pyramid over backbone stages, shallow to deep.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels_list: Channels of each input stage, shallow to deep.
        out_channels: Channels of every output level.
        extra_blocks: :class:`LastLevelMaxPool`, :class:`LastLevelP6P7` or None.
        norm_layer: A norm after each convolution (None in the paper and torchvision's v1 models).
        names: Names of the input levels (torchvision's "0", "1", ...); the extra block adds its own.

    ``forward(features)`` takes the stages as a list and returns an ordered dict of the output
    levels, finest first.
    """

    def __init__(self, spatial_dims: int, in_channels_list: Sequence[int], out_channels: int,
                 extra_blocks: nn.Module | None = None, norm_layer: NormLayer = None,
                 names: Sequence[str] | None = None):
        super().__init__()
        d = L.check_dims(spatial_dims)
        if any(c <= 0 for c in in_channels_list):
            raise ValueError(f"in_channels_list must be positive, got {list(in_channels_list)}")
        self.inner_blocks = nn.ModuleList()
        self.layer_blocks = nn.ModuleList()
        for in_channels in in_channels_list:
            self.inner_blocks.append(L.ConvNormAct(d, in_channels, out_channels, 1, padding=0, norm_layer=norm_layer,
                                                   act_layer=None))
            self.layer_blocks.append(L.ConvNormAct(d, out_channels, out_channels, 3, norm_layer=norm_layer,
                                                   act_layer=None))
        for m in self.modules():
            if isinstance(m, L.CONV_TYPES):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        self.extra_blocks = extra_blocks
        self.out_channels = out_channels
        self.names = list(names) if names is not None else [str(i) for i in range(len(in_channels_list))]
        if len(self.names) != len(in_channels_list):
            raise ValueError(f"names {self.names} must name each of the {len(in_channels_list)} input levels")

    def forward(self, features: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        if len(features) != len(self.inner_blocks):
            raise ValueError(f"the FPN was built for {len(self.inner_blocks)} levels, got {len(features)}")
        last_inner = self.inner_blocks[-1](features[-1])  # the deepest lateral starts the top-down path
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[idx](features[idx])
            top_down = F.interpolate(last_inner, size=lateral.shape[2:], mode="nearest")  # x2 to this level
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        names = list(self.names)
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, list(features), names)
        return OrderedDict(zip(names, results))
