"""The MobileNet-style search space's network: M. Tan, B. Chen, R. Pang, V. Vasudevan, M. Sandler,
A. Howard, Q. V. Le, "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019
(arXiv:1807.11626).

MnasNet's factorized hierarchical search space (§4.1, Fig. 4) fixes a skeleton of blocks (stage
widths and strides) and lets the search choose, per block, the convolution's kernel size, the
inverted bottleneck's expansion ratio and the number of layers; EfficientNet-B0 came out of the
same space (Tan & Le 2019, §4). An architecture here (:class:`MnasArch`) is that skeleton with
the choices filled in: a 3x3 stem conv, MnasNet's depthwise-separable 3x3 block, then per stage
``layers`` inverted residuals (MobileNetV2's linear bottleneck: 1x1 expansion by
``expand_ratio``, k x k depthwise, 1x1 projection; the input is added back where the shape
allows, the first layer of a stage carries its stride), a 1x1 conv head, global pooling,
dropout and a linear classifier. ReLU throughout, batch norm with momentum 0.0003 (TensorFlow's
decay 0.9997), as the reference implementation (torchvision's MNASNet) has them.

The default architecture is MnasNet-B1 at depth multiplier 1.0 (the searched network without
squeeze-and-excitation; torchvision's ``mnasnet1_0``, 4,383,312 parameters at 1000 classes).
``convnet search --space mobilenet`` writes an ``arch.json`` that
``create_model("mnas_space", arch=PATH)`` builds.

Layout: ``stem`` (ConvNormAct), ``stages[0]`` (the separable block), ``stages[i].blocks[j]``
(layers.InvertedResidual), ``conv_head`` (1x1 ConvNormAct), ``head`` (ClassifierHead).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage, init_he
from ._registry import register


class MnasStage(NamedTuple):
    """One stage of the skeleton with its choices: ``layers`` inverted residuals of kernel
    ``kernel_size`` and expansion ``expand_ratio`` to ``out_channels``, the first with ``stride``."""

    kernel_size: int
    expand_ratio: int
    layers: int
    out_channels: int
    stride: int


_STAGE_KEYS = MnasStage._fields
_ARCH_KEYS = ("stages", "stem_width", "stem_stride", "sep_width", "head_width")


@dataclass(frozen=True)
class MnasArch:
    """A complete architecture of the space (the JSON a search writes, ``arch.json``)."""

    stages: tuple[MnasStage, ...]
    stem_width: int = 32  # the 3x3 stem conv
    stem_stride: int = 2
    sep_width: int = 16  # the depthwise-separable 3x3 block after the stem
    head_width: int = 1280  # the 1x1 conv before pooling

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s._asdict() for s in self.stages], "stem_width": self.stem_width,
                "stem_stride": self.stem_stride, "sep_width": self.sep_width, "head_width": self.head_width}

    @classmethod
    def from_dict(cls, d: Any, where: str = "arch") -> MnasArch:
        """Check and convert the JSON form; a ValueError names ``where``, the key and the value."""
        if not isinstance(d, dict) or not set(d) <= set(_ARCH_KEYS) or "stages" not in d:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: expected an object with 'stages' and optionally "
                             f"{list(_ARCH_KEYS[1:])}, got {got}")
        stages = d["stages"]
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ValueError(f"{where}: 'stages' must be a non-empty list, got {stages!r}")
        rows = []
        for i, s in enumerate(stages):
            if isinstance(s, (list, tuple)) and len(s) == len(_STAGE_KEYS):
                s = dict(zip(_STAGE_KEYS, s))
            if not isinstance(s, dict) or set(s) != set(_STAGE_KEYS):
                raise ValueError(f"{where}: stages[{i}] must have keys {list(_STAGE_KEYS)}, got {s!r}")
            for key in _STAGE_KEYS:
                if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 1:
                    raise ValueError(f"{where}: stages[{i}].{key} must be a positive integer, got {s[key]!r}")
            if s["kernel_size"] % 2 == 0:
                raise ValueError(f"{where}: stages[{i}].kernel_size must be odd, got {s['kernel_size']}")
            rows.append(MnasStage(**{k: s[k] for k in _STAGE_KEYS}))
        sizes = {k: d.get(k, getattr(cls, k)) for k in _ARCH_KEYS[1:]}
        for key, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
        return cls(stages=tuple(rows), **sizes)


def load_arch(value: MnasArch | dict | str | os.PathLike) -> MnasArch:
    """An MnasArch from itself, its JSON form, or a JSON file's path.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not JSON or not an architecture (the message names the file).
    """
    if isinstance(value, MnasArch):
        return value
    if isinstance(value, dict):
        return MnasArch.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"architecture file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"architecture file {path} is not JSON: {e}") from None
        return MnasArch.from_dict(data, where=str(path))
    raise ValueError(f"arch must be an MnasArch, a dict or a path to a .json file, got {type(value).__name__}")


# MnasNet-B1 at depth multiplier 1.0 (torchvision.models.mnasnet, _get_depths(1.0) and the
# _stack rows): kernel, expansion, repeats, width, stride per stage.
MNASNET_B1 = MnasArch(stages=(
    MnasStage(kernel_size=3, expand_ratio=3, layers=3, out_channels=24, stride=2),  # 112^2 -> 56^2
    MnasStage(kernel_size=5, expand_ratio=3, layers=3, out_channels=40, stride=2),  # -> 28^2
    MnasStage(kernel_size=5, expand_ratio=6, layers=3, out_channels=80, stride=2),  # -> 14^2
    MnasStage(kernel_size=3, expand_ratio=6, layers=2, out_channels=96, stride=1),
    MnasStage(kernel_size=5, expand_ratio=6, layers=4, out_channels=192, stride=2),  # -> 7^2
    MnasStage(kernel_size=3, expand_ratio=6, layers=1, out_channels=320, stride=1),
), stem_width=32, stem_stride=2, sep_width=16, head_width=1280)


@dataclass(frozen=True)
class MnasSpaceSpec:
    """A network of the space."""

    arch: MnasArch | dict | str = MNASNET_B1  # or its JSON form, or a path to arch.json
    drop_rate: float = 0.2  # dropout before the classifier (torchvision's MNASNet)
    bn_momentum: float = 1 - 0.9997  # TensorFlow's batch-norm decay 0.9997, in PyTorch's convention


class MnasSpaceNet(ConvNetClassifier):
    """A MobileNet-space network in 1, 2 or 3 dims: ``stem``, ``stages[i].blocks[j]``, ``conv_head``, ``head``.

    Args:
        spec: the architecture, dropout and batch-norm momentum.
        spatial_dims, in_channels, num_classes: as every model.
    """

    def __init__(self, spec: MnasSpaceSpec = MnasSpaceSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.arch = arch = load_arch(spec.arch)
        norm_kwargs = {"momentum": spec.bn_momentum}

        def norm_fn(channels: int) -> nn.Module:
            return L.norm("batch", d, channels, **norm_kwargs)

        self.stem = L.ConvNormAct(d, in_channels, arch.stem_width, 3, arch.stem_stride, norm_layer=norm_fn)
        # MnasNet's SepConv: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN, no activation and no
        # skip: an inverted residual of expansion 1 is exactly that.
        sep = L.InvertedResidual(d, arch.stem_width, arch.sep_width, 3, 1, expanded_channels=arch.stem_width,
                                 act_layer="relu", norm_layer="batch", norm_kwargs=norm_kwargs)
        channels, reduction = arch.sep_width, arch.stem_stride
        self.stages = nn.ModuleList([Stage([sep])])
        self.feature_info = [FeatureInfo(channels, reduction, "stages.0")]
        for i, row in enumerate(arch.stages, start=1):
            blocks = []
            for j in range(row.layers):
                blocks.append(L.InvertedResidual(d, channels, row.out_channels, row.kernel_size,
                                                 row.stride if j == 0 else 1,
                                                 expanded_channels=channels * row.expand_ratio, act_layer="relu",
                                                 norm_layer="batch", norm_kwargs=norm_kwargs))
                channels = row.out_channels
            reduction *= row.stride
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.conv_head = L.ConvNormAct(d, channels, arch.head_width, 1, norm_layer=norm_fn)
        self.feature_info.append(FeatureInfo(arch.head_width, reduction, "conv_head"))
        self.head = ClassifierHead(arch.head_width, num_classes, drop_rate=spec.drop_rate)
        self.cam_layer = "conv_head"
        init_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stages(x)  # (B, C, *S) -> (B, last stage, *S / total stride)
        return self.conv_head(x)  # (B, head_width, *S / total stride)


_PAPER = ("Tan, Chen, Pang, Vasudevan, Sandler, Howard, Le. MnasNet: Platform-Aware Neural Architecture Search "
          "for Mobile. CVPR 2019")

MNAS_SPACE_SPECS: dict[str, dict] = {
    # MnasNet-B1, depth multiplier 1.0; reference_params: torchvision's mnasnet1_0.
    "mnas_space": dict(spec=MnasSpaceSpec(arch=MNASNET_B1), reference_params=4_383_312),
}

# Contract tests: two stages (a strided expansion-3 stage, a two-layer residual one), narrow.
_TINY: dict[str, Any] = {"arch": {
    "stages": [
        {"kernel_size": 3, "expand_ratio": 3, "layers": 1, "out_channels": 8, "stride": 2},
        {"kernel_size": 5, "expand_ratio": 6, "layers": 2, "out_channels": 16, "stride": 2},
    ],
    "stem_width": 8, "stem_stride": 2, "sep_width": 8, "head_width": 32}}

for _name, _row in MNAS_SPACE_SPECS.items():
    register(_name, MnasSpaceNet, family="mnas_space", paper=_PAPER, year=2019,
             reference="torchvision.models.mnasnet (mnasnet1_0)", extra={"tiny": _TINY}, **_row)

__all__ = ["MNASNET_B1", "MnasArch", "MnasSpaceNet", "MnasSpaceSpec", "MnasStage", "load_arch"]
