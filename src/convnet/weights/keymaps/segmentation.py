"""torchvision's segmentation layouts (torchvision.models.segmentation): ``fcn_resnet50/101``,
``deeplabv3_resnet50/101``, ``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large``.

torchvision wraps its classifier in an ``IntermediateLayerGetter`` named ``backbone`` (ResNet:
``backbone.layer1`` ...; MobileNetV3: the ``features`` list itself, ``backbone.0`` ...) and names
the heads ``classifier`` / ``aux_classifier`` (Sequentials numbered by position). convnet's
models hold the classifier in a FeatureExtractor (``backbone.body.<classifier name>``) and name
the heads ``head`` / ``aux_head``. The backbone rules are the classifiers' own (keymaps/resnet.py,
keymaps/mobilenet.py), prefixed; parts whose meaning depends on the model (which ASPP branch is
the pooling one, which position of a MobileNet block is which unit) are resolved against the
model in a transform, as keymaps/mobilenet.py does.
"""
from __future__ import annotations

import re

from torch import nn

from . import KeyMap, State, register_keymap
from .mobilenet import _CNA, nested_resolver
from .resnet import _TORCHVISION_RULES as _RESNET_RULES

_BODY = "backbone.body."


def _in_backbone(rules: tuple) -> tuple:
    """A classifier's rules applied under torchvision's ``backbone.`` and written under ours."""
    out = []
    for pattern, repl in rules:
        if pattern.startswith(r"fc\."):
            continue  # the classifier's head is not part of a segmentation backbone
        if callable(repl):
            new = (lambda m, r=repl: _BODY + r(m))
        else:
            new = (lambda m, r=repl: _BODY + m.expand(r))
        out.append((r"backbone\." + pattern, new))
    return tuple(out)


def _fcn_head(theirs: str, ours: str) -> tuple:
    # FCNHead: 0 conv, 1 BN, 2 ReLU, 3 dropout, 4 classifier.
    return (
        (rf"{theirs}\.0\.(.*)", rf"{ours}.conv.conv.\1"),
        (rf"{theirs}\.1\.(.*)", rf"{ours}.conv.norm.\1"),
        (rf"{theirs}\.4\.(.*)", rf"{ours}.classifier.\1"),
    )


# DeepLabHead: 0 ASPP, 1 conv, 2 BN, 3 ReLU, 4 classifier. ASPP.convs[k] is a (conv, BN, ReLU)
# branch, or, for the last k, ASPPPooling (pool, conv, BN, ReLU): left to _resolve_aspp.
_DEEPLAB_HEAD = (
    (r"classifier\.0\.convs\.(\d+)\.(\d+)\.(.*)", r"_aspp.\1.\2.\3"),
    (r"classifier\.0\.project\.0\.(.*)", r"head.aspp.project.conv.conv.\1"),
    (r"classifier\.0\.project\.1\.(.*)", r"head.aspp.project.conv.norm.\1"),
    (r"classifier\.1\.(.*)", r"head.conv.conv.\1"),
    (r"classifier\.2\.(.*)", r"head.conv.norm.\1"),
    (r"classifier\.4\.(.*)", r"head.classifier.\1"),
)

_LRASPP_HEAD = (
    (r"classifier\.cbr\.0\.(.*)", r"head.cbr.conv.\1"),
    (r"classifier\.cbr\.1\.(.*)", r"head.cbr.norm.\1"),
    (r"classifier\.scale\.1\.(.*)", r"head.scale.conv.\1"),
    (r"classifier\.(low|high)_classifier\.(.*)", r"head.\1_classifier.\2"),
)

# MobileNetV3 ``features`` as torchvision's backbone: 0 the stem, 1..N-2 the blocks (positions
# resolved by _resolve_blocks), the last the final 1x1 conv.
_MOBILENET_BACKBONE = (
    (r"backbone\.0\.0\.(.*)", _BODY + r"stem.conv.\1"),
    (r"backbone\.0\.1\.(.*)", _BODY + r"stem.norm.\1"),
    (r"backbone\.(\d+)\.block\.(\d+)\.(.*)", lambda m: f"_flat.{int(m[1]) - 1}.{m[2]}.{m[3]}"),
    (r"backbone\.\d+\.0\.(.*)", _BODY + r"final_conv.conv.\1"),
    (r"backbone\.\d+\.1\.(.*)", _BODY + r"final_conv.norm.\1"),
)

_ASPP_KEY = re.compile(r"_aspp\.(\d+)\.(\d+)\.(.*)")


def _resolve_aspp(state: State, model: nn.Module) -> State:
    branches = len(model.head.aspp.branches)
    out: State = {}
    for key, value in state.items():
        m = _ASPP_KEY.fullmatch(key)
        if m:
            k, pos, rest = int(m[1]), m[2], m[3]
            if k < branches:
                key = f"head.aspp.branches.{k}.{_CNA[pos]}.{rest}"
            else:  # ASPPPooling: 0 is the pool, 1 the conv, 2 the BN
                key = f"head.aspp.pooling.conv.{ {'1': 'conv', '2': 'norm'}[pos] }.{rest}"
        out[key] = value
    return out


_resolve_blocks = nested_resolver(r"backbone\.body")


def _chain(*transforms):
    def apply(state: State, model: nn.Module) -> State:
        for t in transforms:
            state = t(state, model)
        return state
    return apply


register_keymap(KeyMap(
    source="torchvision.models.segmentation (fcn_resnet*)",
    families=("fcn",),
    rules=_fcn_head("classifier", "head") + _fcn_head("aux_classifier", "aux_head") + _in_backbone(_RESNET_RULES),
))

register_keymap(KeyMap(
    source="torchvision.models.segmentation (deeplabv3_resnet*)",
    families=("deeplabv3",),
    rules=_DEEPLAB_HEAD + _fcn_head("aux_classifier", "aux_head") + _in_backbone(_RESNET_RULES),
    transform=_resolve_aspp,
))

register_keymap(KeyMap(
    source="torchvision.models.segmentation (deeplabv3_mobilenet_v3_large)",
    families=("deeplabv3",),
    rules=_DEEPLAB_HEAD + _fcn_head("aux_classifier", "aux_head") + _MOBILENET_BACKBONE,
    transform=_chain(_resolve_aspp, _resolve_blocks),
))

register_keymap(KeyMap(
    source="torchvision.models.segmentation (lraspp_mobilenet_v3_large)",
    families=("lraspp",),
    rules=_LRASPP_HEAD + _MOBILENET_BACKBONE,
    transform=_resolve_blocks,
))
