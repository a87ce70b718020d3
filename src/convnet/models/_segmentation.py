"""The surface every convnet segmentation model shares.

``forward(x)`` maps (B, in_channels, *S) to per-pixel logits (B, num_classes, *output_size(S)):
the input size for padded models, smaller for valid-convolution U-Nets (Ronneberger's 572 -> 388).
A model with an auxiliary head returns ``{"out": ..., "aux": ...}`` (torchvision's dict) while
training or when ``return_aux`` is True, else the ``out`` tensor. ``size_divisor`` is the factor
every input extent must be a multiple of (1: any size); ``output_size`` and ``check_input`` say
which sizes a model takes and, for one it does not, name the nearest that it does.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._base import FeatureInfo


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(Multi)linear resampling of (B, C, *S) to ``size`` with align_corners=False, the
    upsampling of torchvision's segmentation models."""
    return F.interpolate(x, size=tuple(size), mode=L.linear_mode(x.ndim - 2), align_corners=False)


def center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The centre ``size`` of (B, C, *S): Ronneberger's crop of the contracting path's maps
    ("cropping is necessary due to the loss of border pixels in every convolution", §2)."""
    index = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return x[tuple(index)]


class SegmentationModel(nn.Module):
    """Base class: input checks, size rules and the output contract. Subclasses set
    ``spatial_dims``, ``in_channels``, ``num_classes``, ``feature_info``, ``cam_layer`` and, where
    the size is constrained, ``size_divisor`` or their own :meth:`axis_output_size`."""

    spatial_dims: int
    in_channels: int
    num_classes: int
    feature_info: list[FeatureInfo]
    cam_layer: str | None = None
    size_divisor: int = 1
    return_aux: bool = False
    default_cfg: dict[str, Any] = {}

    # -- sizes ---------------------------------------------------------------------------------

    def axis_output_size(self, size: int) -> int:
        """The output extent along one axis for an input extent ``size``; a ValueError saying
        why when the model cannot take it. Padded models: ``size`` itself, if it is a positive
        multiple of ``size_divisor``."""
        if size < 1:
            raise ValueError(f"an extent must be positive, got {size}")
        if size % self.size_divisor:
            raise ValueError(f"{size} is not a multiple of {self.size_divisor}")
        return size

    def output_size(self, input_size: int | Sequence[int]) -> tuple[int, ...]:
        """The spatial size of the logits for an input of spatial size ``input_size`` (an int
        for every axis, or one per axis). Raises a ValueError naming the nearest valid sizes."""
        size = self._as_size(input_size)
        return tuple(self._axis_output_checked(s, axis) for axis, s in enumerate(size))

    def valid_size(self, size: int) -> bool:
        """Whether one input extent is accepted."""
        try:
            self.axis_output_size(size)
        except ValueError:
            return False
        return True

    def nearest_valid_sizes(self, size: int, limit: int = 4096) -> tuple[int | None, int | None]:
        """The largest accepted extent below ``size`` and the smallest above it (None where there
        is none within ``limit``)."""
        below = next((s for s in range(size - 1, 0, -1) if size - s <= limit and self.valid_size(s)), None)
        above = next((s for s in range(size + 1, size + limit + 1) if self.valid_size(s)), None)
        return below, above

    def _as_size(self, input_size: int | Sequence[int]) -> tuple[int, ...]:
        if isinstance(input_size, int):
            return (input_size,) * self.spatial_dims
        size = tuple(int(s) for s in input_size)
        if len(size) != self.spatial_dims:
            raise ValueError(f"{self._name()} (spatial_dims={self.spatial_dims}) takes {self.spatial_dims} "
                             f"spatial extents, got {size}")
        return size

    def _axis_output_checked(self, size: int, axis: int) -> int:
        try:
            return self.axis_output_size(size)
        except ValueError as e:
            below, above = self.nearest_valid_sizes(size)
            near = " or ".join(str(s) for s in (below, above) if s is not None) or "none"
            pad = (f"; or pad with convnet.tasks.sliding_window.pad_to_multiple(x, {self.size_divisor}) "
                   "and crop the output back") if self.size_divisor > 1 else ""
            raise ValueError(f"{self._name()} cannot take extent {size} on spatial axis {axis}: {e}; "
                             f"nearest valid: {near}{pad}") from None

    @property
    def output_stride(self) -> int:
        """The shift (in input positions) the model's output follows exactly: the reduction of its
        deepest features. Sliding windows start at multiples of it so that every window sees
        the same pooling grid as the whole input."""
        info = getattr(self, "feature_info", None) or []
        return max([f.reduction for f in info] + [self.size_divisor])

    # -- input and output ----------------------------------------------------------------------

    def _name(self) -> str:
        return self.default_cfg.get("name", type(self).__name__)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming expected and actual shape for input that cannot work."""
        axes = ("L",) if self.spatial_dims == 1 else ("H", "W") if self.spatial_dims == 2 else ("D", "H", "W")
        expected = f"(B, {self.in_channels}, {', '.join(axes)})"
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"{self._name()} (spatial_dims={self.spatial_dims}) expects input {expected}, "
                             f"got a tensor of rank {x.ndim} with shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self._name()} expects {self.in_channels} input channel(s) {expected}, "
                             f"got {x.shape[1]} in shape {tuple(x.shape)}")
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            # Symbolic sizes under export/compile are checked by the traced example instead.
            self.output_size(tuple(int(s) for s in x.shape[2:]))

    def outputs(self, out: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """torchvision's contract: ``{"out", "aux"}`` while training or with ``return_aux``,
        else the main logits alone."""
        if aux is not None and (self.training or self.return_aux):
            return {"out": out, "aux": aux}
        return out


def norm_without_affine(spatial_dims: int):
    """A BatchNorm factory without scale and shift (Cicek et al. count no BN parameters)."""
    return lambda channels: L.norm("batch", spatial_dims, channels, affine=False)


def segmentation_backbone(name: str, spatial_dims: int, in_channels: int, output_stride: int | None = None,
                          overrides: dict[str, Any] | None = None) -> tuple[nn.Module, list[FeatureInfo]]:
    """A registered classifier built as an encoder, dilated to ``output_stride`` (None: as it
    is). Returns it and its ``feature_info`` before dilation (taps are chosen by the stage
    reductions the references name: "layer3", "C2 at output stride 8")."""
    from ._dilate import dilate
    from ._registry import create_model, get_entry

    if get_entry(name).task != "classify":
        raise ValueError(f"backbone {name!r} is a {get_entry(name).task} model; choose a classifier "
                         "(convnet.list_models(task='classify'))")
    backbone = create_model(name, spatial_dims=spatial_dims, in_channels=in_channels, **(overrides or {}))
    original = list(backbone.feature_info)
    if output_stride is not None:
        dilate(backbone, output_stride)
    return backbone, original


def tap(backbone: nn.Module, original: list[FeatureInfo], reduction: int, first_block: bool = False) -> FeatureInfo:
    """The feature entry of the deepest stage whose reduction was ``reduction`` before dilation;
    with ``first_block``, the stage's first block instead (it holds the stride, so it is at the
    same reduction; torchvision's MobileNetV3 segmentation models tap it: ``_is_cn`` blocks)."""
    index = max((i for i, f in enumerate(original) if f.reduction == reduction), default=None)
    if index is None:
        raise ValueError(f"{type(backbone).__name__} has no stage at reduction {reduction}; "
                         f"its stages: {[f.reduction for f in original]}")
    info = backbone.feature_info[index]
    if not first_block:
        return info
    module = f"{info.module}.blocks.0"
    block = dict(backbone.named_modules()).get(module)
    if block is None:
        raise ValueError(f"{type(backbone).__name__} has no {module} to tap")
    convs = [m for m in block.modules() if isinstance(m, L.CONV_TYPES)]
    return FeatureInfo(convs[-1].out_channels, info.reduction, module)
