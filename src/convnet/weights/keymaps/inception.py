"""torchvision's GoogLeNet and Inception-v3 layouts (torchvision.models.googlenet, .inception).

Both checkpoints of torchvision carry the auxiliary classifiers (``aux1``/``aux2``,
``AuxLogits``); they load into a model built with ``aux_logits=True`` and are dropped (the
``optional`` patterns) for one without. torchvision's ``transform_input`` has no weights: its
pretrained models re-normalise ImageNet-normalised input to [-1, 1] in forward, which convnet's
models leave to preprocessing (their ``default_cfg`` mean and std are 0.5; see models/inception.py).
"""
import re

from . import KeyMap, register_keymap


def _leaf(rest: str) -> str:
    # torchvision's BasicConv2d names its norm "bn"; ConvNormAct names it "norm".
    return re.sub(r"^bn\.", "norm.", rest)


def _googlenet_module(m: re.Match) -> str:
    stage, block = int(m["stage"]) - 3, ord(m["block"]) - ord("a")
    # branch1: 1x1; branch2/3: 1x1 -> 3x3 / "5x5" (Sequential); branch4: max pool -> 1x1.
    branch = {"1": "branch1x1", "2": "branch3x3", "3": "branch5x5", "4": "branch_pool"}[m["branch"]]
    index = f".{m['index']}" if m["index"] is not None else ""
    return f"stages.{stage}.blocks.{block}.{branch}{index}.{_leaf(m['rest'])}"


register_keymap(KeyMap(
    source="torchvision.models.googlenet",
    families=("inception",),
    rules=(
        (r"conv([123])\.(.*)", lambda m: f"stem.conv{m[1]}.{_leaf(m[2])}"),
        (r"inception(?P<stage>[345])(?P<block>[a-e])\.branch(?P<branch>[1-4])(?:\.(?P<index>\d))?\.(?P<rest>.*)",
         _googlenet_module),
        (r"(aux[12])\.conv\.(.*)", lambda m: f"{m[1]}.conv.{_leaf(m[2])}"),
        (r"fc\.(.*)", r"head.fc.\1"),
    ),
    optional=(r"aux[12]\..*",),
))


_STEM = {"1a_3x3": "stem.conv1", "2a_3x3": "stem.conv2", "2b_3x3": "stem.conv3",
         "3b_1x1": "stages.0.blocks.0", "4a_3x3": "stages.0.blocks.1"}


def _mixed(m: re.Match) -> str:
    # Mixed_5b-5d are stages.1.blocks.0-2; Mixed_6a-6e stages.2; Mixed_7a-7c stages.3.
    grid = int(m["grid"])
    block = ord(m["block"]) - ord("b" if grid == 5 else "a")
    name = m["branch"]
    if m["layer"] is not None:  # branch7x7dbl_3 -> branch7x7dbl.2; branch3x3_2b -> branch3x3.1.1
        name += f".{int(m['layer']) - 1}" + (f".{'ab'.index(m['axis'])}" if m["axis"] else "")
    elif name == "branch_pool":  # the pooled branch's conv follows its (parameter-free) pool
        name += ".1"
    return f"stages.{grid - 4}.blocks.{block}.{name}.{_leaf(m['rest'])}"


register_keymap(KeyMap(
    source="torchvision.models.inception",
    families=("inception",),
    rules=(
        (r"Conv2d_(\w+?)\.(.*)", lambda m: f"{_STEM[m[1]]}.{_leaf(m[2])}"),
        ((r"Mixed_(?P<grid>[567])(?P<block>[a-e])\.(?P<branch>branch_pool|branch[0-9x]+(?:dbl)?)"
          r"(?:_(?P<layer>\d)(?P<axis>[ab])?)?\.(?P<rest>.*)"), _mixed),
        (r"AuxLogits\.(conv[01])\.(.*)", lambda m: f"aux.{m[1]}.{_leaf(m[2])}"),
        (r"AuxLogits\.fc\.(.*)", r"aux.fc.\1"),
        (r"fc\.(.*)", r"head.fc.\1"),
    ),
    optional=(r"aux\..*",),
))
