"""Human-readable report of a training run.

:func:`write_report` renders learning curves, the test confusion matrix, the
first-layer filters and a gallery of misclassified examples as PNG files and
ties them together in a small self-contained ``index.html``.  Everything goes
to ``<run_dir>/report/``; every file is written atomically so an interrupted
run never leaves a half-written file behind.

Figures are built with :class:`matplotlib.figure.Figure` and rendered through
the Agg canvas directly, so the module touches no global pyplot state and
needs no display.
"""

from __future__ import annotations

import html
import io
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..tasks.figures import classification_figures
from ..weights.io import atomic_write_bytes

__all__ = ["write_page", "write_report"]



def _save_figure(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    """Render ``fig`` to PNG, write it atomically to ``path`` and release it."""
    try:
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())
    finally:
        fig.clear()
    return path


def _curves_figure(history: Sequence[dict], metric_name: str = "acc") -> Figure:
    """Loss and the task's primary metric against epoch, train and val, in two panels."""
    fig = Figure(figsize=(10, 4))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", metric_name)):
        for split in ("train", "val"):
            points = [(h["epoch"], h[f"{split}_{metric}"]) for h in history
                      if h.get(f"{split}_{metric}") is not None]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title({"loss": "loss", "acc": "accuracy"}.get(metric, metric))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def _format(value: float | int | str) -> str:
    """Compact text for a metric value (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


_CSS = (
    "body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%;height:auto}"
)


def _index_html(title: str, metrics: dict, sections: Sequence[tuple[str, str]]) -> str:
    """Self-contained HTML page: title, metrics table and one section per image."""
    esc = html.escape
    rows = "\n".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_format(v))}</td></tr>"
                     for k, v in metrics.items())
    body = "\n".join(f'<h2>{esc(heading)}</h2>\n<img src="{esc(src)}" alt="{esc(heading)}">'
                     for heading, src in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n<table>\n{rows}\n</table>\n{body}\n</body>\n</html>\n")


def write_page(run_dir: str | os.PathLike, history: list[dict], title: str, metrics: dict[str, Any],
               figures: Sequence[tuple[str, str, Figure]], curve_metric: str = "acc") -> dict[str, pathlib.Path]:
    """Write a run's report into ``run_dir/report/``: learning curves (loss and ``curve_metric``)
    when there is a history, then the given figures (the task's), as PNGs tied together by a
    self-contained ``index.html`` that starts with the ``metrics`` table.

    Returns:
        Mapping from each figure's name (``"curves"`` first) and ``"index"`` to file paths.
    """
    out = pathlib.Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = list(figures)
    if history:
        figures.insert(0, ("curves", "Learning curves", _curves_figure(history, curve_metric)))
    written = {name: _save_figure(fig, out / f"{name}.png") for name, _, fig in figures}
    sections = [(heading, f"{name}.png") for name, heading, _ in figures]
    written["index"] = out / "index.html"
    atomic_write_bytes(written["index"], _index_html(title, metrics, sections).encode("utf-8"))
    return written


def write_report(
    run_dir: str | os.PathLike,
    history: list[dict],
    confusion: np.ndarray,
    class_names: list[str],
    first_layer_weight: torch.Tensor | None,
    misclassified: list[tuple[torch.Tensor, int, int]],
    title: str,
    metrics: dict[str, float | int | str],
) -> dict[str, pathlib.Path]:
    """A classifier's report: :func:`write_page` with the classification figures
    (:func:`tasks.figures.classification_figures`).

    A figure (and its section of the page) is skipped when its input is empty
    or ``None``.

    Args:
        run_dir: Run directory; the report goes to its ``report`` subfolder.
        history: One dict per epoch with ``epoch`` (1-based), ``train_loss``,
            ``train_acc``, ``val_loss``, ``val_acc`` (``val_*`` may be absent
            or ``None``) and ``lr``.
        confusion: ``(K, K)`` counts on the test split, rows = true class,
            columns = predicted class.
        class_names: Name of each class, indexed by label.
        first_layer_weight: Weight of the first conv layer, shape
            ``(out, in, *kernel)`` with 1-3 kernel dims, or ``None``.
        misclassified: ``(image (C, *S), true label, predicted label)``
            triples; at most the first 32 are shown.
        title: Page title, e.g. ``"lenet5 on digits"``.
        metrics: Values shown as a table at the top of the page.

    Returns:
        Mapping from ``"curves"``, ``"confusion"``, ``"filters"``,
        ``"misclassified"`` (those written) and ``"index"`` to file paths.
    """
    figures = classification_figures(confusion, class_names, first_layer_weight, misclassified)
    return write_page(run_dir, history, title, metrics, figures)
