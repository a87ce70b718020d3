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
import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..weights.io import atomic_write_bytes

__all__ = ["write_report"]

MAX_FILTERS = 64
MAX_MISCLASSIFIED = 32


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


def _minmax(a: np.ndarray) -> np.ndarray:
    """Scale ``a`` to [0, 1]; a constant array maps to zeros."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _to_image(x: torch.Tensor) -> np.ndarray:
    """Turn a ``(C, *S)`` tensor into a plottable array.

    Args:
        x: Tensor of shape ``(C, L)``, ``(C, H, W)`` or ``(C, D, H, W)``.

    Returns:
        For 1-D input the raw ``(C, L)`` signals (to be drawn as lines).  For
        2-D/3-D input (3-D reduced to its middle depth slice) a min-max
        normalised ``(H, W, 3)`` RGB array if ``C == 3``, else the ``(H, W)``
        channel mean.
    """
    a = x.detach().to("cpu", torch.float32).numpy()
    if a.ndim == 2:
        return a
    if a.ndim == 4:
        a = a[:, a.shape[1] // 2]
    if a.ndim != 3:
        raise ValueError(f"expected a (C, *S) tensor with 1-3 spatial dims, got {tuple(x.shape)}")
    return _minmax(a.transpose(1, 2, 0) if a.shape[0] == 3 else a.mean(axis=0))


def _grid_figure(items: Sequence[torch.Tensor], titles: Sequence[str], max_cols: int = 8) -> Figure:
    """Lay out ``(C, *S)`` tensors in a grid of small titled panels."""
    ncols = min(max_cols, math.ceil(math.sqrt(len(items))))
    nrows = math.ceil(len(items) / ncols)
    fig = Figure(figsize=(1.6 * ncols, 1.7 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(items):]:
        ax.axis("off")
    for ax, item, title in zip(axes, items, titles):
        img = _to_image(item)
        if item.dim() == 2:  # 1-D signal(s): one line per channel
            for channel in img:
                ax.plot(channel, linewidth=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            ax.axis("off")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def _curves_figure(history: Sequence[dict]) -> Figure:
    """Loss and accuracy against epoch, train and val, in two panels."""
    fig = Figure(figsize=(10, 4))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "acc")):
        for split in ("train", "val"):
            points = [(h["epoch"], h[f"{split}_{metric}"]) for h in history
                      if h.get(f"{split}_{metric}") is not None]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("loss" if metric == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def _confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Confusion matrix coloured by row-normalised rate, annotated with counts."""
    cm = np.asarray(confusion)
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    side = min(max(4.0, 0.5 * k + 2.0), 24.0)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    names = _names(range(k), class_names)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i, j in np.ndindex(k, k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def _names(labels: Sequence[int] | range, class_names: Sequence[str]) -> list[str]:
    """Class names for integer labels, falling back to the number itself."""
    return [class_names[i] if 0 <= i < len(class_names) else str(i) for i in map(int, labels)]


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
    """Write the PNG figures and ``index.html`` of a run into ``run_dir/report/``.

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
    out = pathlib.Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, Figure]] = []  # (name, heading, figure)
    if history:
        figures.append(("curves", "Learning curves", _curves_figure(history)))
    if confusion is not None and np.asarray(confusion).size:
        figures.append(("confusion", "Confusion matrix (test)",
                        _confusion_figure(confusion, class_names)))
    if first_layer_weight is not None and first_layer_weight.numel():
        filters = list(first_layer_weight[:MAX_FILTERS])
        figures.append(("filters", "First-layer filters",
                        _grid_figure(filters, [str(i) for i in range(len(filters))])))
    if misclassified:
        shown = misclassified[:MAX_MISCLASSIFIED]
        titles = [f"{t}→{p}" for t, p in zip(_names([s[1] for s in shown], class_names),
                                             _names([s[2] for s in shown], class_names))]
        figures.append(("misclassified", "Misclassified examples (true→pred)",
                        _grid_figure([s[0] for s in shown], titles)))
    written = {name: _save_figure(fig, out / f"{name}.png") for name, _, fig in figures}
    sections = [(heading, f"{name}.png") for name, heading, _ in figures]
    written["index"] = out / "index.html"
    atomic_write_bytes(written["index"], _index_html(title, metrics, sections).encode("utf-8"))
    return written
