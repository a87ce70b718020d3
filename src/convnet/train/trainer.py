"""The training loop: one run directory per run, everything in it written atomically.

    run/
      config.json        resolved TrainConfig, the model config, classes and preprocessing
      metrics.jsonl      one line per epoch
      checkpoints/       step_NNNNNNNN/ (model, optimiser, scheduler, scaler, EMA, RNG, position)
      model.safetensors  final weights (the EMA weights when optim.ema_decay > 0)
      summary.json       test_acc, best_val_acc, epochs, wall_s, params, ...
      report/            curves, confusion matrix, filters, misclassified, index.html

A run survives a crash at any moment: ``--resume`` continues from the newest readable checkpoint
(every epoch, and every ``checkpoint_every`` optimiser steps) and, on CPU, ends with the same bits
as an uninterrupted run, because everything random is drawn from generators whose states are in
the checkpoint, and the epoch's sample order and the position in it are saved too.

Under ``torchrun`` every process draws the same global batch (same generator, same augmentation)
and trains on its own slice of it with DistributedDataParallel, so N processes follow the same
trajectory as one process with the same global batch.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import layers as L
from ..data import DataSplits, load_data
from ..data.datasets import select_classes
from ..models import count_parameters, create_model
from ..weights import WEIGHTS_NAME, atomic_write_json, load_pretrained, read_json, save_tensors
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig
from .optim import build_optimizer, build_scheduler

RUN_CONFIG = "config.json"


class RunError(ValueError):
    """A run directory that is missing, incomplete, or belongs to another configuration, or a
    run that cannot go on (non-finite losses)."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use device=cpu or auto")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; expected cpu, cuda, cuda:N or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(cfg: TrainConfig, tag: str = "") -> str:
    """``runs/<model>-<data>[-tag]-<time>``: where a run goes when ``out`` is not given."""
    data = cfg.data.name.split(":")[0].replace("/", "_")
    return str(Path("runs") / "-".join(filter(None, (cfg.model.name, data, tag, time.strftime("%Y%m%d-%H%M%S")))))


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device):
    """Mini-batches of in-memory tensors in order (evaluation)."""
    for start in range(0, len(y), batch_size):
        yield x[start:start + batch_size].to(device, non_blocking=True), y[start:start + batch_size].to(device)


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


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy against int labels (B,) or soft targets (B, K) (Mixup/CutMix), with
    label smoothing: the target becomes (1 - eps) * target + eps / K (Szegedy et al. 2016, §7)."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    k = logits.shape[1]
    soft = targets * (1.0 - label_smoothing) + label_smoothing / k
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(softmax(t / T) || softmax(s / T)) * T^2, averaged over the batch.
    The T^2 keeps the soft targets' gradient on the same scale as the labels' when T changes."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def first_conv_weight(model: nn.Module) -> torch.Tensor | None:
    """The first convolution's kernel (out, in, *k), for the filters figure."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return m.weight.detach().cpu()
    return None


def _all_finite(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer holding a NaN or an infinity, else None."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            return name
    return None


@dataclass
class RunState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps
    best_val_acc: float = float("nan")
    train_s: float = 0.0  # seconds spent in the training loop so far (across resumes)
    batch: int = 0  # batches done in the current epoch (a mid-epoch checkpoint)
    skipped: int = 0  # steps skipped for a non-finite loss or gradient, in all
    nonfinite_run: int = 0  # ... in a row, now
    sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "correct": 0.0, "seen": 0.0})


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data`` into a run directory.

    Args:
        cfg: the resolved configuration.
        resume: continue from the newest valid checkpoint in ``cfg.out``.
        progress: show a progress bar per epoch.
        data: in-memory splits to train on instead of loading ``cfg.data.name`` (cross-validation
            folds); they are not saved with the run, so such a run is resumed with the same data.
        restore_rng: False leaves the random generators unrestored on resume (the negative
            control of the exact-resume test; never useful otherwise).
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True,
                 data: DataSplits | None = None, restore_rng: bool = True):
        self.cfg = cfg
        self.resume = resume
        self.data = data
        self.restore_rng = restore_rng
        self.rank, self.world, self.local_rank = dist_info()
        self.progress = progress and self.rank == 0
        self.device = resolve_device(cfg.device, self.local_rank)
        if cfg.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision {cfg.precision!r}: expected fp32, bf16 or fp16")
        if cfg.transfer.freeze not in ("", "backbone"):
            raise ConfigError(f"transfer.freeze {cfg.transfer.freeze!r}: expected '' or 'backbone'")
        if cfg.optim.accumulate < 1:
            raise ConfigError(f"optim.accumulate must be >= 1, got {cfg.optim.accumulate}")
        self._init_distributed()
        self.run_dir = self._prepare_run_dir()

    # ----------------------------------------------------------------------------- setup
    def _init_distributed(self) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend)
        # Every process must write to (and resume from) the same directory: rank 0 names it.
        box = [self.cfg.out or (self._default_out() if self.rank == 0 else "")]
        dist.broadcast_object_list(box, src=0)
        self.cfg.out = box[0]

    def _default_out(self) -> str:
        return default_run_dir(self.cfg)

    def _prepare_run_dir(self) -> Path:
        cfg = self.cfg
        if not cfg.out:
            if self.resume:
                raise RunError("--resume needs --out DIR, the run directory to continue")
            cfg.out = self._default_out()
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
        if self.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _load_data(self) -> DataSplits:
        """``cfg.data`` loaded and subset; splits given to the constructor are used as they are
        (cross-validation folds have been subset once already)."""
        if self.data is not None:
            return self.data
        cfg = self.cfg
        data = load_data(cfg.data.name, cfg.data.image_size or None, cfg.data.val_fraction,
                         cfg.data.test_fraction, cfg.data.split_seed)
        if cfg.data.classes or cfg.data.train_per_class:
            data = select_classes(data, cfg.data.classes, cfg.data.train_per_class, cfg.data.split_seed)
        return data

    def _build(self, data: DataSplits) -> None:
        cfg = self.cfg
        self.model = create_model(cfg.model.name, spatial_dims=cfg.model.spatial_dims, in_channels=data.channels,
                                  num_classes=data.num_classes, **cfg.model.overrides)
        if cfg.transfer.init:
            # The source task's classifier does not apply: keep the new head, take the rest.
            load_pretrained(self.model, cfg.transfer.init, exclude=("head.",))
        if cfg.transfer.freeze == "backbone":
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith("head."))
        self.model.to(self.device)
        self.memory_format = L.memory_format(cfg.model.spatial_dims) if cfg.channels_last else None
        if self.memory_format is not None:
            self.model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        n_train = len(data.train[1])
        self.batches_per_epoch = max(1, -(-n_train // cfg.data.batch_size))
        self.steps_per_epoch = -(-self.batches_per_epoch // cfg.optim.accumulate)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.epochs * self.steps_per_epoch,
                                         self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.ema = None
        if cfg.optim.ema_decay > 0:
            from .ema import ModelEMA

            self.ema = ModelEMA(self.model, cfg.optim.ema_decay, warmup=cfg.optim.ema_warmup)
        from ..data.augment import BatchAugment

        self.augment = BatchAugment(cfg.augment, spatial_dims=cfg.model.spatial_dims,
                                    num_classes=data.num_classes, mean=data.preprocess.mean, std=data.preprocess.std)
        self.teacher = None
        if cfg.distill.teacher:
            self.teacher = self._load_teacher(data)
        self.train_model: nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        self.compiled = False
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
            self.compiled = True

    def _load_teacher(self, data: DataSplits) -> nn.Module:
        teacher, run_cfg = load_run(self.cfg.distill.teacher)
        classes = run_cfg["data"]["classes"]
        if classes != data.classes:
            raise RunError(f"distill.teacher {self.cfg.distill.teacher}: its classes {classes} differ from the "
                           f"data's {data.classes}")
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher.to(self.device).eval()

    def _write_run_config(self, data: DataSplits) -> None:
        if self.rank != 0:
            return
        atomic_write_json(self.run_dir / RUN_CONFIG, {
            "model": self.model.model_config,
            "train": self.cfg.to_dict(),
            "data": {"name": data.name, "classes": data.classes, "preprocess": data.preprocess.to_dict(),
                     **data.info},
        })

    # ----------------------------------------------------------------------------- the loop
    def _set_train_mode(self) -> None:
        self.model.train()
        if self.cfg.transfer.freeze == "backbone":
            # Feature extraction: a frozen backbone keeps its normalisation statistics too.
            for name, m in self.model.named_modules():
                if name and not name.startswith("head") and isinstance(m, nn.modules.batchnorm._NormBase):
                    m.eval()

    def _progressive(self, epoch: int, data: DataSplits) -> tuple[int, ...] | None:
        """EfficientNetV2's progressive learning (Tan & Le 2021, Algorithm 1): in stage i of M,
        image size, dropout, RandAugment magnitude and Mixup alpha are interpolated linearly
        from their first to their last value. Returns the training image size (None: unchanged)."""
        pc = self.cfg.progressive
        if pc.stages <= 0:
            return None
        stage = min(pc.stages - 1, epoch * pc.stages // max(1, self.cfg.epochs))
        t = stage / (pc.stages - 1) if pc.stages > 1 else 1.0

        def lerp(a: float, b: float) -> float:
            return a + (b - a) * t

        for m in self.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = lerp(*pc.dropout)
        self.augment.rand_augment_m = lerp(*pc.rand_augment_m)
        self.augment.mixup = lerp(*pc.mixup)
        full = tuple(data.train[0].shape[2:])
        if not pc.min_image_size:
            return None
        return tuple(int(round(lerp(pc.min_image_size, s))) for s in full)

    def _forward_loss(self, xb: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            try:
                logits = self.train_model(xb)
            except Exception as e:  # inductor needs a C++ compiler; train eagerly without one
                if not self.compiled:
                    raise
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training eagerly", stacklevel=2)
                self.train_model = self.train_model._orig_mod
                self.compiled = False
                logits = self.train_model(xb)
        logits = logits.float()
        loss = classification_loss(logits, targets, cfg.label_smoothing)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(xb).float()
            a = cfg.distill.alpha
            loss = (1 - a) * loss + a * distillation_loss(logits, teacher_logits, cfg.distill.temperature)
        return logits, loss

    def _all_ranks(self, ok: bool) -> bool:
        if self.world == 1:
            return ok
        import torch.distributed as dist

        flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _nonfinite(self, state: RunState, what: str, batch: int) -> None:
        state.skipped += 1
        state.nonfinite_run += 1
        self.optimizer.zero_grad(set_to_none=True)
        if state.nonfinite_run >= self.cfg.max_nonfinite:
            raise RunError(
                f"{state.nonfinite_run} non-finite {what}es in a row (max_nonfinite={self.cfg.max_nonfinite}); "
                f"the last at epoch {state.epoch + 1}, batch {batch} (optimiser step {state.step}); "
                f"no step was taken with them and the newest checkpoint in {self.run_dir / 'checkpoints'} is intact")

    def _optimizer_step(self, state: RunState, batch: int) -> bool:
        cfg = self.cfg
        self.scaler.unscale_(self.optimizer)
        if cfg.optim.grad_clip > 0 or cfg.precision == "bf16":
            # A finite fp32 loss has finite gradients in practice, so the default job skips this
            # pass over the gradients (0.14 ms a step on LeNet-5); fp16 overflow is the scaler's.
            params = [p for p in self.model.parameters() if p.requires_grad]
            norm = nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
            if not self.scaler.is_enabled() and not self._all_ranks(bool(torch.isfinite(norm))):
                self._nonfinite(state, "gradient", batch)
                return False
        self.scaler.step(self.optimizer)  # with fp16, skips a step whose gradients overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        state.step += 1
        state.nonfinite_run = 0
        return True

    def _train_epoch(self, data: DataSplits, state: RunState, order: torch.Tensor | None) -> dict[str, float]:
        """One epoch from ``state.batch`` on. ``order`` is the epoch's sample order when resuming
        in the middle of it; otherwise it is drawn here."""
        cfg = self.cfg
        self._set_train_mode()
        size = self._progressive(state.epoch, data)
        x, y = data.train
        n, bs, accumulate = len(y), cfg.data.batch_size, cfg.optim.accumulate
        if order is None:
            order = torch.randperm(n, generator=self.generator)
            state.batch, state.sums = 0, {"loss": 0.0, "correct": 0.0, "seen": 0.0}
        bar = tqdm(total=n, initial=min(n, state.batch * bs), desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   unit="img", leave=True, disable=not self.progress, dynamic_ncols=True)
        start, seen0 = time.perf_counter(), state.sums["seen"]
        sums = state.sums
        for b in range(state.batch, self.batches_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x[idx].to(self.device, non_blocking=True), y[idx].to(self.device)
            targets = yb
            if self.augment.enabled:
                xb, targets = self.augment(xb, yb, self.generator)
            if size is not None and tuple(xb.shape[2:]) != size:
                xb = F.interpolate(xb, size=size, mode=L.linear_mode(xb.ndim - 2), align_corners=False)
            global_n = len(yb)
            if self.world > 1:  # this process's slice of the global batch
                lo, hi = (global_n * self.rank) // self.world, (global_n * (self.rank + 1)) // self.world
                xb, yb, targets = xb[lo:hi], yb[lo:hi], targets[lo:hi]
            if self.memory_format is not None:
                xb = xb.contiguous(memory_format=self.memory_format)
            group_start = (b // accumulate) * accumulate
            group = min(accumulate, self.batches_per_epoch - group_start)
            last_in_group = b == group_start + group - 1
            sync = self.world > 1 and not last_in_group
            with self.train_model.no_sync() if sync and hasattr(self.train_model, "no_sync") else contextlib.nullcontext():
                logits, loss = self._forward_loss(xb, targets)
                finite = self._all_ranks(bool(torch.isfinite(loss)))
                if finite:
                    # DDP averages gradients over processes; weigh each slice by its share of the
                    # global batch so the result is the global batch's mean, slices equal or not.
                    weight = len(yb) * self.world / global_n / group
                    self.scaler.scale(loss * weight).backward()
            if not finite:
                self._nonfinite(state, "loss", b)
            elif last_in_group:
                self._optimizer_step(state, b)
            state.batch = b + 1
            k = len(yb)
            sums["seen"] += k
            if finite:
                sums["loss"] += loss.item() * k
                sums["correct"] += (logits.argmax(1) == yb).sum().item()
            bar.update(k * self.world)
            bar.set_postfix(loss=f"{sums['loss'] / max(sums['seen'], 1):.4f}",
                            acc=f"{sums['correct'] / max(sums['seen'], 1):.4f}",
                            speed=f"{(sums['seen'] - seen0) * self.world / (time.perf_counter() - start):.0f} img/s",
                            refresh=False)
            if (cfg.checkpoint_every > 0 and last_in_group and finite and state.step % cfg.checkpoint_every == 0
                    and state.batch < self.batches_per_epoch):
                self._save(state, order)
        elapsed = time.perf_counter() - start
        bar.close()
        seen = sums["seen"]
        return {"train_loss": sums["loss"] / max(seen, 1), "train_acc": sums["correct"] / max(seen, 1),
                "epoch_s": elapsed, "img_per_s": (seen - seen0) * self.world / max(elapsed, 1e-9),
                "skipped_steps": state.skipped}

    def fit(self) -> dict[str, Any]:
        """Train, checkpoint, evaluate on the test split, write the run directory."""
        cfg = self.cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        data = self._load_data()
        self._build(data)
        if getattr(self.model, "learning", "backprop") == "unsupervised":
            return self._fit_unsupervised(data)
        state, history, order = RunState(), [], None
        if self.resume:
            state, history, order = self._restore()
        else:
            self._write_run_config(data)
            if self.rank == 0:
                (self.run_dir / "metrics.jsonl").write_text("")
        for epoch in range(state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            row = self._train_epoch(data, state, order)
            order = None
            val = evaluate(self.eval_model, data.val, self.device, cfg.eval_batch_size)
            state.epoch, state.batch = epoch + 1, 0
            state.train_s += time.perf_counter() - t0
            acc, best = val["acc"], state.best_val_acc  # NaN: no validation split / none yet
            if not math.isnan(acc) and (math.isnan(best) or acc > best):
                state.best_val_acc = acc
            row = {"epoch": state.epoch, "step": state.step, **row, "val_loss": val["loss"], "val_acc": val["acc"],
                   "lr": self.optimizer.param_groups[0]["lr"]}
            history.append(row)
            if self.rank == 0:
                with open(self.run_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
            if self.progress:
                tqdm.write(f"  val_loss {val['loss']:.4f}  val_acc {val['acc']:.4f}")
            self._save(state, None, history)
        return self._finish(data, state, history)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # ----------------------------------------------------------------------------- checkpoints
    def _save(self, state: RunState, order: torch.Tensor | None, history: list[dict] | None = None) -> None:
        bad = _all_finite(self.model)
        if bad is not None:
            raise RunError(f"refusing to checkpoint non-finite weights ({bad}) at step {state.step}")
        if self.rank == 0:
            tensors = {} if order is None else {"order": order}
            if self.ema is not None:
                tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
            extra = {"epoch": state.epoch, "batch": state.batch, "best_val_acc": state.best_val_acc,
                     "train_s": state.train_s, "skipped": state.skipped, "nonfinite_run": state.nonfinite_run,
                     "sums": state.sums, "scaler": self.scaler.state_dict(), "history": history,
                     "world_size": self.world}
            ckpt.save_checkpoint(self.run_dir / "checkpoints", state.step, self.model, self.optimizer,
                                 self.scheduler, self.generator, extra, keep=self.cfg.keep_checkpoints,
                                 tensors=tensors)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _restore(self) -> tuple[RunState, list[dict], torch.Tensor | None]:
        found = ckpt.load_latest(self.run_dir / "checkpoints")
        if found is None:
            raise RunError(f"--resume: {self.run_dir / 'checkpoints'} holds no readable checkpoint")
        path, model_sd, training, st = found
        ckpt.restore(self.model, self.optimizer, self.scheduler, self.generator, model_sd, training, st,
                     rng=self.restore_rng)
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict({k[4:]: v for k, v in training.items() if k.startswith("ema.")})
        history = self._history_at(path, st)
        if self.rank == 0:
            # metrics.jsonl may hold epochs past the checkpoint if the run died after writing them.
            with open(self.run_dir / "metrics.jsonl", "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in history)
        if self.progress:
            where = f"epoch {st['epoch'] + 1}, batch {st['batch']}" if st["batch"] else f"end of epoch {st['epoch']}"
            tqdm.write(f"resumed from {path} ({where}, step {st['step']})")
        state = RunState(st["epoch"], st["step"], st["best_val_acc"], st["train_s"], st["batch"], st["skipped"],
                         st["nonfinite_run"], st["sums"])
        order = training.get("order") if st["batch"] else None
        return state, history, order

    def _history_at(self, path: Path, st: dict[str, Any]) -> list[dict]:
        """The metrics rows up to a checkpoint: an epoch-end checkpoint holds them; a mid-epoch
        one takes the completed epochs' rows from metrics.jsonl."""
        if st.get("history") is not None:
            return st["history"]
        rows = []
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        return [r for r in rows if r["epoch"] <= st["epoch"]]

    # ----------------------------------------------------------------------------- the end
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

    def _finish(self, data: DataSplits, state: RunState, history: list[dict]) -> dict[str, Any]:
        model = self.eval_model
        test = evaluate(model, data.test, self.device, self.cfg.eval_batch_size)
        bad = _all_finite(model)
        if bad is not None:
            raise RunError(f"refusing to save non-finite weights ({bad})")
        summary = {
            "model": self.cfg.model.name,
            "data": data.name,
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "best_val_acc": state.best_val_acc,
            "final_val_acc": history[-1]["val_acc"] if history else float("nan"),
            "epochs": state.epoch,
            "steps": state.step,
            "skipped_steps": state.skipped,
            "wall_s": round(state.train_s, 3),
            "params": count_parameters(model),
            "n_train": data.info.get("n_train"),
            "n_test": data.info.get("n_test"),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.world,
            "run_dir": str(self.run_dir),
        }
        if self.rank == 0:
            # config.json (written at the start) already holds the model section from_pretrained reads.
            state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_tensors(state_dict, self.run_dir / WEIGHTS_NAME)
            atomic_write_json(self.run_dir / "summary.json", _json_safe(summary))
            if self.cfg.report:
                self._report(data, test["preds"], history, summary, model)
        return summary

    def _report(self, data: DataSplits, preds: torch.Tensor, history: list[dict], summary: dict,
                model: nn.Module) -> None:
        from .report import write_report

        y = data.test[1]
        k = data.num_classes
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (y.numpy(), preds.numpy()), 1)
        wrong = (preds != y).nonzero().flatten()[:32].tolist()
        misclassified = [(data.test[0][i], int(y[i]), int(preds[i])) for i in wrong]
        metrics = {k: summary[k] for k in ("test_acc", "best_val_acc", "epochs", "wall_s", "params")}
        write_report(self.run_dir, history, confusion, data.classes, first_conv_weight(model),
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


__all__ = ["RunError", "RunState", "Trainer", "classification_loss", "distillation_loss", "evaluate", "load_run",
           "resolve_device", "seed_everything"]
