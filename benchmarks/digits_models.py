"""Train the README's digits models with the default trainer and print their figures as JSON.

Each job is exactly the `convnet train` command the README shows next to its figure; this script
runs them one after another and prints one JSON line per job (test accuracy, training seconds).

    python benchmarks/digits_models.py                 # every job
    python benchmarks/digits_models.py resnet20_cifar  # jobs whose model matches
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _train import convnet_train

JOBS: dict[str, list[str]] = {
    "lenet5": ["--model", "lenet5"],
    "resnet20_cifar": ["--model", "resnet20_cifar", "--epochs", "30"],
    "densenet_bc100_cifar": ["--model", "densenet_bc100_cifar", "--epochs", "20"],
    "neocognitron": ["--model", "neocognitron"],
    # Reduced width (issue 4): half the channels of the ImageNet models.
    "mobilenet_v2": ["--model", "mobilenet_v2", "model.overrides.width_mult=0.5"],
    "efficientnet_b0": ["--model", "efficientnet_b0", "model.overrides.width_mult=0.5"],
}


def run(name: str, args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        flags = [a for a in args if "=" not in a or a.startswith("-")]
        overrides = [a for a in args if a not in flags]
        summary = convnet_train(Path(tmp) / name, "--data", "digits", *flags, overrides=(*overrides, "report=false"))
    keep = ("model", "test_acc", "test_prototype_acc", "test_probe_acc", "wall_s", "epochs", "params", "threads")
    return {"command": "convnet train --data digits " + " ".join(args), **{k: summary[k] for k in keep if k in summary}}


if __name__ == "__main__":
    wanted = sys.argv[1:]
    for name, args in JOBS.items():
        if not wanted or any(w in name for w in wanted):
            print(json.dumps(run(name, args)), flush=True)
