"""Where else a run's figures go: experiment trackers people already look at.

metrics.jsonl and the HTML report are always written; ``logger=NAME`` adds one tracker, from
``LOGGERS``. A logger receives the run's config once, one row of scalars per epoch (losses,
metrics, learning rate, throughput), the report's figures at the end, and the run directory to
keep as an artifact; it never decides anything about the run. Trackers are optional extras:
their modules are imported only when asked for, and a missing package is named in the error.
"""
from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any


class RunLogger:
    """The hooks the Trainer calls (rank 0 only). Every method is optional."""

    def log_config(self, config: dict[str, Any]) -> None:
        """The resolved run config (config.json's content), once at the start."""

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        """One epoch's scalars (the metrics.jsonl row), at optimiser step ``step``."""

    def log_figures(self, figures: list[tuple[str, str, Any]], step: int) -> None:
        """The report's figures: (file stem, heading, matplotlib Figure) triples."""

    def log_artifacts(self, run_dir: Path) -> None:
        """The finished run directory."""

    def close(self) -> None:
        """Flush and release."""


# name -> "module:Class" (imported on first use, so that no tracker is a dependency of convnet).
LOGGERS: dict[str, str] = {
    "tensorboard": "convnet.train.loggers_tensorboard:TensorBoardLogger",
    "mlflow": "convnet.train.loggers_mlflow:MLflowLogger",
}


def build_logger(name: str, run_dir: Path, uri: str = "", run_name: str = "") -> RunLogger | None:
    """The logger called ``name`` writing for ``run_dir`` ("" -> None)."""
    if not name:
        return None
    if name not in LOGGERS:
        close = difflib.get_close_matches(name, LOGGERS, n=2, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown logger {name!r}{hint}; loggers: {', '.join(LOGGERS)} (or '' for none)")
    module, _, cls = LOGGERS[name].partition(":")
    try:
        logger_cls = getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise ValueError(f"logger={name} needs an optional package that is not installed ({e}); "
                         f"install it with: pip install 'convnet[{name}]'") from None
    return logger_cls(run_dir=run_dir, uri=uri, run_name=run_name)


__all__ = ["LOGGERS", "RunLogger", "build_logger"]
