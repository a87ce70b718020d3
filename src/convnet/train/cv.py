"""K-fold cross-validation for small data sets (``convnet train --cv K``), for any task.

The folds are scikit-learn's ``StratifiedKFold(K, shuffle=True, random_state=0)`` over the data
set's own sample order when the samples have class labels (for the digits, scikit-learn's order
of the 1,797 images), so any other method evaluated on the same folds (the RBF-SVM in
benchmarks/digits_cv.py) is compared on exactly the same images; ``KFold`` with the same seed for
other targets (masks, boxes). Fold k trains on the other K-1 folds, with no validation split, and
is tested on fold k; its run directory is ``OUT/fold_k``. ``OUT/summary.json`` holds the task's
primary metric M (accuracy for classification) as cv_M_mean, cv_M_std (population standard
deviation over folds, as numpy's default) and fold_M.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch

from ..data import DataSplits, load_data
from ..data.datasets import select_classes
from ..data.samples import SubsetSamples, as_samples
from .config import ConfigError, TrainConfig
from .run import RunDir

CV_RANDOM_STATE = 0


def cv_folds(y: np.ndarray | None, folds: int, n: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of each fold: stratified by the class labels ``y``, or plain
    K-fold over ``n`` samples when there are none."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise ConfigError(f"--cv needs at least 2 folds, got {folds}")
    if y is None:
        return list(KFold(folds, shuffle=True, random_state=CV_RANDOM_STATE).split(np.zeros(n)))
    skf = StratifiedKFold(folds, shuffle=True, random_state=CV_RANDOM_STATE)
    return list(skf.split(np.zeros(len(y)), y))


def _class_labels(split) -> np.ndarray | None:
    """The split's targets as a vector of class indices, or None when they are not that."""
    targets = as_samples(split).targets
    if targets is None:
        return None
    t = torch.as_tensor(targets) if not isinstance(targets, torch.Tensor) else targets
    return t.numpy() if t.ndim == 1 and not t.is_floating_point() else None


def _take(split, idx: np.ndarray):
    if isinstance(split, tuple):
        x, y = split
        i = torch.from_numpy(idx)
        return x[i], (y[i] if isinstance(y, torch.Tensor) else [y[j] for j in idx])
    return SubsetSamples(as_samples(split), idx.tolist())


def cv_data(cfg: TrainConfig) -> DataSplits:
    """The whole labelled training set in its own order (no split), for folding."""
    from .trainer import data_options

    options = dataclasses.replace(data_options(cfg), val_fraction=0.0, test_fraction=0.0)
    data = load_data(cfg.data.name, options=options)
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
    from .trainer import RunError, Trainer, default_run_dir, resolve_task

    if cfg.data.train_per_class:
        raise ConfigError("--cv with data.train_per_class is not supported: folds use every image")
    data = cv_data(cfg)
    primary = resolve_task(cfg).primary_metric
    labels = _class_labels(data.train)
    n = len(as_samples(data.train))
    run = RunDir(cfg.out or default_run_dir(cfg, f"cv{folds}"))
    if not resume and run.summary.is_file():
        raise RunError(f"{run.path} already holds a cross-validation; pass --resume or choose another --out")
    empty = _take(data.train, np.zeros(0, dtype=np.int64))
    fold_value, fold_s = [], []
    for k, (tr, te) in enumerate(cv_folds(labels, folds, n)):
        fold_cfg = copy.deepcopy(cfg)
        fold_run = RunDir(run.path / f"fold_{k}")
        fold_cfg.out = str(fold_run.path)
        fold_cfg.report = False  # one report per fold would cost more than a digits fold trains
        if resume and fold_run.summary.is_file():
            summary = fold_run.read_summary()
        else:
            fold = DataSplits(data.name, _take(data.train, tr), empty, _take(data.train, te), data.classes,
                              data.preprocess, {**data.info, "n_train": len(tr), "n_val": 0, "n_test": len(te),
                                                "cv_fold": k, "cv_folds": folds})
            summary = Trainer(fold_cfg, resume=resume and fold_run.config.is_file(), progress=progress,
                              data=fold).fit()
        fold_value.append(summary[f"test_{primary}"])
        fold_s.append(summary["wall_s"])
        if progress:
            print(f"fold {k}: test {primary} {summary[f'test_{primary}']:.4f} ({summary['wall_s']:.1f} s)")
    values = np.array(fold_value)
    result = {"model": cfg.model.name, "data": data.name, "recipe": cfg.recipe, "folds": folds, "metric": primary,
              f"cv_{primary}_mean": float(values.mean()), f"cv_{primary}_std": float(values.std()),
              f"fold_{primary}": fold_value, "fold_wall_s": fold_s, "wall_s": round(float(sum(fold_s)), 3),
              "n": n, "stratified": labels is not None, "cv_random_state": CV_RANDOM_STATE,
              "run_dir": str(run.path)}
    run.write_summary(result)
    run.write_config({"train": {**cfg.to_dict(), "out": str(run.path)}, "cv": {"folds": folds}})
    return result
