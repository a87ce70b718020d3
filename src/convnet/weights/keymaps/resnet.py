"""ResNet-family layouts: torchvision's ResNet/ResNeXt/Wide ResNet (torchvision.models.resnet),
timm's ResNet/SE-ResNet(Xt) (timm.models.resnet: the same keys plus ``se.fc1``/``se.fc2``), and
timm's pre-activation ResNetV2 (timm.models.resnetv2) for convnet's preact_resnet family."""

from . import KeyMap, register_keymap


def _block(part: str):
    # torchvision's layer1..layer4 are our stages.0..3.
    return lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{part.format(*m.groups()[2:])}"


_TORCHVISION_RULES = (
    (r"conv1\.(.*)", r"stem.conv.conv.\1"),
    (r"bn1\.(.*)", r"stem.conv.norm.\1"),
    (r"layer(\d)\.(\d+)\.conv(\d)\.(.*)", _block("conv{0}.conv.{1}")),
    (r"layer(\d)\.(\d+)\.bn(\d)\.(.*)", _block("conv{0}.norm.{1}")),
    (r"layer(\d)\.(\d+)\.downsample\.0\.(.*)", _block("shortcut.conv.{0}")),
    (r"layer(\d)\.(\d+)\.downsample\.1\.(.*)", _block("shortcut.norm.{0}")),
    (r"fc\.(.*)", r"head.fc.\1"),
)

register_keymap(KeyMap(
    source="torchvision.models.resnet",
    families=("resnet", "resnext", "wide_resnet"),
    rules=_TORCHVISION_RULES,
))

# timm's ResNet keeps torchvision's names; its SE modules are ``layerI.J.se.fc1/fc2`` (1x1 convs).
register_keymap(KeyMap(
    source="timm.models.resnet",
    families=("resnet", "resnext", "wide_resnet", "seresnet"),
    rules=_TORCHVISION_RULES + ((r"layer(\d)\.(\d+)\.se\.(fc\d)\.(.*)", _block("se.{0}.{1}")),),
))


def _linear_head(state, model):
    # timm's ResNetV2 classifier is a 1x1 conv: (classes, C, 1, 1) -> nn.Linear's (classes, C).
    w = state.get("head.fc.weight")
    if w is not None and w.ndim > 2:
        state = dict(state, **{"head.fc.weight": w.flatten(1)})
    return state


register_keymap(KeyMap(
    source="timm.models.resnetv2",
    families=("preact_resnet",),
    rules=(
        (r"stages\.(\d+)\.blocks\.(\d+)\.downsample\.conv\.(.*)", r"stages.\1.blocks.\2.shortcut.\3"),
        (r"norm\.(.*)", r"final_norm.\1"),
    ),
    transform=_linear_head,
))
