"""The inference fast path: ``optimize(model)`` returns a module that predicts the same, faster.

What it does, in order (each step is independent and documented with its accuracy cost):

1. **Batch-norm folding** (:func:`fold_batchnorm`). In evaluation a BatchNorm is the affine map
   y = gamma * (z - mean) / sqrt(var + eps) + beta, so when it directly follows a convolution
   z = W * x + b it folds into that convolution: W' = W * s, b' = (b - mean) * s + beta with
   s = gamma / sqrt(var + eps) per output channel. Folding is exact in real arithmetic; in fp32
   it moves logits by ~1e-7 relative. Norms that *directly* follow a convolution are folded:
   in an ``nn.Sequential`` (our ``ConvNormAct`` children ``conv``/``norm``/``act``) by child
   order, elsewhere by tracing the parent's own forward with its children as leaves. A
   pre-activation norm (BN -> ReLU -> conv) cannot fold into the convolution after it (the ReLU
   sits between) and is left alone; :func:`remaining_batchnorms` lists what is left.
2. **Precision**: ``dtype="auto"`` picks bf16 on a GPU that supports it (fp16 otherwise) and on
   a CPU with AMX or AVX512-BF16 (:func:`bf16_supported`), fp32 elsewhere. The *weights* are
   cast (not only autocast), so inductor/oneDNN prepack bf16 kernels; input and output stay
   fp32 (cast inside the wrapper).
3. **Memory format**: ``channels_last`` (2-D) or ``channels_last_3d`` (3-D), the layouts oneDNN
   and cuDNN convolutions are fastest in. 1-D tensors have no channels-last format in PyTorch
   (``torch.channels_last`` needs rank 4, ``channels_last_3d`` rank 5), so 1-D models keep the
   contiguous layout.
4. **Compilation**: ``torch.compile`` with inductor and ``freezing=True`` (weights become
   constants, so convolution weights are prepacked once by oneDNN and conv + bias + ReLU +
   residual add fuse into single oneDNN calls). Freezing is patched into inductor's config
   around each compiled call, not set globally (torch.compile's ``options`` do not reach the
   freezing check in torch 2.13). On CUDA, ``mode="reduce-overhead"`` adds CUDA graphs.
   max-autotune stays off: it costs minutes of tuning and gains little on a few CPU cores. Compilation is lazy; if it fails (no C++ compiler, an unsupported op),
   the wrapper warns once and runs eagerly from then on.

Accuracy contract (tested in tests/test_optimize.py): the fp32 path stays within 1e-5 relative
error of eager fp32 (max |difference| / max |eager logit|); the bf16 path within 3e-2 relative
error on logits and >= 99% top-1 agreement with fp32 on real photographs. On a GPU the fp32 path
disables TF32 for its convolutions and matmuls inside the call (TF32 would break 1e-5). The GPU
path (CUDA graphs) cannot be exercised on the CPU machines the test suite runs on.
"""
from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from ..layers.factory import CONV_TYPES, SameConv, memory_format
from ..layers.inflation import InflatedConv

__all__ = ["OptimizedModel", "bf16_supported", "fold_batchnorm", "optimize", "remaining_batchnorms",
           "resolve_dtype"]

# Convolutions whose forward is exactly "pad (maybe), then F.conv with self.weight and self.bias":
# scaling their weight and shifting their bias is the whole fold. Subclasses that transform the
# weight in forward (weight standardisation, connection tables) are not listed on purpose, which is
# why the check is on the exact type.
_FOLDABLE_CONVS = (*CONV_TYPES, InflatedConv)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


# ---------------------------------------------------------------------------------------------
# Batch-norm folding
# ---------------------------------------------------------------------------------------------

def _foldable_conv(module: nn.Module) -> nn.Module | None:
    """The convolution whose weight a following norm can absorb, or None."""
    if isinstance(module, SameConv):  # "same" padding is input-side: the conv inside folds
        module = module.conv
    return module if type(module) in _FOLDABLE_CONVS else None


def _foldable_norm(module: nn.Module) -> bool:
    return (type(module) in _BATCHNORMS and module.track_running_stats
            and module.running_mean is not None and module.running_var is not None)


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` (evaluation statistics) into ``conv`` in place.

    W' = W * s and b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps) per output channel,
    computed in float64 so the fold itself adds no rounding beyond the final cast.
    """
    w = conv.weight.detach().double()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    # Output channels are dim 0 of every (non-transposed) convolution weight: (O, I/g, *k).
    conv.weight.copy_((w * scale.view(-1, *([1] * (w.ndim - 1)))).to(conv.weight.dtype))
    new_bias = shift.to(device=conv.weight.device, dtype=conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)


class _ChildrenAsLeaves(fx.Tracer):
    """Traces one module's own forward, every child a leaf: it shows the order of the calls."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _traced_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv child, norm child) pairs where ``module``'s forward feeds the convolution's output
    into the norm and nowhere else, each child called exactly once; [] if it cannot be traced."""
    try:
        graph = _ChildrenAsLeaves().trace(module)
    except Exception:  # noqa: BLE001 - shape-dependent Python, proxies in control flow: skip it
        return []
    calls = [n for n in graph.nodes if n.op == "call_module"]
    times_called = {n.target: sum(c.target == n.target for c in calls) for n in calls}
    pairs = []
    for node in calls:
        if len(node.users) != 1 or times_called[node.target] != 1:
            continue
        user = next(iter(node.users))
        if (user.op == "call_module" and user.args == (node,) and not user.kwargs
                and times_called[user.target] == 1 and "." not in node.target and "." not in user.target
                and _foldable_conv(module.get_submodule(node.target)) is not None
                and _foldable_norm(module.get_submodule(user.target))):
            pairs.append((node.target, user.target))
    return pairs


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution into that convolution.

    Two ways of knowing that a norm directly follows a convolution, both from module structure:
    in an ``nn.Sequential`` (``ConvNormAct`` is one), a convolution child followed by a norm
    child (``nn.Identity`` children in between are skipped); in any other module, its own
    forward traced with torch.fx, children as opaque leaves, shows a convolution child whose only
    use is a norm child (PreAct-ResNet's conv1 -> norm2). Folded norms become ``nn.Identity``.
    The result is in evaluation mode; norms that follow something else (pre-activation BN before
    the first convolution, DenseNet's BN after a concatenation) stay: see
    :func:`remaining_batchnorms`.

    Args:
        model: any module; not modified unless ``inplace``.
        inplace: fold ``model`` itself instead of a deep copy.

    Returns:
        The folded model (a copy unless ``inplace``), in eval mode.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for parent in list(model.modules()):
        if isinstance(parent, nn.Sequential):
            previous: nn.Module | None = None  # the last non-Identity child's conv, if foldable
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Identity):
                    continue
                if previous is not None and _foldable_norm(child):
                    fold_conv_bn(previous, child)
                    setattr(parent, name, nn.Identity())
                    previous = None  # a second norm in a row would need the first folded output
                    continue
                previous = _foldable_conv(child)
        elif any(_foldable_norm(c) for c in parent.children()):
            for conv_name, norm_name in _traced_pairs(parent):
                fold_conv_bn(_foldable_conv(getattr(parent, conv_name)), getattr(parent, norm_name))
                setattr(parent, norm_name, nn.Identity())
    return model


def remaining_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm modules in ``model`` (after folding: the ones that could not fold)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


# ---------------------------------------------------------------------------------------------
# Precision and layout
# ---------------------------------------------------------------------------------------------

def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 arithmetic is native (fast) on ``device``.

    CPU: AMX tiles or AVX512-BF16 (torch.cpu's capability probes; without them bf16 is emulated
    and slower than fp32). CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """The compute dtype for ``dtype`` in {"auto", "fp32", "bf16", "fp16"} (or a torch dtype)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"optimize: dtype must be a floating type, got {dtype}")
        return dtype
    if dtype == "auto":
        device = torch.device(device)
        if bf16_supported(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"optimize: dtype must be 'auto', 'fp32', 'bf16' or 'fp16', got {dtype!r}")
    return _DTYPES[dtype]


def _spatial_dims(model: nn.Module, example_input: torch.Tensor | None) -> int | None:
    dims = getattr(model, "spatial_dims", None)
    if dims is None and example_input is not None:
        dims = example_input.ndim - 2
    if dims is None:  # a plain module: the rank of its first convolution's weight tells
        for m in model.modules():
            if isinstance(m, _FOLDABLE_CONVS):
                return m.weight.ndim - 2
    return dims


# ---------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------

class OptimizedModel(nn.Module):
    """An inference-only wrapper: fp32 in, fp32 out, the fast path inside.

    Attributes:
        module: the prepared eager model (folded, cast, in the chosen memory format).
        dtype: the compute dtype.
        memory_format: the input layout (None for 1-D models).
        compiled: whether calls go through torch.compile (False after a fallback).
        compile_error: the exception that forced the eager fallback, if any.
        compile_seconds: wall time of the first (compiling) call, once made.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format | None,
                 compiled_fn: Any | None, compile_error: BaseException | None = None):
        super().__init__()
        self.module = module
        self.dtype = dtype
        self.memory_format = memory_format
        self.compile_error = compile_error
        self.compile_seconds: float | None = None
        # Held outside _modules: torch.compile's wrapper is an nn.Module whose state_dict would
        # repeat every weight under "_orig_mod.".
        self.__dict__["_compiled_fn"] = compiled_fn
        self._first_call = compiled_fn is not None
        param = next(module.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        # Convenience: the surface callers read off a classifier.
        for attr in ("spatial_dims", "in_channels", "num_classes", "default_cfg"):
            if hasattr(module, attr):
                setattr(self, attr, getattr(module, attr))

    @property
    def compiled(self) -> bool:
        return self.__dict__["_compiled_fn"] is not None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self.memory_format
        # A tensor of the wrong rank is passed on unchanged: the model's own check names the error.
        if fmt is not None and x.ndim == (4 if fmt is torch.channels_last else 5):
            return x.to(device=self.device, dtype=self.dtype, memory_format=fmt)
        return x.to(device=self.device, dtype=self.dtype)

    def _fp32_guard(self):
        # TF32 would break the fp32 contract (1e-5) on Ampere+ GPUs; harmless elsewhere.
        if self.device.type == "cuda" and self.dtype == torch.float32:
            return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
        return _nullcontext()

    def forward(self, x: torch.Tensor) -> Any:
        with torch.inference_mode(), self._fp32_guard():
            x = self._prepare(x)
            fn = self.__dict__["_compiled_fn"]
            if fn is None:
                out = self.module(x)
            else:
                out = self._call_compiled(fn, x)
        return pytree.tree_map(self._to_fp32, out)

    def _call_compiled(self, fn: Any, x: torch.Tensor) -> Any:
        start = time.perf_counter()
        try:
            # Inductor reads ``freezing`` from its global config when it compiles (lazily, on a
            # call), and torch.compile's ``options`` do not reach that check: patch it around the
            # call only, so other compiled code in the process is left as it was.
            with _inductor_patch():
                out = fn(x)
        except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
            # The input may be at fault (wrong shape): then eager raises too, and its error is
            # the one to show. Otherwise compilation is what failed: fall back for good.
            out = self.module(x)
            self._fall_back(err)
            return out
        if self._first_call:
            self._first_call = False
            self.compile_seconds = time.perf_counter() - start
        return out

    def _fall_back(self, err: BaseException) -> None:
        self.__dict__["_compiled_fn"] = None
        self.compile_error = err
        warnings.warn(f"optimize: torch.compile failed ({type(err).__name__}: {str(err)[:300]}); "
                      "running eagerly (folded, cast and channels-last still apply)", RuntimeWarning,
                      stacklevel=4)

    def _to_fp32(self, t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            # CUDA graphs reuse their output buffers on the next replay: always hand out a copy.
            return t.float() if t.dtype != torch.float32 else t.clone()
        return t

    def extra_repr(self) -> str:
        fmt = str(self.memory_format).replace("torch.", "") if self.memory_format else "contiguous"
        return f"dtype={str(self.dtype).replace('torch.', '')}, memory_format={fmt}, compiled={self.compiled}"


def _inductor_patch():
    from torch._inductor import config as inductor_config

    return inductor_config.patch(INDUCTOR_OPTIONS)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# Inductor settings for inference, patched around every compiled call. freezing: weights become
# constants, so oneDNN prepacks them once and conv + bias + activation (+ residual add) fuse into
# one mkldnn._convolution_pointwise call; without it every call reorders each weight.
INDUCTOR_OPTIONS: dict[str, Any] = {"freezing": True, "max_autotune": False}


def compile_mode(device: torch.device) -> str | None:
    """``reduce-overhead`` (CUDA graphs) on GPU; inductor's default elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else None


def optimize(model: nn.Module, *, dtype: str | torch.dtype = "auto", compile: bool = True,
             channels_last: bool = True, example_input: torch.Tensor | None = None,
             fold: bool = True, calibration: Any = None, backend: str | None = None,
             threads: int | None = None) -> nn.Module:
    """An inference-only copy of ``model`` that predicts the same, faster.

    Args:
        model: a classifier (any module taking one tensor); not modified.
        dtype: "auto" (bf16 where native: CPU with AMX/AVX512-BF16 or a bf16 GPU; fp16 on older
            GPUs; else fp32), "fp32", "bf16" or "fp16". Weights are cast; inputs and outputs stay
            fp32 (cast inside). "int8" (CPU): static post-training quantisation through
            :func:`convnet.deploy.int8.quantize` with ``calibration`` and ``backend``; returns an
            :class:`convnet.deploy.int8.Int8Model`.
        calibration: int8 only: input batches from the training data that fix the activation
            ranges (:func:`convnet.deploy.int8.calibration_batches`).
        backend: int8 only: the engine, "inductor", "onnxruntime", "openvino" or "fx" (default
            ``convnet.deploy.int8.DEFAULT_INT8_BACKEND``).
        threads: int8 only: CPU threads of the engine (default: torch's setting).
        compile: use torch.compile (inductor, freezing; CUDA graphs on GPU). A failure to compile
            warns and falls back to eager. Shapes are static (``dynamic=False``, the fastest
            kernels): each new input shape compiles once, up to dynamo's recompile limit.
        channels_last: channels_last (2-D) / channels_last_3d (3-D) weights and inputs; no effect
            in 1-D (no such layout exists).
        example_input: if given, one call is made now, so compilation happens here (timed in
            ``compile_seconds``) rather than on the first real call.
        fold: fold batch norms into the convolutions before them (:func:`fold_batchnorm`).

    Returns:
        An :class:`OptimizedModel` (an ``Int8Model`` for int8); call it like the model, under no
        autograd.
    """
    if dtype in ("int8", torch.int8):
        from .int8 import quantize

        if calibration is None:
            raise ValueError("optimize: dtype='int8' needs calibration= (batches of training inputs, e.g. "
                             "convnet.deploy.int8.calibration_batches(data))")
        return quantize(model, calibration, backend=backend, example_input=example_input, threads=threads)
    if backend not in (None, "inductor"):
        raise ValueError(f"optimize: backend={backend!r} applies to dtype='int8' only; the {dtype!r} path is "
                         "inductor's (export to ONNX or OpenVINO with `convnet export` instead)")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    compute = resolve_dtype(dtype, device)
    prepared = fold_batchnorm(model) if fold else copy.deepcopy(model).eval()
    prepared = prepared.to(dtype=compute)
    dims = _spatial_dims(model, example_input)
    fmt = memory_format(dims) if channels_last and dims else None
    if fmt is not None:
        prepared = prepared.to(memory_format=fmt)  # rank-4/5 weights only; others untouched
    for p in prepared.parameters():
        p.requires_grad_(False)

    compiled_fn, error = None, None
    if compile:
        try:
            compiled_fn = torch.compile(prepared, mode=compile_mode(device), dynamic=False)
        except Exception as err:  # noqa: BLE001 - e.g. no inductor on this platform
            error = err
            warnings.warn(f"optimize: torch.compile is unavailable ({type(err).__name__}: {err}); "
                          "running eagerly", RuntimeWarning, stacklevel=2)
    wrapper = OptimizedModel(prepared, compute, fmt, compiled_fn, error)
    if example_input is not None:
        wrapper(example_input)
    return wrapper
