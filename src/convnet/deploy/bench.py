"""Benchmarks: throughput, latency, memory and achieved FLOP/s against the machine's ceiling.

:func:`bench_model` times a model at a batch size in one of three modes and, in the same call,
the eager fp32 baseline of the same model, so every speedup is a ratio of two figures measured
under the same machine load:

* ``eager``: the model as written; in a dtype other than fp32 under ``torch.autocast``.
* ``optimized``: inference through :func:`convnet.deploy.optimize` (batch norm folded, bf16
  weights where the hardware computes bf16 natively, channels_last, ``torch.compile``);
  training as bf16 autocast + channels_last, with and without ``torch.compile``
  (``compile="auto"`` measures both and reports the faster).
* ``onnxruntime``: the model exported by :func:`convnet.deploy.export.export_onnx` and run by
  ONNX Runtime (inference, fp32).
* ``openvino``: the same ONNX file compiled by OpenVINO's CPU plugin (inference, fp32: its
  inference precision pinned to f32, which it would otherwise lower to bf16 on such CPUs).

``dtype="int8"`` (optimized mode) times :func:`convnet.deploy.optimize` with ``dtype="int8"``
through the int8 engine ``backend`` ("inductor", "onnxruntime", "openvino", "fx"), calibrated
on the benchmark's own random batch (the speed does not depend on the ranges; accuracy is
measured on trained models by benchmarks/int8_accuracy.py), and reports the share of *that
engine's* int8 GEMM rate (:func:`convnet.deploy.int8.int8_ceiling`).

Figures (see :func:`bench_model` for the keys):

* **Latency** is the wall time of one call on a whole batch (inference) or of one training
  step (forward, cross-entropy, backward, SGD step); p50/p99 are percentiles over the timed
  iterations, images/s = batch x iterations / total time.
* **FLOPs per image** = 2 x MACs of one forward pass, counted by :func:`convnet.summary` on the
  meta device (conv and matmul only, see its conventions). A training step counts 3x: the
  backward pass computes the input gradient and the weight gradient, each a product as large
  as the forward one (Kaplan et al. 2020, "Scaling laws", sec. 2.1: C ~= 6N per token, 2N
  forward and 4N backward).
* **Ceiling** = :func:`matmul_ceiling`, the best large square GEMM rate in the same dtype, on
  the same device and thread count, measured in the same process; ``share_of_ceiling`` =
  achieved / ceiling says how much of the hardware's matrix throughput the model extracts.
  For int8 the "FLOPs" are integer multiply-adds counted the same way (2 per MAC) and the
  ceiling is the int8 engine's own GEMM rate.
* **Peak memory**: on CUDA ``torch.cuda.max_memory_allocated`` during the timed iterations
  (tensors only); on the CPU the process' resident-set high-water mark (Linux VmHWM, reset
  just before the run through /proc/self/clear_refs; elsewhere ``resource.getrusage``'s
  lifetime maximum), which includes the interpreter, the libraries and the weights: what the
  operating system must give the process to run this workload.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..layers.factory import memory_format
from .optimize import optimize, resolve_dtype

_DTYPE_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
_CEILINGS: dict[tuple[str, str, int], float] = {}
_BASE_KEYS = ("img_per_s", "p50_ms", "p99_ms", "peak_mem_mb", "achieved_flops", "ceiling", "share_of_ceiling")


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPE_NAMES.items()}[dtype]




@contextlib.contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(dtype: str | torch.dtype = torch.float32, device: str | torch.device = "cpu",
                   threads: int | None = None, sizes: Sequence[int] | None = None, repeats: int = 3,
                   refresh: bool = False, backend: str | None = None) -> float:
    """The machine's matrix-multiply rate in FLOP/s: the best of a few large square GEMMs.

    Sizes: a GEMM of n x n by n x n does 2 n^3 FLOPs on 3 n^2 elements, so its arithmetic
    intensity grows with n; at n >= 1024 it exceeds every CPU's and GPU's FLOP-per-byte balance
    and the product is compute-bound, the regime a library can run at peak. The operands
    (3 x 4-16 MiB at n = 1024-2048 in fp32) outgrow the per-core L2 cache, so the rate is the
    sustained one, not an in-cache burst. On CUDA n = 4096 and 8192 fill every SM with whole
    tiles (multiples of 256). The best of ``repeats`` timings per size (after a warm-up call)
    discounts interference from other processes on a shared machine. Cached per (dtype,
    device, threads) for the process, so a benchmark measures it once.

    Args:
        dtype: "fp32", "bf16", "fp16" or a torch dtype.
        device: where to multiply.
        threads: CPU threads (default: torch's current setting).
        sizes: override the matrix sizes.
        repeats: timings per size.
        refresh: measure again even if cached.
        backend: int8 only: the int8 engine whose GEMM is timed
            (:func:`convnet.deploy.int8.int8_ceiling`).
    """
    device = torch.device(device)
    dtype = _DTYPE_NAMES[dtype] if isinstance(dtype, str) else dtype
    if dtype == torch.int8:
        from .int8 import int8_ceiling

        return int8_ceiling(backend, threads, **({"sizes": sizes} if sizes else {}), repeats=repeats,
                            refresh=refresh)
    key = (str(dtype), str(device), threads or torch.get_num_threads())
    if key in _CEILINGS and not refresh:
        return _CEILINGS[key]
    sizes = sizes or ((4096, 8192) if device.type == "cuda" else (1024, 2048))
    best = 0.0
    with _threads(threads), torch.no_grad():
        for n in sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            torch.mm(a, b)
            _sync(device)
            for _ in range(repeats):
                t0 = time.perf_counter()
                torch.mm(a, b)
                _sync(device)
                best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    _CEILINGS[key] = best
    return best


def flops_per_image(model: nn.Module, input_size: Sequence[int]) -> int:
    """2 x MACs of one forward pass of one image, counted on the meta device (no compute); for a
    detector, of its dense part (``analysis_forward``: no box selection, no RoI head)."""
    from ..analysis import summary

    return summary(model, tuple(input_size), device="meta", receptive_field=False).total_flops


class _PeakMemory:
    """Peak memory of a block of code in MiB: CUDA bytes allocated, or the process' RSS
    high-water mark on the CPU (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = ""
        self.mb = float("nan")

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
        else:
            try:  # Linux: writing 5 resets VmHWM to the current RSS (proc(5), /proc/pid/clear_refs)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.kind = "rss_peak"
            except OSError:
                self.kind = "rss_peak_lifetime"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
            return
        if self.kind == "rss_peak":
            with open("/proc/self/status") as f:
                kib = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
            self.mb = kib / 1024
        else:  # ru_maxrss is KiB on Linux, bytes on macOS
            import resource  # Unix only

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mb = peak / (2 ** 20 if sys.platform == "darwin" else 1024)


def _autocast(device: torch.device, dtype: torch.dtype) -> Any:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _time(step: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> tuple[list[float], float, str]:
    """Per-iteration wall times (s) of ``step`` after ``warmup`` untimed calls; peak memory."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    with _PeakMemory(device) as mem:
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return times, mem.mb, mem.kind


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


# Inference steps by mode: (model, x, dtype, compile, threads, backend) -> (the timed call, how it
# ran); backend names the int8 engine (optimized mode, dtype int8).
InferenceStep = Callable[[nn.Module, torch.Tensor, torch.dtype, bool, "int | None", "str | None"],
                         tuple[Callable[[], Any], dict[str, Any]]]


def _eager_inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, compile: bool,
                     threads: int | None, backend: str | None = None) -> tuple[Callable[[], Any], dict[str, Any]]:
    def step() -> Any:
        with torch.inference_mode(), _autocast(x.device, dtype):
            return model(x)
    return step, {}


def _optimized_inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, compile: bool,
                         threads: int | None, backend: str | None = None) -> tuple[Callable[[], Any], dict[str, Any]]:
    if dtype == torch.int8:
        fast = optimize(model, dtype="int8", calibration=[x], backend=backend, example_input=x, threads=threads)
        info = {"optimizer": f"convnet.deploy.optimize int8 ({fast.info['library']})", "backend": fast.backend,
                "compiled": True}
    else:
        fast = optimize(model, dtype=dtype, compile=compile, channels_last=True, example_input=x)
        info = {"optimizer": "convnet.deploy.optimize", "compiled": bool(getattr(fast, "compiled", compile))}

    def step() -> Any:
        with torch.inference_mode():
            return fast(x)
    return step, info


def _onnxruntime_inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, compile: bool,
                           threads: int | None, backend: str | None = None) -> tuple[Callable[[], Any], dict[str, Any]]:
    from .export import export_onnx, require

    (ort,) = require("onnxruntime")
    info: dict[str, Any] = {}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = (["CUDAExecutionProvider"] if x.device.type == "cuda" else []) + ["CPUExecutionProvider"]
    with tempfile.TemporaryDirectory(prefix="convnet-bench-") as tmp:  # the session keeps the weights
        path = export_onnx(model, Path(tmp) / "model.onnx", x[:2] if x.shape[0] > 1 else x)
        info["onnx_file_mb"] = os.path.getsize(path) / 2 ** 20
        session = ort.InferenceSession(str(path), opts, providers=[p for p in providers
                                                                    if p in ort.get_available_providers()])
    name = session.get_inputs()[0].name
    feed = {name: x.detach().cpu().numpy()}
    info["optimizer"] = f"onnxruntime {ort.__version__} ({session.get_providers()[0]})"
    return (lambda: session.run(None, feed)), info


def _openvino_inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, compile: bool,
                        threads: int | None, backend: str | None = None) -> tuple[Callable[[], Any], dict[str, Any]]:
    from .export import export_onnx, require_openvino
    from .int8 import _openvino_config, _openvino_runner

    ov = require_openvino()
    with tempfile.TemporaryDirectory(prefix="convnet-bench-") as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", x[:2] if x.shape[0] > 1 else x)
        compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU",
                                           _openvino_config(threads or torch.get_num_threads()))
    run = _openvino_runner(compiled)
    xc = x.detach().cpu()
    return (lambda: run(xc)), {"optimizer": f"openvino {ov.__version__} (CPU, f32)"}


# The modes (see the module docstring); bench_model checks a mode against this table once.
INFERENCE_STEPS: dict[str, InferenceStep] = {
    "eager": _eager_inference,
    "optimized": _optimized_inference,
    "onnxruntime": _onnxruntime_inference,
    "openvino": _openvino_inference,
}
MODES = tuple(INFERENCE_STEPS)


def _train_step(model: nn.Module, x: torch.Tensor, mode: str, dtype: torch.dtype,
                compile: bool) -> tuple[Callable[[], Any], dict[str, Any]]:
    device = x.device
    model = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        out = model(x[:1])
    if not isinstance(out, torch.Tensor):  # a detector's boxes: its training step needs targets
        raise ValueError(f"--train times a classifier's step (cross-entropy on its logits); "
                         f"{type(model).__name__} returns {type(out).__name__}: benchmark its inference instead")
    num_classes = out.shape[1]
    model.train()
    info: dict[str, Any] = {"optimizer": "SGD(momentum=0.9)"}
    if mode == "optimized":
        fmt = memory_format(x.ndim - 2)
        if fmt is not None:
            model = model.to(memory_format=fmt)
            x = x.contiguous(memory_format=fmt)
    forward = torch.compile(model) if compile else model
    info["compiled"] = compile
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    y = torch.randint(0, num_classes, (x.shape[0],), device=device)

    def step() -> float:
        with _autocast(device, dtype):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step, info


def _measure(model: nn.Module, x: torch.Tensor, mode: str, dtype: torch.dtype, train: bool, compile: bool,
             warmup: int, iters: int, threads: int | None, backend: str | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    with _threads(threads):
        if train:
            step, info = _train_step(model, x, mode, dtype, compile)
        else:
            step, info = INFERENCE_STEPS[mode](model, x, dtype, compile, threads, backend)
        info["setup_s"] = time.perf_counter() - t0
        times, mem, kind = _time(step, x.device, warmup, iters)
    total = sum(times)
    return {"img_per_s": x.shape[0] * len(times) / total, "p50_ms": 1e3 * _percentile(times, 50),
            "p99_ms": 1e3 * _percentile(times, 99), "mean_ms": 1e3 * total / len(times),
            "peak_mem_mb": mem, "peak_mem_kind": kind, **info}


def bench_model(model: str | nn.Module, batch_size: int = 16, input_size: Sequence[int] | None = None,
                dtype: str | torch.dtype = "auto", train: bool = False, mode: str = "optimized", warmup: int = 3,
                iters: int = 20, *, device: str | torch.device = "cpu", threads: int | None = None,
                compile: bool | str = "auto", baseline: bool = True, overrides: dict[str, Any] | None = None,
                seed: int = 0, fresh_ceiling: bool = False, backend: str | None = None) -> dict[str, Any]:
    """Time ``model`` and, in the same call, its eager fp32 baseline.

    Args:
        model: a registered name (built at its paper defaults, or with ``overrides``) or a module.
        batch_size: images per call / training step.
        input_size: (C, *S) (default: the model's ``default_cfg["input_size"]``).
        dtype: compute dtype: "auto" (bf16 where the hardware computes it natively, for the
            optimized mode; fp32 for eager, ONNX Runtime and OpenVINO), "fp32", "bf16", "fp16",
            or "int8" (optimized mode, CPU: through the int8 engine ``backend``).
        train: time a training step instead of inference.
        mode: "eager", "optimized", "onnxruntime" or "openvino" (see the module docstring).
        warmup: untimed calls first (compilation, allocator and cache warm-up).
        iters: timed calls.
        device: "cpu" or "cuda".
        threads: CPU threads for the run and the ceiling (default: torch's setting).
        compile: torch.compile in the optimized mode: True, False or "auto" (inference: True;
            training: measure both and keep the faster; the other lands in ``variants``).
        baseline: also measure eager fp32 (same batch, iterations and threads).
        overrides: create_model keyword overrides (e.g. a family's tiny widths) for a name.
        seed: for the weights and the random input.
        fresh_ceiling: measure the matmul ceiling again right after the timed run instead of
            using the process' cached figure (on a machine whose load changes, the ratio then
            compares rates measured moments apart).
        backend: the int8 engine for ``dtype="int8"`` (default
            ``convnet.deploy.int8.DEFAULT_INT8_BACKEND``); its name lands in the result.

    A given module is moved to ``device`` in fp32 and eval mode; modes that change it (optimized,
    training) work on copies.

    Returns:
        A dict: model, mode, train, device, dtype, batch_size, input_size, threads, iters,
        img_per_s, p50_ms, p99_ms, mean_ms, peak_mem_mb, peak_mem_kind, flops_per_img (2 x MACs
        forward, 3x that for training), achieved_flops (FLOP/s), ceiling (FLOP/s in ``dtype``),
        share_of_ceiling, baseline (eager fp32: img_per_s, p50_ms, p99_ms, peak_mem_mb,
        achieved_flops, ceiling, share_of_ceiling), speedup (img/s over the baseline's), and
        optimizer / compiled / setup_s / variants describing how the mode ran.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    name = model if isinstance(model, str) else getattr(model, "default_cfg", {}).get("name", type(model).__name__)
    if isinstance(model, str):
        from ..models import create_model

        spatial = len(input_size) - 1 if input_size else 2
        model = create_model(model, spatial_dims=spatial, in_channels=input_size[0] if input_size else None,
                             **(overrides or {}))
    if input_size is None:
        input_size = getattr(model, "default_cfg", {}).get("input_size")
        if input_size is None:
            raise ValueError("bench_model needs input_size=(C, *S) for a model without default_cfg")
    input_size = tuple(int(s) for s in input_size)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode in ("onnxruntime", "openvino") and train:
        raise ValueError(f"mode {mode!r} benchmarks inference only; drop --train or pick eager/optimized")
    int8 = dtype in ("int8", torch.int8)
    if int8 and (mode != "optimized" or train):
        raise ValueError("dtype 'int8' is an inference mode of the optimized path: use mode='optimized' without train")
    if int8:
        from .int8 import DEFAULT_INT8_BACKEND, get_int8_backend

        backend = get_int8_backend(backend or DEFAULT_INT8_BACKEND).name  # an unknown name fails here, named
    compute = torch.float32 if mode in ("onnxruntime", "openvino") or (mode == "eager" and dtype == "auto") \
        else torch.int8 if int8 else resolve_dtype(dtype, device)
    model = model.to(device).float().eval()
    x = torch.randn(batch_size, *input_size, device=device)
    flops = flops_per_image(model, input_size) * (3 if train else 1)

    def figures(r: dict[str, Any], dt: torch.dtype) -> dict[str, Any]:
        ceiling = matmul_ceiling(dt, device, threads, refresh=fresh_ceiling,
                                 backend=backend if dt == torch.int8 else None)
        achieved = flops * r["img_per_s"]
        return {**r, "dtype": dtype_name(dt), "achieved_flops": achieved, "ceiling": ceiling,
                "share_of_ceiling": achieved / ceiling}

    # The baseline runs first: compiler worker threads and ONNX Runtime's spinning thread pool
    # would otherwise still hold cores while it is timed.
    base = None
    if baseline and not (mode == "eager" and compute == torch.float32):
        b = figures(_measure(model, x, "eager", torch.float32, train, False, warmup, iters, threads), torch.float32)
        base = {k: b[k] for k in _BASE_KEYS}
    auto = compile == "auto"
    variants = {}
    if mode == "optimized" and train and auto:
        for c in (False, True):
            variants["compiled" if c else "uncompiled"] = figures(
                _measure(model, x, mode, compute, train, c, warmup, iters, threads), compute)
        result = max(variants.values(), key=lambda r: r["img_per_s"])
    else:
        c = bool(compile) if not auto else mode == "optimized"
        result = figures(_measure(model, x, mode, compute, train, c, warmup, iters, threads, backend), compute)
    out = {"model": name, "mode": mode, "train": train, "device": str(device), "batch_size": batch_size,
           "input_size": list(input_size), "threads": threads or torch.get_num_threads(), "iters": iters,
           "flops_per_img": flops, **result}
    if variants:
        out["variants"] = {k: {f: v[f] for f in ("img_per_s", "p50_ms", "p99_ms", "share_of_ceiling", "setup_s")}
                           for k, v in variants.items()}
    if baseline:
        out["baseline"] = base if base is not None else {k: out[k] for k in _BASE_KEYS}
        out["speedup"] = out["img_per_s"] / out["baseline"]["img_per_s"]
    return out


def format_result(r: dict[str, Any]) -> str:
    """A few human-readable lines for one :func:`bench_model` result."""
    what = "training step" if r["train"] else "inference"
    lines = [f"{r['model']} {what}, batch {r['batch_size']} at {'x'.join(map(str, r['input_size']))}, "
             f"{r['mode']} {r['dtype']}{' via ' + r['backend'] if r.get('backend') else ''} on {r['device']} ({r['threads']} threads, {r['iters']} iterations)",
             f"  {r['img_per_s']:.1f} img/s   latency p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms   "
             f"peak memory {r['peak_mem_mb']:.0f} MiB ({r['peak_mem_kind']})",
             f"  {r['flops_per_img'] / 1e9:.2f} GFLOP/img -> {r['achieved_flops'] / 1e9:.1f} GFLOP/s = "
             f"{100 * r['share_of_ceiling']:.1f}% of the {r['dtype']} matmul ceiling "
             f"({r['ceiling'] / 1e9:.1f} GFLOP/s)"]
    if r["dtype"] == "int8":  # integer multiply-adds, against the engine's own int8 GEMM rate
        lines[-1] = lines[-1].replace("GFLOP", "GOP")
    if "optimizer" in r:
        lines.append(f"  via {r['optimizer']}{' (compiled)' if r.get('compiled') else ''}")
    for k, v in (r.get("variants") or {}).items():
        lines.append(f"  {k}: {v['img_per_s']:.1f} img/s, {100 * v['share_of_ceiling']:.1f}% of ceiling")
    if "baseline" in r:
        b = r["baseline"]
        lines.append(f"  eager fp32 baseline: {b['img_per_s']:.1f} img/s, p50 {b['p50_ms']:.1f} ms, "
                     f"{100 * b['share_of_ceiling']:.1f}% of the fp32 ceiling ({b['ceiling'] / 1e9:.1f} GFLOP/s) "
                     f"-> speedup {r['speedup']:.2f}x")
    return "\n".join(lines)
