"""MobileNet layouts: timm's ``mobilenetv1_100`` (timm.models.efficientnet), torchvision's
``mobilenet_v2`` and ``mobilenet_v3_small/large`` (torchvision.models.mobilenetv2/v3).

torchvision numbers its blocks flat (``features.1`` .. ``features.N``) and the parts of a block by
position (``conv.k`` / ``block.k``), where which position holds what depends on the block (no
expansion in V2's t=1 block, SE only in some V3 blocks). The rules rename to an intermediate
``_flat.<block>.<position>.<rest>``; ``_resolve`` then reads the model's own blocks to turn
positions into names (``expand``, ``depthwise``, ``se``, ``project``) and flat indices into
``stages.i.blocks.j``.
"""
from __future__ import annotations

import re

from torch import nn

from . import KeyMap, State, register_keymap

_FLAT = re.compile(r"_flat\.(\d+)\.(\d+)\.(.*)")
_UNITS = ("expand", "depthwise", "se", "project")
_CNA = {"0": "conv", "1": "norm"}  # torchvision's Conv2dNormActivation children (2, the act, has no tensors)


def _positions(block: nn.Module, split_project: bool) -> list[str]:
    """What torchvision's k-th part of this block is in ours: a ConvNormAct unit name, ``se``, or
    (V2, whose projection is a bare conv then a BN) ``project.conv`` / ``project.norm``."""
    parts = []
    for name in _UNITS:
        if getattr(block, name, None) is None:
            continue
        parts += ["project.conv", "project.norm"] if name == "project" and split_project else [name]
    return parts


def _resolve_flat(state: State, blocks: list[tuple[str, nn.Module]], split_project: bool) -> State:
    """``_flat.<block>.<position>.<rest>`` keys to the names of ``blocks`` (each block's module
    path and the module, in torchvision's flat order) and of their parts."""
    out: State = {}
    for key, value in state.items():
        m = _FLAT.fullmatch(key)
        if m:
            flat, pos, rest = int(m[1]), int(m[2]), m[3]
            if flat >= len(blocks):
                raise KeyError(f"block {flat} beyond the model's {len(blocks)}")
            prefix, block = blocks[flat]
            parts = _positions(block, split_project)
            if pos >= len(parts):
                raise KeyError(f"part {pos} of block {flat} beyond its {len(parts)}")
            part = parts[pos]
            if part in ("se", "project.conv", "project.norm"):
                rest = f"{part}.{rest}"
            else:
                sub, _, tail = rest.partition(".")
                rest = f"{part}.{_CNA[sub]}.{tail}"
            key = f"{prefix}.{rest}"
        out[key] = value
    return out


def _resolver(split_project: bool):
    def resolve(state: State, model: nn.Module) -> State:
        blocks = [(f"stages.{i}.blocks.{j}", b) for i, stage in enumerate(model.stages) for j, b in enumerate(stage.blocks)]
        return _resolve_flat(state, blocks, split_project)
    return resolve


def nested_resolver(backbone: str):
    """The same resolution for a MobileNetV3 inside another model (a segmenter's or a detector's
    backbone at the module path ``backbone``, a regex), whose blocks are found by name."""
    pattern = re.compile(backbone + r"\.stages\.(\d+)\.blocks\.(\d+)")

    def resolve(state: State, model: nn.Module) -> State:
        found = sorted((int(m[1]), int(m[2]), name) for name, _ in model.named_modules()
                       if (m := pattern.fullmatch(name)))
        modules = dict(model.named_modules())
        return _resolve_flat(state, [(name, modules[name]) for _, _, name in found], split_project=False)
    return resolve


def _torchvision_rules(block_part: str) -> tuple:
    return (
        (r"features\.0\.0\.(.*)", r"stem.conv.\1"),
        (r"features\.0\.1\.(.*)", r"stem.norm.\1"),
        (rf"features\.(\d+)\.{block_part}\.(\d+)\.(.*)", lambda m: f"_flat.{int(m[1]) - 1}.{m[2]}.{m[3]}"),
        # The last features.N (no block part) is the final 1x1 conv.
        (r"features\.\d+\.0\.(.*)", r"final_conv.conv.\1"),
        (r"features\.\d+\.1\.(.*)", r"final_conv.norm.\1"),
    )


register_keymap(KeyMap(
    source="torchvision.models.mobilenetv2",
    families=("mobilenet_v2",),
    rules=_torchvision_rules("conv") + ((r"classifier\.1\.(.*)", r"head.fc.\1"),),
    transform=_resolver(split_project=True),
))

register_keymap(KeyMap(
    source="torchvision.models.mobilenetv3",
    families=("mobilenet_v3",),
    rules=_torchvision_rules("block") + (
        (r"classifier\.0\.(.*)", r"head.hidden.\1"),  # Linear(576/960 -> 1024/1280), h-swish
        (r"classifier\.3\.(.*)", r"head.fc.\1"),
    ),
    transform=_resolver(split_project=False),
))

# timm's rows (blocks.r.j) begin at each stride 2, as our stages do; its BatchNormAct layers
# bn1 / bn2 follow the depthwise and the pointwise conv.
register_keymap(KeyMap(
    source="timm.models.efficientnet (mobilenetv1_100)",
    families=("mobilenet_v1",),
    rules=(
        (r"conv_stem\.(.*)", r"stem.conv.\1"),
        (r"bn1\.(.*)", r"stem.norm.\1"),
        (r"blocks\.(\d+)\.(\d+)\.conv_dw\.(.*)", r"stages.\1.blocks.\2.depthwise.conv.\3"),
        (r"blocks\.(\d+)\.(\d+)\.bn1\.(.*)", r"stages.\1.blocks.\2.depthwise.norm.\3"),
        (r"blocks\.(\d+)\.(\d+)\.conv_pw\.(.*)", r"stages.\1.blocks.\2.pointwise.conv.\3"),
        (r"blocks\.(\d+)\.(\d+)\.bn2\.(.*)", r"stages.\1.blocks.\2.pointwise.norm.\3"),
        (r"classifier\.(.*)", r"head.fc.\1"),
    ),
))
