"""Kim's CNN-rand on the Rotten Tomatoes snippets by 10-fold cross-validation, against Kim's MR
figure (76.1%, Y. Kim, EMNLP 2014, Table 2; MR is scored by 10-fold CV there too).

The folds are those of ``convnet train --cv 10`` (``convnet.train.cv``: scikit-learn's
``StratifiedKFold(10, shuffle=True, random_state=0)`` over the 12,808 fresh and rotten snippets
in the file's order); each fold trains on the other nine (no validation split) and is scored on
its own tenth with the final weights. The recipe is Kim's (§3.1, and his code
yoonkim/CNN_sentence): windows 3, 4, 5 with 100 maps each, 300-d word vectors initialised
U[-0.25, 0.25] and trained, dropout 0.5, max-norm 3 on the softmax weights after every step,
mini-batches of 50, Adadelta (rho 0.95, eps 1e-6, learning rate 1), no weight decay, 25 epochs.
Kim picks each fold's epoch on a dev set (10% of the training fold); here the last epoch is
scored.

The Trainer's optimiser registry (``convnet.train.optim.OPTIMIZERS``) has no Adadelta; this script
adds it under the name "adadelta" in its own process (torch.optim.Adadelta with Kim's settings)
before training.

A fold of 25 epochs takes about an hour on a shared 2-core machine, so the README figure is
measured on fewer folds and epochs (``--folds``, ``--epochs``; the output says which). Finished
folds are kept in ``OUT/fold_k`` and skipped when the script runs again, so the folds can be
spread over several runs:

    python benchmarks/kim_mr.py --folds 0 --epochs 4       # one fold, four epochs (~12 min)
    python benchmarks/kim_mr.py --folds 0,1,2 --epochs 4   # adds folds 1 and 2, prints the three
    python benchmarks/kim_mr.py                            # Kim's protocol: 10 folds, 25 epochs

Pretrained vectors (CNN-static, -non-static, -multichannel: 81.0, 81.5, 81.1 on MR) need the
word2vec GoogleNews file, which cannot be downloaded here; ``--vectors PATH --model
kim_cnn_non_static`` runs them where it is available.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FOLDS = 10
KIM_MR = 0.761  # Kim 2014, Table 2, CNN-rand on MR


def register_adadelta() -> None:
    """Kim's optimiser (``sgd_updates_adadelta(rho=0.95, epsilon=1e-6)``; lr 1 = Zeiler's rule)."""
    import torch

    from convnet.train import optim

    def adadelta(groups: list[dict], cfg: Any) -> torch.optim.Optimizer:
        return torch.optim.Adadelta(groups, lr=cfg.lr, rho=0.95, eps=1e-6)

    optim.OPTIMIZERS.setdefault("adadelta", adadelta)


def config(model: str, epochs: int, out: Path, threads: int, vectors: str) -> Any:
    from convnet.train import TrainConfig, parse_overrides

    settings = [f"model.name={model}", "data.name=rt_polarity", f"epochs={epochs}", "data.batch_size=50",
                "optim.name=adadelta", "optim.lr=1.0", "optim.weight_decay=0", "schedule.name=constant",
                "schedule.warmup_epochs=0", "device=cpu", f"threads={threads}", "report=false", f"out={out}"]
    if vectors:
        settings.append(f"task.options.vectors={vectors}")
    return parse_overrides(TrainConfig(), settings)


def run_folds(folds: list[int], epochs: int, out: Path, model: str, threads: int, vectors: str) -> list[dict]:
    from convnet.data import DataSplits
    from convnet.data.samples import SubsetSamples, as_samples
    from convnet.train import Trainer
    from convnet.train.cv import cv_data, cv_folds

    register_adadelta()
    cfg = config(model, epochs, out, threads, vectors)
    data = cv_data(cfg)  # every snippet, in the file's order, as `convnet train --cv` reads it
    whole = as_samples(data.train)
    splits = cv_folds(np.asarray(whole.targets), FOLDS)  # stratified by class, as --cv
    rows = []
    for k in folds:
        fold_dir = out / f"fold_{k}"
        summary_path = fold_dir / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            if summary["epochs"] != epochs:
                raise SystemExit(f"{fold_dir} holds a run of {summary['epochs']} epochs, not {epochs}; "
                                 "choose another --out")
        else:
            tr, te = splits[k]
            fold = DataSplits(data.name, SubsetSamples(whole, tr.tolist()), SubsetSamples(whole, []),
                              SubsetSamples(whole, te.tolist()), data.classes, data.preprocess,
                              {**data.info, "n_train": len(tr), "n_val": 0, "n_test": len(te), "cv_fold": k,
                               "cv_folds": FOLDS})
            fold_cfg = copy.deepcopy(cfg)
            fold_cfg.out = str(fold_dir)
            t0 = time.time()
            summary = Trainer(fold_cfg, progress=False, data=fold, overwrite=True).fit()
            print(f"fold {k}: test accuracy {summary['test_acc']:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
        rows.append({"fold": k, "test_acc": summary["test_acc"], "wall_s": summary["wall_s"],
                     "n_test": summary["n_test"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", default="all", help="comma-separated fold indices 0-9, or 'all'")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--model", default="kim_cnn_rand")
    p.add_argument("--vectors", default="", help="word2vec/GloVe file for the static variants")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared 2-core machine)")
    p.add_argument("--out", default="runs/bench-kim-mr")
    args = p.parse_args()
    folds = list(range(FOLDS)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    out = Path(args.out)
    rows = run_folds(folds, args.epochs, out, args.model, args.threads, args.vectors)
    acc = np.array([r["test_acc"] for r in rows])
    result = {"model": args.model, "data": "rt_polarity", "folds": folds, "of_folds": FOLDS, "epochs": args.epochs,
              "fold_acc": [round(float(a), 4) for a in acc], "mean_acc": round(float(acc.mean()), 4),
              "std_acc": round(float(acc.std()), 4), "kim_mr": KIM_MR,
              "wall_s": round(sum(r["wall_s"] for r in rows), 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
