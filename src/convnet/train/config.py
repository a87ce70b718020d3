"""The typed training configuration, and ``key=value`` overrides with clear errors.

Keys are dotted paths (``optim.lr=0.01``, ``model.overrides.drop_rate=0.2``); a leaf name that is
unique across sections may be given alone (``lr=0.01``). Values are parsed by the field's type,
then checked against the field's allowed range: every section lists the interval of each of its
numeric fields in a ``RANGES`` table right under the fields (``"[1, inf)"``, ``"[0, 1)"``; a
tuple's values are checked one by one). A new numeric field without a range fails
tests/test_config_ranges.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..data.augment import AugmentConfig


# Seeds reach numpy's legacy seeding, which takes 0 <= seed < 2**32.
_SEED_RANGE = "[0, 4294967295]"


@dataclass
class ModelConfig:
    name: str = "lenet5"
    spatial_dims: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)  # spec fields / model arguments

    RANGES: ClassVar[dict[str, str]] = {"spatial_dims": "[1, 3]"}


@dataclass
class DataConfig:
    name: str = "digits"
    batch_size: int = 32
    workers: int = 0  # DataLoader worker processes for streamed data (0: load in the training process)
    stream: str = "auto"  # "memory" (preprocess every split into tensors), "disk" (decode per sample), "auto"
    memory_limit_mb: int = 2048  # "auto" streams a data set whose preprocessed tensors would exceed this
    max_bad_fraction: float = 0.01  # streamed files that fail to decode are skipped up to this fraction
    max_pixels: int = 89_478_485  # images with more pixels are refused before decoding (Pillow's bomb limit)
    channels: int = 0  # 1 (gray) or 3 (RGB) for image folders; 0: the files' majority decides
    image_size: int = 0  # 0: the data set's default (32 for the digits)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    classes: str = ""  # keep only these classes, e.g. "0-4" or "1,3,7" ("" = all)
    train_per_class: int = 0  # keep this many training images per class (0 = all; few-shot)

    RANGES: ClassVar[dict[str, str]] = {
        "batch_size": "[1, inf)", "workers": "[0, inf)", "memory_limit_mb": "[0, inf)",
        "max_bad_fraction": "[0, 1]", "max_pixels": "[0, inf)", "channels": "[0, 3]", "image_size": "[0, inf)",
        "val_fraction": "[0, 1)", "test_fraction": "[0, 1)",
        "split_seed": _SEED_RANGE, "train_per_class": "[0, inf)",
    }


@dataclass
class OptimConfig:
    name: str = "adamw"  # sgd, adam, adamw, lamb, lars
    lr: float = 2e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    trust_coefficient: float = 0.001  # LARS eta (You et al. 2017)
    backbone_lr_scale: float = 1.0  # fine-tuning: the backbone's lr is lr * this (head: lr)
    layer_decay: float = 1.0  # fine-tuning: lr * layer_decay ** (depth from the head)
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    accumulate: int = 1  # optimiser step every N batches (gradient accumulation)
    ema_decay: float = 0.0  # exponential moving average of the weights; 0 disables
    ema_warmup: bool = False  # decay min(ema_decay, (1 + n) / (10 + n)) after n updates (timm)

    RANGES: ClassVar[dict[str, str]] = {
        "lr": "(0, inf)", "momentum": "[0, 1)", "weight_decay": "[0, inf)", "betas": "[0, 1)",
        "eps": "(0, inf)", "trust_coefficient": "(0, inf)", "backbone_lr_scale": "[0, inf)",
        "layer_decay": "(0, 1]", "grad_clip": "[0, inf)", "accumulate": "[1, inf)", "ema_decay": "[0, 1)",
    }


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine, step, multistep, poly, constant
    warmup_epochs: float = 1.0
    warmup_start: float = 0.1  # warm-up starts at this fraction of lr
    step_epochs: int = 10  # step: multiply lr by gamma every step_epochs
    milestones: tuple[int, ...] = ()  # multistep: epochs at which lr is multiplied by gamma
    gamma: float = 0.1
    power: float = 1.0  # poly: (1 - t) ** power
    min_lr: float = 0.0

    RANGES: ClassVar[dict[str, str]] = {
        "warmup_epochs": "[0, inf)", "warmup_start": "[0, 1]", "step_epochs": "[1, inf)",
        "milestones": "[0, inf)", "gamma": "(0, 1]", "power": "(0, inf)", "min_lr": "[0, inf)",
    }


@dataclass
class TransferConfig:
    init: str = ""  # checkpoint or run directory load_pretrained reads ("" = random init)
    freeze: str = ""  # "" or "backbone" (feature extraction: only the new head trains)


@dataclass
class ProgressiveConfig:
    """EfficientNetV2 progressive learning (Tan & Le 2021, Algorithm 1): image size, dropout,
    RandAugment magnitude and Mixup strength ramp together from the first to the last of
    ``stages`` equal parts of training. 0 stages disables it."""
    stages: int = 0
    min_image_size: int = 0
    dropout: tuple[float, float] = (0.1, 0.3)
    rand_augment_m: tuple[float, float] = (5.0, 15.0)
    mixup: tuple[float, float] = (0.0, 0.0)

    RANGES: ClassVar[dict[str, str]] = {
        "stages": "[0, inf)", "min_image_size": "[0, inf)", "dropout": "[0, 1)",
        "rand_augment_m": "[0, 30]", "mixup": "[0, inf)",
    }


@dataclass
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015): soft targets of a teacher run."""
    teacher: str = ""  # run directory of the teacher ("" disables)
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the soft-target loss (x T^2); 1 - alpha on the labels

    RANGES: ClassVar[dict[str, str]] = {"temperature": "(0, inf)", "alpha": "[0, 1]"}


@dataclass
class TaskConfig:
    """What the model is trained to do (convnet.tasks): its name ("auto": the task the model is
    registered for) and the task's own options, e.g. ``task.name=segment task.options.loss=dice_ce``."""
    name: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    recipe: str = ""  # the recipe these settings started from (informational)
    epochs: int = 60
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit; for quick trials)
    seed: int = 0
    device: str = "auto"  # cpu, cuda, auto
    out: str = ""  # run directory; "" = runs/<model>-<data>-<time>
    label_smoothing: float = 0.0
    precision: str = "fp32"  # fp32, bf16 (autocast), fp16 (autocast + GradScaler)
    channels_last: bool = False
    compile: bool = False  # torch.compile the training model
    checkpoint_every: int = 0  # also checkpoint every N optimiser steps (0: once per epoch)
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row
    keep_checkpoints: int = 2
    eval_batch_size: int = 512
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    report: bool = True
    logger: str = ""  # also log to: "tensorboard" or "mlflow" (metrics.jsonl and the report are always written)
    logger_uri: str = ""  # MLflow tracking URI ("" = a file store in the run directory)

    RANGES: ClassVar[dict[str, str]] = {
        "epochs": "[1, inf)", "max_steps": "[0, inf)", "seed": _SEED_RANGE, "label_smoothing": "[0, 1)",
        "checkpoint_every": "[0, inf)", "max_nonfinite": "[0, inf)", "keep_checkpoints": "[0, inf)",
        "eval_batch_size": "[1, inf)", "threads": "[0, inf)",
    }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from ``to_dict`` output, validating every key and value."""
        cfg = cls()
        for key, value in _flatten(d):
            apply_override(cfg, key, value, parse=False)
        return cfg

    def validate(self) -> "TrainConfig":
        """Check every value against its range (for a config built in code rather than through
        :func:`apply_override` / :meth:`from_dict`, which check as they set); returns self."""
        for key in config_keys(self):
            owner, leaf = _owner(self, key)
            if not key.startswith(tuple(f + "." for f in FREE_FORM)):
                check_range(key, getattr(owner, leaf), type(owner))
        return self


class ConfigError(ValueError):
    """An unknown config key, or a value of the wrong type or outside its range."""


# Dict-valued sections whose keys are not fixed: model arguments and a task's own options.
FREE_FORM = ("model.overrides", "task.options")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in FREE_FORM:
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
    if key in keys or key.startswith(tuple(f + "." for f in FREE_FORM)):
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
    if ".".join(parts[:2]) in FREE_FORM and len(parts) > 2:
        free = getattr(getattr(cfg, parts[0]), parts[1])
        free[".".join(parts[2:])] = _parse_loose(value) if parse and isinstance(value, str) else value
        return
    target, leaf = _owner(cfg, key)
    hints = typing.get_type_hints(type(target))
    value = _parse(value, hints[leaf], key)
    check_range(key, value, type(target))
    setattr(target, leaf, value)


def _owner(cfg: Any, key: str) -> tuple[Any, str]:
    """The section object holding dotted ``key``, and the field's name in it."""
    *path, leaf = key.split(".")
    for p in path:
        cfg = getattr(cfg, p)
    return cfg, leaf


_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")


@functools.lru_cache(maxsize=None)
def _interval(text: str) -> tuple[float, float, bool, bool]:
    """"[0, 1)" -> (0.0, 1.0, True, False): bounds and whether each is included."""
    m = _INTERVAL.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"bad range {text!r}; write an interval such as '[0, 1)' or '(0, inf)'")
    return float(m[2]), float(m[3]), m[1] == "[", m[4] == "]"


def in_range(value: float, interval: str) -> bool:
    """Whether ``value`` lies in ``interval`` ("[0, 1)", "(0, inf)", ...); NaN never does."""
    lo, hi, lo_closed, hi_closed = _interval(interval)
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= lo if lo_closed else value > lo
    below = value <= hi if hi_closed else value < hi
    return above and below


def check_range(key: str, value: Any, section: type) -> None:
    """Raise a ConfigError naming ``key``, its allowed range and ``value`` where the section's
    ``RANGES`` table gives the field a range and ``value`` (each value of a tuple) is outside."""
    interval = getattr(section, "RANGES", {}).get(key.rsplit(".", 1)[-1])
    if interval is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and in_range(v, interval) for v in values):
        each = " (each value)" if isinstance(value, tuple) else ""
        raise ConfigError(f"config key {key!r} must be in {interval}{each}, got {value!r}")


def parse_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings to cfg."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r}")
        apply_override(cfg, key.strip(), value)
    return cfg
