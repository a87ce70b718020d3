"""The typed training configuration, and ``key=value`` overrides with clear errors.

Keys are dotted paths (``optim.lr=0.01``, ``model.overrides.drop_rate=0.2``); a leaf name that is
unique across sections may be given alone (``lr=0.01``). Values are parsed by the field's type.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    name: str = "lenet5"
    spatial_dims: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)  # spec fields / model arguments


@dataclass
class DataConfig:
    name: str = "digits"
    batch_size: int = 32
    image_size: int = 0  # 0: the data set's default (32 for the digits)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    # Training-time distortions (LeCun et al. 1998, §III.C); all zero disables augmentation.
    shift: float = 2.0  # translation, pixels per axis
    scale: float = 0.1  # scale per axis in [1 - scale, 1 + scale] (also squeezes)
    shear: float = 0.2  # horizontal shear factor
    rotate: float = 0.0  # degrees


@dataclass
class OptimConfig:
    name: str = "adamw"  # sgd, adam, adamw
    lr: float = 2e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine, step, constant
    warmup_epochs: float = 1.0
    warmup_start: float = 0.1  # warm-up starts at this fraction of lr
    step_epochs: int = 10  # step: multiply lr by gamma every step_epochs
    gamma: float = 0.1
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    epochs: int = 60
    seed: int = 0
    device: str = "auto"  # cpu, cuda, auto
    out: str = ""  # run directory; "" = runs/<model>-<data>-<time>
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    keep_checkpoints: int = 2
    eval_batch_size: int = 512
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    report: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from ``to_dict`` output, validating every key and value."""
        cfg = cls()
        for key, value in _flatten(d):
            apply_override(cfg, key, value, parse=False)
        return cfg


class ConfigError(ValueError):
    """An unknown config key or a value of the wrong type."""


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "overrides":
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def config_keys(cfg: Any = None, prefix: str = "") -> list[str]:
    """Every settable dotted key."""
    cfg = cfg if cfg is not None else TrainConfig()
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _resolve_key(key: str) -> str:
    keys = config_keys()
    if key in keys or key.startswith("model.overrides."):
        return key
    leaf = [k for k in keys if k.rsplit(".", 1)[-1] == key]
    if len(leaf) == 1:
        return leaf[0]
    if len(leaf) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous: {', '.join(leaf)}")
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6) or [
        leaves[m] for m in difflib.get_close_matches(key, leaves, n=3, cutoff=0.6)]
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(keys)}"
    raise ConfigError(f"unknown config key {key!r}{hint}")


def _parse(text: Any, tp: Any, key: str) -> Any:
    """Convert ``text`` (a string from the command line, or a JSON value) to type ``tp``."""
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                raise ValueError
            return int(text) if not isinstance(text, str) else int(text.strip())
        if tp is float:
            if isinstance(text, bool):
                raise ValueError
            return float(text)
        if tp is str:
            if not isinstance(text, str):
                raise ValueError
            return text
        if origin is tuple:
            items = text.split(",") if isinstance(text, str) else list(text)
            args = typing.get_args(tp)
            types = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
            if len(types) != len(items):
                raise ValueError
            return tuple(_parse(i, t, key) for i, t in zip(items, types))
        if origin is dict:
            if isinstance(text, str):
                text = json.loads(text)
            if not isinstance(text, dict):
                raise ValueError
            return dict(text)
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    else:
        return text
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"config key {key!r} expects {name}, got {text!r}")


def _parse_loose(text: str) -> Any:
    """A model override value: JSON if it parses (numbers, lists, true), else the string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def apply_override(cfg: TrainConfig, key: str, value: Any, parse: bool = True) -> None:
    """Set one dotted key on cfg, checking the key and the value's type."""
    key = _resolve_key(key)
    parts = key.split(".")
    if parts[:2] == ["model", "overrides"] and len(parts) > 2:
        cfg.model.overrides[".".join(parts[2:])] = _parse_loose(value) if parse and isinstance(value, str) else value
        return
    target: Any = cfg
    for p in parts[:-1]:
        target = getattr(target, p)
    hints = typing.get_type_hints(type(target))
    setattr(target, parts[-1], _parse(value, hints[parts[-1]], key))


def parse_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings to cfg."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r}")
        apply_override(cfg, key.strip(), value)
    return cfg
