"""Recipes: small TOML files of training settings, packaged with convnet and chosen by name.

A recipe holds any TrainConfig keys, as tables (``[optim]``, ``[augment]``, ...) or top-level
keys, and may start from another with ``inherit = "name"``: the parent's settings are applied
first, then the child's. Every value is checked against the config's types when it is applied,
so a misspelt key in a recipe fails with the same message as on the command line.

    convnet train --recipe digits                       # a packaged recipe
    convnet train --recipe ./my.toml optim.lr=0.01      # a file; key=value still wins
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig, _flatten, apply_override

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

RECIPE_DIR = Path(__file__).with_name("recipes")


def list_recipes() -> list[str]:
    """Names of the packaged recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def _recipe_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        return path
    path = RECIPE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}; packaged recipes: {', '.join(list_recipes())}")
    return path


def recipe_settings(name: str, _seen: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The (dotted key, value) settings of a recipe, its ancestors' first."""
    if name in _seen:
        raise ConfigError(f"recipe {name!r} inherits from itself: {' -> '.join(_seen + (name,))}")
    path = _recipe_path(name)
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"recipe {path}: not valid TOML ({e})") from None
    parent = table.pop("inherit", None)
    table.pop("description", None)
    settings = recipe_settings(parent, _seen + (name,)) if parent else []
    return settings + _flatten(table)


def describe_recipe(name: str) -> str:
    """The recipe's description line (empty if it has none)."""
    return str(tomllib.loads(_recipe_path(name).read_text()).get("description", ""))


def apply_recipe(cfg: TrainConfig, name: str) -> TrainConfig:
    """Apply a recipe's settings to cfg and record its name in ``cfg.recipe``."""
    for key, value in recipe_settings(name):
        try:
            apply_override(cfg, key, value, parse=False)
        except ConfigError as e:
            raise ConfigError(f"recipe {name!r}: {e}") from None
    cfg.recipe = name
    return cfg


def load_recipe(name: str) -> TrainConfig:
    """A fresh TrainConfig with the recipe applied."""
    return apply_recipe(TrainConfig(), name)
