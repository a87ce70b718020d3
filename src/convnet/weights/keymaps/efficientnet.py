"""EfficientNet layouts: torchvision's EfficientNet B0-B7 and V2-S/M/L (torchvision.models.efficientnet).

torchvision keeps everything in ``features``: ``features.0`` the stem, ``features.1..n`` the
stages, ``features.n+1`` the 1x1 head conv, and ``classifier.1`` the linear layer. A block's
units are numbered ``block.K`` in order of use, and which units exist depends on the block
(MBConv1 has no expansion, Fused-MBConv no depthwise conv or SE); the rules therefore name them
``unitK`` and the transform resolves K against the children the model's block actually has.
"""
from __future__ import annotations

import re

from torch import nn

from . import KeyMap, State, register_keymap

_UNITS = ("expand", "depthwise", "se", "project")  # layers.InvertedResidual's order of use
_UNIT = re.compile(r"(stages\.\d+\.blocks\.\d+)\.unit(\d+)\.(.*)")


def _stage(part: str):
    # torchvision's features.1.. are our stages.0..
    return lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.unit{m[3]}.{part.format(m[4])}"


def _resolve_units(state: State, model: nn.Module) -> State:
    out: State = {}
    for key, value in state.items():
        m = _UNIT.fullmatch(key)
        if m:
            try:
                block = model.get_submodule(m[1])
            except AttributeError as e:  # more blocks than the model: not this layout
                raise KeyError(key) from e
            units = [n for n in _UNITS if getattr(block, n, None) is not None]
            if int(m[2]) >= len(units):
                raise KeyError(f"{key}: the block has only {units}")
            key = f"{m[1]}.{units[int(m[2])]}.{m[3]}"
        out[key] = value
    return out


register_keymap(KeyMap(
    source="torchvision.models.efficientnet",
    families=("efficientnet", "efficientnet_v2"),
    rules=(
        (r"features\.0\.0\.(.*)", r"stem.conv.\1"),
        (r"features\.0\.1\.(.*)", r"stem.norm.\1"),
        (r"features\.(\d+)\.(\d+)\.block\.(\d+)\.0\.(.*)", _stage("conv.{0}")),
        (r"features\.(\d+)\.(\d+)\.block\.(\d+)\.1\.(.*)", _stage("norm.{0}")),
        (r"features\.(\d+)\.(\d+)\.block\.(\d+)\.(fc[12]\..*)", _stage("{0}")),  # SE fc1/fc2
        (r"features\.\d+\.0\.(.*)", r"conv_head.conv.\1"),
        (r"features\.\d+\.1\.(.*)", r"conv_head.norm.\1"),
        (r"classifier\.1\.(.*)", r"head.fc.\1"),
    ),
    transform=_resolve_units,
))
