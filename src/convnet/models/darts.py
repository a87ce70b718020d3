"""DARTS: H. Liu, K. Simonyan, Y. Yang, "DARTS: Differentiable Architecture Search", ICLR 2019
(arXiv:1806.09055): the network a searched genotype describes.

A cell (§2.1) is a directed acyclic graph of ``steps`` intermediate nodes (4 in the paper). Its
two input nodes are the outputs of the two previous cells, each brought to C channels by a
1x1 ReLU-conv-BN (a FactorizedReduce where the cell before the previous one ran at twice the
resolution); each intermediate node is the sum of two operations applied to earlier nodes, and
the cell's output is the channel concatenation of its intermediate nodes (4C channels). A
*reduction* cell applies its operations on the two input nodes at stride 2 (§3.1.1: "cells
located at the 1/3 and 2/3 of the total depth of the network are reduction cells"). The genotype
names, for the normal and the reduction cell, each node's two (operation, input) pairs.

The operations (§3.1.1, and the authors' operations.py): 3x3 and 5x5 separable convolutions,
3x3 and 5x5 dilated separable convolutions, 3x3 max and average pooling, identity ("skip
connect"; a FactorizedReduce at stride 2) and zero ("none"; only in the search). Every
convolution is ReLU-conv-BN; "the separable convolutions are always applied twice". The
CIFAR-10 network (§3.2) is a 3x3 conv stem of 3C channels with BN, 20 cells at C = 36, global
average pooling and a linear classifier (the auxiliary tower of the paper's training recipe is
not part of the model here: it feeds only an extra loss term).

Everything is N-d by ``spatial_dims``. FactorizedReduce shifts its second path by one pixel on
every spatial axis, as the authors' code does; it pads the shifted map at the far end so that the
two paths agree on odd sizes too (where the authors' code fails), which changes nothing at even
sizes. The genotype is a :class:`Genotype` in the spec, and its JSON form (a dict, or a path to
a .json file) as an override, which must be JSON-able to be saved with a run:
``create_model("darts_cell", genotype="search/genotype.json")`` builds a searched cell,
``create_model("darts_cell", genotype=DARTS_V1.to_dict())`` the authors' first-order one, and
``convnet train --model darts_cell model.overrides.genotype=PATH`` retrains one.

Layout: ``stem`` (ConvNormAct without activation), ``cells[i]`` (``preprocess0``,
``preprocess1``, ``ops[k]``), ``head`` (ClassifierHead).
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo
from ._registry import register

# The candidate operations in the order of the authors' genotypes.py (the columns of alpha).
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")


# -- operations ---------------------------------------------------------------------------------

class ReLUConvNorm(nn.Sequential):
    """ReLU, convolution (no bias), batch norm: the order of every DARTS convolution.

    The ReLU is not in-place: a node's output feeds several operations."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, affine: bool = True):
        super().__init__()
        self.act = L.act("relu")
        self.conv = L.conv(spatial_dims, in_channels, out_channels, kernel_size, stride, bias=False)
        self.norm = L.norm("batch", spatial_dims, out_channels, affine=affine)


class DilConv(nn.Sequential):
    """ReLU, a k x k depthwise convolution (dilated), a 1x1 pointwise convolution, batch norm:
    the authors' DilConv, and one half of their SepConv."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, affine: bool = True):
        super().__init__()
        self.act = L.act("relu")
        self.depthwise = L.conv(spatial_dims, in_channels, in_channels, kernel_size, stride, dilation=dilation,
                                depthwise=True, bias=False)
        self.pointwise = L.conv(spatial_dims, in_channels, out_channels, 1, bias=False)
        self.norm = L.norm("batch", spatial_dims, out_channels, affine=affine)


class SepConv(nn.Sequential):
    """The separable convolution "applied twice" (§3.1.1): ``first`` strided, ``second`` not."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 affine: bool = True):
        super().__init__()
        self.first = DilConv(spatial_dims, in_channels, in_channels, kernel_size, stride, affine=affine)
        self.second = DilConv(spatial_dims, in_channels, out_channels, kernel_size, 1, affine=affine)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: two 1x1 stride-2 convolutions, the
    second on the map shifted by one pixel along each spatial axis, concatenated (C/2 each) and
    normalised. The skip connection of a reduction cell, and the preprocessing of a cell whose
    earlier input is at twice the resolution."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, affine: bool = True):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"FactorizedReduce needs an even out_channels (two halves), got {out_channels}")
        self.act = L.act("relu")
        self.conv_1 = L.conv(spatial_dims, in_channels, out_channels // 2, 1, 2, bias=False)
        self.conv_2 = L.conv(spatial_dims, in_channels, out_channels // 2, 1, 2, bias=False)
        self.norm = L.norm("batch", spatial_dims, out_channels, affine=affine)
        self.time_axis = False  # set by inflation: the first spatial axis is time, neither shifted nor strided

    def inflated(self, time_kernel: int) -> FactorizedReduce:
        """The 3-D counterpart (layers.inflate_module): its 1x1 convolutions keep time."""
        new = copy.deepcopy(self)
        new.conv_1 = L.inflate_module(self.conv_1, time_kernel)
        new.conv_2 = L.inflate_module(self.conv_2, time_kernel)
        new.norm = L.inflate_module(self.norm, time_kernel)
        new.time_axis = True
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted_axes = x.ndim - 2 - self.time_axis
        # Shift by one pixel on each spatial axis, padding the far end: same size as x, so both
        # paths give ceil(S / 2) whatever the parity of S.
        shifted = F.pad(x, (0, 1) * shifted_axes)[(..., *[slice(1, None)] * shifted_axes)]
        out = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)  # (B, C_out, *ceil(S / 2))
        return self.norm(out)


class AvgPool(nn.Module):
    """The authors' avg_pool_3x3: padding 1, the mean over the real pixels of each window
    (count_include_pad=False). torch's 3-D average pool refuses an input smaller than its
    kernel whatever the padding, which the last cells of a 3-D network reach; there the padding
    is made explicit (zeros, divided by the count of real pixels per window), same result."""

    def __init__(self, spatial_dims: int, stride: int = 1):
        super().__init__()
        self.pool = L.avg_pool(spatial_dims, 3, stride, 1, count_include_pad=False)
        self.unpadded = L.avg_pool(spatial_dims, 3, stride, 0)  # the explicit path's window sum / area

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.ndim - 2
        kernel, padding = L.ntuple(self.pool.kernel_size, d), L.ntuple(self.pool.padding, d)
        if all(size >= k for size, k in zip(x.shape[2:], kernel)):
            return self.pool(x)
        pads = [p for axis in reversed(padding) for p in (axis, axis)]  # F.pad lists the last axis first
        real = F.pad(torch.ones_like(x[:1, :1]), pads)
        return self.unpadded(F.pad(x, pads)) / self.unpadded(real)  # mean over real pixels only


class Zero(nn.Module):
    """The "none" operation of the search: zeros of the (strided) output's shape."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        strided = x[(slice(None), slice(None), *[slice(None, None, self.stride)] * (x.ndim - 2))]
        return strided.mul(0.0)


# name -> factory(spatial_dims, channels, stride, affine); paddings keep the size at stride 1.
OpFactory = Callable[[int, int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {
    "none": lambda d, c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda d, c, stride, affine: L.max_pool(d, 3, stride, 1),
    # The authors' average pool counts only real pixels at the border (count_include_pad=False).
    "avg_pool_3x3": lambda d, c, stride, affine: AvgPool(d, stride),
    "skip_connect": lambda d, c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(d, c, c, affine),
    "sep_conv_3x3": lambda d, c, stride, affine: SepConv(d, c, c, 3, stride, affine),
    "sep_conv_5x5": lambda d, c, stride, affine: SepConv(d, c, c, 5, stride, affine),
    "dil_conv_3x3": lambda d, c, stride, affine: DilConv(d, c, c, 3, stride, dilation=2, affine=affine),
    "dil_conv_5x5": lambda d, c, stride, affine: DilConv(d, c, c, 5, stride, dilation=2, affine=affine),
}


def make_op(name: str, spatial_dims: int, channels: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """A DARTS operation by name (a key of ``OPS``) on ``channels`` channels.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown DARTS operation {name!r}; choose from {', '.join(OPS)}") from None
    return factory(spatial_dims, channels, stride, affine)


# -- the genotype ---------------------------------------------------------------------------------

Edge = tuple[str, int]  # (operation, index of the input node: 0, 1 = the cell's inputs, 2.. = its nodes)


@dataclass(frozen=True)
class Genotype:
    """A discrete DARTS architecture: for the normal and the reduction cell, two (operation,
    input) edges per intermediate node, node by node, and the nodes concatenated as the output.

    ``to_dict()`` / :meth:`from_dict` give the JSON form the search writes (``genotype.json``)."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    @property
    def steps(self) -> int:
        """Intermediate nodes per cell."""
        return len(self.normal) // 2

    def to_dict(self) -> dict[str, Any]:
        return {"normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(e) for e in self.reduce], "reduce_concat": list(self.reduce_concat)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "genotype") -> Genotype:
        """Check and convert the JSON form; a ValueError names ``where``, the key and the value.

        Raises:
            ValueError: missing or extra keys, an odd number of edges, an unknown operation or
                "none", an input that is not an earlier node, a bad concat list.
        """
        keys = ("normal", "normal_concat", "reduce", "reduce_concat")
        if not isinstance(d, dict) or set(d) != set(keys):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: expected an object with keys {list(keys)}, got {got}")
        cells: dict[str, Any] = {}
        for cell in ("normal", "reduce"):
            edges = d[cell]
            if not isinstance(edges, (list, tuple)) or not edges or len(edges) % 2:
                raise ValueError(f"{where}: {cell!r} must be a non-empty list of an even number of "
                                 f"[operation, input] pairs (two per node), got {edges!r}")
            parsed = []
            for k, edge in enumerate(edges):
                node = k // 2
                if (not isinstance(edge, (list, tuple)) or len(edge) != 2 or not isinstance(edge[0], str)
                        or not isinstance(edge[1], int) or isinstance(edge[1], bool)):
                    raise ValueError(f"{where}: {cell}[{k}] must be [operation, input index], got {edge!r}")
                op, index = edge
                if op not in OPS or op == "none":
                    raise ValueError(f"{where}: {cell}[{k}] operation {op!r} is not one of "
                                     f"{', '.join(p for p in PRIMITIVES if p != 'none')}")
                if not 0 <= index < node + 2:
                    raise ValueError(f"{where}: {cell}[{k}] input {index} of node {node} must be an earlier "
                                     f"node, 0..{node + 1}")
                parsed.append((op, index))
            concat = d[f"{cell}_concat"]
            steps = len(edges) // 2
            if (not isinstance(concat, (list, tuple)) or not concat
                    or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < steps + 2 for i in concat)):
                raise ValueError(f"{where}: {cell}_concat must list node indices in 0..{steps + 1}, got {concat!r}")
            cells[cell], cells[f"{cell}_concat"] = tuple(parsed), tuple(concat)
        if len(cells["normal"]) != len(cells["reduce"]):
            raise ValueError(f"{where}: the normal cell has {len(cells['normal']) // 2} nodes, the reduction cell "
                             f"{len(cells['reduce']) // 2}; both need the same number")
        return cls(**cells)


def load_genotype(value: Genotype | dict | str | os.PathLike) -> Genotype:
    """A Genotype from itself, its JSON form, or a JSON file's path.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not JSON or not a genotype (the message names the file).
    """
    if isinstance(value, Genotype):
        return value
    if isinstance(value, dict):
        return Genotype.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"genotype file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"genotype file {path} is not JSON: {e}") from None
        return Genotype.from_dict(data, where=str(path))
    raise ValueError(f"genotype must be a Genotype, a dict or a path to a .json file, got {type(value).__name__}")


# The cells found by the authors (genotypes.py): DARTS (first order) and DARTS (second order),
# the latter the cell of the paper's Fig. 4/5 and Table 1 (2.76% error on CIFAR-10 at 3.3M parameters).
DARTS_V1 = Genotype(
    normal=(("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)),
    reduce_concat=(2, 3, 4, 5),
)
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5),
)


# -- cell and network ---------------------------------------------------------------------------

def reduction_layers(layers: int) -> tuple[int, ...]:
    """The indices of the reduction cells: at 1/3 and 2/3 of the depth (§3.1.1)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class Cell(nn.Module):
    """One discrete cell: ``preprocess0``/``preprocess1`` bring the two previous cells' outputs
    to ``channels``; node i sums ``ops[2i]`` and ``ops[2i+1]`` applied to the nodes ``indices``
    names; the output concatenates the ``concat`` nodes."""

    def __init__(self, spatial_dims: int, genotype: Genotype, prev_prev_channels: int, prev_channels: int,
                 channels: int, reduction: bool, reduction_prev: bool, drop_path: float = 0.0):
        super().__init__()
        d = spatial_dims
        self.reduction = reduction
        # The earlier input is at twice this cell's input resolution after a reduction cell.
        self.preprocess0 = (FactorizedReduce(d, prev_prev_channels, channels) if reduction_prev
                            else ReLUConvNorm(d, prev_prev_channels, channels, 1))
        self.preprocess1 = ReLUConvNorm(d, prev_channels, channels, 1)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.indices = tuple(index for _, index in edges)
        # In a reduction cell the edges from the two inputs are strided (§2.1).
        self.ops = nn.ModuleList(make_op(name, d, channels, 2 if reduction and index < 2 else 1)
                                 for name, index in edges)
        # The authors drop every operation's path but the identity's (train.py, model.py).
        self.drop_paths = nn.ModuleList(nn.Identity() if isinstance(op, nn.Identity) or drop_path <= 0
                                        else L.DropPath(drop_path) for op in self.ops)
        self.out_channels = len(self.concat) * channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # both (B, C, *S)
        for node in range(len(self.ops) // 2):
            a, b = 2 * node, 2 * node + 1
            h_a = self.drop_paths[a](self.ops[a](states[self.indices[a]]))
            h_b = self.drop_paths[b](self.ops[b](states[self.indices[b]]))
            states.append(h_a + h_b)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, len(concat) * C, *S')


@dataclass(frozen=True)
class DartsSpec:
    """One network of DARTS cells."""

    genotype: Genotype | dict | str = DARTS_V2  # or its JSON form, or a path to genotype.json
    init_channels: int = 36  # C of the first cells (the CIFAR-10 evaluation network: 36)
    layers: int = 20  # cells; the reduction cells sit at layers // 3 and 2 * layers // 3
    stem_multiplier: int = 3  # the stem's width is stem_multiplier * C
    drop_path_rate: float = 0.0  # per operation; the authors ramp 0 -> 0.2 over training (not done here)


class DartsNetwork(ConvNetClassifier):
    """The CIFAR-style network of §3.2 in 1, 2 or 3 dims: ``stem``, ``cells[i]``, ``head``.

    Args:
        spec: the genotype and sizes.
        spatial_dims, in_channels, num_classes: as every model.
    """

    def __init__(self, spec: DartsSpec = DartsSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 10):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.genotype = genotype = load_genotype(spec.genotype)
        if spec.layers < 1 or spec.init_channels < 1:
            raise ValueError(f"layers and init_channels must be >= 1, got {spec.layers} and {spec.init_channels}")
        channels = spec.init_channels
        stem_width = spec.stem_multiplier * channels
        self.stem = L.ConvNormAct(d, in_channels, stem_width, 3, act_layer=None)  # conv 3x3 + BN (model.py)
        prev_prev, prev, reduction_prev, reduction = stem_width, stem_width, False, 1
        reductions = reduction_layers(spec.layers)
        self.cells = nn.ModuleList()
        self.feature_info = []
        for i in range(spec.layers):
            is_reduction = i in reductions
            if is_reduction:
                channels *= 2  # a reduction cell doubles the channels as it halves the resolution
                if i > 0:
                    self.feature_info.append(FeatureInfo(prev, reduction, f"cells.{i - 1}"))
                reduction *= 2
            cell = Cell(d, genotype, prev_prev, prev, channels, is_reduction, reduction_prev, spec.drop_path_rate)
            self.cells.append(cell)
            prev_prev, prev, reduction_prev = prev, cell.out_channels, is_reduction
        self.feature_info.append(FeatureInfo(prev, reduction, f"cells.{spec.layers - 1}"))
        self.head = ClassifierHead(prev, num_classes)
        self.cam_layer = f"cells.{spec.layers - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)  # (B, 3C, *S): both inputs of the first cell
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1  # (B, 4C', *S / 4)


# -- spec table and registration --------------------------------------------------------------------

_PAPER = "Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the authors' utils.py (CIFAR-10 statistics)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

DARTS_SPECS: dict[str, dict] = {
    # §3.2: the DARTS (second order) cell, 20 cells at C = 36 on CIFAR-10. The authors' train.py
    # logs "param size = 3.349342MB" for it (auxiliary tower excluded); Table 1 rounds to 3.3M.
    "darts_cell": dict(spec=DartsSpec(genotype=DARTS_V2, init_channels=36, layers=20), reference_params=3_349_342),
}

# Contract tests: C = 4, three cells (normal, reduction, reduction: both reductions, and a
# FactorizedReduce preprocessing after the first).
_TINY: dict[str, Any] = {"init_channels": 4, "layers": 3}

for _name, _row in DARTS_SPECS.items():
    register(_name, DartsNetwork, family="darts", paper=_PAPER, year=2019, in_channels=3, num_classes=10,
             input_size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
             reference="quark0/darts cnn/train.py log (DARTS_V2, C=36, 20 cells, auxiliary excluded)",
             extra={"tiny": _TINY}, **_row)


def genotype_edges(genotype: Genotype, cell: str) -> Sequence[Edge]:
    """The edges of the ``"normal"`` or ``"reduce"`` cell."""
    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    return genotype.normal if cell == "normal" else genotype.reduce


__all__ = ["DARTS_V1", "DARTS_V2", "OPS", "PRIMITIVES", "AvgPool", "Cell", "DartsNetwork", "DartsSpec", "DilConv",
           "FactorizedReduce", "Genotype", "ReLUConvNorm", "SepConv", "Zero", "genotype_edges", "load_genotype",
           "make_op", "reduction_layers"]
