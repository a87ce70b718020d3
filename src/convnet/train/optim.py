"""Optimisers and learning-rate schedules by name."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights of convolutions and linear layers decay; biases, normalisation
    parameters and other 1-D parameters do not (decaying a BN scale only fights the norm)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        # Adam's weight decay is L2 added to the gradient (Kingma & Ba); AdamW decouples it.
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose from {', '.join(OPTIMIZERS)}")


def lr_factor(cfg: ScheduleConfig, base_lr: float, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate at each optimiser step: a linear warm-up from
    ``warmup_start`` to 1 over ``warmup_epochs``, then the schedule over the remaining steps."""
    if cfg.name not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.name!r}; choose from {', '.join(SCHEDULES)}")
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    floor = cfg.min_lr / base_lr if base_lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return cfg.warmup_start + (1.0 - cfg.warmup_start) * step / warmup
        if cfg.name == "cosine":
            t = (step - warmup) / max(1, total_steps - warmup)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        if cfg.name == "step":
            return cfg.gamma ** (step // max(1, cfg.step_epochs * steps_per_epoch))
        return 1.0

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler (call .step() after every optimiser step)."""
    base = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, base, total_steps, steps_per_epoch))
