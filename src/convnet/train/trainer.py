"""The training loop: one run directory per run, everything in it written atomically.

    run/
      config.json        resolved TrainConfig, the model config, classes and preprocessing
      metrics.jsonl      one line per epoch
      checkpoints/       epoch_NNNN/ (model, optimiser, scheduler, RNG) every epoch
      model.safetensors  final weights
      summary.json       test_acc, best_val_acc, epochs, wall_s, params, ...
      report/            curves, confusion matrix, filters, misclassified, index.html
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import DataSplits, load_data
from ..data.transforms import random_affine
from ..models import count_parameters, create_model
from ..weights import WEIGHTS_NAME, atomic_write_json, read_json, save_tensors
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig
from .optim import build_optimizer, build_scheduler

RUN_CONFIG = "config.json"


class RunError(ValueError):
    """A run directory that is missing, incomplete, or belongs to another configuration."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use device=cpu or auto")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; expected cpu, cuda, cuda:N or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
            generator: torch.Generator | None = None, augment: dict[str, float] | None = None,
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of in-memory tensors: shuffled with ``generator`` and distorted by
    ``random_affine(**augment)`` (training), or in order (evaluation)."""
    n = len(y)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        xb = x[idx].to(device, non_blocking=True)
        if augment and any(augment.values()):
            xb = random_affine(xb, generator=generator, **augment)
        yield xb, y[idx].to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: nn.Module, split: tuple[torch.Tensor, torch.Tensor], device: torch.device,
             batch_size: int = 512) -> dict[str, Any]:
    """Loss, accuracy and predictions of ``model`` on a split (eval mode)."""
    x, y = split
    if len(y) == 0:
        return {"loss": float("nan"), "acc": float("nan"), "preds": torch.empty(0, dtype=torch.long)}
    was_training = model.training
    model.eval()
    loss, preds = 0.0, []
    for xb, yb in batches(x, y, batch_size, device):
        logits = model(xb).float()
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
    model.train(was_training)
    preds_t = torch.cat(preds)
    return {"loss": loss / len(y), "acc": (preds_t == y).float().mean().item(), "preds": preds_t}


def first_conv_weight(model: nn.Module) -> torch.Tensor | None:
    """The first convolution's kernel (out, in, *k), for the filters figure."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return m.weight.detach().cpu()
    return None


@dataclass
class RunState:
    epoch: int = 0
    step: int = 0
    best_val_acc: float = float("nan")
    train_s: float = 0.0  # seconds spent in the training loop so far (across resumes)


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data`` into a run directory.

    Args:
        cfg: the resolved configuration.
        resume: continue from the newest valid checkpoint in ``cfg.out``.
        progress: show a progress bar per epoch.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True,
                 data: DataSplits | None = None):
        self.cfg = cfg
        self.data = data
        self.resume = resume
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.run_dir = self._prepare_run_dir()

    def _prepare_run_dir(self) -> Path:
        cfg = self.cfg
        if not cfg.out:
            if self.resume:
                raise RunError("--resume needs --out DIR, the run directory to continue")
            stamp = time.strftime("%Y%m%d-%H%M%S")
            data = cfg.data.name.split(":")[0].replace("/", "_")
            cfg.out = str(Path("runs") / f"{cfg.model.name}-{data}-{stamp}")
        run_dir = Path(cfg.out)
        if self.resume:
            if not (run_dir / RUN_CONFIG).is_file():
                raise RunError(f"--resume: {run_dir} holds no run (no {RUN_CONFIG}); start it without --resume")
            saved = TrainConfig.from_dict(read_json(run_dir / RUN_CONFIG, "run config")["train"])
            mine, theirs = cfg.to_dict(), saved.to_dict()
            diff = [k for k in mine if mine[k] != theirs[k] and k != "out"]
            if diff:
                raise RunError(f"--resume: the configuration differs from the run in {run_dir} in {diff}; "
                               "resume with the same arguments")
        elif (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _build(self, data: DataSplits) -> None:
        cfg = self.cfg
        self.model = create_model(cfg.model.name, spatial_dims=cfg.model.spatial_dims, in_channels=data.channels,
                                  num_classes=data.num_classes, **cfg.model.overrides).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.steps_per_epoch = max(1, -(-len(data.train[1]) // cfg.data.batch_size))
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.epochs * self.steps_per_epoch,
                                         self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _write_run_config(self, data: DataSplits) -> None:
        atomic_write_json(self.run_dir / RUN_CONFIG, {
            "model": self.model.model_config,
            "train": self.cfg.to_dict(),
            "data": {"name": data.name, "classes": data.classes, "preprocess": data.preprocess.to_dict(),
                     **data.info},
        })

    def _train_epoch(self, data: DataSplits, state: RunState) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        total, correct, loss_sum, seen = len(data.train[1]), 0, 0.0, 0
        bar = tqdm(total=total, desc=f"epoch {state.epoch + 1}/{cfg.epochs}", unit="img", leave=True,
                   disable=not self.progress, dynamic_ncols=True)
        start = time.perf_counter()
        a = cfg.augment
        augment = {"max_shift": a.shift, "scale": a.scale, "shear": a.shear, "rotate": a.rotate}
        for xb, yb in batches(*data.train, cfg.data.batch_size, self.device, self.generator, augment):
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            state.step += 1
            n = len(yb)
            seen += n
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == yb).sum().item()
            bar.update(n)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                            speed=f"{seen / (time.perf_counter() - start):.0f} img/s", refresh=False)
        elapsed = time.perf_counter() - start
        bar.close()
        return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                "epoch_s": elapsed, "img_per_s": seen / max(elapsed, 1e-9)}

    def fit(self) -> dict[str, Any]:
        """Train, checkpoint every epoch, evaluate on the test split, write the run directory."""
        cfg = self.cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        data = self.data or load_data(cfg.data.name, cfg.data.image_size or None, cfg.data.val_fraction,
                                      cfg.data.test_fraction, cfg.data.split_seed)
        self._build(data)
        if getattr(self.model, "learning", "backprop") == "unsupervised":
            return self._fit_unsupervised(data)
        state, history = RunState(), []
        if self.resume:
            state, history = self._restore()
        else:
            self._write_run_config(data)
            (self.run_dir / "metrics.jsonl").write_text("")
        for epoch in range(state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            row = self._train_epoch(data, state)
            val = evaluate(self.model, data.val, self.device, cfg.eval_batch_size)
            state.epoch = epoch + 1
            state.train_s += time.perf_counter() - t0
            acc, best = val["acc"], state.best_val_acc  # NaN: no validation split / none yet
            if not math.isnan(acc) and (math.isnan(best) or acc > best):
                state.best_val_acc = acc
            row = {"epoch": state.epoch, "step": state.step, **row, "val_loss": val["loss"], "val_acc": val["acc"],
                   "lr": self.optimizer.param_groups[0]["lr"]}
            history.append(row)
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.progress:
                tqdm.write(f"  val_loss {val['loss']:.4f}  val_acc {val['acc']:.4f}")
            ckpt.save_checkpoint(self.run_dir / "checkpoints", state.epoch, self.model, self.optimizer,
                                 self.scheduler, self.generator,
                                 {"step": state.step, "best_val_acc": state.best_val_acc,
                                  "train_s": state.train_s, "history": history},
                                 keep=cfg.keep_checkpoints)
        return self._finish(data, state, history)

    def _fit_unsupervised(self, data: DataSplits) -> dict[str, Any]:
        """Models that learn their features without labels (the neocognitron) train by their own
        rule; labels reach only the readout. One pass, so there is nothing to resume."""
        if self.resume:
            raise RunError(f"{self.cfg.model.name} learns in one unsupervised pass; --resume does not apply")
        self._write_run_config(data)
        t0 = time.perf_counter()
        stats = self.model.fit_unsupervised(data.train[0].to(self.device), generator=self.generator)
        readout = self.model.fit_readout(data.train[0].to(self.device), data.train[1].to(self.device))
        state = RunState(epoch=1, train_s=time.perf_counter() - t0)
        val = evaluate(self.model, data.val, self.device, self.cfg.eval_batch_size)
        state.best_val_acc = val["acc"]
        scores = self.model.evaluate_readouts(data.test[0].to(self.device), data.test[1].to(self.device))
        row = {"epoch": 1, "step": 0, "val_loss": val["loss"], "val_acc": val["acc"],
               **{f"test_{k}": v for k, v in scores.items()},
               **{k: v for k, v in {**stats, **readout}.items() if isinstance(v, (int, float, list))}}
        (self.run_dir / "metrics.jsonl").write_text(json.dumps(row) + "\n")
        if self.progress:
            tqdm.write("  " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        summary = self._finish(data, state, [row])
        summary.update({f"test_{k}": v for k, v in scores.items()})
        atomic_write_json(self.run_dir / "summary.json", _json_safe(summary))
        return summary

    def _restore(self) -> tuple[RunState, list[dict]]:
        found = ckpt.load_latest(self.run_dir / "checkpoints")
        if found is None:
            raise RunError(f"--resume: {self.run_dir / 'checkpoints'} holds no readable checkpoint")
        path, model_sd, training, st = found
        ckpt.restore(self.model, self.optimizer, self.scheduler, self.generator, model_sd, training, st)
        history = st["history"]
        # metrics.jsonl may hold epochs past the checkpoint if the run died after writing them.
        with open(self.run_dir / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)
        if self.progress:
            tqdm.write(f"resumed from {path} (epoch {st['epoch']})")
        return RunState(st["epoch"], st["step"], st["best_val_acc"], st["train_s"]), history

    def _finish(self, data: DataSplits, state: RunState, history: list[dict]) -> dict[str, Any]:
        test = evaluate(self.model, data.test, self.device, self.cfg.eval_batch_size)
        # config.json (written at the start) already holds the model section from_pretrained reads.
        save_tensors(self.model.state_dict(), self.run_dir / WEIGHTS_NAME)
        summary = {
            "model": self.cfg.model.name,
            "data": data.name,
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "best_val_acc": state.best_val_acc,
            "final_val_acc": history[-1]["val_acc"] if history else float("nan"),
            "epochs": state.epoch,
            "steps": state.step,
            "wall_s": round(state.train_s, 3),
            "params": count_parameters(self.model),
            "n_train": data.info.get("n_train"),
            "n_test": data.info.get("n_test"),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "run_dir": str(self.run_dir),
        }
        atomic_write_json(self.run_dir / "summary.json", _json_safe(summary))
        if self.cfg.report:
            self._report(data, test["preds"], history, summary)
        return summary

    def _report(self, data: DataSplits, preds: torch.Tensor, history: list[dict], summary: dict) -> None:
        from .report import write_report

        y = data.test[1]
        k = data.num_classes
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (y.numpy(), preds.numpy()), 1)
        wrong = (preds != y).nonzero().flatten()[:32].tolist()
        misclassified = [(data.test[0][i], int(y[i]), int(preds[i])) for i in wrong]
        metrics = {k: summary[k] for k in ("test_acc", "best_val_acc", "epochs", "wall_s", "params")}
        write_report(self.run_dir, history, confusion, data.classes, first_conv_weight(self.model),
                     misclassified, f"{self.cfg.model.name} on {data.name}", metrics)


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN; null says "not measured" (e.g. no validation split).
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}


def load_run(run_dir: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a run directory (eval mode) and its config.json."""
    from ..weights import from_pretrained

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}")
    if not (run_dir / RUN_CONFIG).is_file() or not (run_dir / WEIGHTS_NAME).is_file():
        raise RunError(f"{run_dir} holds no finished run (expected {RUN_CONFIG} and {WEIGHTS_NAME}; "
                       "an interrupted run can be continued with `convnet train --out DIR --resume`)")
    run_cfg = read_json(run_dir / RUN_CONFIG, "run config")
    return from_pretrained(run_dir).eval(), run_cfg
