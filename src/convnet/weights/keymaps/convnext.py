"""ConvNeXt layouts: torchvision's ConvNeXt (torchvision.models.convnext) and timm's ConvNeXt
and ConvNeXt V2 (timm.models.convnext), renamed into convnet's ``stem``, ``stages[i].downsample``,
``stages[i].blocks[j].{depthwise,expand,grn,project,layer_scale}`` and ``head.{norm,fc}``.

Their pointwise layers are nn.Linear (torchvision; timm's larger models) or 1x1 convs (timm's
atto-nano), their layer scales (C, 1, 1) in torchvision: ours are 1x1 convs of any dimension
and (C,) scales, so tensors are reshaped to the model's shapes (same numbers, same order).
"""
from __future__ import annotations

from . import KeyMap, State, register_keymap


def _reshape_to_model(state: State, model) -> State:
    expected = model.state_dict()
    out = {}
    for key, value in state.items():
        target = expected.get(key)
        if target is not None and value.shape != target.shape and value.numel() == target.numel():
            value = value.reshape(target.shape)  # Linear (out, in) -> 1x1 conv (out, in, 1, ...)
        out[key] = value
    return out


def _tv_block(part: str):
    # torchvision's features.1, 3, 5, 7 are our stages 0..3.
    return lambda m: f"stages.{(int(m[1]) - 1) // 2}.blocks.{m[2]}.{part}.{m[3]}"


def _tv_downsample(part: str):
    # features.2, 4, 6 are the downsampling layers in front of stages 1..3.
    return lambda m: f"stages.{int(m[1]) // 2}.downsample.{part}.{m[2]}"


register_keymap(KeyMap(
    source="torchvision.models.convnext",
    families=("convnext",),
    rules=(
        (r"features\.0\.0\.(.*)", r"stem.conv.\1"),
        (r"features\.0\.1\.(.*)", r"stem.norm.\1"),
        (r"features\.(\d+)\.(\d+)\.block\.0\.(.*)", _tv_block("depthwise.conv")),
        (r"features\.(\d+)\.(\d+)\.block\.2\.(.*)", _tv_block("depthwise.norm")),
        (r"features\.(\d+)\.(\d+)\.block\.3\.(.*)", _tv_block("expand.conv")),
        (r"features\.(\d+)\.(\d+)\.block\.5\.(.*)", _tv_block("project.conv")),
        (r"features\.(\d+)\.(\d+)\.(layer_scale)", lambda m: f"stages.{(int(m[1]) - 1) // 2}.blocks.{m[2]}.layer_scale.gamma"),
        (r"features\.(\d+)\.0\.(.*)", _tv_downsample("norm")),
        (r"features\.(\d+)\.1\.(.*)", _tv_downsample("conv")),
        (r"classifier\.0\.(.*)", r"head.norm.\1"),
        (r"classifier\.2\.(.*)", r"head.fc.\1"),
    ),
    transform=_reshape_to_model,
))

_BLOCK = r"stages\.(\d+)\.blocks\.(\d+)\."
register_keymap(KeyMap(
    source="timm.models.convnext",
    families=("convnext", "convnextv2"),
    rules=(
        (r"stem\.0\.(.*)", r"stem.conv.\1"),
        (r"stem\.1\.(.*)", r"stem.norm.\1"),
        (r"stages\.(\d+)\.downsample\.0\.(.*)", r"stages.\1.downsample.norm.\2"),
        (r"stages\.(\d+)\.downsample\.1\.(.*)", r"stages.\1.downsample.conv.\2"),
        (_BLOCK + r"conv_dw\.(.*)", r"stages.\1.blocks.\2.depthwise.conv.\3"),
        (_BLOCK + r"norm\.(.*)", r"stages.\1.blocks.\2.depthwise.norm.\3"),
        (_BLOCK + r"mlp\.fc1\.(.*)", r"stages.\1.blocks.\2.expand.conv.\3"),
        (_BLOCK + r"mlp\.grn\.weight", r"stages.\1.blocks.\2.grn.gamma"),
        (_BLOCK + r"mlp\.grn\.bias", r"stages.\1.blocks.\2.grn.beta"),
        (_BLOCK + r"mlp\.fc2\.(.*)", r"stages.\1.blocks.\2.project.conv.\3"),
        (_BLOCK + r"gamma", r"stages.\1.blocks.\2.layer_scale.gamma"),
        # head.norm and head.fc keep their names.
    ),
    transform=_reshape_to_model,
))
