"""What a search may spend and what its networks may cost.

* :class:`Budget`: steps (``"200"``, ``"200steps"``) or wall-clock time (``"90s"``, ``"10m"``,
  ``"1.5h"``). A step is an algorithm's unit of work: one candidate trained and scored
  (evolution, random search, one point of the compound grid) or one alternation of architecture
  and weight updates (DARTS). A step budget makes a search reproducible to the bit; a time
  budget gives different algorithms the same compute, as NAS comparisons state it.
* :class:`Constraint`: bounds on a network's cost, ``"macs<=5e6"``, ``"params<=1e5"``,
  ``"flops<=1e7"`` (FLOPs = 2 x MACs, the convention of :mod:`convnet.analysis.summary`), joined by
  commas. Costs are counted by :func:`convnet.analysis.summary` on the meta device, where nothing
  is computed (:func:`measure_cost`).
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(steps?|s|sec|m|min|h)?\s*$")


@dataclass(frozen=True)
class Budget:
    """A step or a time budget (exactly one of the two)."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> Budget:
        """``"200"``/``"200steps"`` (steps), ``"90s"``, ``"10m"``, ``"1.5h"`` (time).

        Raises:
            ValueError: anything else, or a budget of zero.
        """
        m = _BUDGET.match(str(text))
        if m is None:
            raise ValueError(f"budget {text!r}: expected steps (200, 200steps) or a time (90s, 10m, 1.5h)")
        value, unit = float(m[1]), m[2]
        if value <= 0:
            raise ValueError(f"budget {text!r} must be positive")
        if unit is None or unit.startswith("step"):
            if not value.is_integer():
                raise ValueError(f"budget {text!r}: a number of steps must be whole")
            return cls(steps=int(value))
        return cls(seconds=value * _UNITS[unit])

    def exhausted(self, step: int, elapsed: float) -> bool:
        if self.steps is not None:
            return step >= self.steps
        return elapsed >= self.seconds  # type: ignore[operator]

    def fraction(self, step: int, elapsed: float) -> float:
        """How much of the budget is spent, in [0, 1] (DARTS' learning-rate schedule reads it)."""
        spent = step / self.steps if self.steps is not None else elapsed / self.seconds  # type: ignore[operator]
        return min(max(spent, 0.0), 1.0)

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.seconds:g} s"


_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt}
_TERM = re.compile(r"^\s*([a-z]+)\s*(<=|<)\s*([0-9.eE+_]+)\s*$")
# What a bound can be put on, from the measured cost {"macs", "params"}.
COST_KEYS: dict[str, Callable[[dict[str, int]], float]] = {
    "macs": lambda c: c["macs"],
    "flops": lambda c: 2 * c["macs"],
    "params": lambda c: c["params"],
}


@dataclass(frozen=True)
class Constraint:
    """Upper bounds on cost: ``terms`` of (key, operator, value); no terms: anything goes."""

    terms: tuple[tuple[str, str, float], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Constraint:
        """``"macs<=5e6"``, ``"params<1e5,flops<=2e7"``; None or "" for no constraint.

        Raises:
            ValueError: an unknown key, operator or number (the message names the part).
        """
        if not text:
            return cls()
        terms = []
        for part in str(text).split(","):
            m = _TERM.match(part.lower())
            if m is None:
                raise ValueError(f"constraint {part.strip()!r}: expected KEY<=VALUE with KEY one of "
                                 f"{', '.join(COST_KEYS)} (e.g. macs<=5e6)")
            key, op, number = m[1], m[2], m[3].replace("_", "")
            if key not in COST_KEYS:
                raise ValueError(f"constraint {part.strip()!r}: unknown cost {key!r}; "
                                 f"choose from {', '.join(COST_KEYS)}")
            try:
                value = float(number)
            except ValueError:
                raise ValueError(f"constraint {part.strip()!r}: {number!r} is not a number") from None
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"constraint {part.strip()!r}: the bound must be a positive number")
            terms.append((key, op, value))
        return cls(tuple(terms))

    def violation(self, cost: dict[str, int]) -> str | None:
        """None if ``cost`` satisfies every term, else the first term it breaks, with the value."""
        for key, op, value in self.terms:
            measured = COST_KEYS[key](cost)
            if not _OPS[op](measured, value):
                return f"{key} {measured:,.0f} > {value:g}" if op == "<=" else f"{key} {measured:,.0f} >= {value:g}"
        return None

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __str__(self) -> str:
        return ",".join(f"{k}{op}{v:g}" for k, op, v in self.terms)


def measure_cost(build: Callable[[], nn.Module], input_size: tuple[int, ...]) -> dict[str, int]:
    """MACs and trainable parameters per sample of the network ``build()`` returns, built and
    probed on the meta device (no memory, no arithmetic).

    Args:
        build: makes the network (called under ``torch.device("meta")``).
        input_size: (C, *S) of one sample.
    """
    from ..analysis import summary

    with torch.device("meta"):
        model = build()
    s = summary(model, input_size, device="meta", receptive_field=False)
    return {"macs": int(s.total_macs), "params": int(s.trainable_params)}


def jsonable(value: Any) -> Any:
    """Tuples to lists, recursively (JSON's form of the search's records)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


__all__ = ["COST_KEYS", "Budget", "Constraint", "jsonable", "measure_cost"]
