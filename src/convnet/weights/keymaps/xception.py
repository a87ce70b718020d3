"""timm's ``legacy_xception`` layout (timm.models.xception; Cadene's port of the Keras weights)."""
import re

from . import KeyMap, register_keymap


def _block(number: int) -> str:
    # timm's block1..3: entry flow; block4..11: middle flow; block12: the exit flow's first module.
    if number <= 3:
        return f"stages.0.blocks.{number - 1}"
    if number <= 11:
        return f"stages.1.blocks.{number - 4}"
    return "stages.2.blocks.0"


def _rep(m: re.Match) -> str:
    # ``rep`` is a flat (ReLU, SeparableConv2d, BN) x reps list (the first ReLU dropped in block1):
    # index // 3 is the step either way.
    step, rest = int(m[2]) // 3, m[3]
    rest = {"conv1.weight": "conv.depthwise.weight", "pointwise.weight": "conv.pointwise.weight"}.get(rest, f"norm.{rest}")
    return f"{_block(int(m[1]))}.units.{step}.{rest}"


register_keymap(KeyMap(
    source="timm.models.xception.legacy_xception",
    families=("xception",),
    rules=(
        (r"conv([12])\.weight", r"stem.conv\1.conv.weight"),
        (r"bn([12])\.(.*)", r"stem.conv\1.norm.\2"),
        (r"block(\d+)\.skip\.weight", lambda m: f"{_block(int(m[1]))}.shortcut.conv.weight"),
        (r"block(\d+)\.skipbn\.(.*)", lambda m: f"{_block(int(m[1]))}.shortcut.norm.{m[2]}"),
        (r"block(\d+)\.rep\.(\d+)\.(.*)", _rep),
        # The exit flow's separable convolutions: timm's conv3/bn3 and conv4/bn4.
        (r"conv([34])\.conv1\.weight", lambda m: f"stages.2.blocks.{int(m[1]) - 2}.conv.depthwise.weight"),
        (r"conv([34])\.pointwise\.weight", lambda m: f"stages.2.blocks.{int(m[1]) - 2}.conv.pointwise.weight"),
        (r"bn([34])\.(.*)", lambda m: f"stages.2.blocks.{int(m[1]) - 2}.norm.{m[2]}"),
        (r"fc\.(.*)", r"head.fc.\1"),
    ),
))
