"""int8 against fp32 on trained runs: test accuracy, its change, and top-1 agreement, per engine.

For each run directory (``convnet train`` output), the run's own data are loaded as it was
trained (same split seed, same preprocessing), the calibration batches are drawn from the
*training* split only (:func:`convnet.deploy.int8.calibration_batches`), and each int8 engine
quantises the run's model; fp32 and int8 are then compared on the whole test split.

    convnet train --out runs/lenet5                                   # the default job (LeNet-5)
    convnet train --recipe digits_resnet18 --out runs/resnet18        # ResNet-18 on the digits at 32x32
    python benchmarks/int8_accuracy.py runs/lenet5 runs/resnet18
    python benchmarks/int8_accuracy.py runs/lenet5 --backends onnxruntime --json acc.json

The bound (issue 19): at most 0.3 points of test accuracy lost. On the digits' 360 test images
one image is 0.28 points, so the bound allows one image more wrong than fp32, none more.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from convnet.deploy.int8 import calibration_batches, int8_backends, quantize  # noqa: E402
from convnet.train import TrainConfig, load_configured_data, load_run  # noqa: E402

BOUND_POINTS = 0.3


def evaluate_run(run: str, backends: list[str], images: int, threads: int) -> list[dict]:
    model, run_cfg = load_run(run)
    data = load_configured_data(TrainConfig.from_dict(run_cfg["train"]))
    x_test, y_test = data.test
    calibration = calibration_batches(data, images=images, batch_size=32)  # the training split only
    with torch.inference_mode():
        fp32 = model(x_test).argmax(1)
    fp32_acc = (fp32 == y_test).float().mean().item()
    rows = []
    for backend in backends:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q = quantize(model, calibration, backend=backend, threads=threads)
                int8 = q(x_test).argmax(1)
        except Exception as e:  # noqa: BLE001 - an engine that cannot take this model is reported, not fatal
            rows.append({"run": run, "model": run_cfg["train"]["model"]["name"], "backend": backend,
                         "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            print(f"# {run} {backend}: {rows[-1]['error']}", file=sys.stderr)
            continue
        int8_acc = (int8 == y_test).float().mean().item()
        rows.append({"run": run, "model": run_cfg["train"]["model"]["name"], "backend": backend,
                     "n_test": len(y_test), "calibration_images": q.calibration_images,
                     "float_modules": q.float_modules, "fp32_acc": fp32_acc, "int8_acc": int8_acc,
                     "drop_points": 100 * (fp32_acc - int8_acc),
                     "agreement": (int8 == fp32).float().mean().item(),
                     "within_bound": 100 * (fp32_acc - int8_acc) <= BOUND_POINTS + 1e-9,
                     "setup_s": time.perf_counter() - start})
        print(f"# {run} {backend}: fp32 {fp32_acc:.4f} int8 {int8_acc:.4f} agreement {rows[-1]['agreement']:.4f}",
              file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| run (model) | engine | fp32 test acc | int8 test acc | change (points) | top-1 agreement |",
           "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['backend']} | | | failed: {r['error']} | |")
            continue
        out.append(f"| {r['model']} | {r['backend']} | {100 * r['fp32_acc']:.2f}% | {100 * r['int8_acc']:.2f}% | "
                   f"{-r['drop_points']:+.2f} | {100 * r['agreement']:.2f}% |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--backends", default=None, help="comma-separated engines (default: every installed one)")
    p.add_argument("--calibration", type=int, default=256, help="training images to calibrate on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends = args.backends.split(",") if args.backends else int8_backends()
    rows = [r for run in args.runs for r in evaluate_run(run, backends, args.calibration, args.threads)]
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    ok = [r for r in rows if "error" not in r]
    return 0 if ok and all(r["within_bound"] for r in ok) else 1


if __name__ == "__main__":
    sys.exit(main())
