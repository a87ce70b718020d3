"""Where the time of `make run` (the default job: `convnet train`) goes.

Runs the default job in-process under cProfile and prints, as JSON, the wall time of each phase
(importing convnet, loading the digits, building, the training loop split into augmentation,
forward + loss, backward, optimiser step and bookkeeping, the per-epoch validation, checkpoints,
the final test and report) and the share of the training loop each part takes.

    python benchmarks/profile_default_job.py [key=value ...]     # e.g. threads=1
"""
from __future__ import annotations

import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

t0 = time.perf_counter()
import convnet  # noqa: E402,F401  (import time is part of what `make run` pays)
from convnet.train import TrainConfig, Trainer, parse_overrides  # noqa: E402

IMPORT_S = time.perf_counter() - t0

# (label, file suffix, function name): cumulative time of these functions.
PHASES = [
    ("load data", "data/datasets.py", "load_data"),
    ("build model, optimiser, augmentation", "train/trainer.py", "_build"),
    ("training loop (all epochs)", "train/trainer.py", "_train_epoch"),
    ("  augmentation", "data/augment.py", "__call__"),
    ("  forward + loss", "train/trainer.py", "_forward_loss"),
    ("  backward", "torch/_tensor.py", "backward"),
    ("  optimiser step, clipping, schedule", "train/trainer.py", "_optimizer_step"),
    ("validation every epoch + final test", "train/trainer.py", "evaluate"),
    ("checkpoints", "train/trainer.py", "_save"),
    ("report (plots, HTML)", "train/trainer.py", "_report"),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_overrides(TrainConfig(), [f"out={Path(tmp) / 'run'}", *sys.argv[1:]])
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        summary = Trainer(cfg, progress=False).fit()
        prof.disable()
        total = time.perf_counter() - start
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    phases = {}
    for label, suffix, name in PHASES:
        phases[label] = round(sum(v[3] for (f, _, n), v in stats.items()
                                  if n == name and f.replace("\\", "/").endswith(suffix)), 3)
    loop = phases["training loop (all epochs)"]
    parts = [k for k in phases if k.startswith("  ")]
    phases["  other (batching, metrics, progress)"] = round(loop - sum(phases[k] for k in parts), 3)
    print(json.dumps({"import_convnet_s": round(IMPORT_S, 3), "fit_s": round(total, 3), "phases_s": phases,
                      "loop_share": {k.strip(): round(phases[k] / loop, 3) for k in phases if k.startswith("  ")},
                      "test_acc": summary["test_acc"], "threads": summary["threads"],
                      "note": "cProfile adds overhead to Python-level calls; shares, not absolute times, are the point"},
                     indent=1))


if __name__ == "__main__":
    main()
