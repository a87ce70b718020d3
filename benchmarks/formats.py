"""Latency per deployment format on this CPU: the README's "int8 and formats" table.

Every column runs the same model (random initialisation: speed does not depend on the values)
at batch 1 and batch 16 at 224x224, on the same threads, in one process, one after the other:

    eager fp32        the model as written
    optimize bf16     convnet.optimize(dtype="bf16"): folded BN, bf16 weights, channels_last, inductor
    int8 <engine>     convnet.optimize(dtype="int8", backend=...): inductor (PT2E, torchao),
                      onnxruntime (QDQ), openvino (NNCF); fx (the older eager int8) with --fx
    ort fp32          the verified ONNX export run by ONNX Runtime
    openvino fp32     the same file compiled by OpenVINO (f32 inference precision)

("ONNX Runtime int8" and "OpenVINO int8" are the onnxruntime and openvino int8 engines.) For
each cell: p50 and p99 latency of one call on the whole batch, images/s, and the share of the
matrix-multiply ceiling of the column's arithmetic (fp32, bf16, or the engine's own int8 GEMM,
:func:`convnet.deploy.int8.int8_ceiling`), measured at the start and at the end of the run
(the best of the two is used: a shared machine's load only lowers a ceiling). The int8 columns
also give the logits' largest relative difference from eager fp32 on the timed batch, a check
that the engine computes the model (accuracy on trained models: benchmarks/int8_accuracy.py).
The load average (os.getloadavg) is printed before and after every model: on a shared machine
the ratios within one model's block are what to read.

    python benchmarks/formats.py                                   # 4 models x 2 batches, ~25 min quiet
    python benchmarks/formats.py --models resnet50 --iters 5       # one model, shorter
    python benchmarks/formats.py --quick                           # smoke: tiny sizes, 1 model
    python benchmarks/formats.py --json formats.json

Targets (issue 19), as ratios of this run: ResNet-50 at batch 16, the best int8 column >= 1.5x
optimize bf16 and >= 5x eager fp32; at batch 1, the best column >= 3x eager fp32 for every model.
The script prints each ratio, its target and by how much it is missed, if it is.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from convnet import create_model  # noqa: E402
from convnet.deploy import optimize  # noqa: E402
from convnet.deploy.bench import _percentile, _time, flops_per_image, matmul_ceiling  # noqa: E402
from convnet.deploy.int8 import int8_backends, int8_ceiling  # noqa: E402

MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "convnext_tiny")
BATCHES = (1, 16)
INT8_ENGINES = ("inductor", "onnxruntime", "openvino")


# -- the columns: name -> (builder(model, example, calibration, threads) -> run(x), ceiling kind) --

def _eager(model, example, calibration, threads):
    def run(x):
        with torch.inference_mode():
            return model(x)
    return run


def _bf16(model, example, calibration, threads):
    return optimize(model, dtype="bf16", example_input=example)


def _int8(engine: str) -> Callable:
    def build(model, example, calibration, threads):
        return optimize(model, dtype="int8", calibration=calibration, backend=engine, example_input=example,
                        threads=threads)
    return build


def _ort_fp32(model, example, calibration, threads):
    from convnet.deploy.export import export_onnx
    from convnet.deploy.int8 import _ort_session

    with tempfile.TemporaryDirectory(prefix="convnet-formats-") as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", example)
        session = _ort_session(str(path), threads)
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _openvino_fp32(model, example, calibration, threads):
    from convnet.deploy.export import export_onnx, openvino_compiled, require_openvino

    ov = require_openvino()
    with tempfile.TemporaryDirectory(prefix="convnet-formats-") as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", example)
        compiled = openvino_compiled(ov.convert_model(str(path)), threads)
    request = compiled.create_infer_request()
    return lambda x: torch.from_numpy(request.infer({0: x.numpy()})[0].copy())


def columns(fx: bool) -> dict[str, tuple[Callable, str]]:
    cols: dict[str, tuple[Callable, str]] = {"eager fp32": (_eager, "fp32"), "optimize bf16": (_bf16, "bf16")}
    available = int8_backends()
    for engine in INT8_ENGINES + (("fx",) if fx else ()):
        if engine in available:
            cols[f"int8 {engine}"] = (_int8(engine), f"int8:{engine}")
    cols["ort fp32"] = (_ort_fp32, "fp32")
    if "openvino" in available:
        cols["openvino fp32"] = (_openvino_fp32, "fp32")
    return cols


def ceilings(kinds: set[str], threads: int, sizes: tuple[int, ...] | None = None) -> dict[str, float]:
    """Each column kind's ceiling, measured now (fp32/bf16: torch's GEMM; int8: the engine's)."""
    extra = {"sizes": sizes} if sizes else {}
    return {kind: int8_ceiling(kind.split(":")[1], threads, refresh=True, **extra) if kind.startswith("int8:")
            else matmul_ceiling(kind, "cpu", threads, refresh=True, **extra) for kind in sorted(kinds)}


def bench_model_formats(name: str, size: int, batches: tuple[int, ...], iters: int, warmup: int, threads: int,
                        cols: dict[str, tuple[Callable, str]], calib_images: int) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    flops = flops_per_image(model, (3, size, size))
    g = torch.Generator().manual_seed(1)
    inputs = {b: torch.randn(b, 3, size, size, generator=g) for b in batches}
    # Random images calibrate the random model: the ranges change the values, not the speed.
    calibration = list(torch.randn(calib_images, 3, size, size, generator=g).split(8))
    with torch.inference_mode():
        reference = {b: model(x) for b, x in inputs.items()}
    rows = []
    for col, (build, kind) in cols.items():
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = build(model, inputs[max(batches)], calibration, threads)
        except Exception as e:  # noqa: BLE001 - one engine failing must not lose the others' figures
            print(f"# {name} {col}: failed to build: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
            continue
        setup = time.perf_counter() - t0
        for b in batches:
            x = inputs[b]
            n = iters * (4 if b == 1 else 1)  # batch 1 is cheap: more calls, a steadier p99
            try:
                with torch.inference_mode():
                    out = run(x)  # compiles at this shape where the engine compiles lazily
                    times, _, _ = _time(lambda: run(x), torch.device("cpu"), warmup, n)
            except Exception as e:  # noqa: BLE001
                print(f"# {name} {col} batch {b}: failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
                continue
            ref = reference[b]
            rows.append({"model": name, "batch": b, "column": col, "kind": kind, "iters": n,
                         "p50_ms": 1e3 * _percentile(times, 50), "p99_ms": 1e3 * _percentile(times, 99),
                         "img_per_s": b * n / sum(times), "setup_s": setup, "flops_per_img": flops,
                         "rel_err": float((out.float() - ref).abs().max() / ref.abs().max())})
            print(f"# {name} b{b} {col}: {rows[-1]['img_per_s']:.1f} img/s, p50 {rows[-1]['p50_ms']:.1f} ms "
                  f"(setup {setup:.0f} s)", file=sys.stderr, flush=True)
        del run
    return rows


def add_ratios(rows: list[dict[str, Any]], ceiling: dict[str, float]) -> None:
    eager = {(r["model"], r["batch"]): r["img_per_s"] for r in rows if r["column"] == "eager fp32"}
    for r in rows:
        r["ceiling"] = ceiling[r["kind"]]
        r["share_of_ceiling"] = r["flops_per_img"] * r["img_per_s"] / r["ceiling"]
        base = eager.get((r["model"], r["batch"]))
        r["vs_eager"] = r["img_per_s"] / base if base else None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets as ratios of this run, each with its measured value and shortfall."""
    cell = {(r["model"], r["batch"], r["column"]): r for r in rows}
    out = []
    int8 = [r for r in rows if r["model"] == "resnet50" and r["batch"] == 16 and r["column"].startswith("int8")]
    if int8 and ("resnet50", 16, "optimize bf16") in cell and ("resnet50", 16, "eager fp32") in cell:
        best = max(int8, key=lambda r: r["img_per_s"])
        for col, goal in (("optimize bf16", 1.5), ("eager fp32", 5.0)):
            ratio = best["img_per_s"] / cell[("resnet50", 16, col)]["img_per_s"]
            out.append({"target": f"resnet50 b16: best int8 ({best['column']}) vs {col}", "goal": goal,
                        "ratio": ratio, "met": ratio >= goal})
    for model in dict.fromkeys(r["model"] for r in rows):
        b1 = [r for r in rows if r["model"] == model and r["batch"] == 1]
        if not b1 or (model, 1, "eager fp32") not in cell:
            continue
        best = max(b1, key=lambda r: r["img_per_s"])
        ratio = best["img_per_s"] / cell[(model, 1, "eager fp32")]["img_per_s"]
        out.append({"target": f"{model} b1: best ({best['column']}) vs eager fp32", "goal": 3.0, "ratio": ratio,
                    "met": ratio >= 3.0})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| model | batch | format | p50 ms | p99 ms | img/s | vs eager fp32 | % of ceiling | max rel. diff |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kind = r["kind"].replace("int8:", "int8 ")
        out.append(f"| `{r['model']}` | {r['batch']} | {r['column']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                   f"{r['img_per_s']:.1f} | {r['vs_eager']:.2f}x | {100 * r['share_of_ceiling']:.0f}% ({kind}) | "
                   f"{r['rel_err']:.1e} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated registered names")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--iters", type=int, default=8, help="timed calls at batch 16 (4x that at batch 1)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration", type=int, default=32, help="random calibration images per int8 engine")
    p.add_argument("--columns", help="comma-separated subset of the columns (default: all available)")
    p.add_argument("--fx", action="store_true", help="also time the older FX-graph-mode int8 path")
    p.add_argument("--quick", action="store_true", help="smoke run: resnet18 at 64, batches 1 and 2, 2 iterations")
    p.add_argument("--json", metavar="PATH", help="also write every figure here")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.input_size, args.iters, args.warmup, args.calibration = \
            "resnet18", "1,2", 64, 2, 1, 8
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, p)
    finally:
        torch.set_num_threads(threads_before)  # main() is also called in-process (tests)


def _run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    models = [m for m in args.models.split(",") if m]
    batches = tuple(int(b) for b in args.batches.split(","))
    cols = columns(args.fx)
    if args.columns:
        wanted = [c.strip() for c in args.columns.split(",")]
        unknown = [c for c in wanted if c not in cols]
        if unknown:
            p.error(f"unknown column {unknown[0]!r}; available: {', '.join(cols)}")
        cols = {c: cols[c] for c in wanted}
    kinds = {kind for _, kind in cols.values()}
    sizes = (256,) if args.quick else None
    start = time.perf_counter()
    load = {"start": os.getloadavg()}
    first = ceilings(kinds, args.threads, sizes)
    rows = []
    for name in models:
        before = os.getloadavg()
        rows += bench_model_formats(name, args.input_size, batches, args.iters, args.warmup, args.threads, cols,
                                    args.calibration)
        load[name] = {"before": before, "after": os.getloadavg()}
    last = ceilings(kinds, args.threads, sizes)
    ceiling = {k: max(first[k], last[k]) for k in kinds}
    load["end"] = os.getloadavg()
    add_ratios(rows, ceiling)
    goals = targets(rows)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads"
    print(f"{machine}; torch {torch.__version__}; batch {args.batches} at {args.input_size}x{args.input_size}; "
          f"{time.perf_counter() - start:.0f} s in all")
    print("load average (1, 5, 15 min): " + "; ".join(
        f"{k} {v[0]:.1f}/{v[1]:.1f}/{v[2]:.1f}" if isinstance(v, tuple) else
        f"{k} {v['before'][0]:.1f} -> {v['after'][0]:.1f}" for k, v in load.items()))
    print("ceilings (best of start and end): " + ", ".join(
        f"{k} {v / 1e9:.0f} G{'OP' if k.startswith('int8') else 'FLOP'}/s (start {first[k] / 1e9:.0f}, end "
        f"{last[k] / 1e9:.0f})" for k, v in sorted(ceiling.items())))
    print()
    print(markdown(rows))
    print()
    for t in goals:
        verdict = "met" if t["met"] else f"missed: {t['ratio'] / t['goal']:.0%} of the target"
        print(f"- {t['target']}: {t['ratio']:.2f}x (target {t['goal']:.1f}x) {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "torch": torch.__version__, "args": vars(args),
                                               "load": load, "ceilings": ceiling, "ceilings_start": first,
                                               "ceilings_end": last, "rows": rows, "targets": goals}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
