"""Training: typed config, recipes, optimisers and schedules, the Trainer, checkpoints,
cross-validation, reports."""
from .config import ConfigError, TrainConfig, parse_overrides
from .cv import cross_validate
from .optim import build_optimizer, build_scheduler
from .recipes import apply_recipe, list_recipes, load_recipe
from .trainer import RunError, Trainer, classification_loss, distillation_loss, evaluate, load_run

__all__ = ["ConfigError", "RunError", "TrainConfig", "Trainer", "apply_recipe", "build_optimizer", "build_scheduler",
           "classification_loss", "cross_validate", "distillation_loss", "evaluate", "list_recipes", "load_recipe",
           "load_run", "parse_overrides"]
