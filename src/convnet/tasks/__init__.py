"""Tasks: what differs between classification, segmentation, detection, sequences and video
(the Task contract in ``base.py``). A task module registers its class with ``@register_task``;
every module of this package is imported the first time a task is looked up."""
from __future__ import annotations

import importlib
import pkgutil

from .base import TASKS, Task, get_task, list_tasks, register_task
from .metric import Metric, distributed

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Metric", "TASKS", "Task", "distributed", "get_task", "list_tasks", "register_task"]
