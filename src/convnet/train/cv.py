"""K-fold cross-validation for small data sets (``convnet train --cv K``).

The folds are scikit-learn's ``StratifiedKFold(K, shuffle=True, random_state=0)`` over the data
set's own sample order (for the digits, scikit-learn's order of the 1,797 images), so any other
method evaluated on the same folds (the RBF-SVM in benchmarks/digits_cv.py) is compared on exactly
the same images. Fold k trains on the other K-1 folds, with no validation split, and is tested on
fold k; its run directory is ``OUT/fold_k``. ``OUT/summary.json`` holds cv_acc_mean, cv_acc_std
(population standard deviation over folds, as numpy's default) and fold_acc.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DataSplits, load_data
from ..data.datasets import select_classes
from ..weights import atomic_write_json, read_json
from .config import ConfigError, TrainConfig

CV_RANDOM_STATE = 0


def cv_folds(y: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of each stratified fold."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ConfigError(f"--cv needs at least 2 folds, got {folds}")
    skf = StratifiedKFold(folds, shuffle=True, random_state=CV_RANDOM_STATE)
    return list(skf.split(np.zeros(len(y)), y))


def cv_data(cfg: TrainConfig) -> DataSplits:
    """The whole labelled training set in its own order (no split), for folding."""
    data = load_data(cfg.data.name, cfg.data.image_size or None, val_fraction=0.0, test_fraction=0.0,
                     seed=cfg.data.split_seed)
    if cfg.data.classes:
        data = select_classes(data, cfg.data.classes)
    return data


def cross_validate(cfg: TrainConfig, folds: int, progress: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train one run per fold and summarise.

    Args:
        cfg: the configuration every fold trains with (``cfg.out`` is the parent directory).
        folds: K.
        progress: progress bars.
        resume: skip finished folds and resume the interrupted one.
    """
    from .trainer import RunError, Trainer, default_run_dir

    if cfg.data.train_per_class:
        raise ConfigError("--cv with data.train_per_class is not supported: folds use every image")
    data = cv_data(cfg)
    x, y = data.train
    if not cfg.out:
        cfg.out = default_run_dir(cfg, f"cv{folds}")
    out = Path(cfg.out)
    if not resume and (out / "summary.json").is_file():
        raise RunError(f"{out} already holds a cross-validation; pass --resume or choose another --out")
    empty = (x[:0], y[:0])
    fold_acc, fold_s = [], []
    for k, (tr, te) in enumerate(cv_folds(y.numpy(), folds)):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.out = str(out / f"fold_{k}")
        fold_cfg.report = False  # one report per fold would cost more than a digits fold trains
        fold_dir = Path(fold_cfg.out)
        if resume and (fold_dir / "summary.json").is_file():
            summary = read_json(fold_dir / "summary.json", "fold summary")
        else:
            tr_t, te_t = torch.from_numpy(tr), torch.from_numpy(te)
            fold = DataSplits(data.name, (x[tr_t], y[tr_t]), empty, (x[te_t], y[te_t]), data.classes,
                              data.preprocess, {**data.info, "n_train": len(tr), "n_val": 0, "n_test": len(te),
                                                "cv_fold": k, "cv_folds": folds})
            summary = Trainer(fold_cfg, resume=resume and (fold_dir / "config.json").is_file(), progress=progress,
                              data=fold).fit()
        fold_acc.append(summary["test_acc"])
        fold_s.append(summary["wall_s"])
        if progress:
            print(f"fold {k}: test accuracy {summary['test_acc']:.4f} ({summary['wall_s']:.1f} s)")
    acc = np.array(fold_acc)
    result = {"model": cfg.model.name, "data": data.name, "recipe": cfg.recipe, "folds": folds,
              "cv_acc_mean": float(acc.mean()), "cv_acc_std": float(acc.std()), "fold_acc": fold_acc,
              "fold_wall_s": fold_s, "wall_s": round(float(sum(fold_s)), 3), "n": len(y),
              "cv_random_state": CV_RANDOM_STATE, "run_dir": str(out)}
    atomic_write_json(out / "summary.json", result)
    atomic_write_json(out / "config.json", {"train": cfg.to_dict(), "cv": {"folds": folds}})
    return result
