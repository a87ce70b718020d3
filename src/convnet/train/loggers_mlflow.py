"""``logger=mlflow``: the run in MLflow, in a local store of the run directory or a tracking server.

With the optional extra ``mlflow`` (mlflow-skinny, the client alone, and SQLAlchemy + Alembic for
the local store):

- **Where.** ``logger_uri`` is a tracking URI (``http://host:5000``, ``sqlite:///path.db``,
  ``databricks``, ...). Empty, the run keeps its own store: ``RUN/mlflow/mlflow.db`` (SQLite,
  MLflow's default local backend since its file store went into maintenance) with artifacts in
  ``RUN/mlflow/artifacts``; ``mlflow ui --backend-store-uri sqlite:///RUN/mlflow/mlflow.db``
  shows it (the UI needs the full ``mlflow`` package).
- **What.** One MLflow run per training run, in the experiment ``convnet``, named after the run
  directory: the resolved config as parameters with dotted names (``train.optim.lr``), every
  numeric value of every metrics.jsonl row as a metric at its optimiser step, the report's
  figures (``report/<stem>.png``), and at the end the run directory itself as artifacts
  (``run/``: config.json, metrics.jsonl, summary.json, the weights, the report, checkpoints).
  A run that fails is marked FAILED.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from .loggers import RunLogger

EXPERIMENT = "convnet"
# MLflow's limits (mlflow.utils.validation): parameters per batch and characters per value.
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_PARAM_CHARS = 6000


def numeric_items(row: dict[str, Any]) -> list[tuple[str, float]]:
    """The (name, value) pairs of a metrics row that are numbers (bools and text left out)."""
    return [(k, float(v)) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"optim": {"lr": 0.1}}}`` -> ``{"train.optim.lr": "0.1"}``; lists and other
    leaves become their text (MLflow parameters are strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:_PARAM_CHARS]
    return out


class MLflowLogger(RunLogger):
    """One MLflow run for one training run.

    Args:
        run_dir: the run directory (its local store, and what is logged as artifacts).
        uri: the tracking URI ("" = ``sqlite:///RUN/mlflow/mlflow.db``).
        run_name: the MLflow run's name (the run directory's name).
    """

    SUBDIR = "mlflow"

    def __init__(self, run_dir: Path, uri: str = "", run_name: str = ""):
        self.run_dir = Path(run_dir)
        self.store = self.run_dir / self.SUBDIR
        artifacts = None
        if not uri:
            self.store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{self.store.resolve() / 'mlflow.db'}"
            artifacts = (self.store / "artifacts").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(EXPERIMENT, artifact_location=artifacts))
        self.run_id = self.client.create_run(experiment_id, run_name=run_name or self.run_dir.name,
                                             tags={"convnet.run_dir": str(self.run_dir.resolve())}).info.run_id
        self._finished = False

    def log_config(self, config: dict[str, Any]) -> None:
        params = [Param(k, v) for k, v in flatten(config).items()]
        for i in range(0, len(params), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + _PARAMS_PER_BATCH])

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numeric_items(row)]
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + _METRICS_PER_BATCH])

    def log_figures(self, figures: list[tuple[str, str, Any]], step: int) -> None:
        for stem, _heading, figure in figures:
            self.client.log_figure(self.run_id, figure, f"report/{stem}.png")

    def log_artifacts(self, run_dir: Path) -> None:
        """Every file of the run directory under ``run/``, except this store and the lock."""
        run_dir = Path(run_dir)
        store = self.store.resolve()
        for path in sorted(run_dir.rglob("*")):
            resolved = path.resolve()
            if not path.is_file() or path.name == ".lock" or resolved.is_relative_to(store):
                continue
            folder = path.parent.relative_to(run_dir)
            self.client.log_artifact(self.run_id, str(path), os.path.join("run", str(folder)) if str(folder) != "."
                                     else "run")
        self._finished = True

    def close(self) -> None:
        status = RunStatus.FINISHED if self._finished else RunStatus.FAILED
        self.client.set_terminated(self.run_id, status=RunStatus.to_string(status))


__all__ = ["EXPERIMENT", "MLflowLogger", "flatten", "numeric_items"]
