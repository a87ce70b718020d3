"""The surface every convnet classifier shares.

forward(x) = forward_head(forward_features(x)); forward_features returns (B, C, *S);
forward_head(x, pre_logits=True) returns the pooled features the classifier sees;
reset_classifier(num_classes) swaps the last layer; feature_info describes each stage.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .. import layers as L


@dataclass(frozen=True)
class FeatureInfo:
    """One stage's output: its channels, its reduction (the product of strides before it, i.e.
    the jump between neighbouring units in input pixels) and the module that produces it."""

    channels: int
    reduction: int
    module: str


class ClassifierHead(nn.Module):
    """Global pooling, dropout, and a linear classifier (``fc``)."""

    def __init__(self, in_features: int, num_classes: int, pool_type: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.pool = L.GlobalPool(pool_type, flatten=True)
        self.drop = L.dropout(None, drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x))  # (B, C, *S) -> (B, C)
        return x if pre_logits else self.fc(x)


class ConvNetClassifier(nn.Module, abc.ABC):
    """Base class: input checks and the forward split. Subclasses set ``spatial_dims``,
    ``in_channels``, ``num_classes``, ``feature_info``, ``cam_layer``, a ``head``, and either
    ``stem`` and ``stages`` or their own ``forward_features``."""

    spatial_dims: int
    in_channels: int
    num_classes: int
    feature_info: list[FeatureInfo]
    cam_layer: str | None = None
    # Set to a per-axis size by models whose layers only fit one input size (LeNet-5's C5).
    fixed_input_size: int | None = None
    fixed_input_axes: int | None = None  # how many trailing axes fixed_input_size applies to (None: all)
    # The smallest input per axis is the total stride (the largest feature_info reduction): below
    # it the last stages downsample maps of one pixel that are mostly padding, and the output is
    # meaningless though it computes (resnet50 at 8x8 ends on a 1x1 map of a 1x1 map). Families
    # whose unpadded layers need more (AlexNet's 11x11 stem, Inception's valid convolutions) set
    # their own minimum here; the larger of the two applies.
    min_input_size: int | None = None
    default_cfg: dict[str, Any] = {}

    def total_stride(self) -> int:
        """The largest ``feature_info`` reduction: how much the network downsamples in all."""
        return max((info.reduction for info in getattr(self, "feature_info", None) or ()), default=1)

    def min_spatial_size(self) -> int | None:
        """The smallest input size per axis the network takes (None: a fixed size instead)."""
        if self.fixed_input_size is not None:
            return None
        return max(self.total_stride(), self.min_input_size or 1)

    def input_dtype(self) -> torch.dtype | None:
        """The dtype forward expects: that of the model's floating-point parameters."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), None)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the expected and the actual value for input that cannot work:
        its rank, channels, dtype (the parameters'; any floating dtype under autocast), and
        spatial size (the fixed size, or at least :meth:`min_spatial_size` per axis)."""
        name = self.default_cfg.get("name", type(self).__name__)
        axes = ("L",) if self.spatial_dims == 1 else ("H", "W") if self.spatial_dims == 2 else ("D", "H", "W")
        expected = f"(B, {self.in_channels}, {', '.join(axes)})"
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"{name} (spatial_dims={self.spatial_dims}) expects input {expected}, "
                             f"got a tensor of rank {x.ndim} with shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{name} expects {self.in_channels} input channel(s) {expected}, "
                             f"got {x.shape[1]} in shape {tuple(x.shape)}")
        dtype = self.input_dtype()
        if dtype is not None and x.dtype != dtype and not (x.is_floating_point() and _autocast_on(x.device.type)):
            raise ValueError(f"{name} expects input of dtype {str(dtype).removeprefix('torch.')} (its parameters'), "
                             f"got {str(x.dtype).removeprefix('torch.')}; convert with x.to({dtype})")
        # After inflation (models.inflate) time is free and only height and width are fixed.
        fixed = x.shape[2:] if self.fixed_input_axes is None else x.shape[x.ndim - self.fixed_input_axes:]
        if self.fixed_input_size is not None and any(s != self.fixed_input_size for s in fixed):
            size = (self.fixed_input_size,) * len(fixed)
            raise ValueError(f"{name} expects spatial size {size}, got {tuple(x.shape[2:])} "
                             f"(its layers fit exactly this size; resize or pad the input)")
        minimum = self.min_spatial_size()
        # An inflated model (models.inflate) keeps time at stride 1: its reductions are spatial.
        reduced = x.shape[-2:] if "inflate" in (getattr(self, "model_config", None) or {}) else x.shape[2:]
        if minimum is not None and any(s < minimum for s in reduced):
            size = (minimum,) * len(reduced)
            why = (f"its layers downsample by {minimum} in all" if minimum == self.total_stride()
                   else "its unpadded layers need that much")
            raise ValueError(f"{name} expects spatial size at least {size}, got {tuple(x.shape[2:])} "
                             f"({why}; resize or pad the input)")

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        """``stem`` then every one of ``stages`` in order: the trunk most families share."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *S) -> the last feature map (B, C, *S'). By default the trunk of
        :meth:`forward_stages`; families with another layout or a tail after the stages override it."""
        return self.forward_stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` outputs
        (0 removes it: forward then returns pooled features)."""
        self.head.reset(num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))


def _autocast_on(device_type: str) -> bool:
    """Whether autocast casts for the layers on this device (the meta device has no autocast)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


class Stage(nn.Module):
    """A run of blocks at one resolution (``blocks``), the unit ``feature_info`` points at."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def init_he(model: nn.Module) -> None:
    """The initialisation of the ResNet line (He et al. 2015): convolutions N(0, 2 / fan_out),
    zero conv biases, norms with weight 1 and bias 0. Linear layers keep torch's default."""
    for m in model.modules():
        if isinstance(m, L.CONV_TYPES):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@runtime_checkable
class LayerwiseLearner(Protocol):
    """A model that learns its features by its own rule instead of backprop (the neocognitron's
    competitive learning), then fits a readout on them with the labels. The classification task
    fits such a model once, instead of running gradient epochs."""

    def fit_unsupervised(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, Any]:
        ...

    def fit_readout(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        ...

    def evaluate_readouts(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        ...
