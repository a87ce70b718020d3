"""The ``convnet bench`` and ``convnet export`` subcommands; :func:`add_commands` adds them to the
main parser (src/convnet/cli.py). Each is a thin main(args) over convnet.deploy."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._argtypes import int_tuple

EXAMPLES = """examples:
  convnet bench resnet50 --batch-size 16                  # optimized vs eager fp32 inference
  convnet bench resnet50 --train --mode optimized --json
  convnet bench mobilenet_v2 --mode onnxruntime --iters 50
  convnet export --run runs/lenet5-digits-... --format onnx
  convnet export --run runs/... --format torch_export --out model.pt2
  convnet export --run runs/... --format openvino         # DIR/model.xml + model.bin
  convnet bench resnet50 --dtype int8 --backend openvino  # int8 against that engine's int8 GEMM rate
  convnet export --model resnet18 --out their.onnx --force  # replace a file convnet did not write
"""


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_model, format_result
    from .export import MissingDependencyError

    compile_ = {"auto": "auto", "on": True, "off": False}[args.compile]
    try:
        result = bench_model(args.model, batch_size=args.batch_size, input_size=args.input_size, dtype=args.dtype,
                             train=args.train, mode=args.mode, warmup=args.warmup, iters=args.iters,
                             device=args.device, threads=args.threads, compile=compile_,
                             baseline=not args.no_baseline, backend=args.backend)
    except MissingDependencyError as e:
        print(f"convnet bench: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .export import (FORMAT_SUFFIX, ExportVerificationError, MissingDependencyError, export_verified,
                         spatial_is_fixed)

    if args.run:
        from ..data import Preprocess
        from ..train import load_run

        model, run_cfg = load_run(args.run)
        preprocess = (run_cfg.get("data") or {}).get("preprocess")
        if not preprocess:
            raise ValueError(f"{Path(args.run) / 'config.json'}: no data.preprocess section (the input size)")
        pre = Preprocess.from_dict(preprocess)
        size = args.input_size or (pre.channels, *pre.size)
        stem = Path(args.run) / "model"
    elif args.model:
        from ..models import create_model

        size = args.input_size
        model = create_model(args.model, spatial_dims=len(size) - 1 if size else 2,
                             in_channels=size[0] if size else None).eval()
        size = size or tuple(model.default_cfg["input_size"])
        stem = Path(args.model)
    else:
        raise ValueError("give --run DIR (a training run) or --model NAME (a freshly initialised model)")
    out = Path(args.out) if args.out else stem.with_suffix(FORMAT_SUFFIX[args.format])
    example = torch.randn(2, *size)
    # A model of fixed input size (LeNet-5) keeps it: the exporters make only the batch dynamic.
    dynamic = {"dynamic_batch": not args.static_batch,
               "dynamic_spatial": not args.static_spatial and not spatial_is_fixed(model)}
    try:
        # Written beside `out`, verified there, renamed over `out` only if it passed.
        report = export_verified(model, out, args.format, example, opset=args.opset, tolerance=args.tolerance,
                                 force=args.force, **dynamic)
    except MissingDependencyError as e:
        print(f"convnet export: error: {e}", file=sys.stderr)
        return 2
    except ExportVerificationError as e:
        print(f"convnet export: {e}", file=sys.stderr)
        return 1
    runtime = {"onnx": "ONNX Runtime", "torch_export": "torch.export.load", "openvino": "OpenVINO"}[args.format]
    report = {**report, "input_size": list(size)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    shapes = ", ".join("x".join(map(str, c["shape"])) for c in report["cases"])
    print(f"wrote {out} (input {list(size)}; batch {'dynamic' if dynamic['dynamic_batch'] else 'fixed'}, "
          f"spatial size {'dynamic' if dynamic['dynamic_spatial'] else 'fixed'})")
    if "input_ranges" in report:
        ranges = ", ".join(f"{lo}..{hi if hi is not None else 'any'}" for lo, hi in report["input_ranges"])
        print(f"accepted input sizes per axis (B, C, *S): {ranges}")
    print(f"{runtime} vs PyTorch on {shapes}: max abs error {report['max_abs_err']:.2e}, "
          f"max rel error {report['max_rel_err']:.2e}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` and ``export`` to the ``convnet`` subcommand parser ``sub``."""
    b = sub.add_parser("bench", help="images/s, latency, memory and share of the matmul ceiling vs eager fp32",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("model", help="registered model name")
    b.add_argument("--train", action="store_true", help="time a training step (forward, backward, SGD step)")
    b.add_argument("--batch-size", type=int, default=16)
    b.add_argument("--input-size", type=int_tuple, help="C,H,W (C,L for 1-D, C,D,H,W for 3-D); default the model's")
    b.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16", "int8"), default="auto",
                   help="compute dtype (auto: bf16 where native, for --mode optimized; int8: static "
                        "quantisation through --backend)")
    b.add_argument("--backend", help="int8 engine: inductor, onnxruntime, openvino or fx (default: convnet's "
                                     "measured choice, convnet.deploy.int8.DEFAULT_INT8_BACKEND)")
    b.add_argument("--mode", choices=("eager", "optimized", "onnxruntime", "openvino"), default="optimized")
    b.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile in --mode optimized (auto: inference on; training: both, keep the faster)")
    b.add_argument("--iters", type=int, default=20, help="timed iterations")
    b.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    b.add_argument("--threads", type=int, help="CPU threads (default: torch's setting)")
    b.add_argument("--device", default="cpu", help="cpu | cuda")
    b.add_argument("--no-baseline", action="store_true", help="skip the eager fp32 baseline")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bench)

    e = sub.add_parser("export", help="ONNX or torch.export file with dynamic batch and size, verified numerically",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--run", help="a training run directory")
    e.add_argument("--model", help="a registered model name instead of a run (random initialisation)")
    e.add_argument("--format", choices=("onnx", "torch_export", "openvino"), default="onnx")
    e.add_argument("--out", help="output path (default: DIR/model.onnx, DIR/model.pt2 or DIR/model.xml)")
    e.add_argument("--input-size", type=int_tuple, help="C,H,W of the example input (default: the run's preprocess)")
    e.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    e.add_argument("--static-batch", action="store_true", help="fix the batch axis to the example's")
    e.add_argument("--static-spatial", action="store_true", help="fix the spatial axes to the example's")
    e.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest accepted max |export - torch| / max |torch| (default 1e-3); a file "
                        "above it is not written")
    e.add_argument("--force", action="store_true",
                   help="replace an existing file at the output path that is not a convnet export")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_export)
