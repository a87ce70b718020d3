"""A per-layer table of a model, like Keras' model.summary() or torchinfo.

One forward pass (on zeros, or on the meta device where nothing is computed) is watched twice:

* module hooks keep a stack of the modules being run, so every operation is attributed to the
  innermost module that runs it (a residual add to its block, a flatten to the model);
* a ``TorchDispatchMode`` sees every ATen operation, also those of functional code
  (``F.conv2d``, ``x @ w.t()``), and counts it.

Counting conventions (per sample, i.e. the batch's count divided by the batch size):

* **MACs** (multiply-accumulates) of convolutions and matrix products: ``aten.convolution``
  (any dimension, grouped, depthwise, dilated, transposed), ``mm``/``addmm``/``bmm``/
  ``baddbmm``/``mv``/``dot`` and scaled-dot-product attention. A convolution costs
  output elements x (in_channels / groups) x kernel volume; a transposed one input elements x
  (out_channels / groups) x kernel volume; bias additions are not MACs. ``ConnectionTableConv``
  counts only its real connections (LeNet-5's C3: 60 of the 96 pairs), not the zeros of the
  dense kernel it convolves with. **FLOPs** = 2 x MACs (one multiply, one add), the convention
  under which torchvision's "4.09 GFLOPS" of ResNet-50 are MACs.
* **Other ops**, counted apart: one op per output element of every elementwise operation
  (activations, additions, scalings), of normalisations (batch, layer, group norm, softmax) and
  of interpolation; pooling with a window counts output elements x window volume; reductions
  (means, sums, max, norms, adaptive pools) count one op per input element. Layers without an
  op of their own (LocalResponseNorm, a Gaussian-inhibition S-cell) are counted through the
  ATen operations they decompose into.
* Data movement (views, copies, padding, concatenation, indexing, allocation) costs nothing.
* Any other ATen operation, and any module owning parameters in which no operation at all was
  seen, is listed in ``uncounted``: a count is never dropped silently.

Activation memory is the bytes of every row's output at the probing batch size, storage that
two rows share (an in-place activation's output, a flatten's view) counted once;
``peak_activation_bytes`` is the most bytes of operation outputs alive at once during the pass
(an estimate of inference memory beyond the parameters; tensors kept alive only through views
are not tracked).
"""
from __future__ import annotations

import copy
import json
import math
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .. import layers as L

aten = torch.ops.aten

# Operations that only move or allocate memory: no arithmetic.
_FREE = {
    "cat", "stack", "constant_pad_nd", "pad", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
    "replication_pad1d", "replication_pad2d", "replication_pad3d", "copy", "copy_", "_to_copy", "clone",
    "zeros", "zeros_like", "ones", "ones_like", "empty", "empty_like", "empty_strided", "new_zeros",
    "new_ones", "new_empty", "new_empty_strided", "new_full", "full", "full_like", "fill", "fill_", "zero_",
    "index_put", "index_put_", "_index_put_impl_", "index", "index_select", "gather", "scatter", "lift_fresh",
    "lift_fresh_copy", "detach", "_unsafe_view", "contiguous", "scalar_tensor", "arange", "flip", "roll",
    "repeat", "_local_scalar_dense", "unbind", "split", "split_with_sizes", "chunk", "narrow", "slice_scatter",
    "select_scatter", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle",
    "_reshape_alias", "alias", "set_", "resize_", "as_strided_", "masked_select", "nonzero", "eye", "tril", "triu",
}
# One op per output element.
_PER_OUTPUT = {
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "native_layer_norm", "native_group_norm", "_softmax", "_safe_softmax", "softmax",
    "_log_softmax", "log_softmax", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d",
    "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "grid_sampler_2d",
    "grid_sampler_3d", "cumsum", "cumprod", "native_dropout", "bernoulli", "bernoulli_", "rand_like", "randn_like",
    # Activations not tagged pointwise in ATen (MobileNetV3's h-swish and hard sigmoid).
    "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
}
# One op per input element read.
_PER_INPUT = {
    "mean", "sum", "amax", "amin", "max", "min", "norm", "linalg_vector_norm", "var", "std", "var_mean",
    "std_mean", "prod", "logsumexp", "argmax", "argmin", "any", "all", "_adaptive_avg_pool2d",
    "_adaptive_avg_pool3d", "adaptive_avg_pool1d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "_adaptive_avg_pool1d", "topk", "sort",
}
# Pools with a window: output elements x window volume.
_WINDOW_POOLS = {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
                 "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d"}


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _conv_macs(args: Sequence[Any], out: torch.Tensor) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    if transposed:  # weight (in, out / groups, *k): every input element scatters into a window
        return x.numel() * _numel(w.shape[1:])
    return out.numel() * _numel(w.shape[1:])  # weight (out, in / groups, *k)


def _mac_count(name: str, args: Sequence[Any], out: Any) -> int | None:
    """MACs of a matrix-product-like op, or None if ``name`` is not one."""
    if name in ("convolution", "_convolution", "convolution_overrideable"):
        return _conv_macs(args, out)
    if name in ("mm", "addmm", "_addmm_activation"):
        a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
        return a.shape[0] * a.shape[1] * b.shape[1]
    if name in ("bmm", "baddbmm"):
        a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    if name in ("mv", "addmv"):
        a = args[0] if name == "mv" else args[1]
        return a.shape[0] * a.shape[1]
    if name in ("dot", "vdot"):
        return args[0].numel()
    if name.startswith("_scaled_dot_product") or name == "scaled_dot_product_attention":
        q, k, v = args[0], args[1], args[2]
        # q @ k^T then softmax(...) @ v: (B, H, L, E) x (B, H, S, E) and (B, H, L, S) x (B, H, S, Ev)
        return _numel(q.shape[:-1]) * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    return None


def _other_count(func: Any, name: str, args: Sequence[Any], outs: list[torch.Tensor]) -> int | None:
    """Other ops (see the module docstring) of one op, or None if the op is unknown."""
    first = outs[0] if outs else None
    if name in _WINDOW_POOLS:
        kernel = args[1]
        kernel = [kernel] if isinstance(kernel, int) else list(kernel)
        spatial = args[0].ndim - 2 if name.startswith("avg") or "with_indices" in name else len(kernel)
        if len(kernel) == 1 and spatial > 1:
            kernel = kernel * spatial
        return (first.numel() if first is not None else 0) * _numel(kernel)
    if name in _PER_INPUT:
        x = args[0]
        return x.numel() if isinstance(x, torch.Tensor) else 0
    if name in _PER_OUTPUT or torch.Tag.pointwise in func.tags:
        return first.numel() if first is not None else 0
    return None


def _to_tuple(value: Any, dims: int) -> tuple[int, ...] | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(int(v) for v in value)
    return value * dims if len(value) == 1 and dims > 1 else value


@dataclass
class LayerRow:
    """One module of the forward pass. Counts are per sample; ``output_bytes`` is at the batch size."""

    name: str  # module path, e.g. "stages.0.blocks.1.conv2"; "" for the model's own code
    type: str
    output_shape: tuple[int, ...]  # without the batch axis
    params: int
    trainable: int
    macs: int  # conv / matmul multiply-accumulates per sample
    other_ops: int = 0  # per sample, see the module docstring
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    receptive_field: tuple[int, ...] | None = None  # per spatial axis, in input pixels
    jump: tuple[int, ...] | None = None  # effective stride in input pixels
    rf_whole: tuple[bool, ...] | None = None  # per axis: the unit sees the whole input (global pool)
    output_bytes: int = 0  # the output at the probing batch size

    @property
    def flops(self) -> int:
        """2 x MACs."""
        return 2 * self.macs


@dataclass
class ModelSummary:
    """What :func:`summary` measured; ``str()`` is the table, ``to_json()`` every field."""

    model: str
    input_shape: tuple[int, ...]  # (C, *S), without the batch axis
    output_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0  # convolutions and matrix products, per sample
    other_ops: int = 0  # per sample
    activation_bytes: int = 0  # sum of the rows' outputs at batch_size
    peak_activation_bytes: int = 0  # most op outputs alive at once during the pass
    batch_size: int = 1
    dtype: str = "float32"
    receptive_field: tuple[int, ...] | None = None  # of forward_features' output, per spatial axis
    receptive_jump: tuple[int, ...] | None = None
    uncounted: list[str] = field(default_factory=list)  # "path (Type): what was not counted"

    @property
    def total_flops(self) -> int:
        """FLOPs counted as 2 x MACs (one multiply and one add)."""
        return 2 * self.total_macs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        for row, r in zip(d["rows"], self.rows):
            row["flops"] = r.flops
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        headers = ("Layer (type)", "Output shape", "Params", "MACs", "Kernel/Stride", "RF/Jump")

        def axes(v: tuple[int, ...] | None) -> str:
            return "x".join(map(str, v)) if v else ""

        lines = []
        for r in self.rows:
            ks = f"{axes(r.kernel)}/{axes(r.stride)}" if r.kernel else ""
            if r.kernel and r.dilation and any(d != 1 for d in r.dilation):
                ks += f" d{axes(r.dilation)}"
            rf = f"{axes(r.receptive_field)}/{axes(r.jump)}" if r.receptive_field else ""
            if r.rf_whole and all(r.rf_whole):
                rf = "global"
            lines.append((f"{r.name or '(model)'} ({r.type})", str(list(r.output_shape)), f"{r.params:,}",
                          _short(r.macs) if r.macs else "-", ks, rf))
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(headers)]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))

        def fmt(cols: Sequence[str]) -> str:
            return "   ".join(c.ljust(w) if i in (0, 1) else c.rjust(w)
                              for i, (c, w) in enumerate(zip(cols, widths))).rstrip()

        per = "per sample" if self.batch_size == 1 else f"per sample; memory at batch {self.batch_size}"
        out = [f"{self.model}: input {list(self.input_shape)} -> output {list(self.output_shape)} ({per})",
               rule, fmt(headers), rule, *(fmt(l) for l in lines), rule,
               f"Total params: {self.total_params:,}",
               f"Trainable params: {self.trainable_params:,}",
               f"Non-trainable params: {self.total_params - self.trainable_params:,}",
               f"MACs (conv + linear): {_short(self.total_macs)} ({self.total_macs:,})",
               f"FLOPs (2 x MACs): {_short(self.total_flops)} ({self.total_flops:,})",
               f"Other ops (norm, activation, pool, add, ...): {_short(self.other_ops)} ({self.other_ops:,})",
               (f"Activation memory ({self.dtype}): {_bytes(self.activation_bytes)} of layer outputs, "
                f"peak {_bytes(self.peak_activation_bytes)}")]
        if self.receptive_field:
            out.append(f"Receptive field of forward_features: {axes(self.receptive_field)} "
                       f"(jump {axes(self.receptive_jump)})")
        out.append(f"Uncounted ops: {', '.join(self.uncounted) if self.uncounted else 'none'}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _short(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass
class _Counts:
    macs: int = 0
    other: int = 0
    ops: int = 0  # operations seen, counted or free
    conv: tuple | None = None  # (kernel, stride, dilation) of the first functional convolution


class _OpCounter(TorchDispatchMode):
    """Counts every ATen op into the innermost running module's ``_Counts``."""

    def __init__(self, stack: list[str], counts: dict[str, _Counts], uncounted: dict[str, set[str]]):
        super().__init__()
        self.stack, self.counts, self.uncounted = stack, counts, uncounted
        self.live = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name.split("::")[-1]
        c = self.counts.setdefault(self.stack[-1], _Counts())
        c.ops += 1
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        # Fresh outputs (not views, not written in place) are new activation memory.
        if not func.is_view:
            for ret, t in zip(func._schema.returns, tree_flatten(out)[0]):
                if isinstance(t, torch.Tensor) and ret.alias_info is None:
                    nbytes = t.numel() * t.element_size()
                    self.live += nbytes
                    weakref.finalize(t, self._free, nbytes)
            self.peak = max(self.peak, self.live)
        if func.is_view or name in _FREE or name.startswith("sym_"):
            return out
        macs = _mac_count(name, args, outs[0] if outs else None)
        if macs is not None:
            c.macs += macs
            if c.conv is None and name in ("convolution", "_convolution"):
                c.conv = (tuple(args[1].shape[2:]), tuple(args[3]), tuple(args[5]))
            return out
        other = _other_count(func, name, args, outs)
        if other is None:
            self.uncounted.setdefault(self.stack[-1], set()).add(f"aten.{name}")
        else:
            c.other += other
        return out


def _connection_table_macs(m: L.ConnectionTableConv, out: torch.Tensor) -> int:
    # Only the table's connections multiply: connections x kernel volume per output position.
    return m.weight.numel() * out[0, 0].numel() * out.shape[0]


# Modules whose cost is not that of the ATen ops they run: MACs from their own rule.
_MODULE_MACS = {L.ConnectionTableConv: _connection_table_macs}


def _first_tensor(output: Any) -> torch.Tensor | None:
    return next((t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)), None)


def _split_batch(model: nn.Module, size: tuple[int, ...], batch_size: int | None) -> tuple[tuple[int, ...], int]:
    """(C, *S) and the batch from an input size given as (C, *S) or (B, C, *S): with the model's
    ``spatial_dims`` the rank tells which; a wrong rank is named with both accepted forms."""
    spatial_dims = getattr(model, "spatial_dims", None)
    if isinstance(spatial_dims, int):
        if len(size) == spatial_dims + 2:
            if batch_size is not None and batch_size != size[0]:
                raise ValueError(f"input_size {size} has batch {size[0]}, but batch_size={batch_size}")
            return size[1:], size[0]
        if len(size) != spatial_dims + 1:
            axes = ("L",) if spatial_dims == 1 else ("H", "W") if spatial_dims == 2 else ("D", "H", "W")
            raise ValueError(f"input_size for a model with spatial_dims={spatial_dims} is (C, {', '.join(axes)}) "
                             f"or (B, C, {', '.join(axes)}), got {size}")
    return size, 1 if batch_size is None else batch_size


def summary(model: nn.Module, input_size: Sequence[int] | None = None, *, batch_size: int | None = None,
            device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
            receptive_field: bool = True) -> ModelSummary:
    """Run one forward pass on zeros and tabulate every layer.

    Args:
        model: any nn.Module taking one (B, C, *S) tensor.
        input_size: (C, *S), or (B, C, *S) with the batch as torchinfo takes it; defaults to
            ``model.default_cfg["input_size"]``. The two are told apart by the model's
            ``spatial_dims`` (a model without that attribute takes (C, *S) only).
        batch_size: the batch of the probing pass (BatchNorm in eval mode needs none); default
            the batch in ``input_size``, else 1.
        device: where to run; ``"meta"`` counts without computing (instant for ResNet-50 or VGG-16
            at 224): a model not already on the meta device (or not in ``dtype``) is copied
            there, the given one is left as it is. Defaults to the device of the model's
            parameters.
        dtype: of the probing input (and of the meta copy); activation memory scales with it.
        receptive_field: fill the receptive field and jump of every layer (see
            :mod:`convnet.analysis.receptive_field`) and of ``forward_features``' output (None
            where an operation without a receptive-field rule, such as a transposed
            convolution, is on the way); models with ``forward_features`` only.

    Returns:
        A ModelSummary: rows for every leaf module that runs an operation (not Identity or an
        inactive DropPath), every module owning parameters and every module whose own code
        computes (a residual add), in the order they finish.
    """
    if input_size is None:
        input_size = getattr(model, "default_cfg", {}).get("input_size")
        if input_size is None:
            raise ValueError("summary() needs input_size=(C, *S) for a model without default_cfg")
    input_size, batch_size = _split_batch(model, tuple(int(s) for s in input_size), batch_size)
    param_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device) if device is not None else param_device
    param_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), dtype)
    probe = model
    if device.type == "meta" and (param_device.type != "meta" or param_dtype != dtype):
        probe = copy.deepcopy(model).to(device="meta", dtype=dtype)  # costs nothing on meta
    name = getattr(model, "default_cfg", {}).get("name", type(model).__name__)

    modules = dict(probe.named_modules())
    stack: list[str] = [""]
    counts: dict[str, _Counts] = {}
    uncounted_ops: dict[str, set[str]] = {}
    outputs: dict[str, tuple[tuple[int, ...], int]] = {}  # path -> (output shape, output bytes)
    live: dict[int, weakref.ref] = {}  # storage -> the row output that holds it
    order: list[str] = []
    handles = []

    def pre(path: str):
        def fn(module: nn.Module, args: Any) -> None:
            stack.append(path)
        return fn

    def post(path: str):
        def fn(module: nn.Module, args: Any, output: Any) -> None:
            stack.pop()
            out = _first_tensor(output)
            if out is None:
                return
            rule = next((f for cls, f in _MODULE_MACS.items() if isinstance(module, cls)), None)
            if rule is not None:
                counts.setdefault(path, _Counts()).macs = rule(module, out)
            # Bytes of a fresh output; an in-place layer's output is its input's, counted once.
            sid = out.untyped_storage()._cdata
            prev = live.get(sid)
            nbytes = 0 if prev is not None and prev() is not None else out.numel() * out.element_size()
            live[sid] = weakref.ref(out)
            _, total = outputs.get(path, ((), 0))
            outputs[path] = (tuple(out.shape[1:]), total + nbytes)  # no reference: it would raise the peak
            if path not in order:
                order.append(path)
        return fn

    for path, module in modules.items():
        if path:
            handles.append(module.register_forward_pre_hook(pre(path)))
            handles.append(module.register_forward_hook(post(path)))
    was_training = probe.training
    probe.eval()
    counter = _OpCounter(stack, counts, uncounted_ops)
    try:
        with torch.no_grad():
            x = torch.zeros((batch_size, *input_size), device=device, dtype=dtype)
            with counter:
                # A detector's output depends on its box selection (data-dependent, host-side NMS):
                # its analysis_forward is the dense part, reduced to per-class evidence (B, K).
                out = getattr(probe, "analysis_forward", probe)(x)
    finally:
        for h in handles:
            h.remove()
        probe.train(was_training)
    out = _first_tensor(out)

    rf_map: dict[str, Any] = {}
    rf_total = None
    if receptive_field and hasattr(probe, "forward_features"):
        from .receptive_field import UnknownGeometry, receptive_fields
        from .receptive_field import receptive_field as rf_of

        rf_map = receptive_fields(probe, input_size)
        try:
            rf_total = rf_of(probe, input_size)
        except UnknownGeometry:  # e.g. a transposed convolution on the way: no theoretical field
            rf_total = None

    spatial = len(input_size) - 1
    rows: list[LayerRow] = []
    uncounted: list[str] = []
    activation = 0
    if "" in counts and (counts[""].macs or counts[""].other):
        order.append("")  # the model's own code (a flatten, a mean) after every module
        outputs[""] = (tuple(out.shape[1:]), out.numel() * out.element_size())
    for path in order:
        module = modules[path]
        c = counts.get(path, _Counts())
        own = list(module.parameters(recurse=False))
        is_leaf = next(module.children(), None) is None
        if not (is_leaf or own or c.macs or c.other) or (is_leaf and not own and c.ops == 0):
            continue  # a container that only routes, or a pass-through (Identity, DropPath in eval)
        shape, nbytes = outputs[path]
        kind = type(module).__name__
        if own and c.ops == 0 and not isinstance(module, tuple(_MODULE_MACS)):
            uncounted.append(f"{path} ({kind}): owns parameters but ran no operation")
        for op in sorted(uncounted_ops.pop(path, ())):
            uncounted.append(f"{path or '(model)'} ({kind}): {op}")
        kernel = stride = dilation = None
        if hasattr(module, "kernel_size") and not isinstance(module, nn.LocalResponseNorm):
            kernel = _to_tuple(module.kernel_size, spatial)
            stride = _to_tuple(getattr(module, "stride", 1), spatial) or kernel
            dilation = _to_tuple(getattr(module, "dilation", 1), spatial)
        elif c.conv is not None:
            kernel, stride, dilation = c.conv
        activation += nbytes
        rf = rf_map.get(path)
        rows.append(LayerRow(
            name=path, type=kind, output_shape=shape,
            params=sum(p.numel() for p in own), trainable=sum(p.numel() for p in own if p.requires_grad),
            macs=round(c.macs / batch_size), other_ops=round(c.other / batch_size),
            kernel=kernel, stride=stride, dilation=dilation,
            receptive_field=tuple(rf.size) if rf is not None else None,
            jump=tuple(rf.jump) if rf is not None else None,
            rf_whole=tuple(rf.whole) if rf is not None else None, output_bytes=nbytes))
    # Ops of modules without a row (a container's own code that only moved data) stay listed.
    for path, ops in uncounted_ops.items():
        uncounted.extend(f"{path or '(model)'} ({type(modules[path]).__name__}): {op}" for op in sorted(ops))
    total_macs = sum(c.macs for c in counts.values())
    total_other = sum(c.other for c in counts.values())
    return ModelSummary(
        model=name, input_shape=input_size, output_shape=tuple(out.shape[1:]), rows=rows,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=round(total_macs / batch_size), other_ops=round(total_other / batch_size),
        activation_bytes=activation, peak_activation_bytes=counter.peak, batch_size=batch_size,
        dtype=str(dtype).removeprefix("torch."),
        receptive_field=tuple(rf_total.size) if rf_total is not None else None,
        receptive_jump=tuple(rf_total.jump) if rf_total is not None else None,
        uncounted=uncounted)
