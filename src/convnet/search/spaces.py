"""Search spaces: what an architecture is, how to draw one at random, how to mutate one, and
which registered model builds it (in 1, 2 or 3 dims).

* ``darts``: the DARTS cell space (Liu et al. 2019, §2.1): a normal and a reduction cell of
  ``steps`` intermediate nodes (4), each node the sum of two operations on two distinct earlier
  nodes, operations from :data:`convnet.models.darts.PRIMITIVES` without "none". An
  architecture is a genotype's JSON form; ``darts_cell`` builds it.
* ``mobilenet``: the MobileNet-style space of MnasNet (Tan et al. 2019, §4.1) and EfficientNet:
  a fixed skeleton of stage widths and strides, with per stage a kernel size (3/5/7), an
  expansion ratio (1/3/6) and a depth; an architecture is an arch's JSON form (MnasArch);
  ``mnas_space`` builds it.

Mutations follow Real et al. 2019 (AmoebaNet, §2, "Methods") for the cell space: pick a cell and
one of its nodes' inputs, then either replace its operation by another ("op mutation") or its
input by another earlier node ("hidden state mutation"). In the MobileNet space a mutation
changes one choice of one stage. Both always change the architecture.

A space is registered by name in :data:`SPACES`; :func:`get_space` builds one with options.
"""
from __future__ import annotations

import abc
import copy
import random
from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from ..models import create_model
from ..models.darts import PRIMITIVES, Genotype
from ..models.mnas_space import MnasArch
from .limits import jsonable

SPACES: dict[str, type[SearchSpace]] = {}


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``cls`` the space ``cls.name``."""
    if cls.name in SPACES:
        raise ValueError(f"search space {cls.name!r} is already registered")
    SPACES[cls.name] = cls
    return cls


def get_space(name: str, **options: Any) -> SearchSpace:
    """The space ``name`` (a key of ``SPACES``) with its options.

    Raises:
        ValueError: an unknown name (the message lists the registered ones) or a bad option.
    """
    try:
        cls = SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; choose from {', '.join(SPACES)}") from None
    try:
        return cls(**options)
    except TypeError as e:  # an option the space does not take
        raise ValueError(f"search space {name!r}: {e}") from None


class SearchSpace(abc.ABC):
    """An architecture space. Architectures are JSON-able dicts."""

    name: ClassVar[str]
    model_name: ClassVar[str]  # the registered model that builds an architecture
    arch_key: ClassVar[str]  # the create_model override that takes the architecture (or its path)
    arch_file: ClassVar[str]  # the file a search writes the final architecture to

    @abc.abstractmethod
    def options(self) -> dict[str, Any]:
        """The space's settings (recorded in the search's config.json)."""

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> dict[str, Any]:
        """An architecture drawn uniformly from the space."""

    @abc.abstractmethod
    def mutate(self, arch: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
        """A different architecture one mutation away, and a description of the mutation."""

    @abc.abstractmethod
    def cheapest(self) -> dict[str, Any]:
        """The architecture of least cost (to tell an impossible constraint at the start)."""

    @abc.abstractmethod
    def check(self, arch: Any, where: str = "architecture") -> dict[str, Any]:
        """The architecture's JSON form, validated (a ValueError names ``where`` and the key)."""

    def size_overrides(self) -> dict[str, Any]:
        """Model overrides besides the architecture (the network's size)."""
        return {}

    def model_overrides(self, arch: dict[str, Any] | str) -> dict[str, Any]:
        """``create_model`` overrides that build ``arch`` (a dict, or a path to its file)."""
        return {self.arch_key: arch, **self.size_overrides()}

    def build(self, arch: dict[str, Any], spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
        """The network of ``arch``."""
        return create_model(self.model_name, spatial_dims=spatial_dims, in_channels=in_channels,
                            num_classes=num_classes, **self.model_overrides(arch))

    def builder(self, arch: dict[str, Any], spatial_dims: int, in_channels: int,
                num_classes: int) -> Callable[[], nn.Module]:
        return lambda: self.build(arch, spatial_dims, in_channels, num_classes)

    @abc.abstractmethod
    def describe(self, arch: dict[str, Any]) -> str:
        """One line."""


# -- the DARTS cell space ---------------------------------------------------------------------------

@register_space
class DartsSpace(SearchSpace):
    """The DARTS cell space at a given network size.

    Args:
        init_channels: C of the network's first cells.
        layers: cells (reduction cells at 1/3 and 2/3).
        steps: intermediate nodes per cell (4 in the paper).
        ops: candidate operations (default: every one of the paper's but "none").
    """

    name = "darts"
    model_name = "darts_cell"
    arch_key = "genotype"
    arch_file = "genotype.json"

    def __init__(self, init_channels: int = 8, layers: int = 5, steps: int = 4, ops: tuple[str, ...] | None = None):
        ops = tuple(ops) if ops is not None else tuple(p for p in PRIMITIVES if p != "none")
        bad = [o for o in ops if o not in PRIMITIVES or o == "none"]
        if bad or not ops:
            raise ValueError(f"darts space ops {bad or '()'}: choose from {', '.join(PRIMITIVES[1:])}")
        if steps < 1 or init_channels < 2 or layers < 1:
            raise ValueError(f"darts space needs steps >= 1, init_channels >= 2, layers >= 1, "
                             f"got {steps}, {init_channels}, {layers}")
        self.init_channels, self.layers, self.steps, self.ops = init_channels, layers, steps, ops

    def options(self) -> dict[str, Any]:
        return {"init_channels": self.init_channels, "layers": self.layers, "steps": self.steps, "ops": list(self.ops)}

    def size_overrides(self) -> dict[str, Any]:
        return {"init_channels": self.init_channels, "layers": self.layers}

    def _concat(self) -> list[int]:
        return list(range(2, 2 + self.steps))  # every intermediate node, as in the paper

    def sample(self, rng: random.Random) -> dict[str, Any]:
        arch: dict[str, Any] = {}
        for cell in ("normal", "reduce"):
            edges = []
            for node in range(self.steps):
                for index in rng.sample(range(node + 2), 2):  # two distinct earlier nodes
                    edges.append([rng.choice(self.ops), index])
            arch[cell], arch[f"{cell}_concat"] = edges, self._concat()
        return arch

    def mutate(self, arch: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
        child = copy.deepcopy(arch)
        cell = rng.choice(("normal", "reduce"))
        node = rng.randrange(self.steps)
        k = 2 * node + rng.randrange(2)
        op, index = child[cell][k]
        other = child[cell][k ^ 1][1]
        inputs = [j for j in range(node + 2) if j not in (index, other)]
        # Node 0 has only the two cell inputs, both taken: only its operations can change.
        if rng.random() < 0.5 and inputs:
            child[cell][k][1] = new = rng.choice(inputs)
            return child, f"{cell} node {node}: input {index} -> {new} (hidden state mutation)"
        choices = [o for o in self.ops if o != op]
        if not choices:
            if not inputs:
                raise ValueError("the darts space has one operation and no other input: nothing to mutate")
            child[cell][k][1] = new = rng.choice(inputs)
            return child, f"{cell} node {node}: input {index} -> {new} (hidden state mutation)"
        child[cell][k][0] = new_op = rng.choice(choices)
        return child, f"{cell} node {node}: {op} -> {new_op} (op mutation)"

    def cheapest(self) -> dict[str, Any]:
        free = [o for o in ("skip_connect", "max_pool_3x3", "avg_pool_3x3") if o in self.ops]
        op = free[0] if free else min(self.ops, key=lambda o: OP_UNIT_COST[o](self.init_channels))
        arch: dict[str, Any] = {}
        for cell in ("normal", "reduce"):
            arch[cell] = [[op, j] for node in range(self.steps) for j in (0, 1)]
            arch[f"{cell}_concat"] = self._concat()
        return arch

    def check(self, arch: Any, where: str = "genotype") -> dict[str, Any]:
        genotype = Genotype.from_dict(jsonable(arch), where)
        if genotype.steps != self.steps:
            raise ValueError(f"{where}: {genotype.steps} nodes per cell, the space has {self.steps}")
        return genotype.to_dict()

    def describe(self, arch: dict[str, Any]) -> str:
        def cell(edges: list) -> str:
            return " | ".join(f"{a[0]}<-{a[1]} + {b[0]}<-{b[1]}" for a, b in zip(edges[::2], edges[1::2]))
        return f"normal: {cell(arch['normal'])}; reduce: {cell(arch['reduce'])}"


# Multiply-accumulates per output pixel of each operation at C channels (its depthwise and
# pointwise convolutions; pools and the identity compute no products). Constrained DARTS
# discretisation steps down along this order.
OP_UNIT_COST: dict[str, Callable[[int], int]] = {
    "none": lambda c: 0,
    "skip_connect": lambda c: 0,
    "max_pool_3x3": lambda c: 0,
    "avg_pool_3x3": lambda c: 0,
    "dil_conv_3x3": lambda c: 9 * c + c * c,
    "dil_conv_5x5": lambda c: 25 * c + c * c,
    "sep_conv_3x3": lambda c: 2 * (9 * c + c * c),
    "sep_conv_5x5": lambda c: 2 * (25 * c + c * c),
}


# -- the MobileNet-style space ------------------------------------------------------------------------

# A skeleton for small inputs (the digits, 8x8 drawn into 12x12 or 32x32): a 3x3/2 stem, the
# separable block, four stages at a total stride of 8 (inputs from 8x8 up); the widths follow
# B0's first stages, halved.
DIGITS_SKELETON = MnasArch.from_dict({
    "stages": [
        {"kernel_size": 3, "expand_ratio": 6, "layers": 1, "out_channels": 16, "stride": 1},
        {"kernel_size": 3, "expand_ratio": 6, "layers": 1, "out_channels": 24, "stride": 2},
        {"kernel_size": 3, "expand_ratio": 6, "layers": 1, "out_channels": 40, "stride": 2},
        {"kernel_size": 3, "expand_ratio": 6, "layers": 1, "out_channels": 48, "stride": 1},
    ],
    "stem_width": 16, "stem_stride": 2, "sep_width": 8, "head_width": 192})


@register_space
class MobileNetSpace(SearchSpace):
    """Per stage of a fixed skeleton: kernel size, expansion ratio and depth.

    Args:
        skeleton: stage widths and strides (an MnasArch, its JSON form, or None for
            :data:`DIGITS_SKELETON`); its kernel, expansion and depth values are ignored.
        kernel_sizes, expand_ratios, depths: the choices per stage (MnasNet's: 3/5/7 kernels,
            1/3/6 expansion; depths 1-3 here).
    """

    name = "mobilenet"
    model_name = "mnas_space"
    arch_key = "arch"
    arch_file = "arch.json"
    _FIELDS = ("kernel_size", "expand_ratio", "layers")

    def __init__(self, skeleton: MnasArch | dict | None = None, kernel_sizes: tuple[int, ...] = (3, 5, 7),
                 expand_ratios: tuple[int, ...] = (1, 3, 6), depths: tuple[int, ...] = (1, 2, 3)):
        self.skeleton = (skeleton if isinstance(skeleton, MnasArch)
                         else MnasArch.from_dict(skeleton, "skeleton") if skeleton is not None else DIGITS_SKELETON)
        self.choices = {"kernel_size": tuple(kernel_sizes), "expand_ratio": tuple(expand_ratios),
                        "layers": tuple(depths)}
        for key, values in self.choices.items():
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"mobilenet space {key} choices must be positive integers, got {values}")
        if any(k % 2 == 0 for k in self.choices["kernel_size"]):
            raise ValueError(f"mobilenet space kernel sizes must be odd, got {self.choices['kernel_size']}")

    def options(self) -> dict[str, Any]:
        return {"skeleton": self.skeleton.to_dict(), "kernel_sizes": list(self.choices["kernel_size"]),
                "expand_ratios": list(self.choices["expand_ratio"]), "depths": list(self.choices["layers"])}

    def _arch(self, picks: list[dict[str, int]]) -> dict[str, Any]:
        arch = self.skeleton.to_dict()
        for stage, pick in zip(arch["stages"], picks):
            stage.update(pick)
        return arch

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return self._arch([{f: rng.choice(self.choices[f]) for f in self._FIELDS} for _ in self.skeleton.stages])

    def mutate(self, arch: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
        child = copy.deepcopy(arch)
        fields = [f for f in self._FIELDS if len(self.choices[f]) > 1]
        if not fields:
            raise ValueError("the mobilenet space has one choice for everything: nothing to mutate")
        i = rng.randrange(len(child["stages"]))
        field = rng.choice(fields)
        old = child["stages"][i][field]
        child["stages"][i][field] = new = rng.choice([v for v in self.choices[field] if v != old])
        return child, f"stage {i}: {field} {old} -> {new}"

    def cheapest(self) -> dict[str, Any]:
        return self._arch([{f: min(self.choices[f]) for f in self._FIELDS} for _ in self.skeleton.stages])

    def check(self, arch: Any, where: str = "arch") -> dict[str, Any]:
        parsed = MnasArch.from_dict(jsonable(arch), where)
        if len(parsed.stages) != len(self.skeleton.stages):
            raise ValueError(f"{where}: {len(parsed.stages)} stages, the skeleton has {len(self.skeleton.stages)}")
        return parsed.to_dict()

    def describe(self, arch: dict[str, Any]) -> str:
        return " | ".join(f"k{s['kernel_size']} e{s['expand_ratio']} x{s['layers']} -> {s['out_channels']}"
                          for s in arch["stages"])


__all__ = ["DIGITS_SKELETON", "OP_UNIT_COST", "SPACES", "DartsSpace", "MobileNetSpace", "SearchSpace", "get_space",
           "register_space"]
