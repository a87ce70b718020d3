"""EfficientNet's compound-coefficient search: M. Tan, Q. V. Le, "EfficientNet: Rethinking Model
Scaling for Convolutional Neural Networks", ICML 2019, §3.3.

Step 1 of the paper fixes phi = 1, as if twice the resources were available, and grid-searches
alpha, beta, gamma under the compound-scaling rule: depth d = alpha^phi, width
w = beta^phi, resolution r = gamma^phi with alpha * beta^2 * gamma^2 ~ 2 and alpha, beta, gamma
>= 1; the best for EfficientNet-B0 was alpha = 1.2, beta = 1.1, gamma = 1.15. Step 2 scales the
base by larger phi with those constants. Here:

* the grid takes alpha, beta, gamma in {1, 1 + step, ...} up to ``max_coefficient`` and keeps
  the triples whose alpha * beta^2 * gamma^2 is within ``tolerance`` (relative) of 2 (the
  paper's triple lies on the grid of step 0.05; the default step 0.1 keeps 15 triples);
* each triple's network is the base scaled by :func:`convnet.models.compound_scale` (the
  authors' rounding: make_divisible for widths, ceil for depths) at phi = 1, trained at
  resolution round(base resolution x gamma) on the resized search-train half and scored on the
  search-val half, like every other candidate;
* the FLOPs constraint: a triple whose measured FLOPs exceed the user's constraint, or by default
  2^phi x (1 + tolerance) times the base's, is turned away untrained (rounding makes measured
  FLOPs differ from the formula's 2^phi: the history records both);
* the answer feeds :func:`compound_scale`: ``compound.json`` holds the best triple, and for
  phi = 1, 2, 3 the multipliers, resolution and scaled spec of the base, with their cost.

One step scores the base (phi = 0) first, then one grid point per step, in an order shuffled by
the seed (a budget that ends early has scored an unbiased sample of the grid).
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch

from ..models import create_model
from ..models.efficientnet import CompoundScaling, EfficientNetSpec, MBStage, compound_scale
from .base import SearchAlgorithm, SearchResult, register_algorithm
from .evaluate import build_seeded, candidate_seed, train_and_score
from .limits import Constraint, jsonable, measure_cost

_MB = "mbconv"
# A reduced EfficientNet-B0 for small inputs (the digits' 8x8 drawn into 12x12 or 32x32): B0's
# first four stages (Table 1: MBConv1 k3, MBConv6 k3, MBConv6 k5, MBConv6 k3; depths 1, 2, 2, 3)
# at half width, the last one unstrided (a total stride of 8, so inputs from 8x8 up), a 1x1
# head of 4x the last stage (as B0's 1280 = 4 x 320), channels rounded to multiples of 4 so
# that beta shows at these widths, no stochastic depth (a few epochs of training).
DIGITS_BASE = EfficientNetSpec(stages=(
    MBStage(_MB, expand_ratio=1, kernel_size=3, stride=1, out_channels=8, layers=1),  # S/2 after the stem
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=2, out_channels=12, layers=2),  # S/4
    MBStage(_MB, expand_ratio=6, kernel_size=5, stride=2, out_channels=20, layers=2),  # S/8
    MBStage(_MB, expand_ratio=6, kernel_size=3, stride=1, out_channels=40, layers=3),  # S/8
), stem_width=16, head_width=160, drop_rate=0.2, drop_path_rate=0.0, divisor=4)


def coefficient_grid(step: float = 0.1, max_coefficient: float = 1.5, target: float = 2.0,
                     tolerance: float = 0.05) -> list[tuple[float, float, float]]:
    """(alpha, beta, gamma) on the grid {1, 1 + step, ..., max_coefficient}^3 with
    |alpha * beta^2 * gamma^2 - target| <= tolerance * target, in lexicographic order."""
    if step <= 0 or max_coefficient < 1 or tolerance < 0:
        raise ValueError(f"coefficient grid needs step > 0, max_coefficient >= 1, tolerance >= 0; "
                         f"got {step}, {max_coefficient}, {tolerance}")
    values = [round(1 + i * step, 6) for i in range(int(round((max_coefficient - 1) / step)) + 1)]
    return [(a, b, g) for a in values for b in values for g in values
            if abs(a * b * b * g * g - target) <= tolerance * target]


def spec_overrides(spec: EfficientNetSpec) -> dict[str, Any]:
    """``create_model("efficientnet_b0", **overrides)`` builds ``spec`` (JSON-able: stages as lists)."""
    return jsonable({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})


@register_algorithm
class CompoundSearch(SearchAlgorithm):
    """Options: ``phi`` (1), ``grid_step`` (0.1), ``max_coefficient`` (1.5), ``tolerance`` (0.05)."""

    name = "compound"
    needs_space = False
    MODEL = "efficientnet_b0"  # its spec fields take the scaled base

    def __init__(self, ctx: Any, phi: float = 1.0, grid_step: float = 0.1, max_coefficient: float = 1.5,
                 tolerance: float = 0.05):
        super().__init__(ctx)
        if ctx.space is not None:
            raise ValueError("the compound search scales a fixed base network; it takes no --space")
        if phi <= 0:
            raise ValueError(f"compound search needs phi > 0, got {phi}")
        self.phi, self.grid_step, self.max_coefficient, self.tolerance = phi, grid_step, max_coefficient, tolerance
        self.base = DIGITS_BASE
        self.base_resolution = ctx.data.input_size[-1]
        self.grid = coefficient_grid(grid_step, max_coefficient, 2.0, tolerance)
        self.order = list(range(len(self.grid)))
        random.Random(ctx.seed).shuffle(self.order)
        self.position = -1  # -1: the base comes first
        self.base_cost: dict[str, int] | None = None

    def options(self) -> dict[str, Any]:
        return {"phi": self.phi, "grid_step": self.grid_step, "max_coefficient": self.max_coefficient,
                "tolerance": self.tolerance, "base": spec_overrides(self.base), "base_resolution": self.base_resolution}

    def _scaling(self, coefficients: tuple[float, float, float], phi: float) -> CompoundScaling:
        alpha, beta, gamma = coefficients
        return compound_scale(phi, alpha, beta, gamma, base=self.base, base_resolution=self.base_resolution,
                              released=False)

    def _cost(self, spec: EfficientNetSpec, resolution: int) -> dict[str, int]:
        d = self.ctx.data
        size = (d.input_size[0], *([resolution] * d.spatial_dims))
        return measure_cost(lambda: self._build(spec), size)

    def _build(self, spec: EfficientNetSpec) -> torch.nn.Module:
        d = self.ctx.data
        return create_model(self.MODEL, spatial_dims=d.spatial_dims, in_channels=d.input_size[0],
                            num_classes=d.num_classes, **spec_overrides(spec))

    def _constraint(self) -> Constraint:
        if self.ctx.constraint:
            return self.ctx.constraint
        assert self.base_cost is not None
        limit = 2 ** self.phi * (1 + self.tolerance) * 2 * self.base_cost["macs"]
        return Constraint((("flops", "<=", float(limit)),))

    def _score(self, spec: EfficientNetSpec, resolution: int, candidate: int) -> dict[str, float]:
        seed = candidate_seed(self.ctx.seed, candidate)
        model = build_seeded(lambda: self._build(spec), seed)
        return train_and_score(model, self.ctx.data.resized(resolution), self.ctx.eval, seed, self.ctx.device)

    def step(self, fraction: float) -> list[dict[str, Any]]:
        if self.position < 0:
            self.base_cost = self._cost(self.base, self.base_resolution)
            self.position = 0
            scored = self._score(self.base, self.base_resolution, 0)
            return [{"kind": "base", "id": 0, "arch": {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "phi": 0},
                     "resolution": self.base_resolution, "cost": self.base_cost, **scored}]
        rows: list[dict[str, Any]] = []
        constraint = self._constraint()
        while self.position < len(self.order):
            index = self.order[self.position]
            self.position += 1
            alpha, beta, gamma = self.grid[index]
            scaling = self._scaling((alpha, beta, gamma), self.phi)
            cost = self._cost(scaling.spec, scaling.resolution)
            arch = {"alpha": alpha, "beta": beta, "gamma": gamma, "phi": self.phi}
            info = {"product": round(alpha * beta ** 2 * gamma ** 2, 6), "resolution": scaling.resolution,
                    "flops_ratio": cost["macs"] / self.base_cost["macs"], "cost": cost}
            why = constraint.violation(cost)
            if why is not None:
                rows.append({"kind": "rejected", "arch": arch, **info, "score": None, "violation": why})
                continue
            scored = self._score(scaling.spec, scaling.resolution, index + 1)
            rows.append({"kind": "grid", "id": index + 1, "arch": arch, **info, **scored})
            break
        return rows

    def finished(self) -> bool:
        return self.position >= len(self.order)

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"position": self.position, "order": self.order, "base_cost": self.base_cost}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.position, self.order, self.base_cost = int(state["position"]), list(state["order"]), state["base_cost"]

    def result(self, history: list[dict[str, Any]]) -> SearchResult:
        from .plots import compound_figure

        grid = [r for r in history if r.get("kind") == "grid" and r.get("score") is not None]
        if not grid:
            raise ValueError("the compound search ended before scoring any grid point; give it a larger budget")
        best = max(grid, key=lambda r: r["score"])  # the first among equals
        coefficients = (best["arch"]["alpha"], best["arch"]["beta"], best["arch"]["gamma"])
        table = {}
        for phi in (1, 2, 3):
            s = self._scaling(coefficients, phi)
            table[str(phi)] = {"depth": s.depth, "width": s.width, "resolution": s.resolution,
                               "cost": self._cost(s.spec, s.resolution), "overrides": spec_overrides(s.spec)}
        chosen = self._scaling(coefficients, self.phi)
        arch = {"alpha": coefficients[0], "beta": coefficients[1], "gamma": coefficients[2], "phi": self.phi,
                "base": spec_overrides(self.base), "base_resolution": self.base_resolution,
                "base_cost": self.base_cost, "scaled": table}
        base = next((r for r in history if r.get("kind") == "base"), None)
        return SearchResult(arch=arch, arch_file="compound.json", model_name=self.MODEL,
                            overrides=spec_overrides(chosen.spec), arch_key=None, cost=best["cost"],
                            score=best["score"],
                            description=f"alpha {coefficients[0]:g}, beta {coefficients[1]:g}, "
                                        f"gamma {coefficients[2]:g} (alpha*beta^2*gamma^2 = {best['product']:.3f}); "
                                        f"phi={self.phi:g}: resolution {chosen.resolution}",
                            figure=lambda: compound_figure(history), image_size=chosen.resolution,
                            extra={"base_score": base["score"] if base else None, "grid_points": len(self.grid),
                                   "scored": len(grid)})


__all__ = ["DIGITS_BASE", "CompoundSearch", "coefficient_grid", "spec_overrides"]
