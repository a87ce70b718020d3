"""Training: typed config, optimisers and schedules, the Trainer, checkpoints, reports."""
from .config import ConfigError, TrainConfig, parse_overrides
from .optim import build_optimizer, build_scheduler
from .trainer import RunError, Trainer, evaluate, load_run

__all__ = ["ConfigError", "RunError", "TrainConfig", "Trainer", "build_optimizer", "build_scheduler",
           "evaluate", "load_run", "parse_overrides"]
