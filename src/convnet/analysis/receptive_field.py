"""Theoretical receptive fields of any network, branches included, and a gradient measurement.

The geometry of one unit follows Araujo, Norris and Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019 (Eq. 1-2 and the section on alignment): along one
spatial axis a feature map is described by its receptive-field size ``r``, its jump (effective
stride) ``S`` between neighbouring units, and the input interval ``[u0, v0]`` covered by unit 0.
A layer with kernel ``k``, dilation ``d``, stride ``s`` and left padding ``p`` maps
(r, S, u0, v0) to (r + (k_eff - 1) S, S s, u0 - p S, v0 + (k_eff - 1 - p) S) with
k_eff = d (k - 1) + 1. Where paths meet (a residual add, an inception concatenation along
channels, a dense block) the field is the union of the intervals (the article's rule for
multi-path networks: the largest covering interval).

Rather than walking modules (which misses residual adds written in forward, F.pad calls and
computed "same" padding), the model runs once under a ``TorchDispatchMode`` that sees every
aten operation and carries the geometry alongside each tensor. On the meta device this costs
no memory and no compute, so a full-size ResNet-50 at 224 takes milliseconds.

Operations whose output depends on a whole axis (global pooling, a flatten followed by a linear
layer, norms with spatial statistics such as GroupNorm or BatchNorm in training, a squeeze-and-
excitation gate) make that axis *whole*: the unit sees the entire input along it; the reported
size is then the input's extent. Operations with no geometric meaning here (transposed
convolutions, interpolation, space-to-depth, concatenation along a spatial axis) make the
geometry *unknown*: such layers are left out of :func:`receptive_fields` and
:func:`receptive_field` raises, naming the operation.

The rules are a table from ATen op to handler (``_RULES``, filled by ``@_rule(op, ...)``), the
way torch's decomposition tables are written; an op without an entry is a pointwise op (ATen's
``pointwise`` tag: the union of its operands' fields) or loses the geometry. The independent
measurement the rules are checked against is :mod:`convnet.analysis.rf_measurement`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten


@dataclass(frozen=True)
class RF:
    """The receptive field of one feature map, per spatial axis.

    Attributes:
        size: receptive-field size of one unit, in input pixels (the input's extent on an axis
            where the unit sees the whole input, see ``whole``).
        jump: distance in input pixels between neighbouring units (the product of strides).
        start: input coordinate of the centre of unit 0's field (negative when padding puts it
            before the first pixel); unit i is centred at ``start + i * jump``.
        whole: per axis, whether the unit depends on the whole input (global pooling, linear
            layers on flattened maps, squeeze-excitation gates, spatial normalisation statistics).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    whole: tuple[bool, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.whole:
            object.__setattr__(self, "whole", (False,) * len(self.size))

    def interval(self, index: Sequence[int]) -> list[tuple[float, float]]:
        """Per axis the input interval [first, last] (pixel coordinates, unclipped) covered by
        the unit at ``index``."""
        return [(c + i * j - (r - 1) / 2, c + i * j + (r - 1) / 2)
                for c, i, j, r in zip(self.start, index, self.jump, self.size)]


class UnknownGeometry(RuntimeError):
    """Raised when an operation on the path has no receptive-field rule."""


@dataclass(frozen=True)
class _Axis:
    lo: float  # first input pixel covered by unit 0
    hi: float  # last input pixel covered by unit 0
    jump: float
    whole: bool = False
    unknown: str | None = None  # the operation that lost the geometry

    def conv(self, k: int, s: int, p: int, d: int = 1) -> "_Axis":
        if self.whole or self.unknown:
            return _Axis(self.lo, self.hi, self.jump * s, self.whole, self.unknown)
        k_eff = d * (k - 1) + 1
        return _Axis(self.lo - p * self.jump, self.hi + (k_eff - 1 - p) * self.jump, self.jump * s)

    def span(self, n: int) -> "_Axis":
        """Every one of ``n`` units at once (a reduction over the axis): the whole input."""
        # Whatever was lost on the way, a unit that sees every position sees the whole input.
        return _Axis(self.lo, self.hi + max(n - 1, 0) * self.jump, self.jump, True)

    def lost(self, op: str) -> "_Axis":
        return _Axis(self.lo, self.hi, self.jump, self.whole, self.unknown or op)


Factor = tuple  # (axis id or None, size)


@dataclass
class _Geo:
    """Geometry of one tensor: for every tensor dim the factors it is made of (a dim is a
    product of input axes and non-spatial factors after a view), and every spatial axis'
    geometry (also those reduced away)."""

    dims: list[tuple[Factor, ...]]
    axes: dict[int, _Axis]

    def axis_of(self, dim: int) -> int | None:
        """The spatial axis a dim is, or None for a non-spatial dim (raises nothing)."""
        ids = [a for a, n in self.dims[dim] if a is not None]
        return ids[0] if len(ids) == 1 and all(n == 1 or a is not None for a, n in self.dims[dim]) else None

    def axes_in(self, dim: int) -> list[int]:
        return [a for a, _ in self.dims[dim] if a is not None]


def _lose_all(geos: list[_Geo], op: str, ndim: int) -> _Geo:
    axes: dict[int, _Axis] = {}
    for g in geos:
        for a, ax in g.axes.items():
            axes[a] = ax.lost(op)
    return _Geo([((None, 1),)] * ndim, axes)


def _union(geos: list[tuple[_Geo, tuple[int, ...]]], out_shape: Sequence[int], op: str,
           drop_broadcast: bool = False) -> _Geo:
    """Union of the operands' fields under broadcasting (add, mul, where, ...).

    ``drop_broadcast``: an operand that is the same for every unit (a gate computed from a
    global pool) is left out of the union where a local operand exists."""
    nd = len(out_shape)
    dims: list[tuple[Factor, ...] | None] = [None] * nd
    entries: dict[int, list[tuple[_Axis, bool]]] = {}
    for g, shape in geos:
        off = nd - len(shape)
        mapped: dict[int, bool] = {}  # axis -> broadcast?
        for i, n in enumerate(shape):
            j = i + off
            bcast = n == 1 and out_shape[j] != 1
            if not bcast and dims[j] is None:
                dims[j] = g.dims[i]
            for a in g.axes_in(i):
                mapped[a] = bcast
        for a, ax in g.axes.items():
            entries.setdefault(a, []).append((ax, mapped.get(a, None)))
    dims = [d if d is not None else ((None, out_shape[j]),) for j, d in enumerate(dims)]
    out_size: dict[int, int] = {}
    for j, d in enumerate(dims):
        for a in (a for a, _ in d if a is not None):
            out_size[a] = out_shape[j]
    axes: dict[int, _Axis] = {}
    for a, items in entries.items():
        n_out = out_size.get(a, 1)
        unknown = next((ax.unknown for ax, _ in items if ax.unknown), None)
        # An operand without the axis as a dim of the output's size is the same for every unit.
        aligned = [ax for ax, b in items if not (b or (b is None and n_out > 1))]
        if drop_broadcast and aligned:
            items = [(ax, False) for ax in aligned]
        jump = max(ax.jump for ax, _ in items) if not aligned else aligned[0].jump
        lo, hi = min(ax.lo for ax, _ in items), max(ax.hi for ax, _ in items)
        if any(ax.whole for ax, _ in items):
            axes[a] = _Axis(lo, hi, jump, True)
        elif unknown:
            axes[a] = _Axis(lo, hi, jump, unknown=unknown)
        elif len(aligned) < len(items) or (n_out > 1 and len({ax.jump for ax in aligned}) > 1):
            # A local field broadcast over many units, or paths at different jumps: the union is
            # not the same for every unit, so no single (size, jump) describes it.
            axes[a] = _Axis(lo, hi, jump, unknown=f"{op} (operands with different geometry)")
        else:
            axes[a] = _Axis(lo, hi, jump)
    return _Geo(list(dims), axes)


def _view(g: _Geo, old: Sequence[int], new: Sequence[int], op: str) -> _Geo:
    """Regroup the factors of ``old`` into the dims of ``new`` (view, reshape, flatten)."""
    factors = [f for d in g.dims for f in d if f[1] != 1]
    axes = dict(g.axes)
    dims: list[tuple[Factor, ...]] = []
    i = 0
    for n in new:
        if n == 1:
            dims.append(((None, 1),))
            continue
        group: list[Factor] = []
        prod = 1
        while prod < n and i < len(factors):
            a, m = factors[i]
            if prod * m <= n and n % (prod * m) == 0:
                group.append((a, m))
                prod *= m
                i += 1
            else:  # split a factor: fine for channels, a space-to-depth for a spatial axis
                take = n // prod
                if m % take:
                    return _lose_all([g], op, len(new))
                group.append((a, take))
                factors[i] = (a, m // take)
                prod *= take
                if a is not None:
                    axes[a] = axes[a].lost(f"{op} (splits a spatial axis)")
        dims.append(tuple(group))
    # Spatial axes sharing a dim with other factors of size > 1 are flattened: a later op on that
    # dim (a linear layer) mixes them, and one that does not (a reshape back) keeps the factors.
    return _Geo(dims, axes)


def _norm_dim(d: int, nd: int) -> int:
    return d + nd if d < 0 else d


_CONSTANT = {  # new tensors that depend on no input value
    aten.ones_like.default, aten.zeros_like.default, aten.empty_like.default, aten.full_like.default,
    aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default, aten.new_full.default,
    aten.rand_like.default, aten.randn_like.default, aten.bernoulli.p, aten.bernoulli.default,
}


@dataclass
class _Call:
    """One ATen call as a rule sees it: its arguments by schema name (defaults filled in, so no
    rule counts positions), the raw arguments, and the (first) output."""

    func: Any
    args: tuple
    kwargs: dict
    out: torch.Tensor
    a: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, arg in enumerate(self.func._schema.arguments):
            if i < len(self.args) and not arg.kwarg_only:
                self.a[arg.name] = self.args[i]
            elif arg.name in self.kwargs:
                self.a[arg.name] = self.kwargs[arg.name]
            else:
                self.a[arg.name] = arg.default_value if arg.has_default_value() else None

    @property
    def name(self) -> str:
        return str(self.func)


# The receptive-field rules: ATen op -> handler(mode, call) returning the output's _Geo. Adding an
# op is adding one entry (``@_rule(op)`` on a handler, or the op to an existing handler's list).
Rule = Callable[["_GeometryMode", _Call], "_Geo"]
_RULES: dict[Any, Rule] = {}


def _rule(*ops: Any) -> Callable[[Rule], Rule]:
    def add(fn: Rule) -> Rule:
        for op in ops:
            if op in _RULES:
                raise ValueError(f"{op} already has the receptive-field rule {_RULES[op].__name__}")
            _RULES[op] = fn
        return fn
    return add


class _GeometryMode(TorchDispatchMode):
    """Carries a _Geo alongside every tensor that depends on the input."""

    def __init__(self, ignore_global_context: bool = False):
        super().__init__()
        self.geo = WeakTensorKeyDictionary()
        self.ignore_global = ignore_global_context

    def get(self, t: Any) -> _Geo | None:
        return self.geo.get(t) if isinstance(t, torch.Tensor) else None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        if not any(t in self.geo for t in tensors) or func in _CONSTANT:
            return out
        geo = self.rule(func, args, kwargs, out)
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        for o in outs:
            if isinstance(geo, _Geo) and len(geo.dims) == o.ndim:
                self.geo[o] = geo
            else:  # an extra output of another rank (indices, saved statistics)
                g = geo if isinstance(geo, _Geo) else None
                if g is not None:
                    self.geo[o] = _Geo([((None, n),) for n in o.shape], g.axes)
        return out

    def rule(self, func, args, kwargs, out) -> _Geo:
        """The _Geo of the (first) output: the op's rule from ``_RULES``; else the union of the
        operands for pointwise ops (ATen's ``pointwise`` tag, ``where``); else no geometry."""
        call = _Call(func, tuple(args), kwargs, out[0] if isinstance(out, (tuple, list)) else out)
        handler = _RULES.get(func)
        if handler is None:
            pointwise = torch.Tag.pointwise in func.tags or call.name.startswith("aten.where")
            handler = _pointwise if pointwise else _no_rule
        return handler(self, call)

    # Helpers of the rules.
    def g0(self, call: _Call) -> _Geo | None:
        """The geometry of the first argument."""
        return self.get(call.args[0]) if call.args else None

    def _apply_window(self, geo: _Geo, dim: int, size_in: int, size_out: int, name: str, k: int | None = None,
                      s: int | None = None, p: int = 0, d: int = 1) -> None:
        a = geo.axis_of(dim)
        if a is None:
            if geo.axes_in(dim):
                for b in geo.axes_in(dim):
                    geo.axes[b] = geo.axes[b].lost(name)
            return
        if k is None:  # adaptive pooling: a regular window only when the sizes divide
            if size_out == size_in:
                return
            if size_out == 1:
                geo.axes[a] = geo.axes[a] if self.ignore_global else geo.axes[a].span(size_in)
                return
            if size_in % size_out:
                geo.axes[a] = geo.axes[a].lost(f"{name} ({size_in} -> {size_out}, uneven windows)")
                return
            k = s = size_in // size_out
        if k == 1 and s == 1 and p == 0:
            return
        geo.axes[a] = geo.axes[a].conv(k, s, p, d)

    def _window(self, g0: _Geo, x: torch.Tensor, out: torch.Tensor, kernel, stride, padding, dilation,
                name: str) -> _Geo:
        n = len(kernel)
        kernel = _tup(kernel, n)
        stride, dilation = _tup(stride, n), _tup(dilation, n)
        if isinstance(padding, str):  # "same" / "valid" (convolution at stride 1 only)
            padding = tuple((d * (k - 1)) // 2 if padding == "same" else 0 for k, d in zip(kernel, dilation))
        padding = _tup(padding, n)
        geo = _Geo(list(g0.dims), dict(g0.axes))
        for i in range(n):
            dim = x.ndim - n + i
            self._apply_window(geo, dim, x.shape[dim], out.shape[dim], name, kernel[i], stride[i], padding[i],
                               dilation[i])
            a = geo.axis_of(dim)
            geo.dims[dim] = ((a, out.shape[dim]),) if a is not None else ((None, out.shape[dim]),)
        if x.ndim - n - 1 >= 0:  # channels are mixed, never spatial
            c = x.ndim - n - 1
            geo.dims[c] = ((None, out.shape[c]),)
        return geo

    def _whole(self, g0: _Geo, dims) -> _Geo:
        axes = dict(g0.axes)
        for dim in dims:
            for a in g0.axes_in(dim):
                size = next(n for b, n in g0.dims[dim] if b == a)
                axes[a] = axes[a].span(size)
        return _Geo(list(g0.dims), axes)

    def _matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, name: str,
                bias: torch.Tensor | None = None) -> _Geo:
        ga, gb = self.get(a), self.get(b)
        axes: dict[int, _Axis] = {}
        dims: list[tuple[Factor, ...]] = [((None, n),) for n in out.shape]
        for g, t, contracted, kept, out_dim in ((ga, a, a.ndim - 1, a.ndim - 2, out.ndim - 2),
                                                 (gb, b, b.ndim - 2, b.ndim - 1, out.ndim - 1)):
            if g is None:
                continue
            for ax_id, ax in g.axes.items():
                axes[ax_id] = ax
            if not self.ignore_global:
                axes.update({k: v for k, v in self._whole(g, [contracted]).axes.items() if k in g.axes_in(contracted)})
            dims[out_dim] = g.dims[kept]
            if t.ndim == 3:
                dims[0] = g.dims[0]
        geo = _Geo(dims, axes)
        if bias is not None and self.get(bias) is not None:
            geo = _union([(geo, tuple(out.shape)), (self.get(bias), tuple(bias.shape))], out.shape, name)
        return geo


# -- windows: convolutions, pools, padding ------------------------------------------------------

@_rule(aten.convolution.default)
def _convolution(m: _GeometryMode, c: _Call) -> _Geo:
    g0 = m.g0(c)
    if g0 is None:  # the input is a constant, the weight carries geometry: give up
        return _lose_all([m.get(c.a["weight"])], c.name, c.out.ndim)
    if c.a["transposed"]:
        return _lose_all([g0], c.name, c.out.ndim)
    return m._window(g0, c.a["input"], c.out, c.a["weight"].shape[2:], c.a["stride"], c.a["padding"],
                     c.a["dilation"], c.name)


# Pools by the number of axes they window (ATen's pools take (B, C, *S) or (C, *S)).
_POOL_DIMS = {
    aten.max_pool1d.default: 1, aten.max_pool2d.default: 2, aten.max_pool3d.default: 3,
    aten.max_pool1d_with_indices.default: 1, aten.max_pool2d_with_indices.default: 2,
    aten.max_pool3d_with_indices.default: 3, aten.avg_pool1d.default: 1, aten.avg_pool2d.default: 2,
    aten.avg_pool3d.default: 3,
}
_ADAPTIVE_DIMS = {
    aten._adaptive_avg_pool2d.default: 2, aten._adaptive_avg_pool3d.default: 3,
    aten.adaptive_max_pool2d.default: 2, aten.adaptive_max_pool3d.default: 3,
    aten.adaptive_avg_pool1d.default: 1, aten.adaptive_max_pool1d.default: 1,
}


@_rule(*_POOL_DIMS)
def _pool(m: _GeometryMode, c: _Call) -> _Geo:
    n = _POOL_DIMS[c.func]
    kernel = c.a["kernel_size"]
    stride = c.a["stride"] or kernel  # [] means "the kernel"
    dilation = c.a.get("dilation", 1)  # average pools have none
    return m._window(m.g0(c), c.a["self"], c.out, _tup(kernel, n), _tup(stride, n), _tup(c.a["padding"], n),
                     _tup(dilation, n), c.name)


@_rule(*_ADAPTIVE_DIMS)
def _adaptive_pool(m: _GeometryMode, c: _Call) -> _Geo:
    n, x, g0, first = _ADAPTIVE_DIMS[c.func], c.a["self"], m.g0(c), c.out
    geo = _Geo(list(g0.dims), dict(g0.axes))
    for i in range(n):
        dim = x.ndim - n + i
        m._apply_window(geo, dim, x.shape[dim], first.shape[dim], c.name)
    geo.dims = [geo.dims[i] if i < x.ndim - n else ((geo.axis_of(i), first.shape[i]),)
                if geo.axis_of(i) is not None else ((None, first.shape[i]),) for i in range(x.ndim)]
    return geo


@_rule(aten.constant_pad_nd.default, aten.reflection_pad1d.default, aten.reflection_pad2d.default,
       aten.reflection_pad3d.default, aten.replication_pad1d.default, aten.replication_pad2d.default,
       aten.replication_pad3d.default)
def _pad(m: _GeometryMode, c: _Call) -> _Geo:
    # A pad is a window of size 1 with padding: (before, after) pairs, last dim first.
    x, g0 = c.a["self"], m.g0(c)
    pad = c.a["pad"] if "pad" in c.a else c.a["padding"]
    geo = _Geo(list(g0.dims), dict(g0.axes))
    for k in range(len(pad) // 2):
        dim = x.ndim - 1 - k
        a = g0.axis_of(dim)
        if a is not None:
            geo.axes[a] = geo.axes[a].conv(1, 1, pad[2 * k])
            geo.dims[dim] = ((a, c.out.shape[dim]),)
        elif g0.axes_in(dim):
            return _lose_all([g0], c.name, c.out.ndim)
        else:
            geo.dims[dim] = ((None, c.out.shape[dim]),)
    return geo


# -- reductions and normalisations: a statistic over an axis sees the whole axis ----------------

@_rule(aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default, aten.mean.default,
       aten.sum.default, aten.linalg_vector_norm.default, aten.var.correction, aten.std.correction,
       aten.var_mean.correction, aten.logsumexp.default, aten.max.dim, aten.min.dim, aten.prod.dim_int,
       aten.norm.ScalarOpt_dim, aten.max.default)
def _reduce(m: _GeometryMode, c: _Call) -> _Geo:
    x, g0 = c.a["self"], m.g0(c)
    dims = c.a.get("dim")  # None or [] (or no such argument): every dim
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims = list(range(x.ndim))
    dims = {_norm_dim(d, x.ndim) for d in ([dims] if isinstance(dims, int) else dims)}
    keep = bool(c.a.get("keepdim") or False)
    axes = dict(g0.axes) if m.ignore_global else m._whole(g0, dims).axes
    new_dims = []
    for i, d in enumerate(g0.dims):
        if i in dims:
            if keep:
                new_dims.append(((None, 1),))
        else:
            new_dims.append(d)
    if len(new_dims) != c.out.ndim:
        new_dims = [((None, n),) for n in c.out.shape]
    return _Geo(new_dims, axes)


@_rule(aten.native_batch_norm.default, aten._native_batch_norm_legit.default,
       aten._native_batch_norm_legit_functional.default)
def _batch_norm(m: _GeometryMode, c: _Call) -> _Geo:
    # In training the statistics are the batch's, over every spatial axis; else a per-channel affine map.
    if c.a["training"] and not m.ignore_global:
        return m._whole(m.g0(c), range(2, c.a["input"].ndim))
    return m.g0(c)


@_rule(aten._native_batch_norm_legit_no_training.default)
def _batch_norm_inference(m: _GeometryMode, c: _Call) -> _Geo:
    return m.g0(c)


@_rule(aten.native_group_norm.default)
def _group_norm(m: _GeometryMode, c: _Call) -> _Geo:
    return m.g0(c) if m.ignore_global else m._whole(m.g0(c), range(2, c.a["input"].ndim))


@_rule(aten.native_layer_norm.default)
def _layer_norm(m: _GeometryMode, c: _Call) -> _Geo:
    x, n = c.a["input"], len(c.a["normalized_shape"])  # over the last n dims
    return m.g0(c) if m.ignore_global else m._whole(m.g0(c), range(x.ndim - n, x.ndim))


# -- elementwise: the union of the operands' fields ---------------------------------------------

@_rule(aten.clone.default, aten.detach.default, aten.alias.default, aten._to_copy.default, aten.lift_fresh.default,
       aten.native_dropout.default, aten.contiguous.default, aten.copy.default, aten.fill.Scalar,
       aten.zero_.default, aten._softmax.default, aten._log_softmax.default,
       # Activations ATen does not tag pointwise (MobileNetV3's h-swish and hard sigmoid).
       aten.hardswish.default, aten.hardswish_.default, aten.hardsigmoid.default, aten.hardsigmoid_.default)
def _pointwise(m: _GeometryMode, c: _Call) -> _Geo:
    ops = [(m.get(t), tuple(t.shape)) for t in tree_flatten((c.args, c.kwargs))[0]
           if isinstance(t, torch.Tensor) and m.get(t) is not None]
    return _union(ops, c.out.shape, c.name, m.ignore_global)


@_rule(aten.expand.default)
def _expand(m: _GeometryMode, c: _Call) -> _Geo:
    return _union([(m.g0(c), tuple(c.a["self"].shape))], c.out.shape, c.name)


# -- layout: views, permutations, slices, concatenation -----------------------------------------

@_rule(aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.view_copy.default)
def _reshape(m: _GeometryMode, c: _Call) -> _Geo:
    return _view(m.g0(c), c.a["self"].shape, c.out.shape, c.name)


@_rule(aten.unsqueeze.default)
def _unsqueeze(m: _GeometryMode, c: _Call) -> _Geo:
    g0, d = m.g0(c), _norm_dim(c.a["dim"], c.out.ndim)
    return _Geo(g0.dims[:d] + [((None, 1),)] + g0.dims[d:], g0.axes)


@_rule(aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def _squeeze(m: _GeometryMode, c: _Call) -> _Geo:
    x, g0 = c.a["self"], m.g0(c)
    dims = c.a.get("dim", list(range(x.ndim)))  # squeeze.default: every size-1 dim
    dims = {_norm_dim(d, x.ndim) for d in ([dims] if isinstance(dims, int) else dims)}
    return _Geo([d for i, d in enumerate(g0.dims) if not (i in dims and x.shape[i] == 1)], g0.axes)


@_rule(aten.permute.default)
def _permute(m: _GeometryMode, c: _Call) -> _Geo:
    g0 = m.g0(c)
    return _Geo([g0.dims[_norm_dim(p, len(g0.dims))] for p in c.a["dims"]], g0.axes)


@_rule(aten.transpose.int, aten.t.default)
def _transpose(m: _GeometryMode, c: _Call) -> _Geo:
    g0 = m.g0(c)
    nd = len(g0.dims)
    i, j = (0, 1) if c.func is aten.t.default else (_norm_dim(c.a["dim0"], nd), _norm_dim(c.a["dim1"], nd))
    dims = list(g0.dims)
    dims[i], dims[j] = dims[j], dims[i]
    return _Geo(dims, g0.axes)


@_rule(aten.slice.Tensor)
def _slice(m: _GeometryMode, c: _Call) -> _Geo:
    # A strided slice of a spatial axis is a window of size 1: it moves unit 0 and scales the jump.
    x, g0 = c.a["self"], m.g0(c)
    dim = _norm_dim(c.a["dim"] or 0, x.ndim)
    step = c.a["step"] or 1
    start, _, _ = slice(c.a["start"], c.a["end"], step).indices(x.shape[dim])
    geo = _Geo(list(g0.dims), dict(g0.axes))
    ax = g0.axis_of(dim)
    if ax is not None:
        old = g0.axes[ax]
        geo.axes[ax] = _Axis(old.lo + start * old.jump, old.hi + start * old.jump, old.jump * step,
                             old.whole, old.unknown)
        geo.dims[dim] = ((ax, c.out.shape[dim]),)
    elif g0.axes_in(dim):
        return _lose_all([g0], c.name, c.out.ndim)
    else:
        geo.dims[dim] = ((None, c.out.shape[dim]),)
    return geo


@_rule(aten.select.int)
def _select(m: _GeometryMode, c: _Call) -> _Geo:
    x, g0 = c.a["self"], m.g0(c)
    dim = _norm_dim(c.a["dim"], x.ndim)
    index = c.a["index"] + x.shape[dim] if c.a["index"] < 0 else c.a["index"]
    geo = _Geo(g0.dims[:dim] + g0.dims[dim + 1:], dict(g0.axes))
    ax = g0.axis_of(dim)
    if ax is not None:
        old = g0.axes[ax]
        geo.axes[ax] = _Axis(old.lo + index * old.jump, old.hi + index * old.jump, old.jump, old.whole, old.unknown)
    elif g0.axes_in(dim):
        return _lose_all([g0], c.name, c.out.ndim)
    return geo


@_rule(aten.cat.default, aten.stack.default)
def _concatenate(m: _GeometryMode, c: _Call) -> _Geo:
    # Along channels (an Inception module, a dense block) the fields unite; along a spatial axis
    # the geometry is lost.
    live = [t for t in c.a["tensors"] if m.get(t) is not None]
    ref, dim = live[0], c.a["dim"]
    if c.func is aten.stack.default:
        dim = _norm_dim(dim, ref.ndim + 1)
        gs = [(_Geo(m.get(t).dims[:dim] + [((None, 1),)] + m.get(t).dims[dim:], m.get(t).axes),
               tuple(t.shape[:dim]) + (1,) + tuple(t.shape[dim:])) for t in live]
    else:
        dim = _norm_dim(dim, ref.ndim)
        if any(m.get(t).axes_in(dim) for t in live):
            return _lose_all([m.get(ref)], f"{c.name} along a spatial axis", c.out.ndim)
        gs = [(m.get(t), tuple(1 if i == dim else n for i, n in enumerate(t.shape))) for t in live]
    geo = _union(gs, tuple(1 if i == dim else n for i, n in enumerate(c.out.shape)), c.name)
    geo.dims[dim] = ((None, c.out.shape[dim]),)
    return geo


# -- matrix products: the contracted dim is seen whole ------------------------------------------

@_rule(aten.mm.default, aten.bmm.default)
def _mm(m: _GeometryMode, c: _Call) -> _Geo:
    return m._matmul(c.a["self"], c.a["mat2"], c.out, c.name)


@_rule(aten.addmm.default)
def _addmm(m: _GeometryMode, c: _Call) -> _Geo:
    return m._matmul(c.a["mat1"], c.a["mat2"], c.out, c.name, bias=c.a["self"])


@_rule(aten.baddbmm.default)
def _baddbmm(m: _GeometryMode, c: _Call) -> _Geo:
    return m._matmul(c.a["batch1"], c.a["batch2"], c.out, c.name, bias=c.a["self"])


@_rule(aten.index_put.default, aten.index_put_.default, aten.index.Tensor)
def _index(m: _GeometryMode, c: _Call) -> _Geo:
    # Data-dependent positions: any spatial geometry among the operands is lost.
    geos = [m.get(t) for t in tree_flatten(c.args)[0] if isinstance(t, torch.Tensor) and m.get(t) is not None]
    if any(g.axes for g in geos):
        return _lose_all(geos, c.name, c.out.ndim)
    return _Geo([((None, n),) for n in c.out.shape], {})


def _no_rule(m: _GeometryMode, c: _Call) -> _Geo:
    """An op without a rule loses the spatial geometry of its operands (naming itself as the
    cause), unless none is involved (e.g. after flattening)."""
    geos = [m.get(t) for t in flat_tensors(c.args, c.kwargs) if m.get(t) is not None]
    if not any(g.axes for g in geos):
        return _Geo([((None, n),) for n in c.out.shape], {})
    return _lose_all(geos, c.name, c.out.ndim)


def flat_tensors(args, kwargs) -> list[torch.Tensor]:
    return [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]


def _tup(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        v = list(v)
        return tuple(v) if len(v) == n else tuple(v) * n if len(v) == 1 else tuple(v[-n:])
    return (int(v),) * n


def _to_rf(geo: _Geo, spatial: Sequence[int]) -> RF | None:
    sizes, jumps, starts, wholes = [], [], [], []
    for a, extent in enumerate(spatial):
        ax = geo.axes.get(a)
        if ax is None or ax.unknown:
            return None
        whole = ax.whole or False
        if whole:
            sizes.append(int(extent))
            starts.append((extent - 1) / 2)
        else:
            sizes.append(_num(ax.hi - ax.lo + 1))
            starts.append((ax.lo + ax.hi) / 2)
        jumps.append(_num(ax.jump))
        wholes.append(whole)
    return RF(tuple(sizes), tuple(jumps), tuple(starts), tuple(wholes))


def _num(v: float) -> Any:
    return int(v) if float(v).is_integer() else v


def _unknown_ops(geo: _Geo) -> list[str]:
    return sorted({ax.unknown for ax in geo.axes.values() if ax.unknown})


class _Features(nn.Module):
    """Calls ``model.forward_features`` (or ``forward``) so that functional_call can swap states."""

    def __init__(self, model: nn.Module, features: bool):
        super().__init__()
        self.m = model
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.forward_features(x) if self.features else self.m(x)


def _trace(model: nn.Module, input_size: Sequence[int], features: bool, ignore_global_context: bool,
           hooks: bool) -> tuple[dict[str, _Geo], _Geo | None, tuple[int, ...]]:
    input_size = tuple(int(s) for s in input_size)
    spatial = input_size[1:]
    records: dict[str, _Geo] = {}
    wrapper = _Features(model, features and hasattr(model, "forward_features"))
    was_training = model.training
    model.eval()  # BatchNorm as the affine map it is at inference; dropout off
    handles = []
    try:
        for device in ("meta", None):
            mode = _GeometryMode(ignore_global_context)
            records.clear()

            def hook(name: str):
                def fn(module: nn.Module, args: Any, output: Any) -> None:
                    if isinstance(output, torch.Tensor) and output in mode.geo:
                        records[name] = mode.geo[output]
                return fn

            if hooks:
                handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
            try:
                if device == "meta":
                    state = {f"m.{k}": v.to("meta") for k, v in
                             [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
                    x = torch.zeros((1, *input_size), device="meta")
                else:
                    p = next((t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), None)
                    state = None
                    x = torch.zeros((1, *input_size), device=p.device if p is not None else "cpu",
                                    dtype=p.dtype if p is not None else torch.float32)
                mode.geo[x] = _Geo([((None, 1),), ((None, input_size[0]),)] + [((a, n),) for a, n in enumerate(spatial)],
                                   {a: _Axis(0, 0, 1) for a in range(len(spatial))})
                with torch.no_grad(), mode:
                    out = functional_call(wrapper, state, (x,), strict=False) if state is not None else wrapper(x)
                return records, mode.get(out), spatial
            except (UnknownGeometry, ValueError, TypeError):
                raise
            except (RuntimeError, NotImplementedError):
                if device is None:
                    raise
                # Some layer cannot run on the meta device (data-dependent code, tensors held as
                # plain attributes): fall back to one real pass at batch 1.
            finally:
                for h in handles:
                    h.remove()
                handles = []
    finally:
        model.train(was_training)
    raise AssertionError("unreachable")


def receptive_fields(model: nn.Module, input_size: Sequence[int], *,
                     ignore_global_context: bool = False) -> dict[str, RF]:
    """The receptive field of every module's output, by module path.

    Args:
        model: any nn.Module taking one (B, C, *S) tensor (its full ``forward`` is traced).
        input_size: (C, *S) without the batch axis.
        ignore_global_context: treat operations that pull in the whole input but only modulate a
            local path (norm statistics over space, squeeze-excitation gates, global pooling) as
            if they were local, giving the "conventional" field of the convolution/pooling path.

    Returns:
        ``{path: RF}`` for every module (as in ``model.named_modules()``, the root excluded) whose
        output is a tensor with a known geometry; modules after an operation without a
        receptive-field rule (upsampling, space-to-depth) are left out.
    """
    records, _, spatial = _trace(model, input_size, False, ignore_global_context, hooks=True)
    out = {}
    for name, geo in records.items():
        rf = _to_rf(geo, spatial)
        if rf is not None:
            out[name] = rf
    return out


def receptive_field(model: nn.Module, input_size: Sequence[int], *, ignore_global_context: bool = False) -> RF:
    """The receptive field of ``model.forward_features``' output (of ``forward`` for a model without one).

    Raises:
        UnknownGeometry: an operation on the way has no receptive-field rule; the message names it.
    """
    _, geo, spatial = _trace(model, input_size, True, ignore_global_context, hooks=False)
    if geo is None:
        raise UnknownGeometry("the output does not depend on the input")
    rf = _to_rf(geo, spatial)
    if rf is None:
        raise UnknownGeometry(f"no receptive-field rule for: {', '.join(_unknown_ops(geo))}")
    return rf
