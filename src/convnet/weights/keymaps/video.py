"""Video ResNet layouts: torchvision's ``models/video/resnet.py`` (r3d_18, mc3_18, r2plus1d_18)
renamed into convnet's ``models/video.py``.

torchvision's blocks hold ``convK`` = Sequential(conv, BN[, ReLU]) where the conv of R(2+1)D is
itself Sequential(spatial conv, BN, ReLU, temporal conv); its stems are Sequential(conv, BN,
ReLU) or, for R(2+1)D, Sequential(conv, BN, ReLU, conv, BN, ReLU). Two maps, one per stem; the
converter keeps the one whose keys fit the model.
"""

from . import KeyMap, register_keymap


def _block(part: str):
    # torchvision's layer1..layer4 are our stages.0..3.
    return lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{part.format(*m.groups()[2:])}"


_BLOCK_RULES = (
    # R(2+1)D's factorised convolution: convK.0 = (spatial conv, BN, ReLU, temporal conv).
    (r"layer(\d)\.(\d+)\.conv(\d)\.0\.0\.(.*)", _block("conv{0}.conv.spatial.{1}")),
    (r"layer(\d)\.(\d+)\.conv(\d)\.0\.1\.(.*)", _block("conv{0}.conv.norm.{1}")),
    (r"layer(\d)\.(\d+)\.conv(\d)\.0\.3\.(.*)", _block("conv{0}.conv.temporal.{1}")),
    (r"layer(\d)\.(\d+)\.conv(\d)\.0\.(weight|bias)", _block("conv{0}.conv.{1}")),
    (r"layer(\d)\.(\d+)\.conv(\d)\.1\.(.*)", _block("conv{0}.norm.{1}")),
    (r"layer(\d)\.(\d+)\.downsample\.0\.(.*)", _block("shortcut.conv.{0}")),
    (r"layer(\d)\.(\d+)\.downsample\.1\.(.*)", _block("shortcut.norm.{0}")),
    (r"fc\.(.*)", r"head.fc.\1"),
)

register_keymap(KeyMap(
    source="torchvision.models.video.resnet (r3d_18, mc3_18)",
    families=("video_resnet",),
    rules=((r"stem\.0\.(.*)", r"stem.conv.\1"), (r"stem\.1\.(.*)", r"stem.norm.\1")) + _BLOCK_RULES,
))

register_keymap(KeyMap(
    source="torchvision.models.video.resnet (r2plus1d_18)",
    families=("video_resnet",),
    rules=((r"stem\.0\.(.*)", r"stem.spatial.conv.\1"), (r"stem\.1\.(.*)", r"stem.spatial.norm.\1"),
           (r"stem\.3\.(.*)", r"stem.temporal.conv.\1"), (r"stem\.4\.(.*)", r"stem.temporal.norm.\1")) + _BLOCK_RULES,
))
