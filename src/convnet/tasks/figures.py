"""Figures the tasks put in a run report: images in a grid, a confusion matrix.

Built with :class:`matplotlib.figure.Figure` (no pyplot state, no display); ``train/report.py``
renders them into the run's report page.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure


def minmax(a: np.ndarray) -> np.ndarray:
    """Scale ``a`` to [0, 1]; a constant array maps to zeros."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_image(x: torch.Tensor) -> np.ndarray:
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
    return minmax(a.transpose(1, 2, 0) if a.shape[0] == 3 else a.mean(axis=0))


def grid_figure(items: Sequence[torch.Tensor], titles: Sequence[str], max_cols: int = 8) -> Figure:
    """Lay out ``(C, *S)`` tensors in a grid of small titled panels."""
    ncols = min(max_cols, math.ceil(math.sqrt(len(items))))
    nrows = math.ceil(len(items) / ncols)
    fig = Figure(figsize=(1.6 * ncols, 1.7 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(items):]:
        ax.axis("off")
    for ax, item, title in zip(axes, items, titles):
        img = to_image(item)
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


def confusion_figure(confusion: np.ndarray, names: Sequence[str]) -> Figure:
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
    labels = label_names(range(k), names)
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i, j in np.ndindex(k, k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def label_names(labels: Sequence[int] | range, names: Sequence[str]) -> list[str]:
    """Class names for integer labels, falling back to the number itself."""
    return [names[i] if 0 <= i < len(names) else str(i) for i in map(int, labels)]



MAX_FILTERS = 64
MAX_EXAMPLES = 32


def classification_figures(confusion: np.ndarray | None, names: Sequence[str], first_layer_weight: torch.Tensor | None,
                           misclassified: Sequence[tuple[torch.Tensor, int, int]]) -> list[tuple[str, str, Figure]]:
    """A classifier's report figures, each skipped when its input is empty: the test confusion
    matrix, the first layer's filters, and up to 32 misclassified inputs (true→pred)."""
    figures: list[tuple[str, str, Figure]] = []
    if confusion is not None and np.asarray(confusion).size:
        figures.append(("confusion", "Confusion matrix (test)", confusion_figure(confusion, names)))
    if first_layer_weight is not None and first_layer_weight.numel():
        filters = list(first_layer_weight[:MAX_FILTERS])
        figures.append(("filters", "First-layer filters", grid_figure(filters, [str(i) for i in range(len(filters))])))
    if misclassified:
        shown = list(misclassified[:MAX_EXAMPLES])
        titles = [f"{t}→{p}" for t, p in zip(label_names([s[1] for s in shown], names),
                                             label_names([s[2] for s in shown], names))]
        figures.append(("misclassified", "Misclassified examples (true→pred)", grid_figure([s[0] for s in shown], titles)))
    return figures
