"""Every numeric config key has a range, and a value outside it is refused with one line naming
the key, the range and the value (train/config.py, the ``RANGES`` tables)."""
from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from convnet.train.config import (ConfigError, TrainConfig, _interval, apply_override, config_keys, in_range,
                                  parse_overrides)


def _field_type(key: str):
    cfg = TrainConfig()
    *path, leaf = key.split(".")
    for p in path:
        cfg = getattr(cfg, p)
    return type(cfg), typing.get_type_hints(type(cfg))[leaf]


def _is_numeric(tp) -> bool:
    if tp in (int, float):
        return True
    return typing.get_origin(tp) is tuple and all(a in (int, float, Ellipsis) for a in typing.get_args(tp))


NUMERIC = [k for k in config_keys() if _is_numeric(_field_type(k)[1])]


def test_every_numeric_key_has_a_range_and_every_range_a_key():
    missing = [k for k in NUMERIC if k.rsplit(".", 1)[-1] not in getattr(_field_type(k)[0], "RANGES", {})]
    assert not missing, f"numeric config keys without a range in their section's RANGES: {missing}"
    sections = {type(getattr(TrainConfig(), f.name)) for f in dataclasses.fields(TrainConfig)
                if dataclasses.is_dataclass(getattr(TrainConfig(), f.name))} | {TrainConfig}
    for section in sections:
        names = {f.name for f in dataclasses.fields(section)}
        stray = set(getattr(section, "RANGES", {})) - names
        assert not stray, f"{section.__name__}.RANGES names no field: {stray}"
    assert len(NUMERIC) > 60


def test_defaults_are_inside_their_ranges():
    TrainConfig().validate()


def _bad_values(interval: str) -> list[float]:
    lo, hi, lo_closed, hi_closed = _interval(interval)
    bad = [lo - 1 if lo_closed else lo]
    if math.isfinite(hi):
        bad.append(hi + 1 if hi_closed else hi)
    return bad


CASES = []
for _key in NUMERIC:
    _section, _tp = _field_type(_key)
    _range = _section.RANGES[_key.rsplit(".", 1)[-1]]
    for _v in _bad_values(_range):
        CASES.append((_key, _tp, _range, _v))


def _as_text(tp, v, default) -> str:
    """A command-line value of type tp holding v (in one element for a tuple)."""
    def one(t, x):
        return str(int(x)) if t is int else repr(float(x))

    if typing.get_origin(tp) is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        elem = args[0]
        n = max(len(default), 1)
        return ",".join([one(elem, v)] + [one(elem, d) for d in list(default)[1:n]])
    return one(tp, v)


@pytest.mark.parametrize("key,tp,interval,value", CASES, ids=[f"{c[0]}={c[3]}" for c in CASES])
def test_a_value_outside_the_range_is_refused(key, tp, interval, value):
    cfg = TrainConfig()
    section = cfg
    for p in key.split(".")[:-1]:
        section = getattr(section, p)
    leaf = key.rsplit(".", 1)[-1]
    default = getattr(section, leaf)
    text = _as_text(tp, value, default)
    with pytest.raises(ConfigError, match=rf"^config key '{key}' must be in \{interval[0]}.*, got ") as info:
        parse_overrides(cfg, [f"{key}={text}"])
    message = str(info.value)
    assert interval in message and "\n" not in message
    assert getattr(section, leaf) == default, "a refused value must not be set"
    # The same value from a config file (JSON), and from code through validate().
    if typing.get_origin(tp) is tuple:
        parsed = tuple(typing.get_args(tp)[0](float(t)) for t in text.split(","))
    else:
        parsed = tp(float(text))
    nested: dict = {}
    d = nested
    for p in key.split(".")[:-1]:
        d = d.setdefault(p, {})
    d[leaf] = list(parsed) if isinstance(parsed, tuple) else parsed
    with pytest.raises(ConfigError, match=f"config key '{key}' must be in"):
        TrainConfig.from_dict(nested)
    setattr(section, leaf, parsed)
    with pytest.raises(ConfigError, match=f"config key '{key}' must be in"):
        cfg.validate()


@pytest.mark.parametrize("item,message", [
    ("epochs=0", r"config key 'epochs' must be in \[1, inf\), got 0"),
    ("epochs=-3", r"'epochs' must be in \[1, inf\), got -3"),
    ("batch_size=0", r"'data.batch_size' must be in \[1, inf\), got 0"),
    ("eval_batch_size=-1", r"'eval_batch_size' must be in \[1, inf\)"),
    ("label_smoothing=1", r"'label_smoothing' must be in \[0, 1\), got 1.0"),
    ("label_smoothing=-0.1", r"'label_smoothing' must be in \[0, 1\)"),
    ("image_size=-32", r"'data.image_size' must be in \[0, inf\), got -32"),
    ("val_fraction=1.0", r"'data.val_fraction' must be in \[0, 1\)"),
    ("test_fraction=1.5", r"'data.test_fraction' must be in \[0, 1\)"),
    ("augment.mixup=-0.2", r"'augment.mixup' must be in \[0, inf\)"),
    ("cutmix=-1", r"'augment.cutmix' must be in \[0, inf\)"),
    ("mix_prob=1.5", r"'augment.mix_prob' must be in \[0, 1\]"),
    ("threads=-2", r"'threads' must be in \[0, inf\)"),
    ("workers=-1", r"'data.workers' must be in \[0, inf\)"),
    ("lr=0", r"'optim.lr' must be in \(0, inf\), got 0.0"),
    ("lr=nan", r"'optim.lr' must be in \(0, inf\), got nan"),
    ("lr=inf", r"'optim.lr' must be in \(0, inf\), got inf"),
    ("optim.betas=0.9,1.0", r"'optim.betas' must be in \[0, 1\) \(each value\), got \(0.9, 1.0\)"),
    ("max_bad_fraction=-0.01", r"'data.max_bad_fraction' must be in \[0, 1\]"),
    ("seed=4294967296", r"'seed' must be in \[0, 4294967295\]"),
])
def test_the_values_the_issue_found_accepted(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides(TrainConfig(), [item])


def test_boundaries_inside_the_range_are_accepted():
    cfg = parse_overrides(TrainConfig(), ["epochs=1", "label_smoothing=0", "val_fraction=0", "hflip=1",
                                          "max_bad_fraction=1", "image_size=0", "threads=0", "layer_decay=1",
                                          "seed=4294967295", "augment.erase_area=0.5,1"])
    assert cfg.epochs == 1 and cfg.augment.hflip == 1.0 and cfg.augment.erase_area == (0.5, 1.0)


def test_in_range_notation():
    assert in_range(0, "[0, 1)") and not in_range(1, "[0, 1)") and in_range(1, "[0, 1]")
    assert not in_range(0, "(0, inf)") and in_range(1e300, "(0, inf)") and not in_range(math.inf, "(0, inf)")
    assert not in_range(math.nan, "[0, 1]")
    with pytest.raises(ValueError, match="bad range"):
        in_range(0, "0..1")


def test_free_form_sections_are_not_range_checked():
    cfg = TrainConfig()
    apply_override(cfg, "model.overrides.drop_rate", "-5")
    assert cfg.model.overrides["drop_rate"] == -5
    cfg.validate()
