"""timm's Inception-v4 and Inception-ResNet-v2 layouts (timm.models.inception_v4,
timm.models.inception_resnet_v2; also Cadene's pretrainedmodels, which timm's keys come from)."""
import re

from . import KeyMap, register_keymap

# timm's Inception-v4 ``features`` index -> our module (Fig. 9's order).
_V4_MODULES = {0: "stem.conv1", 1: "stem.conv2", 2: "stem.conv3", 3: "stem.mixed_3a", 4: "stem.mixed_4a",
               5: "stem.mixed_5a", 10: "stages.1.reduction", 18: "stages.2.reduction"}
_V4_STAGES = ((6, 10, 0), (11, 18, 1), (19, 22, 2))  # Inception-A, -B, -C blocks: [start, stop), stage

# Inside a block: Inception-C's named branches, Mixed3a/5a's unnamed conv, then branchN -> branches.N.
_V4_BODY = (
    (r"branch1_0\.", "branches.1.0."), (r"branch1_1a\.", "branches.1.1.branches.0."),
    (r"branch1_1b\.", "branches.1.1.branches.1."), (r"branch2_([012])\.", r"branches.2.\1."),
    (r"branch2_3a\.", "branches.2.3.branches.0."), (r"branch2_3b\.", "branches.2.3.branches.1."),
    (r"branch(\d)\.", r"branches.\1."),
)


def _norm(body: str) -> str:
    # timm's ConvNormAct calls its BatchNorm ``bn``; ours ``norm``.
    return re.sub(r"(^|\.)bn\.", r"\1norm.", body)


def _v4(m: re.Match) -> str:
    index, body = int(m[1]), m[2]
    if index in _V4_MODULES:
        module = _V4_MODULES[index]
    else:
        start, _, stage = next(s for s in _V4_STAGES if s[0] <= index < s[1])
        module = f"stages.{stage}.blocks.{index - start}"
    if index in (3, 5):  # Mixed3a: (max pool, conv); Mixed5a: (conv, max pool)
        body = re.sub(r"^conv\.", "branches.1." if index == 3 else "branches.0.", body)
    for pattern, repl in _V4_BODY:
        if re.match(pattern, body):
            body = re.sub("^" + pattern, repl, body)
            break
    return f"{module}.{_norm(body)}"


register_keymap(KeyMap(
    source="timm.models.inception_v4",
    families=("inception_v4",),
    rules=(
        (r"features\.(\d+)\.(.*)", _v4),
        (r"last_linear\.(.*)", r"head.fc.\1"),
    ),
))

_IRV2_MODULES = {"conv2d_1a": "stem.conv1", "conv2d_2a": "stem.conv2", "conv2d_2b": "stem.conv3",
                 "conv2d_3b": "stem.conv4", "conv2d_4a": "stem.conv5", "mixed_5b": "stem.mixed_5b",
                 "mixed_6a": "stages.1.reduction", "mixed_7a": "stages.2.reduction",
                 # timm's unscaled last Inception-ResNet-C follows its 9 scaled ones.
                 "block8": "stages.2.blocks.9", "conv2d_7b": "final_conv"}
_IRV2_REPEATS = {"repeat": 0, "repeat_1": 1, "repeat_2": 2}


def _irv2_body(body: str) -> str:
    body = re.sub(r"^branch(\d)\.", r"branches.\1.", body)
    body = re.sub(r"^conv2d\.", "expand.", body)  # the residual blocks' linear 1x1 convolution
    return _norm(body)


def _irv2_module(m: re.Match) -> str:
    return f"{_IRV2_MODULES[m[1]]}.{_irv2_body(m[2])}"


def _irv2_repeat(m: re.Match) -> str:
    return f"stages.{_IRV2_REPEATS[m[1]]}.blocks.{m[2]}.{_irv2_body(m[3])}"


register_keymap(KeyMap(
    source="timm.models.inception_resnet_v2",
    families=("inception_v4",),
    rules=(
        (rf"({'|'.join(_IRV2_MODULES)})\.(.*)", _irv2_module),
        (r"(repeat(?:_[12])?)\.(\d+)\.(.*)", _irv2_repeat),
        (r"classif\.(.*)", r"head.fc.\1"),
    ),
))
