"""The README's performance table: models x {eager fp32, optimized, ONNX Runtime}, inference and
training, measured on this machine with :func:`convnet.deploy.bench.bench_model`.

For every model and task the eager fp32 row is measured first and every other mode's speedup is
its images/s over that row's, in the same run; each row also gives the achieved FLOP/s as a
share of the matrix-multiply ceiling in the row's dtype, measured right after the row's timed
iterations (a shared machine's load drifts over a long run). ONNX Runtime runs inference only.

    python benchmarks/performance.py                       # 4 models, batch 16 at 224, ~an hour on 2 CPU cores
    python benchmarks/performance.py --models resnet50 --iters 10 --json perf.json
    python benchmarks/performance.py --quick               # smoke run: batch 2 at 64, 2 iterations

Prints a Markdown table and (with --json) writes every figure as JSON. Never assert a speed in a
test; the figures depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from convnet.deploy.bench import bench_model, matmul_ceiling

MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "convnext_tiny")
MODES = ("eager", "optimized", "onnxruntime")


def run(models: list[str], modes: list[str], tasks: list[str], batch_size: int, size: int, iters: int, warmup: int,
        threads: int | None, device: str, dtype: str, compile_: str) -> list[dict]:
    rows = []
    for name in models:
        for task in tasks:
            train = task == "training"
            eager = None
            for mode in modes:
                if mode == "onnxruntime" and train:
                    continue
                t0 = time.perf_counter()
                compile_arg = {"auto": "auto", "on": True, "off": False}[compile_]
                r = bench_model(name, batch_size=batch_size, input_size=(3, size, size),
                                dtype="fp32" if mode != "optimized" else dtype, train=train, mode=mode,
                                warmup=warmup, iters=iters, device=device, threads=threads, compile=compile_arg,
                                baseline=False, fresh_ceiling=True)
                r["task"] = task
                r["wall_s"] = time.perf_counter() - t0
                if mode == "eager":
                    eager = r
                r["speedup"] = r["img_per_s"] / eager["img_per_s"] if eager else None
                rows.append(r)
                print(f"# {name} {task} {mode}: {r['img_per_s']:.1f} img/s, "
                      f"{100 * r['share_of_ceiling']:.1f}% of the {r['dtype']} ceiling "
                      f"({r['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| model | task | mode | dtype | img/s | p50 ms | p99 ms | peak MiB | GFLOP/s | % of ceiling | vs eager fp32 |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mode = r["mode"] + (" (compiled)" if r.get("compiled") and r["mode"] == "optimized" else "")
        speed = f"{r['speedup']:.2f}x" if r.get("speedup") else ""
        out.append(f"| `{r['model']}` | {r['task']} | {mode} | {r['dtype']} | {r['img_per_s']:.1f} | "
                   f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['peak_mem_mb']:.0f} | "
                   f"{r['achieved_flops'] / 1e9:.1f} | {100 * r['share_of_ceiling']:.1f}% | {speed} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated registered names")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated: eager,optimized,onnxruntime")
    p.add_argument("--tasks", default="inference,training", help="inference,training")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--input-size", type=int, default=224, help="spatial size per axis (3 channels)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's setting)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto", help="the optimized mode's dtype: auto | fp32 | bf16 | fp16")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile in the optimized mode (auto: inference on; training: both, keep the faster)")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 2 at 64, 2 iterations, 1 warm-up")
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.input_size, args.iters, args.warmup = 2, 64, 2, 1
    models = [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    tasks = [t for t in args.tasks.split(",") if t]
    rows = run(models, modes, tasks, args.batch_size, args.input_size, args.iters, args.warmup, args.threads,
               args.device, args.dtype, args.compile)
    ceilings = {dt: matmul_ceiling(dt, args.device, args.threads) for dt in sorted({r["dtype"] for r in rows})}  # last
    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda")
               else f"{platform.processor() or platform.machine()}, {args.threads or torch.get_num_threads()} threads")
    print(f"Batch {args.batch_size} at {args.input_size}x{args.input_size}, {args.iters} timed iterations, on {machine}; "
          "last matmul ceilings: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in ceilings.items()))
    print()
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "torch": torch.__version__, "ceilings": ceilings,
                                               "args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
