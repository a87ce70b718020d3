"""torchvision's AlexNet layout (torchvision.models.alexnet) -> convnet's ``alexnet``.

torchvision numbers the modules of two Sequentials; ReLUs, pools and dropouts hold no tensors,
so only the indices of the convolutions and linear layers appear in its state dict.
"""
from . import KeyMap, register_keymap

# features.<i>: conv1..conv5; classifier.<i>: fc6, fc7, fc8 (torchvision.models.alexnet.AlexNet).
_CONVS = {0: "stages.0.conv1", 3: "stages.1.conv2", 6: "stages.2.conv3", 8: "stages.2.conv4", 10: "stages.2.conv5"}
_FCS = {1: "head.fc1", 4: "head.fc2", 6: "head.fc"}

register_keymap(KeyMap(
    source="torchvision.models.alexnet",
    families=("alexnet",),
    rules=tuple(
        [(rf"features\.{i}\.(weight|bias)", rf"{name}.conv.\1") for i, name in _CONVS.items()]
        + [(rf"classifier\.{i}\.(weight|bias)", rf"{name}.\1") for i, name in _FCS.items()]
    ),
))
