"""torchvision's detection layouts (torchvision.models.detection): ``fasterrcnn_resnet50_fpn``,
``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``, ``ssd300_vgg16`` and
``ssdlite320_mobilenet_v3_large``.

torchvision nests the classifier and the FPN in one ``backbone`` (``backbone.body.<ResNet
name>``, ``backbone.fpn``); convnet's detectors hold the classifier in a FeatureExtractor named
``backbone`` (``backbone.body.<convnet name>``) and the pyramid beside it as ``fpn``. Units that
are torchvision ``Conv2dNormActivation`` Sequentials (positions 0 conv, 1 norm) are convnet
``ConvNormAct`` (``conv``, ``norm``). The backbone rules are the classifiers' own
(keymaps/resnet.py, keymaps/vgg.py, keymaps/mobilenet.py), prefixed. Frozen batch norms have no
``num_batches_tracked``; a file saved from a model with ordinary batch norms (torchvision's
detectors built without pretrained weights) has them, and they are dropped.
"""
from __future__ import annotations

import re


from . import KeyMap, State, register_keymap
from .mobilenet import _CNA, nested_resolver
from .resnet import _TORCHVISION_RULES as _RESNET_RULES

_BODY = "backbone.body."


def _in_body(rules: tuple) -> tuple:
    """A classifier's rules applied under torchvision's ``backbone.body.`` and written under ours."""
    out = []
    for pattern, repl in rules:
        if pattern.startswith(r"fc\."):
            continue  # the classifier's head is not part of a detection backbone
        new = (lambda m, r=repl: _BODY + r(m)) if callable(repl) else (lambda m, r=repl: _BODY + m.expand(r))
        out.append((r"backbone\.body\." + pattern, new))
    return tuple(out)


_FPN = (
    (r"backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.0\.(.*)", r"fpn.\1_blocks.\2.conv.\3"),
    (r"backbone\.fpn\.extra_blocks\.(p6|p7)\.(.*)", r"fpn.extra_blocks.\1.\2"),
)
_BN_COUNTERS = (r".*\.num_batches_tracked",)

register_keymap(KeyMap(
    source="torchvision.models.detection (fasterrcnn_resnet50_fpn)",
    families=("fasterrcnn",),
    rules=_FPN + ((r"rpn\.head\.conv\.(\d+)\.0\.(.*)", r"rpn.head.conv.\1.conv.\2"),) + _in_body(_RESNET_RULES),
    optional=_BN_COUNTERS,
))

# RetinaNet's and FCOS's heads: ``conv`` towers of Conv2dNormActivation (RetinaNet) or of
# (conv, GroupNorm, ReLU) triples flattened into one Sequential (FCOS: 3i conv, 3i + 1 norm).
register_keymap(KeyMap(
    source="torchvision.models.detection (retinanet_resnet50_fpn)",
    families=("retinanet",),
    rules=_FPN + (
        (r"head\.(classification|regression)_head\.conv\.(\d+)\.0\.(.*)", r"head.\1_head.conv.\2.conv.\3"),
    ) + _in_body(_RESNET_RULES),
    optional=_BN_COUNTERS,
))


def _fcos_tower(m: re.Match) -> str:
    index, part = divmod(int(m[2]), 3)
    return f"head.{m[1]}_head.conv.{index}.{('conv', 'norm')[part]}.{m[3]}"


register_keymap(KeyMap(
    source="torchvision.models.detection (fcos_resnet50_fpn)",
    families=("fcos",),
    rules=_FPN + ((r"head\.(classification|regression)_head\.conv\.(\d+)\.(.*)", _fcos_tower),)
    + _in_body(_RESNET_RULES),
    optional=_BN_COUNTERS,
))


# -- SSD300 (VGG-16) ----------------------------------------------------------------------------
# torchvision's SSDFeatureExtractorVGG: ``features`` is vgg16.features up to conv4_3 (indices
# 0..21: conv at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21); ``extra.0`` continues from pool4 (index 0)
# through conv5_1..5_3 (1, 3, 5) and the fc block (7: pool5 at 0, fc6 at 1, fc7 at 3);
# ``extra.1..4`` are the extra layers (1x1 conv at 0, 3x3 conv at 2). Ours: ``backbone.conv4``
# holds VGG stages 0..3 with stage 3 cut before its pool, ``backbone.extra.0`` the pool4, stage 4's
# convolutions (``conv5``) and the fc block (``fc.fc6``, ``fc.fc7``), ``extra.1..4`` their two
# convolutions as ``conv0`` and ``conv1``.
_VGG16_CONVS = {0: (0, 0), 2: (0, 1), 5: (1, 0), 7: (1, 1), 10: (2, 0), 12: (2, 1), 14: (2, 2), 17: (3, 0),
                19: (3, 1), 21: (3, 2)}


def _ssd_features(m: re.Match) -> str:
    stage, conv = _VGG16_CONVS[int(m[1])]
    return f"backbone.conv4.{stage}.conv{conv}.conv.{m[2]}"


register_keymap(KeyMap(
    source="torchvision.models.detection (ssd300_vgg16)",
    families=("ssd",),
    rules=(
        (r"backbone\.scale_weight", r"backbone.scale_weight"),
        (r"backbone\.features\.(\d+)\.(.*)", _ssd_features),
        (r"backbone\.extra\.0\.([135])\.(.*)", lambda m: f"backbone.extra.0.conv5.conv{int(m[1]) // 2}.conv.{m[2]}"),
        (r"backbone\.extra\.0\.7\.([13])\.(.*)",
         lambda m: f"backbone.extra.0.fc.fc{6 if m[1] == '1' else 7}.conv.{m[2]}"),
        (r"backbone\.extra\.(\d+)\.([02])\.(.*)", lambda m: f"backbone.extra.{m[1]}.conv{int(m[2]) // 2}.conv.{m[3]}"),
        (r"head\.(classification|regression)_head\.module_list\.(\d+)\.(.*)", r"head.\1_head.\2.\3"),
    ),
))


# -- SSDlite (MobileNetV3-Large) ----------------------------------------------------------------
# torchvision: ``backbone.features.0`` = mobilenet features up to the C4 block plus that block's
# expansion (``.0.<flat index>`` for features 0..12, ``.0.13`` the expansion's Conv2dNormActivation),
# ``backbone.features.1`` = the C4 block's remaining parts (``.1.0.<k>``, k = 1..3 as in the block)
# then features 14, 15, 16 (``.1.1``, ``.1.2``, ``.1.3``); ``backbone.extra.i.j`` the extra
# blocks' three Conv2dNormActivation units; the heads' ``module_list.i`` blocks of a depthwise
# Conv2dNormActivation (0) and a 1x1 conv (1).


def _ssdlite_features(m: re.Match) -> str:
    half, index, rest = m[1], int(m[2]), m[3]
    if half == "0":
        if index == 0:  # the stem's Conv2dNormActivation
            sub, _, tail = rest.partition(".")
            return f"backbone.body.body.stem.{_CNA[sub]}.{tail}"
        if index == 13:  # the C4 block's expansion, cut off by torchvision
            return f"_flat.12.0.{rest}"
        block, _, tail = rest.partition(".")  # "block.<k>.<rest>"
        return f"_flat.{index - 1}.{tail}" if block == "block" else m[0]
    if index == 0:  # the C4 block's depthwise, SE and projection (a slice keeps their indices 1..3)
        return f"_flat.12.{rest}"
    if index == 3:  # the final 1x1 conv
        sub, _, tail = rest.partition(".")
        return f"backbone.body.body.final_conv.{_CNA[sub]}.{tail}"
    block, _, tail = rest.partition(".")
    return f"_flat.{12 + index}.{tail}" if block == "block" else m[0]


_resolve_ssdlite_blocks = nested_resolver(r"backbone\.body\.body")


register_keymap(KeyMap(
    source="torchvision.models.detection (ssdlite320_mobilenet_v3_large)",
    families=("ssdlite",),
    rules=(
        (r"backbone\.features\.([01])\.(\d+)\.(.*)", _ssdlite_features),
        (r"backbone\.extra\.(\d+)\.(\d)\.(\d)\.(.*)", lambda m: f"backbone.extra.{m[1]}.{m[2]}.{_CNA[m[3]]}.{m[4]}"),
        (r"head\.(classification|regression)_head\.module_list\.(\d+)\.0\.(\d)\.(.*)",
         lambda m: f"head.{m[1]}_head.{m[2]}.depthwise.{_CNA[m[3]]}.{m[4]}"),
        (r"head\.(classification|regression)_head\.module_list\.(\d+)\.1\.(.*)",
         r"head.\1_head.\2.pointwise.\3"),
    ),
    transform=_resolve_ssdlite_blocks,
))
