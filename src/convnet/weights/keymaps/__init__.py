"""Key maps: torchvision's and timm's state-dict layouts, renamed into convnet's.

Each module of this package describes one family's layouts as ``KeyMap`` rows and registers them;
``convert`` (one of ``weights.CONVERTERS``) tries every map registered for the model's family and
returns the first renaming that fits the model exactly. A map is data: ordered regex rules, the
first that matches a key renames it, and keys no rule matches keep their name.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class KeyMap:
    """One library's layout of one family.

    Attributes:
        source: where the layout comes from, e.g. ``"torchvision.models.resnet"``.
        families: the convnet families (``ModelEntry.family``) it applies to.
        rules: ``(pattern, replacement)`` pairs: the first pattern that ``re.fullmatch``-es a key
            renames it, by ``Match.expand(replacement)`` for a string, or by calling a
            replacement function with the match (for arithmetic on indices).
        optional: patterns (on the renamed keys) of tensors the model may lack and that are then
            dropped, e.g. auxiliary classifiers used only in training.
        transform: applied to the renamed state dict, for tensors that need more than a new name.
    """

    source: str
    families: tuple[str, ...]
    rules: tuple[tuple[str, str | Callable[[re.Match], str]], ...]
    optional: tuple[str, ...] = ()
    transform: Callable[[State, nn.Module], State] | None = None

    def apply(self, state: State, model: nn.Module) -> State:
        compiled = [(re.compile(p), r) for p, r in self.rules]
        out: State = {}
        for key, value in state.items():
            for pattern, repl in compiled:
                m = pattern.fullmatch(key)
                if m:
                    key = repl(m) if callable(repl) else m.expand(repl)
                    break
            if key in out:
                raise ValueError(f"{self.source}: two checkpoint keys map to {key!r}")
            out[key] = value
        if self.optional:
            expected = model.state_dict()
            drop = [re.compile(p) for p in self.optional]
            out = {k: v for k, v in out.items() if k in expected or not any(d.fullmatch(k) for d in drop)}
        return self.transform(out, model) if self.transform else out


KEYMAPS: list[KeyMap] = []


def register_keymap(keymap: KeyMap) -> KeyMap:
    KEYMAPS.append(keymap)
    return keymap


def convert(state: State, model: nn.Module, exclude: tuple[str, ...] = ()) -> State | None:
    """The first registered renaming of ``state`` whose keys and shapes fit ``model``, else None.
    Shapes under the ``exclude`` prefixes may differ (a classifier for other classes)."""
    family = getattr(model, "default_cfg", {}).get("family")
    expected = {k: v.shape for k, v in model.state_dict().items()}
    for keymap in KEYMAPS:
        if family is not None and family not in keymap.families:
            continue
        try:
            converted = keymap.apply(state, model)
        except (ValueError, KeyError, RuntimeError):
            continue
        if converted.keys() == expected.keys() and all(
                converted[k].shape == s for k, s in expected.items() if not k.startswith(exclude)):
            return converted
    return None


for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
