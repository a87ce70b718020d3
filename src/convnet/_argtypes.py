"""Argument types the command lines share (``convnet.cli`` and the subcommands that other rooms
add to it, such as ``deploy/cli.py``).

They live below every room so that a room's CLI module can use them without importing the
top-level ``cli.py``, which imports those modules in turn (docs/architecture.md: imports run one
way). Only the standard library is imported here.
"""
from __future__ import annotations

import argparse


def int_tuple(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` -> ``(3, 224, 224)``, for options such as ``--input-size``; anything else
    is an ``argparse`` error naming the value."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3,224,224, got {text!r}") from None


__all__ = ["int_tuple"]
