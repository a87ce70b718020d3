"""Regularized evolution: E. Real, A. Aggarwal, Y. Huang, Q. V. Le, "Regularized Evolution for
Image Classifier Architecture Search", AAAI 2019 (arXiv:1802.01548), Algorithm 1.

The population is a queue of ``population`` trained models, filled first with random
architectures. Each cycle draws ``sample`` members at random (a member may be drawn twice; it
stays in the population), takes the best of that sample as the parent (tournament selection),
trains a mutated copy of it and adds the child to the young end, and removes the *oldest*
member (aging: the paper's regularisation; plain tournament selection would remove the worst).
The answer is the best model ever trained, not the best survivor. Mutations are the space's
(spaces.py: op and hidden-state mutations for the cell space). A child that breaks the cost
constraint is turned away before training and the parent mutated again.
"""
from __future__ import annotations

import random
from collections import deque
from typing import Any

import torch

from .base import (SearchAlgorithm, SearchResult, draw_within, register_algorithm, rng_state, score_candidate,
                   set_rng_state)
from .random_search import result_of_best

Member = dict[str, Any]  # {"id", "arch", "score", "cost"}


def tournament(population: deque[Member] | list[Member], sample_size: int,
               rng: random.Random) -> tuple[Member, list[Member]]:
    """Draw ``sample_size`` members with replacement; the parent is the highest-scored of the
    sample (the first drawn among equals). Returns (parent, sample)."""
    members = list(population)
    sample = [members[rng.randrange(len(members))] for _ in range(sample_size)]
    return max(sample, key=lambda m: m["score"]), sample


def age(population: deque[Member]) -> Member:
    """Remove and return the oldest member (the left end of the queue)."""
    return population.popleft()


@register_algorithm
class RegularizedEvolution(SearchAlgorithm):
    """One step = one model trained: a random one while the population fills, then a child.

    Options:
        population: P, the size of the population (Real et al. use 100 on CIFAR-10).
        sample: S, the tournament size (25 there).
    """

    name = "evolution"

    def __init__(self, ctx: Any, population: int = 10, sample: int = 3):
        super().__init__(ctx)
        if population < 2 or not 1 <= sample <= population:
            raise ValueError(f"evolution needs population >= 2 and 1 <= sample <= population, "
                             f"got population={population}, sample={sample}")
        self.population_size, self.sample_size = population, sample
        self.rng = random.Random(ctx.seed)
        self.population: deque[Member] = deque()
        self.next_id = 0

    def options(self) -> dict[str, Any]:
        return {"population": self.population_size, "sample": self.sample_size}

    def step(self, fraction: float) -> list[dict[str, Any]]:
        space = self.ctx.space
        rows: list[dict[str, Any]] = []
        info: dict[str, Any] = {}
        if len(self.population) < self.population_size:
            arch, note, cost = draw_within(self.ctx, lambda: (space.sample(self.rng), "random"), rows)
        else:
            parent, sample = tournament(self.population, self.sample_size, self.rng)
            arch, note, cost = draw_within(self.ctx, lambda: space.mutate(parent["arch"], self.rng), rows)
            info = {"parent": parent["id"], "tournament": [m["id"] for m in sample]}
        candidate = self.next_id
        self.next_id += 1
        scored = score_candidate(self.ctx, arch, candidate)
        child = {"id": candidate, "arch": arch, "score": scored["score"], "cost": cost}
        self.population.append(child)
        if info:
            info["removed"] = age(self.population)["id"]  # the oldest dies, whatever its score
        rows.append({"kind": "candidate", "id": candidate, "arch": arch, "note": note, "cost": cost, **info, **scored})
        return rows

    def progress(self) -> dict[str, Any]:
        return {"population": len(self.population)}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"rng": rng_state(self.rng), "next_id": self.next_id, "population": list(self.population)}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.next_id = int(state["next_id"])
        self.population = deque(state["population"])

    def result(self, history: list[dict[str, Any]]) -> SearchResult:
        # "the highest-accuracy model in history" (Algorithm 1), not the best survivor.
        return result_of_best(self, history)


__all__ = ["RegularizedEvolution", "age", "tournament"]
