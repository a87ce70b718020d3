"""Compiled int8 inference on the CPU: one call, three engines, chosen by name.

``optimize(model, dtype="int8", calibration=batches, backend=NAME)`` (or :func:`quantize`
directly) returns an :class:`Int8Model`: fp32 in, fp32 logits out, integer convolutions and
matrix products inside. All three engines do static post-training quantisation (Jacob et al.,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
CVPR 2018): weights int8, symmetric, one scale per output channel; activations 8-bit with one
scale (and zero point) per tensor, from the ranges the calibration batches produce. On a CPU
with AVX512-VNNI (``vpdpbusd``: 64 u8 x s8 products summed into 16 int32 lanes per instruction,
against 16 fp32 FMAs) an int8 product has 4x the multiply-add rate of fp32 and 2x that of
AVX512-BF16's ``vdpbf16ps``.

Engines (``INT8_BACKENDS``; :func:`int8_backends` lists those installed):

* ``inductor``: PT2E quantisation (``torch.export`` -> ``prepare_pt2e`` with torchao's
  ``X86InductorQuantizer`` -> calibration -> ``convert_pt2e``) compiled by inductor with
  freezing, which lowers quantize/conv/dequantize patterns to oneDNN's fused
  ``qconv_pointwise`` / ``qlinear_pointwise`` (extra ``int8``: torchao; torch 2.13 no longer
  ships ``torch.ao.quantization.quantize_pt2e``). Activations u8 asymmetric.
* ``onnxruntime``: the model exported to ONNX (:func:`convnet.deploy.export.export_onnx`),
  shape-inferred (``quant_pre_process``) and quantised by ``quantize_static`` in the QDQ format,
  per-channel weights, u8 activations, min-max calibration; ONNX Runtime fuses the Q/DQ pairs
  into QLinearConv / integer GEMMs on MLAS's VNNI kernels (extra ``export``).
* ``openvino``: the same ONNX file read by OpenVINO, quantised by NNCF's post-training
  quantisation (``nncf.quantize``, the ``PERFORMANCE`` preset: symmetric activations, fast-bias
  correction) and compiled for the CPU plugin (oneDNN inside; extra ``openvino``).
* ``fx``: the older eager path, :func:`convnet.deploy.quantize_int8` (FX graph mode, torch's
  quantized engine), kept for comparison and for models the others cannot trace.

Kept in float on purpose (``FLOAT_MODULE_TYPES``, plus any names given as ``keep_float``):
LeNet-5's RBF output layer, which computes ``||x||^2 - 2 x.w + ||w||^2``: the three terms are
each in the hundreds and their difference is the class penalty, so an 8-bit ``x.w`` (one step
is 1/255 of its range) would move penalties by more than the gaps between classes. Scaled tanh
and LeNet's trainable subsampling need no such care: they run in float between a dequantise
and a quantise (the engines quantise only the operations they have integer kernels for).

The calibration set must be training images (never the test split): see
:func:`calibration_batches`, which reads only ``DataSplits.train``.

Each engine also measures its own int8 ceiling (:func:`int8_ceiling`): the rate of a large
int8 GEMM through the same library, as :func:`convnet.deploy.bench.matmul_ceiling` does for
fp32/bf16, so a benchmark can report an int8 row's share of what its library can do.
"""
from __future__ import annotations

import copy
import difflib
import importlib.util
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..layers.special import EuclideanRBF
from .export import MissingDependencyError
from .optimize import fold_batchnorm

__all__ = ["DEFAULT_INT8_BACKEND", "FLOAT_MODULE_TYPES", "INT8_BACKENDS", "Int8Backend", "Int8Model",
           "calibration_batches", "float_module_names", "int8_backends", "int8_ceiling", "quantize"]

# Module types no engine should quantise (see the module docstring for why).
FLOAT_MODULE_TYPES: tuple[type[nn.Module], ...] = (EuclideanRBF,)


class MissingInt8Backend(MissingDependencyError):
    """The packages an int8 engine needs are not installed."""


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------

def calibration_batches(data: Any, images: int = 256, batch_size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """``images`` training images of ``data`` (a :class:`convnet.data.DataSplits`) in batches.

    Only ``data.train`` is read: a test image in the calibration set would let the activation
    ranges see the data the accuracy is measured on. The images are a seeded random draw, so
    every class is represented in proportion.

    Args:
        data: the data splits (in memory or streamed).
        images: how many training images (all of them if fewer).
        batch_size: images per batch.
        seed: for the draw.
    """
    from ..data import as_samples

    train = data.train
    if isinstance(train, tuple):  # the in-memory fast path: (inputs, targets)
        inputs, n = train[0], len(train[0])
        take = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:images]
        picked = inputs[take]
    else:
        samples = as_samples(train)
        take = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:images]
        picked = torch.stack([samples[int(i)]["input"] for i in take])
    if len(picked) == 0:
        raise ValueError("calibration_batches: the training split is empty")
    return list(picked.float().split(batch_size))


def float_module_names(model: nn.Module, keep_float: Sequence[str] = ()) -> list[str]:
    """Qualified names of the modules to leave in float: every ``FLOAT_MODULE_TYPES`` instance
    plus ``keep_float`` (checked against the model's modules)."""
    names = dict(model.named_modules())
    unknown = [n for n in keep_float if n not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"keep_float: no module named {unknown[0]!r} in {type(model).__name__}{hint}")
    found = [n for n, m in model.named_modules() if n and isinstance(m, FLOAT_MODULE_TYPES)]
    return sorted(set(found) | set(keep_float))


# ---------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------

class Int8Model(nn.Module):
    """An int8 model from :func:`quantize`: call it like the float model (fp32 in, fp32 out).

    Attributes:
        backend: the engine's name.
        calibration_batches: how many batches calibrated the activation ranges.
        calibration_images: how many images.
        float_modules: module names left in float.
        setup_seconds: time to export, calibrate, quantise and (where lazy) compile.
        info: engine details (versions, file sizes, the quantised ONNX model's bytes for
            ``onnxruntime``).
    """

    def __init__(self, runner: Callable[[torch.Tensor], torch.Tensor], backend: str, model: nn.Module,
                 info: dict[str, Any]):
        super().__init__()
        self.__dict__["_runner"] = runner  # not a submodule: an ONNX/OpenVINO session, or a compiled graph
        self.backend = backend
        self.info = info
        self.calibration_batches = info.pop("calibration_batches", 0)
        self.calibration_images = info.pop("calibration_images", 0)
        self.float_modules = info.pop("float_modules", [])
        self.setup_seconds = info.pop("setup_seconds", None)
        for attr in ("spatial_dims", "in_channels", "num_classes", "default_cfg"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.__dict__["_runner"](x.detach().float().cpu().contiguous())

    def extra_repr(self) -> str:
        return f"backend={self.backend}, calibration_images={self.calibration_images}, float={self.float_modules}"


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------

QuantizeFn = Callable[[nn.Module, list[torch.Tensor], torch.Tensor, list[str], int],
                      tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]]


@dataclass(frozen=True)
class Int8Backend:
    """One int8 engine: how to quantise a model with it, and how to measure its int8 GEMM rate."""

    name: str
    packages: tuple[str, ...]  # imported before use; a missing one raises MissingInt8Backend
    extra: str  # the pip extra that installs them
    library: str  # what runs the integer products
    quantize: QuantizeFn
    gemm: Callable[[int, int], Callable[[], Any]]  # (n, threads) -> one n x n x n int8 GEMM, prepared

    def available(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def require(self) -> None:
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            raise MissingInt8Backend(f"int8 backend {self.name!r} needs {', '.join(missing)}: "
                                     f"pip install 'convnet[{self.extra}]'")


INT8_BACKENDS: dict[str, Int8Backend] = {}


def register_int8_backend(backend: Int8Backend) -> Int8Backend:
    if backend.name in INT8_BACKENDS:
        raise ValueError(f"int8 backend {backend.name!r} is already registered")
    INT8_BACKENDS[backend.name] = backend
    return backend


def get_int8_backend(name: str) -> Int8Backend:
    """The registered engine ``name``; an unknown name is an error listing the known ones."""
    if name not in INT8_BACKENDS:
        close = difflib.get_close_matches(name, INT8_BACKENDS, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown int8 backend {name!r}; expected one of: {', '.join(INT8_BACKENDS)}{hint}")
    return INT8_BACKENDS[name]


def int8_backends() -> list[str]:
    """Names of the int8 engines whose packages are installed."""
    return [name for name, b in INT8_BACKENDS.items() if b.available()]


def _example_batch(model: nn.Module, example_input: torch.Tensor | None, first: torch.Tensor) -> torch.Tensor:
    """A batch of at least two to trace with (tracers specialise a size-1 axis to a constant)."""
    x = first if example_input is None else example_input
    x = x.detach().float().cpu()
    if x.shape[0] == 1:
        x = x.expand(2, *x.shape[1:]).contiguous()
    return x


# -- inductor (PT2E + torchao's X86InductorQuantizer) -------------------------------------------

def _quiet_torchao() -> None:
    # torchao's import logs a warning for each of its CUDA-only libraries that cannot load on a
    # CPU-only torch; they are irrelevant to the x86 path.
    logging.getLogger("torchao").setLevel(logging.ERROR)


def _inductor_quantize(model: nn.Module, batches: list[torch.Tensor], example: torch.Tensor,
                       float_names: list[str], threads: int) -> tuple[Callable, dict[str, Any]]:
    _quiet_torchao()
    # Importing the quantizer module also registers torchao's int8 lowering passes in inductor
    # (weight prepacking, quantize/conv/dequantize fusion into oneDNN's qconv_pointwise).
    import torchao
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .export import _Wrapped, _dynamic_shapes
    from .optimize import _inductor_patch

    fmt = torch.channels_last if example.ndim == 4 else None

    def layout(x: torch.Tensor) -> torch.Tensor:
        # oneDNN's int8 convolutions run in channels-last (nhwc); feeding it avoids a reorder.
        return x.contiguous(memory_format=fmt) if fmt is not None else x

    wrapped = _Wrapped(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Only the batch is dynamic here, so no size-oblivious tracing (export's, for dynamic
        # image sizes): under it ConvNeXt's graph guarded on a batch of at least 2.
        graph = torch.export.export(wrapped, (example,),
                                    dynamic_shapes=_dynamic_shapes(example, True, False)).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    for name in float_names:  # module names in the exported graph carry the wrapper's "model." prefix
        quantizer.set_module_name_qconfig(f"model.{name}", None)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in batches:  # observers record the activation ranges
            prepared(layout(batch))
    converted = convert_pt2e(prepared)
    compiled = torch.compile(converted, dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _inductor_patch():  # freezing: the int8 lowering passes need it
            return compiled(layout(x))

    return run, {"library": f"torchao {torchao.__version__} PT2E + inductor (oneDNN qconv/qlinear)",
                 "lazy_compile": True}


def _torch_int_gemm(n: int, threads: int) -> Callable[[], Any]:
    a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
    # torch._int_mm on the CPU is oneDNN's int8 matmul (int32 accumulation): the library the
    # inductor path's qconv_pointwise / qlinear_pointwise call into.
    return lambda: torch._int_mm(a, b)


# -- ONNX Runtime (quantize_static, QDQ) ---------------------------------------------------------

def onnx_nodes_in_modules(proto: Any, module_names: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes torch's exporter emitted inside any of ``module_names`` (read
    from each node's ``pkg.torch.onnx.name_scopes`` metadata; the export wrapper adds "model.")."""
    scopes = {f"model.{name}" for name in module_names}
    out = []
    for node in proto.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        names = meta.get("pkg.torch.onnx.name_scopes", "")
        if any(f"'{s}'" in names for s in scopes):
            out.append(node.name)
    return out


def _ort_session(model: Any, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _export_float_onnx(model: nn.Module, folder: Path, example: torch.Tensor) -> tuple[Path, Any]:
    import onnx

    from .export import export_onnx

    path = export_onnx(model, folder / "float.onnx", example)
    return path, onnx.load(str(path))


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, name: str, batches: list[torch.Tensor]):
        self.feeds = iter([{name: b.numpy()} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _onnxruntime_quantize(model: nn.Module, batches: list[torch.Tensor], example: torch.Tensor,
                          float_names: list[str], threads: int) -> tuple[Callable, dict[str, Any]]:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="convnet-int8-") as tmp:
        folder = Path(tmp)
        path, proto = _export_float_onnx(model, folder, example)
        exclude = onnx_nodes_in_modules(proto, float_names)
        # Shape inference only: ORT's own graph optimisation here would rename the nodes that
        # `exclude` names (the session optimises the quantised graph when it loads it).
        quant_pre_process(str(path), str(folder / "pre.onnx"), skip_optimization=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(folder / "pre.onnx"), str(folder / "int8.onnx"),
                            _Batches(proto.graph.input[0].name, batches),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=exclude)
        data = (folder / "int8.onnx").read_bytes()
    session = _ort_session(data, threads)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    return run, {"library": f"onnxruntime {ort.__version__} QDQ (MLAS)", "onnx_bytes": data,
                 "onnx_file_mb": len(data) / 2 ** 20, "excluded_nodes": exclude}


def _onnx_int_gemm(n: int, threads: int) -> Callable[[], Any]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "B")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "int8_gemm",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])], [weight])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = _ort_session(proto.SerializeToString(), threads)
    feed = {"A": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    onnx.checker.check_model(proto)
    # u8 x s8 with a constant s8 matrix: the QLinearConv / QDQ GEMMs' operand types (MLAS QGEMM).
    return lambda: session.run(None, feed)


# -- OpenVINO + NNCF -----------------------------------------------------------------------------

def _openvino_config(threads: int, precision: str = "f32") -> dict[str, Any]:
    # f32: what int8 leaves in float runs in fp32 here as in the other engines (on a CPU with
    # AVX512-BF16 OpenVINO would otherwise pick bf16 for it); LATENCY: one stream, all threads
    # on one request, as the other engines run.
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}


def _openvino_runner(compiled: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        out = request.infer({0: x.numpy()})
        return torch.from_numpy(np.array(out[0], copy=True))

    return run


def _openvino_quantize(model: nn.Module, batches: list[torch.Tensor], example: torch.Tensor,
                       float_names: list[str], threads: int) -> tuple[Callable, dict[str, Any]]:
    logging.getLogger("nncf").setLevel(logging.ERROR)  # progress bars and INFO lines
    import nncf
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="convnet-int8-") as tmp:
        path, proto = _export_float_onnx(model, Path(tmp), example)
        # OpenVINO reads the ONNX file (its TorchScript front end has no rule for the index_put
        # of LeNet-5's connection table); its operations keep the ONNX node names.
        float_model = ov.convert_model(str(path))
    ignored = onnx_nodes_in_modules(proto, float_names)
    quantized = nncf.quantize(float_model, nncf.Dataset([b.numpy() for b in batches]), subset_size=len(batches),
                              preset=nncf.QuantizationPreset.PERFORMANCE,
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    compiled = ov.Core().compile_model(quantized, "CPU", _openvino_config(threads))
    return _openvino_runner(compiled), {"library": f"openvino {ov.__version__} + nncf {nncf.__version__}",
                                        "ignored_nodes": ignored, "ov_model": quantized}


def _openvino_int_gemm(n: int, threads: int) -> Callable[[], Any]:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], np.float32, name="A")

    def fake_quantize(node: Any, lo: float, hi: float, levels: int) -> Any:
        low, high = ops.constant(np.float32(lo)), ops.constant(np.float32(hi))
        return ops.fake_quantize(node, low, high, low, high, levels)

    # FakeQuantize(256 levels, [0, 255]) on the input and (255 levels, [-127, 127]) on a constant
    # weight: OpenVINO's low-precision transformations turn this into a u8 x s8 FullyConnected,
    # the form NNCF's quantised convolutions and matmuls take.
    weight = ops.constant(rng.integers(-127, 128, (n, n)).astype(np.float32))
    y = ops.matmul(fake_quantize(a, 0, 255, 256), fake_quantize(weight, -127, 127, 255), False, True)
    compiled = ov.Core().compile_model(ov.Model([y], [a], "int8_gemm"), "CPU", _openvino_config(threads))
    request = compiled.create_infer_request()
    feed = {0: rng.integers(0, 256, (n, n)).astype(np.float32)}
    return lambda: request.infer(feed)


# -- FX graph mode (the older eager path) --------------------------------------------------------

def _fx_quantize(model: nn.Module, batches: list[torch.Tensor], example: torch.Tensor,
                 float_names: list[str], threads: int) -> tuple[Callable, dict[str, Any]]:
    from .quantize import quantize_int8

    if float_names:  # FX maps a module name to no qconfig: it stays float
        from torch.ao.quantization import get_default_qconfig_mapping

        mapping = get_default_qconfig_mapping("x86")
        for name in float_names:
            mapping.set_module_name(f"model.{name}" if hasattr(model, "forward_features") else name, None)
    else:
        mapping = None
    # The float modules are FX leaves already (quantize.DEFAULT_LEAVES): traced through, their
    # arithmetic would get observers of its own whatever the mapping says of their names.
    quantized = quantize_int8(model, batches, qconfig_mapping=mapping)
    return quantized, {"library": f"torch {torch.__version__} FX graph mode ({torch.backends.quantized.engine})",
                       "module": quantized}


for _backend in (
    Int8Backend("inductor", ("torchao",), "int8", "oneDNN via inductor", _inductor_quantize, _torch_int_gemm),
    Int8Backend("onnxruntime", ("onnx", "onnxscript", "onnxruntime"), "export", "MLAS", _onnxruntime_quantize,
                _onnx_int_gemm),
    Int8Backend("openvino", ("openvino", "nncf", "onnx", "onnxscript"), "openvino", "OpenVINO CPU plugin",
                _openvino_quantize, _openvino_int_gemm),
    Int8Backend("fx", (), "", "torch quantized engine (fbgemm/oneDNN)", _fx_quantize, _torch_int_gemm),
):
    register_int8_backend(_backend)

# The default engine, chosen by benchmarks/formats.py's measurements (README, "int8"): the fastest
# at batch 1 and 16 on the four models there, within the accuracy bound on the digits.
DEFAULT_INT8_BACKEND = "onnxruntime"


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

def quantize(model: nn.Module, calibration: Iterable[torch.Tensor], *, backend: str | None = None,
             example_input: torch.Tensor | None = None, threads: int | None = None,
             keep_float: Sequence[str] = ()) -> Int8Model:
    """Static int8 post-training quantisation of ``model`` with one of the CPU engines.

    Args:
        model: a float classifier (not modified); batch norms are folded first.
        calibration: input batches (B, C, *S) from the *training* data (see
            :func:`calibration_batches`); a few hundred images fix the activation ranges.
        backend: "inductor", "onnxruntime", "openvino" or "fx" (default ``DEFAULT_INT8_BACKEND``).
        example_input: the shape to trace/export at (default: the first calibration batch).
        threads: CPU threads the engine runs on (default: torch's setting).
        keep_float: more module names to leave in float (``FLOAT_MODULE_TYPES`` always are).

    Returns:
        an :class:`Int8Model`.

    Raises:
        ValueError: an unknown backend (the error lists the known ones), an empty calibration
            set, or an unknown ``keep_float`` name.
        MissingInt8Backend: the engine's packages are not installed (names the pip extra).
    """
    engine = get_int8_backend(backend or DEFAULT_INT8_BACKEND)
    engine.require()
    batches = [b.detach().float().cpu() for b in calibration]
    if not batches:
        raise ValueError("quantize: the calibration set is empty; give a few batches of training inputs")
    start = time.perf_counter()
    float_model = fold_batchnorm(copy.deepcopy(model).cpu().float(), inplace=True)
    float_names = float_module_names(float_model, keep_float)
    example = _example_batch(float_model, example_input, batches[0])
    runner, info = engine.quantize(float_model, batches, example, float_names, threads or torch.get_num_threads())
    info.update(calibration_batches=len(batches), calibration_images=sum(len(b) for b in batches),
                float_modules=float_names)
    wrapper = Int8Model(runner, engine.name, model, info)
    if info.pop("lazy_compile", False):  # compile now, at the example's shape, so setup is timed whole
        wrapper(example)
    wrapper.setup_seconds = time.perf_counter() - start
    return wrapper


_INT8_CEILINGS: dict[tuple[str, int], float] = {}


def int8_ceiling(backend: str | None = None, threads: int | None = None, sizes: Sequence[int] = (1024, 2048),
                 repeats: int = 3, refresh: bool = False) -> float:
    """The engine's int8 matrix-multiply rate in OP/s (2 n^3 multiply-adds-as-two over the best
    time of an n x n x n int8 GEMM), measured like the fp32/bf16 ceiling: the best of ``repeats``
    timings per size after a warm-up, cached per (engine, threads) for the process.

    Args:
        backend: the engine (default ``DEFAULT_INT8_BACKEND``); ``fx`` and ``inductor`` share
            oneDNN's int8 matmul (``torch._int_mm``).
        threads: CPU threads (default: torch's setting).
        sizes: matrix sizes.
        repeats: timings per size.
        refresh: measure again even if cached.
    """
    engine = get_int8_backend(backend or DEFAULT_INT8_BACKEND)
    threads = threads or torch.get_num_threads()
    key = (engine.name, threads)
    if key in _INT8_CEILINGS and not refresh:
        return _INT8_CEILINGS[key]
    if engine.name not in ("fx", "inductor"):
        engine.require()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    try:
        for n in sizes:
            gemm = engine.gemm(n, threads)
            gemm()  # warm-up: packing, thread pool start
            for _ in range(repeats):
                t0 = time.perf_counter()
                gemm()
                best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(old)
    _INT8_CEILINGS[key] = best
    return best
