"""Time-series classifiers on the UCR/UEA sets of the aeon wheel, against the published accuracies.

Every run is ``convnet train`` on ``ucr:NAME`` with the archive's fixed train/test split, trained
on the whole training split (``data.val_fraction=0``, as the papers) and scored on the test split
with the final weights. The recipe is the authors' code's (hfawaz/dl-4-tsc for FCN and ResNet,
hfawaz/InceptionTime): Adam at lr 1e-3 without weight decay, no augmentation, batch
``min(n_train / 10, 16)`` for FCN and ResNet and 64 for InceptionTime. Their runs last 2000
(FCN) and 1500 epochs with ReduceLROnPlateau(0.5, patience 50) on the training loss; here the
learning rate is constant (that schedule does not act in runs this short) and the epochs are
``--epochs``, as many as fit on a shared 2-core machine: the table says how many were run.
InceptionTime's figure is an ensemble of five networks; here one network is trained.

Batch norm: the networks keep Keras' moving-average momentum (0.99 per step), so their running
statistics average the last ~100 steps. Over 1500 epochs that lag does not matter; in runs of a
few hundred steps the weights move faster than the averages follow, and the eval-mode network
can be far worse than the trained one (GunPoint's FCN: 0.51 in eval mode, 0.88 with batch
statistics, after 30 epochs). The table gives both the run's own test accuracy and the test
accuracy after re-estimating every batch norm's statistics in one pass over the whole training
split with the final weights (no weight changes; PreciseBN, Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021; torch's ``swa_utils.update_bn`` does the same over mini-batches).

Published test accuracies (single runs):
- InceptionTime: hfawaz/InceptionTime ``results-InceptionTime-85.csv``;
- ResNet and FCN: hfawaz/dl-4-tsc ``results/results-ucr-128.csv`` (iteration 0);
- JapaneseVowels (FCN, ResNet): dl-4-tsc ``results/results-mts.csv`` (Baydogan's MTS archive
  copy, series interpolated to the longest length; here they are padded and masked);
- BasicMotions: none of these files reports it.

    python benchmarks/ucr.py --sets GunPoint,ItalyPowerDemand,ArrowHead,BasicMotions --epochs 30
    python benchmarks/ucr.py --sets JapaneseVowels --epochs 40
    python benchmarks/ucr.py --sets OSULeaf --epochs 10
    python benchmarks/ucr.py --table runs/bench-ucr     # the table of every run under that folder

Prints a Markdown table and writes ``OUT/results.json``; each run is ``OUT/<set>-<model>``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _train import convnet_train  # noqa: E402

SETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead", "OSULeaf", "BasicMotions", "JapaneseVowels")
MODELS = ("tsc_fcn", "tsc_resnet", "inception_time")
# Published test accuracies (see the module docstring for the sources).
PUBLISHED: dict[str, dict[str, float]] = {
    "GunPoint": {"inception_time": 1.000, "tsc_resnet": 0.993, "tsc_fcn": 1.000},
    "ItalyPowerDemand": {"inception_time": 0.968, "tsc_resnet": 0.966, "tsc_fcn": 0.961},
    "ArrowHead": {"inception_time": 0.829, "tsc_resnet": 0.863, "tsc_fcn": 0.851},
    "OSULeaf": {"inception_time": 0.934, "tsc_resnet": 0.979, "tsc_fcn": 0.983},
    "JapaneseVowels": {"tsc_resnet": 0.99, "tsc_fcn": 0.99},
    "BasicMotions": {},
}


def batch_size(model: str, n_train: int) -> int:
    """dl-4-tsc: int(min(n_train / 10, 16)); InceptionTime: 64."""
    return 64 if model == "inception_time" else max(1, int(min(n_train / 10, 16)))


def run(name: str, model: str, epochs: int, out: Path, threads: int, seed: int) -> dict[str, Any]:
    from convnet.data.timeseries import AEON_SETS

    n_train = AEON_SETS[name][0]
    flags = ("--model", model, "--data", f"ucr:{name}", "--epochs", str(epochs), "--batch-size",
             str(batch_size(model, n_train)), "--optimizer", "adam", "--lr", "1e-3", "--seed", str(seed),
             "--device", "cpu", "--overwrite")
    overrides = ("optim.weight_decay=0", "schedule.name=constant", "schedule.warmup_epochs=0",
                 "data.val_fraction=0", "augment.shift=0", "augment.scale=0", "augment.shear=0", "report=false",
                 f"threads={threads}")
    summary = convnet_train(out / f"{name}-{model}", *flags, overrides=overrides)
    return {"set": name, "model": model, "epochs": summary["epochs"], "batch_size": batch_size(model, n_train),
            "test_acc": summary["test_acc"], "test_acc_bn": recalibrated_accuracy(out / f"{name}-{model}"),
            "wall_s": summary["wall_s"], "published": PUBLISHED[name].get(model)}


def recalibrated_accuracy(run_dir: Path) -> float:
    """The run's test accuracy after re-estimating every batch norm's statistics on the whole
    training split in one batch (train mode, no gradient: the population mean and variance
    under the final weights); padded series are masked as in training."""
    import torch

    from convnet.data.samples import as_samples
    from convnet.train import TrainConfig, evaluate, load_configured_data, load_run, run_task

    model, run_cfg = load_run(run_dir)
    task = run_task(run_cfg)
    data = load_configured_data(TrainConfig.from_dict(run_cfg["train"]))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches seen: here the one batch
    train = as_samples(data.train)
    model.train()
    with torch.no_grad():
        task.forward(model, train.batch(torch.arange(len(train))))
    _, result = evaluate(task, model.eval(), data.test, torch.device("cpu"))
    return result["acc"]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| set | model | epochs | test accuracy | BN re-estimated | published | training |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        pub = f"{r['published']:.3f}" if r.get("published") is not None else "—"
        lines.append(f"| {r['set']} | `{r['model']}` | {r['epochs']} | {r['test_acc']:.3f} | "
                     f"{r['test_acc_bn']:.3f} | {pub} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def collect(out: Path) -> list[dict[str, Any]]:
    """The rows of every finished run under ``out`` (their summary.json), in the sets' order."""
    rows = []
    for name in SETS:
        for model in MODELS:
            path = out / f"{name}-{model}" / "summary.json"
            if path.is_file():
                s = json.loads(path.read_text())
                cfg = json.loads((out / f"{name}-{model}" / "config.json").read_text())
                rows.append({"set": name, "model": model, "epochs": s["epochs"], "test_acc": s["test_acc"],
                             "test_acc_bn": recalibrated_accuracy(out / f"{name}-{model}"),
                             "batch_size": cfg["train"]["data"]["batch_size"], "wall_s": s["wall_s"],
                             "published": PUBLISHED[name].get(model)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1: best on a shared 2-core machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench-ucr")
    p.add_argument("--table", metavar="DIR", help="only print the table of the finished runs under DIR")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.table:
        print(table(collect(Path(args.table))))
        return
    out = Path(args.out)
    rows = []
    for name in args.sets.split(","):
        if name not in PUBLISHED:
            raise SystemExit(f"unknown set {name!r}; sets: {', '.join(SETS)}")
        for model in args.models.split(","):
            rows.append(run(name, model, args.epochs, out, args.threads, args.seed))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    previous = json.loads(results.read_text()) if results.is_file() else []
    keep = [r for r in previous if (r["set"], r["model"]) not in {(x["set"], x["model"]) for x in rows}]
    results.write_text(json.dumps(keep + rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
