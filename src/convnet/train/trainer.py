"""The training loop, for every task: the Task (convnet.tasks) says what a batch, the loss, the
metrics and the report are; the Trainer names no task.

One run directory per run (train/run.py), everything in it written atomically and locked while a
process writes it. A run survives a crash at any moment: ``--resume`` continues from the newest
checkpoint that reads back whole and fits the model (every epoch, and every ``checkpoint_every``
optimiser steps) and, on CPU, ends with the same bits as an uninterrupted run, because everything
random is drawn from generators whose states are in the checkpoint, and the epoch's sample order
and the position in it are saved too, whichever path feeds the data (memory or DataLoader workers).

Data reach the model by one of two paths (data/loader.py): small sets sit in memory as tensors
and a batch is an index; folders and big sets stream from disk through DataLoader workers.
Under ``torchrun``, in memory, every process draws the same global batch (same generator, same
augmentation) and trains on its own slice of it with DistributedDataParallel, so N processes
follow the same trajectory as one process; streamed, each process decodes only its slice of
every global batch (each sample once per epoch across processes).
"""
from __future__ import annotations

import contextlib
import dataclasses
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
from torch import nn
from tqdm.auto import tqdm

from .. import layers as L
from ..data import DataSplits, Preprocess, load_data
from ..data.datasets import DataOptions, check_bad_files, select_classes
from ..data.loader import BatchStream, rank_slice
from ..data.samples import Batch, as_samples, batch_size_of
from ..models import count_parameters, get_entry
from ..tasks import Metric, Task, get_task
from ..tasks.base import data_dims
from ..tasks.classification import classification_loss, distillation_loss  # noqa: F401  (public API)
from ..weights import init_preprocess, load_pretrained, save_tensors
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig
from .loggers import LOGGERS, RunLogger, build_logger
from .optim import build_optimizer, build_scheduler
from .run import RunDir, RunError

RUN_CONFIG = RunDir.CONFIG
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def resolve_task(cfg: TrainConfig) -> Task:
    """The run's task: ``task.name``, or with "auto" the one the model is registered for."""
    name = cfg.task.name
    if name == "auto":
        name = get_entry(cfg.model.name).task
    return get_task(name, cfg.task.options, cfg)


def to_device(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Tensors in a batch (also inside lists and dicts) moved to ``device``; the rest as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: to_device(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, list):
        return [to_device(v, device, non_blocking) for v in value]
    return value


def slice_batch(batch: Batch, lo: int, hi: int, n: int) -> Batch:
    """Samples [lo, hi) of a batch of ``n``: every tensor or list with ``n`` rows is sliced."""
    return {k: v[lo:hi] if isinstance(v, (torch.Tensor, list)) and len(v) == n else v for k, v in batch.items()}


def data_options(cfg: TrainConfig) -> DataOptions:
    """``cfg.data`` as the data sets read it. A model that starts from pretrained weights by name
    (``transfer.init=pretrained[:TAG]``) takes the weights' preprocessing (resize, crop, mean and
    std; RGB), unless ``data.image_size`` says otherwise."""
    options = DataOptions.from_config(cfg.data)
    weights = init_preprocess(cfg.model.name, cfg.transfer.init) if cfg.transfer.init else None
    if weights is not None and weights.get("crop") and not cfg.data.image_size:
        options = dataclasses.replace(options, preprocess=Preprocess.from_weights(weights, channels=3), channels=3)
    return options


def load_configured_data(cfg: TrainConfig) -> DataSplits:
    """``cfg.data`` loaded with its options (:func:`data_options`) and subset to ``data.classes`` /
    ``train_per_class``."""
    data = load_data(cfg.data.name, options=data_options(cfg))
    if cfg.data.classes or cfg.data.train_per_class:
        data = select_classes(data, cfg.data.classes, cfg.data.train_per_class, cfg.data.split_seed)
    return data


@torch.no_grad()
def evaluate(task: Task, model: nn.Module, split: Any, device: torch.device, batch_size: int = 512, *,
             workers: int = 0, rank: int = 0, world: int = 1, metric: Metric | None = None,
             bad: list | None = None) -> tuple[Metric, dict[str, Any]]:
    """The task's metrics of ``model`` on a whole split (eval mode): each rank evaluates its
    shard and the metric reduces across ranks. Returns the metric (its state feeds the report)
    and its figures. Files that fail to decode are skipped and appended to ``bad``."""
    metric = metric or task.metrics()
    metric.reset()
    samples = as_samples(split)
    was_training = model.training
    model.eval()
    stream = BatchStream(samples, task.collate, batch_size, workers=workers, rank=rank, world=world,
                         pin_memory=device.type == "cuda")
    for batch in stream.shard():
        if bad is not None:
            bad.extend(batch.get("bad", []))
        if batch_size_of(batch) == 0:
            continue
        batch = to_device(batch, device, non_blocking=True)
        metric.update(task.forward(model, batch), batch)
    model.train(was_training)
    return metric, metric.result()


@dataclass
class RunState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps
    best_val: float = float("nan")  # the best validation value of the task's primary metric
    train_s: float = 0.0  # seconds spent in the training loop so far (across resumes)
    batch: int = 0  # batches done in the current epoch (a mid-epoch checkpoint)
    skipped: int = 0  # steps skipped for a non-finite loss or gradient, in all
    nonfinite_run: int = 0  # ... in a row, now
    sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "seen": 0.0})
    train_metric: dict[str, Any] = field(default_factory=dict)  # the epoch's training metric state


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data`` for ``cfg.task`` into a run directory.

    Args:
        cfg: the resolved configuration.
        resume: continue from the newest valid checkpoint in ``cfg.out``.
        progress: show a progress bar per epoch.
        data: splits to train on instead of loading ``cfg.data.name`` (cross-validation folds);
            they are not saved with the run, so such a run is resumed with the same data.
        restore_rng: False leaves the random generators unrestored on resume (the negative
            control of the exact-resume test; never useful otherwise).
        overwrite: replace a run already in ``cfg.out`` (its checkpoints, weights and report).
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True,
                 data: DataSplits | None = None, restore_rng: bool = True, overwrite: bool = False):
        self.cfg = cfg
        self.resume = resume
        self.overwrite = overwrite
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
        if cfg.logger and cfg.logger not in LOGGERS:
            raise ConfigError(f"logger {cfg.logger!r}: expected '' or one of {', '.join(LOGGERS)}")
        self.task = resolve_task(cfg)
        self._init_distributed()
        self.run = self._prepare_run_dir()
        self.run_dir = self.run.path
        self.bad_files: dict[str, str] = {}
        self.converted_files: set[str] = set()
        self.first_step_time: float | None = None
        self._stop = False
        self.logger: RunLogger | None = None

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

    def _prepare_run_dir(self) -> RunDir:
        cfg = self.cfg
        if not cfg.out:
            if self.resume:
                raise RunError("--resume needs --out DIR, the run directory to continue")
            cfg.out = self._default_out()
        run = RunDir(cfg.out)
        if self.resume and not run.config.is_file():
            raise RunError(f"--resume: {run.path} holds no run (no {RUN_CONFIG}); start it without --resume")
        self._created = not run.path.exists()
        if self.rank == 0:
            run.lock()  # before looking inside: another process may be writing this run
        try:
            if self.resume:
                saved = TrainConfig.from_dict(run.read_config()["train"])
                mine, theirs = cfg.to_dict(), saved.to_dict()
                diff = [k for k in mine if mine[k] != theirs[k] and k != "out"]
                if diff:
                    raise RunError(f"--resume: the configuration differs from the run in {run.path} in {diff}; "
                                   "resume with the same arguments")
            elif run.holds_a_run():
                if not self.overwrite:
                    raise RunError(f"{run.path} already holds a run ({run.describe()}); pass --resume to continue "
                                   "it, --overwrite to replace it, or choose another --out")
                if self.rank == 0:
                    run.clear()
        except BaseException:
            run.unlock()
            if self._created and self.rank == 0:
                run.remove_if_empty_start(created=True)
            raise
        return run

    def close(self) -> None:
        """Release the run directory's lock (fit does it when it ends)."""
        self.run.unlock()

    def __del__(self) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            run.unlock()

    def _load_data(self) -> DataSplits:
        """``cfg.data`` loaded and subset; splits given to the constructor are used as they are
        (cross-validation folds have been subset once already)."""
        if self.data is not None:
            return self.data
        return load_configured_data(self.cfg)

    def _build(self, data: DataSplits) -> None:
        cfg = self.cfg
        self.task.setup(data.classes)
        self.model = self.task.build_model(cfg.model, data)
        if cfg.transfer.init:
            # The source task's classifier does not apply: keep the new head, take the rest.
            load_pretrained(self.model, cfg.transfer.init, exclude=("head.",))
        if cfg.transfer.freeze == "backbone":
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith("head."))
        self.model.to(self.device)
        self.memory_format = L.memory_format(data_dims(cfg.model.spatial_dims, data)) if cfg.channels_last else None
        if self.memory_format is not None:
            self.model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.train_stream = BatchStream(as_samples(data.train), self.task.collate, cfg.data.batch_size,
                                        workers=cfg.data.workers, pin_memory=self.device.type == "cuda",
                                        rank=self.rank, world=self.world, seed=cfg.seed)
        self.batches_per_epoch = max(1, len(self.train_stream))
        self.steps_per_epoch = -(-self.batches_per_epoch // cfg.optim.accumulate)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.epochs * self.steps_per_epoch,
                                         self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.ema = None
        if cfg.optim.ema_decay > 0:
            from .ema import ModelEMA

            self.ema = ModelEMA(self.model, cfg.optim.ema_decay, warmup=cfg.optim.ema_warmup)
        self.augment = self.task.build_augment(cfg.augment, data, cfg.model.spatial_dims)
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

    def _run_config(self, data: DataSplits) -> dict[str, Any]:
        return {"model": self.model.model_config, "task": {"name": self.task.name, "options": self.task.options},
                "train": self.cfg.to_dict(),
                "data": {"name": data.name, "classes": data.classes, "preprocess": data.preprocess.to_dict(),
                         **{k: v for k, v in data.info.items() if k not in ("bad_files", "converted_files")}}}

    def _write_run_config(self, data: DataSplits) -> None:
        if self.rank == 0:
            self.run.write_config(self._run_config(data))

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
        batch_augment = getattr(self.augment, "augment", None)
        if batch_augment is not None:
            batch_augment.rand_augment_m = lerp(*pc.rand_augment_m)
            batch_augment.mixup = lerp(*pc.mixup)
        if not pc.min_image_size:
            return None
        return tuple(int(round(lerp(pc.min_image_size, s))) for s in data.preprocess.size)

    def _forward_loss(self, batch: Batch) -> tuple[Any, torch.Tensor, dict[str, float]]:
        dtype = _AUTOCAST.get(self.cfg.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            try:
                outputs = self.task.forward(self.train_model, batch)
            except Exception as e:  # inductor needs a C++ compiler; train eagerly without one
                if not self.compiled:
                    raise
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training eagerly", stacklevel=2)
                self.train_model = self.train_model._orig_mod
                self.compiled = False
                outputs = self.task.forward(self.train_model, batch)
        if self.teacher is not None:
            with torch.no_grad():
                batch = {**batch, "teacher_outputs": self.task.forward(self.teacher, batch)}
        loss, parts = self.task.loss(outputs, batch)
        return outputs, loss, parts

    def _all_ranks(self, ok: bool) -> bool:
        if self.world == 1:
            return ok
        import torch.distributed as dist

        flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _sum_ranks(self, n: int) -> int:
        if self.world == 1:
            return n
        import torch.distributed as dist

        total = torch.tensor([float(n)], device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def _nonfinite(self, state: RunState, what: str, batch: int) -> None:
        state.skipped += 1
        state.nonfinite_run += 1
        self.optimizer.zero_grad(set_to_none=True)
        if state.nonfinite_run >= self.cfg.max_nonfinite:
            raise RunError(
                f"{state.nonfinite_run} non-finite {what}es in a row (max_nonfinite={self.cfg.max_nonfinite}); "
                f"the last at epoch {state.epoch + 1}, batch {batch} (optimiser step {state.step}); "
                f"no step was taken with them and the newest checkpoint in {self.run.checkpoints} is intact")

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
        self.task.after_step(self.model)
        if self.ema is not None:
            self.ema.update(self.model)
        state.step += 1
        state.nonfinite_run = 0
        if self.first_step_time is None:
            self.first_step_time = time.time()
        if cfg.max_steps and state.step >= cfg.max_steps:
            self._stop = True
        return True

    def _note_bad(self, batch: Batch, split: str = "train") -> None:
        """Files that failed to decode in this batch: recorded once each, and the run stops when
        they exceed data.max_bad_fraction of the split."""
        for path in batch.get("converted", []):
            self.converted_files.add(path)
        bad = batch.get("bad") or []
        if not bad:
            return
        for path, error in bad:
            self.bad_files.setdefault(path, error)
        n = len(as_samples(getattr(self._data, split)))
        check_bad_files(list(self.bad_files.items()), n, self.cfg.data.max_bad_fraction, f"{self.cfg.data.name} ({split})")

    def _train_epoch(self, data: DataSplits, state: RunState, order: torch.Tensor | None) -> dict[str, float]:
        """One epoch from ``state.batch`` on. ``order`` is the epoch's sample order when resuming
        in the middle of it; otherwise it is drawn here."""
        cfg = self.cfg
        self._set_train_mode()
        size = self._progressive(state.epoch, data)
        stream = self.train_stream
        n, bs, accumulate = len(stream.samples), cfg.data.batch_size, cfg.optim.accumulate
        metric = self.task.metrics(training=True)
        if order is None:
            order = torch.randperm(n, generator=self.generator)
            state.batch, state.sums, state.train_metric = 0, {"loss": 0.0, "seen": 0.0}, {}
        metric.load_state_dict(state.train_metric)
        bar = tqdm(total=n, initial=min(n, state.batch * bs), desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   unit=self.task.unit, leave=True, disable=not self.progress, dynamic_ncols=True)
        start, seen0 = time.perf_counter(), state.sums["seen"]
        sums = state.sums
        global_batches = stream.in_memory  # memory: every rank holds the global batch and slices it
        augment_generator = self.generator
        for b, batch in zip(range(state.batch, self.batches_per_epoch), stream.epoch(order, state.batch)):
            self._note_bad(batch)
            local_n = batch_size_of(batch)
            if not global_batches and self.world > 1:
                # Each rank augments only its slice: its own stream, reseeded per step so that
                # a resumed run draws the same numbers without saving every rank's generator.
                augment_generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + b * self.world + self.rank
                                                                  + state.epoch * 7_919)
            if not self._all_ranks(local_n > 0):  # every file of the batch failed to decode
                state.batch = b + 1
                continue
            batch = to_device(batch, self.device, non_blocking=True)
            if self.augment is not None and self.augment.enabled:
                batch = self.augment(batch, augment_generator)
            if size is not None:
                batch = self.task.resize_batch(batch, size)
            if global_batches:
                global_n = local_n
                if self.world > 1:  # this process's slice of the global batch
                    lo, hi = rank_slice(global_n, self.rank, self.world)
                    batch = slice_batch(batch, lo, hi, global_n)
            else:
                global_n = self._sum_ranks(local_n)
            k = batch_size_of(batch)
            if self.memory_format is not None and isinstance(batch["input"], torch.Tensor):
                batch["input"] = batch["input"].contiguous(memory_format=self.memory_format)
            group_start = (b // accumulate) * accumulate
            group = min(accumulate, self.batches_per_epoch - group_start)
            last_in_group = b == group_start + group - 1
            sync = self.world > 1 and not last_in_group
            with self.train_model.no_sync() if sync and hasattr(self.train_model, "no_sync") else contextlib.nullcontext():
                outputs, loss, _ = self._forward_loss(batch)
                finite = self._all_ranks(bool(torch.isfinite(loss)))
                if finite:
                    # DDP averages gradients over processes; weigh each slice by its share of the
                    # global batch so the result is the global batch's mean, slices equal or not.
                    weight = k * self.world / global_n / group
                    self.scaler.scale(loss * weight).backward()
            if not finite:
                self._nonfinite(state, "loss", b)
            elif last_in_group:
                self._optimizer_step(state, b)
            state.batch = b + 1
            sums["seen"] += k
            if finite:
                sums["loss"] += loss.item() * k
                metric.update(outputs.detach() if isinstance(outputs, torch.Tensor) else outputs, batch)
            bar.update(k * self.world)
            bar.set_postfix(loss=f"{sums['loss'] / max(sums['seen'], 1):.4f}",
                            **{name: f"{v:.4f}" for name, v in metric.progress().items()},
                            speed=f"{(sums['seen'] - seen0) * self.world / (time.perf_counter() - start):.0f} "
                                  f"{self.task.unit}/s", refresh=False)
            state.train_metric = metric.state_dict()
            if (cfg.checkpoint_every > 0 and last_in_group and finite and state.step % cfg.checkpoint_every == 0
                    and state.batch < self.batches_per_epoch and not self._stop):
                self._save(state, order)
            if self._stop:
                break
        elapsed = time.perf_counter() - start
        bar.close()
        seen = sums["seen"]
        row = {"train_loss": sums["loss"] / max(seen, 1)}
        row.update({f"train_{k}": v for k, v in metric.progress().items()})
        row.update({"epoch_s": elapsed, "img_per_s": (seen - seen0) * self.world / max(elapsed, 1e-9),
                    "skipped_steps": state.skipped})
        return row

    def _evaluate(self, split: Any, model: nn.Module | None = None) -> tuple[Metric, dict[str, Any]]:
        bad: list = []
        metric, result = evaluate(self.task, model or self.eval_model, split, self.device, self.cfg.eval_batch_size,
                                  workers=self.cfg.data.workers, rank=self.rank, world=self.world, bad=bad)
        for path, error in bad:
            self.bad_files.setdefault(path, error)
        return metric, result

    def fit(self) -> dict[str, Any]:
        """Train, checkpoint, evaluate on the test split, write the run directory."""
        state_box: list[RunState] = []
        try:
            return self._fit(state_box)
        except BaseException as e:
            if self.rank == 0:
                took_a_step = bool(state_box) and state_box[0].step > 0
                if self.resume or took_a_step:
                    self.run.mark_failed(e, state_box[0].step if state_box else 0)
                else:  # nothing worth keeping: no half-made run directory is left behind
                    self.run.remove_if_empty_start(created=self._created)
            raise
        finally:
            if self.logger is not None:
                self.logger.close()
            self.run.unlock()

    def _fit(self, state_box: list[RunState]) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        data = self._data = self._load_data()
        self._build(data)
        if self.rank == 0:
            self.logger = build_logger(cfg.logger, self.run.path, cfg.logger_uri, self.run.path.name)
            if self.logger is not None:
                self.logger.log_config(self._run_config(data))
        if self.task.learns_without_gradients(self.model):
            return self._fit_without_gradients(data)
        state, history, order = RunState(), [], None
        state_box.append(state)
        resumed_from = None
        if self.resume:
            state, history, order, resumed_from = self._restore()
            state_box[0] = state
        else:
            self._write_run_config(data)
            if self.rank == 0:
                self.run.write_metrics([])
        primary = self.task.primary_metric
        for epoch in range(state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            row = self._train_epoch(data, state, order)
            order = None
            _, val = self._evaluate(data.val)
            state.epoch, state.batch = epoch + 1, 0
            state.train_s += time.perf_counter() - t0
            value, best = val.get(primary, float("nan")), state.best_val  # NaN: no validation split / none yet
            if not math.isnan(value) and (math.isnan(best) or self._better(value, best)):
                state.best_val = value
            row = {"epoch": state.epoch, "step": state.step, **row,
                   **{f"val_{k}": v for k, v in val.items() if _scalar(v)},
                   "lr": self.optimizer.param_groups[0]["lr"]}
            if resumed_from is not None:
                row["resumed_from"] = resumed_from
                resumed_from = None
            history.append(row)
            if self.rank == 0:
                self.run.append_metrics(row)
                if self.logger is not None:
                    self.logger.log_metrics(row, state.step)
            if self.progress:
                tqdm.write("  " + "  ".join(f"val_{k} {v:.4f}" for k, v in val.items() if _scalar(v)))
            self._save(state, None, history)
            if self._stop:
                break
        return self._finish(data, state, history)

    def _better(self, value: float, best: float) -> bool:
        return value > best if self.task.higher_is_better else value < best

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # ----------------------------------------------------------------------------- checkpoints
    def _save(self, state: RunState, order: torch.Tensor | None, history: list[dict] | None = None) -> None:
        bad = _nonfinite_tensor(self.model)
        if bad is not None:
            raise RunError(f"refusing to checkpoint non-finite weights ({bad}) at step {state.step}")
        if self.rank == 0:
            tensors = {} if order is None else {"order": order}
            if self.ema is not None:
                tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
            extra = {"epoch": state.epoch, "batch": state.batch, "best_val": state.best_val,
                     "train_s": state.train_s, "skipped": state.skipped, "nonfinite_run": state.nonfinite_run,
                     "sums": state.sums, "train_metric": state.train_metric, "scaler": self.scaler.state_dict(),
                     "history": history, "world_size": self.world, "bad_files": self.bad_files,
                     "converted_files": sorted(self.converted_files)}
            ckpt.save_checkpoint(self.run.checkpoints, state.step, self.model, self.optimizer,
                                 self.scheduler, self.generator, extra, keep=self.cfg.keep_checkpoints,
                                 tensors=tensors)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _restore(self) -> tuple[RunState, list[dict], torch.Tensor | None, str]:
        def apply(path: Path, model_sd: dict, training: dict, st: dict) -> None:
            ckpt.restore(self.model, self.optimizer, self.scheduler, self.generator, model_sd, training, st,
                         rng=self.restore_rng)
            if st.get("scaler"):
                self.scaler.load_state_dict(st["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict({k[4:]: v for k, v in training.items() if k.startswith("ema.")})

        found = ckpt.restore_latest(self.run.checkpoints, self.model, apply, needs_ema=self.ema is not None)
        if found is None:
            raise RunError(f"--resume: {self.run.checkpoints} holds no readable checkpoint")
        path, training, st = found
        history = self._history_at(st)
        if self.rank == 0:
            # metrics.jsonl may hold epochs past the checkpoint if the run died after writing them.
            self.run.write_metrics(history)
            self.run.clear_failed()
        where = f"epoch {st['epoch'] + 1}, batch {st['batch']}" if st["batch"] else f"end of epoch {st['epoch']}"
        if self.rank == 0:  # said even without progress bars: a resumed run must say where from
            print(f"resumed from {path} ({where}, step {st['step']})", flush=True)
        state = RunState(st["epoch"], st["step"], st.get("best_val", float("nan")), st["train_s"], st["batch"],
                         st["skipped"], st["nonfinite_run"], st["sums"], st.get("train_metric") or {})
        self.bad_files.update(st.get("bad_files") or {})
        self.converted_files.update(st.get("converted_files") or [])
        order = training.get("order") if st["batch"] else None
        return state, history, order, str(path.relative_to(self.run.path))

    def _history_at(self, st: dict[str, Any]) -> list[dict]:
        """The metrics rows up to a checkpoint: an epoch-end checkpoint holds them; a mid-epoch
        one takes the completed epochs' rows from metrics.jsonl."""
        if st.get("history") is not None:
            return st["history"]
        return [r for r in self.run.read_metrics() if r["epoch"] <= st["epoch"]]

    # ----------------------------------------------------------------------------- the end
    def _fit_without_gradients(self, data: DataSplits) -> dict[str, Any]:
        """Models that learn by their own rule (the neocognitron) are fitted once by the task;
        one pass, so there is nothing to resume."""
        if self.resume:
            raise RunError(f"{self.cfg.model.name} learns in one pass without gradients; --resume does not apply")
        self._write_run_config(data)
        t0 = time.perf_counter()
        fitted = self.task.fit_without_gradients(self.model, data, self.device, self.generator)
        state = RunState(epoch=1, train_s=time.perf_counter() - t0)
        _, val = self._evaluate(data.val, self.model)
        state.best_val = val.get(self.task.primary_metric, float("nan"))
        row = {"epoch": 1, "step": 0, **{f"val_{k}": v for k, v in val.items() if _scalar(v)}, **fitted}
        if self.rank == 0:
            self.run.write_metrics([row])
            if self.logger is not None:
                self.logger.log_metrics(row, 0)
        if self.progress:
            tqdm.write("  " + "  ".join(f"{k} {v:.4f}" for k, v in fitted.items() if k.startswith("test_")))
        summary = self._finish(data, state, [row], extra={k: v for k, v in fitted.items() if k.startswith("test_")})
        return summary

    def _finish(self, data: DataSplits, state: RunState, history: list[dict],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        model = self.eval_model
        metric, test = self._evaluate(data.test)
        bad = _nonfinite_tensor(model)
        if bad is not None:
            raise RunError(f"refusing to save non-finite weights ({bad})")
        primary = self.task.primary_metric
        final_val = history[-1].get(f"val_{primary}") if history else None
        summary = {
            "model": self.cfg.model.name,
            "task": self.task.name,
            "data": data.name,
            **{f"test_{k}": v for k, v in test.items() if _scalar(v)},
            f"best_val_{primary}": state.best_val,
            f"final_val_{primary}": final_val if final_val is not None else float("nan"),
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
            "run_dir": str(self.run.path),
            **self.task.summary_extra(metric),
            **(extra or {}),
        }
        if self._stop:
            summary["stopped"] = f"max_steps={self.cfg.max_steps}"
        if self.first_step_time is not None:
            summary["first_step_time"] = self.first_step_time
        bad_files = [list(b) for b in data.info.get("bad_files", [])] + [[p, e] for p, e in self.bad_files.items()]
        converted = sorted(set(data.info.get("converted_files", [])) | self.converted_files)
        if bad_files:
            summary["bad_files"] = bad_files
        if converted:
            summary["converted_files"] = converted
        if self.rank == 0:
            # config.json (written at the start) already holds the model section from_pretrained reads.
            state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_tensors(state_dict, self.run.weights)
            self.run.write_summary(_json_safe(summary))
            if self.cfg.report:
                self._report(data, metric, history, summary, model, state.step)
            if self.logger is not None:
                self.logger.log_metrics({f"test_{k}": v for k, v in test.items() if _scalar(v)}, state.step)
                self.logger.log_artifacts(self.run.path)
        return summary

    def _report(self, data: DataSplits, metric: Metric, history: list[dict], summary: dict, model: nn.Module,
                step: int) -> None:
        from .report import write_page

        primary = self.task.primary_metric
        keys = (f"test_{primary}", f"best_val_{primary}", "epochs", "wall_s", "params")
        table = {k: summary[k] for k in keys if k in summary}
        if summary.get("bad_files"):
            table["files skipped (cannot be read)"] = ", ".join(p for p, _ in summary["bad_files"][:20])
        if summary.get("converted_files"):
            table["files converted to the set's channels"] = ", ".join(summary["converted_files"][:20])
        figures = self.task.report_figures(metric, model, data, self.run.read_config())
        if self.logger is not None:  # before write_page, which renders and releases the figures
            self.logger.log_figures(figures, step)
        write_page(self.run.path, history, f"{self.cfg.model.name} on {data.name}", table, figures,
                   curve_metric=primary)


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nonfinite_tensor(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer holding a NaN or an infinity, else None."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            return name
    return None


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN; null says "not measured" (e.g. no validation split).
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}


def load_run(run_dir: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a run directory (eval mode) and its config.json."""
    from ..weights import from_pretrained

    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunError(f"run directory not found: {run.path}")
    if not run.config.is_file() or not run.weights.is_file():
        raise RunError(f"{run.path} holds no finished run (expected {RunDir.CONFIG} and {run.weights.name}; "
                       "an interrupted run can be continued with `convnet train --out DIR --resume`)")
    run_cfg = run.read_config()
    return from_pretrained(run.path).eval(), run_cfg


def run_task(run_cfg: dict[str, Any]) -> Task:
    """The task a run was trained for, set up with its classes (runs from before tasks existed
    were classifiers)."""
    task_cfg = run_cfg.get("task") or {"name": "classify", "options": {}}
    return get_task(task_cfg["name"], task_cfg.get("options")).setup(run_cfg.get("data", {}).get("classes", []))


__all__ = ["RunError", "RunState", "Trainer", "classification_loss", "distillation_loss", "evaluate",
           "load_configured_data", "load_run", "resolve_device", "resolve_task", "run_task", "seed_everything"]
