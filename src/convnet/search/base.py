"""What every search algorithm shares: the context it runs in, the interface the runner drives
(one budget step at a time, a state to checkpoint), the registry by name, and scoring a
candidate under the cost constraint.

An algorithm's ``step`` returns history rows, one per candidate it looked at:

    {"kind": "candidate" | "rejected" | "epoch" | "grid" | "base", "id": ..., "arch": {...},
     "cost": {"macs": ..., "params": ...}, "score": ..., ...}

A "rejected" row is a candidate the cost constraint turned away before any training (its
``violation`` says which bound); it costs no budget step.
"""
from __future__ import annotations

import abc
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from matplotlib.figure import Figure

from .evaluate import EvalSettings, SearchData, build_seeded, candidate_seed, train_and_score
from .limits import Budget, Constraint, measure_cost
from .spaces import SearchSpace

# A constraint that rejects this many candidates in a row is taken as impossible to meet.
MAX_REJECTIONS = 500


@dataclass
class SearchContext:
    """Everything an algorithm needs from outside."""

    space: SearchSpace | None  # None for the compound-coefficient search, which scales a fixed base
    data: SearchData
    constraint: Constraint
    seed: int
    eval: EvalSettings
    device: torch.device
    budget: Budget

    @property
    def spatial_dims(self) -> int:
        return self.data.spatial_dims

    def cost(self, arch: dict[str, Any]) -> dict[str, int]:
        """MACs and parameters of ``arch``'s network at the search's input size (meta device)."""
        assert self.space is not None
        d = self.data
        return measure_cost(self.space.builder(arch, d.spatial_dims, d.input_size[0], d.num_classes), d.input_size)


@dataclass
class SearchResult:
    """The architecture a search returns, and how to build and retrain it."""

    arch: dict[str, Any]  # JSON form, written to ``arch_file``
    arch_file: str  # genotype.json, arch.json, compound.json
    model_name: str  # the registered model that builds it
    overrides: dict[str, Any]  # create_model overrides besides the architecture (sizes)
    arch_key: str | None  # the override that takes the architecture file's path (None: in overrides)
    cost: dict[str, int]
    score: float | None
    description: str
    figure: Callable[[], Figure] | None = None  # draws the architecture (called once per use)
    extra: dict[str, Any] = field(default_factory=dict)  # algorithm-specific figures for summary.json
    image_size: int | None = None  # the input size to retrain at, where the search chose it


class SearchAlgorithm(abc.ABC):
    """One search strategy. The runner calls ``step`` until the budget is spent or
    ``finished()``, checkpoints ``state_dict()`` and, at the end, asks for ``result``."""

    name: ClassVar[str]
    needs_space: ClassVar[bool] = True
    checkpoint_every: int = 1  # steps between checkpoints (DARTS' steps are cheap; candidates are not)

    def __init__(self, ctx: SearchContext):
        self.ctx = ctx
        if self.needs_space and ctx.space is None:
            raise ValueError(f"search algorithm {self.name!r} needs a search space")

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """The algorithm's settings (recorded in config.json)."""

    @abc.abstractmethod
    def step(self, fraction: float) -> list[dict[str, Any]]:
        """One budget step; ``fraction`` of the budget is spent before it. Returns history rows."""

    def finished(self) -> bool:
        """True when the algorithm has nothing left to do before the budget ends (a grid)."""
        return False

    @abc.abstractmethod
    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able state, tensors) from which ``load_state_dict`` continues exactly."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        ...

    @abc.abstractmethod
    def result(self, history: list[dict[str, Any]]) -> SearchResult:
        """The best architecture found (after the last step)."""

    def progress(self) -> dict[str, Any]:
        """A few figures for the progress bar."""
        return {}

    def finish(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """History rows to add once the budget is spent (DARTS' last derivation); default none."""
        return []


ALGORITHMS: dict[str, type[SearchAlgorithm]] = {}


def register_algorithm(cls: type[SearchAlgorithm]) -> type[SearchAlgorithm]:
    """Class decorator: make ``cls`` the algorithm ``cls.name``."""
    if cls.name in ALGORITHMS:
        raise ValueError(f"search algorithm {cls.name!r} is already registered")
    ALGORITHMS[cls.name] = cls
    return cls


def get_algorithm(name: str) -> type[SearchAlgorithm]:
    """The algorithm class ``name`` (a key of ``ALGORITHMS``)."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown search algorithm {name!r}; choose from {', '.join(ALGORITHMS)}") from None


# -- shared by evolution and random search ------------------------------------------------------

def draw_within(ctx: SearchContext, draw: Callable[[], tuple[dict[str, Any], str]],
                rejected: list[dict[str, Any]]) -> tuple[dict[str, Any], str, dict[str, int]]:
    """Draw architectures (``draw() -> (arch, note)``) until one meets the cost constraint.
    Each turned away is appended to ``rejected`` as a history row.

    Raises:
        ValueError: MAX_REJECTIONS in a row (the constraint is out of reach of the draws).
    """
    smallest: dict[str, int] | None = None
    for _ in range(MAX_REJECTIONS):
        arch, note = draw()
        cost = ctx.cost(arch)
        why = ctx.constraint.violation(cost)
        if why is None:
            return arch, note, cost
        rejected.append({"kind": "rejected", "arch": arch, "note": note, "cost": cost, "score": None,
                         "violation": why})
        if smallest is None or cost["macs"] < smallest["macs"]:
            smallest = cost
    raise ValueError(f"constraint {ctx.constraint} rejected {MAX_REJECTIONS} candidates in a row (the cheapest "
                     f"had {smallest}); loosen it or shrink the search space")


def score_candidate(ctx: SearchContext, arch: dict[str, Any], candidate: int) -> dict[str, float]:
    """Train and score candidate number ``candidate`` from its own seed."""
    assert ctx.space is not None
    seed = candidate_seed(ctx.seed, candidate)
    d = ctx.data
    model = build_seeded(ctx.space.builder(arch, d.spatial_dims, d.input_size[0], d.num_classes), seed)
    return train_and_score(model, d, ctx.eval, seed, ctx.device)


def rng_state(rng: random.Random) -> list[Any]:
    """A ``random.Random``'s state as JSON."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def best_row(history: list[dict[str, Any]], kinds: tuple[str, ...] = ("candidate",)) -> dict[str, Any] | None:
    """The scored row of highest score (the earliest among equals)."""
    rows = [r for r in history if r.get("kind") in kinds and r.get("score") is not None]
    return max(rows, key=lambda r: r["score"]) if rows else None  # max keeps the first of equals


__all__ = ["ALGORITHMS", "MAX_REJECTIONS", "EvalSettings", "SearchAlgorithm", "SearchContext", "SearchResult",
           "best_row", "draw_within", "get_algorithm", "register_algorithm", "rng_state", "score_candidate",
           "set_rng_state"]
