"""torchvision's VGG layouts (torchvision.models.vgg, with and without batch norm) -> convnet's.

torchvision builds ``features`` from a list of widths and "M" (pool) entries and numbers every
module in it: a convolution, its BatchNorm (``_bn`` only) and its ReLU take consecutive indices
and a pool takes one, so the index of a layer depends on the configuration. One map per
configuration therefore lists every index; ``convert`` picks the one whose keys and shapes fit.
"""
from . import KeyMap, register_keymap

# Convolutions per stage of torchvision's cfgs "A", "B", "D", "E" (Simonyan & Zisserman, Table 1).
TORCHVISION_DEPTHS: dict[str, tuple[int, ...]] = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}

# classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
_CLASSIFIER = (
    (r"classifier\.0\.(weight|bias)", r"head.fc1.\1"),
    (r"classifier\.3\.(weight|bias)", r"head.fc2.\1"),
    (r"classifier\.6\.(weight|bias)", r"head.fc.\1"),
)


def feature_rules(depths: tuple[int, ...], batch_norm: bool) -> tuple[tuple[str, str], ...]:
    """Rename rules for torchvision's ``features.<index>`` keys of one configuration."""
    rules: list[tuple[str, str]] = []
    index = 0
    for stage, depth in enumerate(depths):
        for j in range(depth):
            ours = f"stages.{stage}.conv{j}"
            rules.append((rf"features\.{index}\.(weight|bias)", rf"{ours}.conv.\1"))
            if batch_norm:
                rules.append((rf"features\.{index + 1}\.(.*)", rf"{ours}.norm.\1"))
            index += 3 if batch_norm else 2  # conv, (bn,) relu
        index += 1  # the stage's max pool
    return tuple(rules)


for _name, _depths in TORCHVISION_DEPTHS.items():
    for _bn in (False, True):
        register_keymap(KeyMap(
            source=f"torchvision.models.vgg ({_name}{'_bn' if _bn else ''})",
            families=("vgg",),
            rules=feature_rules(_depths, _bn) + _CLASSIFIER,
        ))
