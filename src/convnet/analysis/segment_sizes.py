"""Which input sizes a segmentation model takes, and what it returns for them.

Padded models take any multiple of their ``size_divisor`` (1 for torchvision's layouts, which
resample to the input size; the encoder U-Net's deepest reduction; 2^4 for V-Net); the
valid-convolution U-Nets take sizes whose every pre-pooling map is even and whose output stays
positive (Ronneberger's 572 -> 388). The rule lives with each model (``axis_output_size``); this
module enumerates it. Padding to a valid size: ``convnet.tasks.sliding_window.pad_to_multiple``
and ``pad_for_model`` (re-exported here).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..models import create_model, get_entry, list_models
from ..tasks.sliding_window import pad_for_model, pad_to_multiple

__all__ = ["check_input_size", "input_size_table", "pad_for_model", "pad_to_multiple", "size_rule",
           "valid_input_sizes"]


def _model(model: nn.Module | str) -> nn.Module:
    if isinstance(model, str):
        if get_entry(model).task != "segment":
            raise ValueError(f"{model} is a {get_entry(model).task} model, not a segmentation model")
        with torch.device("meta"):  # the size rule needs no weights
            return create_model(model)
    if not hasattr(model, "axis_output_size"):
        raise ValueError(f"{type(model).__name__} is not a convnet segmentation model (no axis_output_size)")
    return model


def valid_input_sizes(model: nn.Module | str, near: int | None = None, count: int = 4, limit: int = 4096) -> list[int]:
    """Input extents the model takes (per axis): the ``count`` nearest to ``near`` (sorted), or the
    ``count`` smallest when ``near`` is None."""
    model = _model(model)
    if near is None:
        found = []
        for s in range(1, limit + 1):
            if model.valid_size(s):
                found.append(s)
                if len(found) == count:
                    break
        return found
    candidates = [s for s in range(max(1, near - limit), near + limit + 1) if model.valid_size(s)]
    return sorted(sorted(candidates, key=lambda s: (abs(s - near), s))[:count])


def check_input_size(model: nn.Module | str, size: int | Sequence[int]) -> tuple[int, ...]:
    """The output's spatial size for an input of ``size``, or a ValueError naming the divisor and
    the nearest valid sizes."""
    return _model(model).output_size(size)


def size_rule(model: nn.Module | str) -> str:
    """One line saying which extents the model takes."""
    model = _model(model)
    smallest = valid_input_sizes(model, count=3)
    if all(model.axis_output_size(s) == s for s in smallest):
        if model.size_divisor == 1:
            return "any extent (the output is resampled to the input size)"
        return f"multiples of {model.size_divisor} (output = input size)"
    examples = ", ".join(f"{s} -> {model.axis_output_size(s)}" for s in smallest)
    return f"valid convolutions, output smaller than the input: smallest {examples}"


def input_size_table(names: Sequence[str] | None = None, near: int | None = None) -> list[dict[str, Any]]:
    """For every segmentation model (or ``names``): its divisor, rule, the valid extents nearest
    to ``near`` (default: the model's paper input size) and their output extents."""
    rows = []
    for name in names or list_models(task="segment"):
        model = _model(name)
        entry = get_entry(name)
        target = near if near is not None else (entry.input_size if isinstance(entry.input_size, int)
                                                else entry.input_size[-1])
        sizes = valid_input_sizes(model, near=target, count=2)
        rows.append({"name": name, "size_divisor": model.size_divisor, "rule": size_rule(model),
                     "near": target, "valid": sizes, "output": [model.axis_output_size(s) for s in sizes]})
    return rows
