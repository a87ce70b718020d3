"""torchvision's ResNet, ResNeXt and Wide ResNet layout (torchvision.models.resnet)."""
from . import KeyMap, register_keymap


def _block(part: str):
    # torchvision's layer1..layer4 are our stages.0..3.
    return lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{part.format(*m.groups()[2:])}"


register_keymap(KeyMap(
    source="torchvision.models.resnet",
    families=("resnet",),
    rules=(
        (r"conv1\.(.*)", r"stem.conv.conv.\1"),
        (r"bn1\.(.*)", r"stem.conv.norm.\1"),
        (r"layer(\d)\.(\d+)\.conv(\d)\.(.*)", _block("conv{0}.conv.{1}")),
        (r"layer(\d)\.(\d+)\.bn(\d)\.(.*)", _block("conv{0}.norm.{1}")),
        (r"layer(\d)\.(\d+)\.downsample\.0\.(.*)", _block("shortcut.conv.{0}")),
        (r"layer(\d)\.(\d+)\.downsample\.1\.(.*)", _block("shortcut.norm.{0}")),
        (r"fc\.(.*)", r"head.fc.\1"),
    ),
))
