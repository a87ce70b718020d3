"""Training: typed config, recipes, optimisers and schedules, the Trainer (which calls the task
and names none), the run directory, checkpoints, cross-validation, reports."""
from .config import ConfigError, TrainConfig, parse_overrides
from .cv import cross_validate
from .optim import build_optimizer, build_scheduler
from .recipes import apply_recipe, list_recipes, load_recipe
from .run import RunDir, RunError
from .trainer import (Trainer, classification_loss, distillation_loss, evaluate, load_configured_data, load_run,
                      run_task)

__all__ = ["ConfigError", "RunDir", "RunError", "TrainConfig", "Trainer", "apply_recipe", "build_optimizer",
           "build_scheduler", "classification_loss", "cross_validate", "distillation_loss", "evaluate",
           "list_recipes", "load_configured_data", "load_recipe", "load_run", "parse_overrides", "run_task"]
