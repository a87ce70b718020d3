"""torchvision's DenseNet layout (torchvision.models.densenet; timm's densenet* share it).

torchvision's ``features.denseblock{b}.denselayer{l}`` is our ``stages.{b-1}.blocks.{l-1}``, its
``features.transition{t}`` (after block t) our ``stages.{t}.transition`` (before block t+1). The
published .pth files predate the ban on dots in module names and spell a dense layer's units
``norm.1`` / ``conv.2`` instead of ``norm1`` / ``conv2`` (torchvision renames them with a regex
in ``_load_state_dict``); both spellings are read. Those files also lack the batch-norm
``num_batches_tracked`` counters, which torch's own loader fills with 0, as does this map.
"""
from __future__ import annotations

import torch
from torch import nn

from . import KeyMap, State, register_keymap


def _dense_layer(m) -> str:
    # Unit 1 is the 1x1 bottleneck, unit 2 the 3x3 convolution; "norm" / "conv" name the part.
    unit = "bottleneck" if m[4] == "1" else "conv"
    return f"stages.{int(m[1]) - 1}.blocks.{int(m[2]) - 1}.{unit}.{m[3]}.{m[5]}"


def _fill_batch_counters(state: State, model: nn.Module) -> State:
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value, device="cpu")
    return state


register_keymap(KeyMap(
    source="torchvision.models.densenet",
    families=("densenet",),
    rules=(
        (r"features\.conv0\.(.*)", r"stem.conv.conv.\1"),
        (r"features\.norm0\.(.*)", r"stem.conv.norm.\1"),
        (r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])\.(.*)", _dense_layer),
        (r"features\.transition(\d+)\.(norm|conv)\.(.*)", r"stages.\1.transition.\2.\3"),
        (r"features\.norm5\.(.*)", r"final_norm.\1"),
        (r"classifier\.(.*)", r"head.fc.\1"),
    ),
    transform=_fill_batch_counters,
))
