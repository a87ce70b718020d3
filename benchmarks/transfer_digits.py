"""Transfer learning on real data: learn digits 5-9 from 10 labelled images per class.

The three runs are exactly these commands (each prints its test accuracy on all of 5-9's test
images, 180 of them):

    convnet train --recipe digits --out pre data.classes=0-4                   # source task
    convnet train --recipe digits_finetune --out scratch data.classes=5-9 data.train_per_class=10
    convnet train --recipe digits_finetune --out tuned --init pre data.classes=5-9 data.train_per_class=10
    convnet train --recipe digits_finetune --out frozen --init pre --freeze backbone data.classes=5-9 data.train_per_class=10

The 50 training images are the same in every run (data.split_seed picks them); scratch and
fine-tuning differ only in --init. Prints one JSON object; seeds with --seeds 0,1,2; trailing
key=value overrides apply to all four runs (e.g. model.name=lenet5 'model.overrides={}').
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _train import convnet_train

FEW = ["data.classes=5-9", "data.train_per_class=10"]


def train(out: Path, *args: str, overrides: tuple[str, ...] = ()) -> float:
    return convnet_train(out, *args, overrides=(*overrides, "report=false"))["test_acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (each picks other 50 images and inits)")
    ap.add_argument("--few-recipe", default="digits_finetune",
                    help="recipe of the three 5-9 runs (default digits_finetune; `digits` gives them the source's budget)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every run")
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            root = Path(tmp) / f"seed{seed}"
            s = (f"seed={seed}", f"data.split_seed={seed}", *args.overrides)
            pre = train(root / "pre", "--recipe", "digits", overrides=("data.classes=0-4", *s))
            scratch = train(root / "scratch", "--recipe", args.few_recipe, overrides=(*FEW, *s))
            tuned = train(root / "tuned", "--recipe", args.few_recipe, "--init", str(root / "pre"),
                          overrides=(*FEW, *s))
            frozen = train(root / "frozen", "--recipe", args.few_recipe, "--init", str(root / "pre"),
                           "--freeze", "backbone", overrides=(*FEW, *s))
            rows.append({"seed": seed, "source_0_4_acc": pre, "scratch_acc": scratch, "finetune_acc": tuned,
                         "frozen_acc": frozen, "gain_points": round(100 * (tuned - scratch), 2)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    mean = {k: statistics.mean(r[k] for r in rows) for k in ("scratch_acc", "finetune_acc", "frozen_acc")}
    print(json.dumps({"few_recipe": args.few_recipe, "overrides": args.overrides, "runs": rows, "mean": mean, "gain_points": round(100 * (mean["finetune_acc"] - mean["scratch_acc"]), 2),
                      "wall_s": round(time.perf_counter() - t0, 1)}, indent=1))


if __name__ == "__main__":
    main()
