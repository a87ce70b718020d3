"""``logger=tensorboard``: the run in TensorBoard's event files, ``RUN/tensorboard/``.

Written with ``torch.utils.tensorboard.SummaryWriter`` (the optional extra ``tensorboard``):

- the resolved config once, as text (``config``: the JSON of config.json);
- every numeric value of every metrics.jsonl row as a scalar of the same name, at the row's
  optimiser step: losses, the task's metrics, the learning rate, throughput (``img_per_s``),
  epoch time, skipped steps; the test metrics at the last step;
- the report's figures as images (``report/<stem>``: the confusion matrix, CAM samples, ...).

``tensorboard --logdir RUN/tensorboard`` (or ``--logdir runs`` for every run) shows them.
``logger_uri=DIR`` writes the event files there instead.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from .loggers import RunLogger


def numeric_items(row: dict[str, Any]) -> list[tuple[str, float]]:
    """The (name, value) pairs of a metrics row that are numbers (bools and text left out)."""
    return [(k, float(v)) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


class TensorBoardLogger(RunLogger):
    """TensorBoard event files for one run.

    Args:
        run_dir: the run directory; the files go to ``run_dir/tensorboard``.
        uri: another directory for the files ("" = the run's).
        run_name: unused (TensorBoard names a run by its directory).
    """

    SUBDIR = "tensorboard"

    def __init__(self, run_dir: Path, uri: str = "", run_name: str = ""):
        self.log_dir = Path(uri) if uri else Path(run_dir) / self.SUBDIR
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_config(self, config: dict[str, Any]) -> None:
        # Indented four spaces, the text plugin's Markdown shows it as a code block.
        text = "\n".join("    " + line for line in json.dumps(config, indent=2, default=str).splitlines())
        self.writer.add_text("config", text, global_step=0)

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        for name, value in numeric_items(row):
            if not math.isinf(value):  # TensorBoard keeps NaN (a missing value) but plots inf badly
                self.writer.add_scalar(name, value, global_step=step)

    def log_figures(self, figures: list[tuple[str, str, Any]], step: int) -> None:
        for stem, _heading, figure in figures:
            # close=False: the report renders the same figures afterwards and releases them.
            self.writer.add_figure(f"report/{stem}", figure, global_step=step, close=False)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


__all__ = ["TensorBoardLogger", "numeric_items"]
