"""Random search: draw architectures uniformly from the space, train and score each, keep the
best. The baseline every NAS paper owes (Li & Talwalkar, "Random Search and Reproducibility
for Neural Architecture Search", UAI 2019; Real et al. 2019 compare evolution against it at
equal compute), here at the same budget and with the same candidate training as evolution. With
the same seed, random search and evolution draw the same first architectures and train them
from the same seeds, so the two differ only where evolution's tournaments and mutations begin.
"""
from __future__ import annotations

import random
from typing import Any

import torch

from .base import (SearchAlgorithm, SearchResult, best_row, draw_within, register_algorithm, rng_state,
                   score_candidate, set_rng_state)


@register_algorithm
class RandomSearch(SearchAlgorithm):
    """One step = one architecture drawn (within the constraint), trained and scored."""

    name = "random"

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.rng = random.Random(ctx.seed)
        self.next_id = 0

    def options(self) -> dict[str, Any]:
        return {}

    def step(self, fraction: float) -> list[dict[str, Any]]:
        space = self.ctx.space
        rows: list[dict[str, Any]] = []
        arch, _, cost = draw_within(self.ctx, lambda: (space.sample(self.rng), "sampled"), rows)
        candidate = self.next_id
        self.next_id += 1
        scored = score_candidate(self.ctx, arch, candidate)
        rows.append({"kind": "candidate", "id": candidate, "arch": arch, "cost": cost, **scored})
        return rows

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"rng": rng_state(self.rng), "next_id": self.next_id}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.next_id = int(state["next_id"])

    def result(self, history: list[dict[str, Any]]) -> SearchResult:
        return result_of_best(self, history)


def result_of_best(algo: SearchAlgorithm, history: list[dict[str, Any]]) -> SearchResult:
    """The best-scored candidate of ``history`` as a SearchResult (evolution and random search)."""
    from .plots import architecture_figure

    space = algo.ctx.space
    best = best_row(history)
    if best is None:
        raise ValueError("the search ended before scoring any candidate; give it a larger budget")
    return SearchResult(arch=best["arch"], arch_file=space.arch_file, model_name=space.model_name,
                        overrides=space.size_overrides(), arch_key=space.arch_key, cost=best["cost"],
                        score=best["score"], description=space.describe(best["arch"]),
                        figure=lambda: architecture_figure(space, best["arch"]), extra={"best_id": best["id"]})


__all__ = ["RandomSearch", "result_of_best"]
