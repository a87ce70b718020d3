"""The data a search sees and the short training that scores a candidate.

A search never looks at the data set's validation or test split: like DARTS (§3.1.1, "half of
the CIFAR-10 training data as the validation set") it splits the *training* split in two,
a search-train half to fit weights and a search-val half to score architectures, so the test
figures of a retrained network stay untouched by the search.

Candidates of evolution and random search are scored by a lean in-process loop (no run
directory per candidate): ``epochs`` passes of SGD with Nesterov momentum and a cosine learning
rate over the search-train half, then the accuracy on the search-val half. Before scoring, the
batch norms' running statistics are recomputed as plain averages over the search-train half
(:func:`recalibrate_batch_norm`): after a few dozen steps the exponential averages still remember
the untrained network, and a candidate's score would measure that lag rather than the
architecture (three random DARTS cells on the 12x12 digits, 4 epochs at batch 64: 37-65%
search-val accuracy without, 97% with). Every random number
(initial weights, batch order) comes from the candidate's own seed, so a score depends only on
the architecture and that seed, never on what ran before: a resumed search scores the same.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSplits, load_data


@dataclass(frozen=True)
class SearchData:
    """The two halves of the training split, in memory, and what the network sees."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    name: str

    @property
    def input_size(self) -> tuple[int, ...]:
        """(C, *S) of one sample."""
        return tuple(self.train_x.shape[1:])

    @property
    def spatial_dims(self) -> int:
        return self.train_x.ndim - 2

    def resized(self, size: int) -> SearchData:
        """Both halves resampled to ``size`` per spatial axis (compound scaling's resolution);
        antialiased in 2-D where downsampling."""
        if all(s == size for s in self.input_size[1:]):
            return self

        def resize(x: torch.Tensor) -> torch.Tensor:
            mode = ("linear", "bilinear", "trilinear")[x.ndim - 3]
            return F.interpolate(x, size=(size,) * (x.ndim - 2), mode=mode, align_corners=False,
                                 antialias=x.ndim == 4)

        return SearchData(resize(self.train_x), self.train_y, resize(self.val_x), self.val_y, self.num_classes,
                          self.name)


def load_search_data(name: str, image_size: int = 0, train_portion: float = 0.5, split_seed: int = 0) -> SearchData:
    """The training split of data set ``name`` cut into search-train (``train_portion``) and
    search-val halves by a permutation drawn from ``split_seed``.

    Raises:
        ValueError: a data set that is not held in memory as tensors, or a portion outside (0, 1).
    """
    if not 0 < train_portion < 1:
        raise ValueError(f"train_portion must be in (0, 1), got {train_portion}")
    data: DataSplits = load_data(name, image_size=image_size or None)
    train = data.train
    if not (isinstance(train, tuple) and isinstance(train[0], torch.Tensor) and isinstance(train[1], torch.Tensor)):
        raise ValueError(f"data set {name!r} streams from disk; a search needs its training split in memory as "
                         "tensors (a small data set such as digits, or data.stream=memory in training)")
    x, y = train
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(split_seed))
    cut = int(round(train_portion * len(y)))
    if cut < 1 or cut >= len(y):
        raise ValueError(f"data set {name!r} has {len(y)} training samples: too few to split at {train_portion}")
    return SearchData(x[order[:cut]].contiguous(), y[order[:cut]].contiguous(), x[order[cut:]].contiguous(),
                      y[order[cut:]].contiguous(), data.num_classes, data.name)


@dataclass(frozen=True)
class EvalSettings:
    """How a candidate is trained before it is scored."""

    epochs: int = 4  # passes over the search-train half
    batch_size: int = 64
    lr: float = 0.05  # SGD, Nesterov momentum 0.9, cosine to 0
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # the DARTS recipe's gradient-norm clip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSettings:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown candidate-training setting(s) {unknown}; "
                             f"expected {sorted(cls.__dataclass_fields__)}")
        settings = cls(**d)
        if settings.epochs < 1 or settings.batch_size < 1 or settings.lr <= 0 or settings.weight_decay < 0:
            raise ValueError(f"candidate training needs epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0; "
                             f"got {settings}")
        return settings


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 256) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return correct / len(y), loss / len(y)


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> None:
    """Reset every batch norm's running mean and variance and recompute them as the average
    over the batches of ``x`` (momentum None: a cumulative average), weights unchanged."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def train_and_score(model: nn.Module, data: SearchData, settings: EvalSettings, seed: int,
                    device: torch.device) -> dict[str, float]:
    """Train ``model`` on the search-train half and score it on the search-val half.

    Returns:
        ``score`` (search-val accuracy), ``val_loss``, ``train_loss`` (last epoch's mean) and
        ``train_s`` (seconds).
    """
    t0 = time.perf_counter()
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # norms and biases
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": settings.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=settings.lr, momentum=0.9, nesterov=True)
    generator = torch.Generator().manual_seed(seed)
    n = len(data.train_y)
    batches = max(1, n // settings.batch_size)  # the last partial batch is dropped (BN needs > 1 sample)
    total, step, train_loss = settings.epochs * batches, 0, float("nan")
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=generator)
        running = 0.0
        for b in range(batches):
            idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            xb, yb = data.train_x[idx].to(device), data.train_y[idx].to(device)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * settings.lr * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            running += loss.item()
            step += 1
        train_loss = running / batches
    recalibrate_batch_norm(model, data.train_x, device)
    score, val_loss = accuracy(model, data.val_x, data.val_y, device)
    return {"score": score, "val_loss": val_loss, "train_loss": train_loss, "train_s": time.perf_counter() - t0}


def candidate_seed(seed: int, candidate: int) -> int:
    """The seed of candidate number ``candidate`` of a search seeded ``seed`` (31 bits)."""
    return (seed * 1_000_003 + candidate * 7919 + 1) % (2 ** 31 - 1)


def build_seeded(build: Any, seed: int) -> nn.Module:
    """``build()`` with the global generator at ``seed`` (initial weights), leaving the caller's
    generator state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


__all__ = ["EvalSettings", "SearchData", "accuracy", "build_seeded", "candidate_seed", "load_search_data",
           "train_and_score"]
