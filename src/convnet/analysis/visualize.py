"""Pictures of a network: first-layer filters, feature maps, CAM overlays and ERF heatmaps.

Every function writes one PNG with matplotlib's Agg canvas (no display, no global pyplot state)
and returns the path. Spatial data of any rank is shown the same way: 2-D as images, 3-D as the
middle slice along the first (depth/time) axis, 1-D as curves.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "first_conv",
    "layer_output",
    "plot_cam_overlay",
    "plot_erf",
    "plot_feature_maps",
    "plot_filters",
    "stack_path",
    "to_plane",
]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def to_plane(a: np.ndarray) -> np.ndarray:
    """A spatial array (*S) of 1, 2 or 3 axes as what is drawn: 1-D and 2-D unchanged, 3-D the
    middle slice along the first axis."""
    a = np.asarray(a)
    return a[a.shape[0] // 2] if a.ndim == 3 else a


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """The first module (in registration order) with a convolution-shaped weight (out, in, *k)."""
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.ndim >= 3 and not isinstance(m, nn.Linear):
            return name, m
    raise ValueError(f"{type(model).__name__} has no convolution")


def plot_filters(model: nn.Module, path: str | os.PathLike, layer: str | None = None,
                 max_filters: int = 64) -> Path:
    """A grid of a convolution's kernels (the first convolution unless ``layer`` is given).

    Three input channels are drawn as RGB (each filter scaled to [0, 1] on its own), other
    counts as the mean over input channels in a diverging colour map; 1-D kernels as curves,
    3-D kernels as their middle temporal slice.
    """
    name, conv = (layer, model.get_submodule(layer)) if layer else first_conv(model)
    w = conv.weight.detach().float().cpu().numpy()  # (out, in, *k)
    if w.ndim < 3:
        raise ValueError(f"layer {name!r} has weight shape {w.shape}, not a convolution's (out, in, *k)")
    n = min(len(w), max_filters)
    rows, cols = _grid(n)
    fig = _figure(1.2 * cols + 0.5, 1.2 * rows + 0.5)
    fig.suptitle(f"{name}: {len(w)} filters {tuple(w.shape[1:])}" + (f" (first {n})" if n < len(w) else ""))
    lim = float(np.abs(w).max()) or 1.0
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        k = w[i]
        if k.ndim == 2:  # 1-D kernels: (in, k)
            for c in range(min(k.shape[0], 8)):
                ax.plot(k[c], lw=1)
            ax.set_ylim(-lim, lim)
        elif k.shape[0] == 3:
            ax.imshow(_unit(np.moveaxis(np.stack([to_plane(c) for c in k]), 0, -1)), interpolation="nearest")
        else:
            ax.imshow(to_plane(k.mean(0)), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def layer_output(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of module ``layer`` for input ``x`` (one forward pass, eval mode, no grad)."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no layer {layer!r}") from None
    store: dict[str, torch.Tensor] = {}

    def hook(m: nn.Module, args: object, out: object) -> None:
        t = out[0] if isinstance(out, (tuple, list)) else out
        if "y" not in store and isinstance(t, torch.Tensor):
            store["y"] = t.detach().clone()

    h = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
        model.train(was_training)
    if "y" not in store:
        raise ValueError(f"layer {layer!r} did not run in the forward pass")
    return store["y"]


def plot_feature_maps(maps: torch.Tensor | np.ndarray, path: str | os.PathLike, title: str = "",
                      max_maps: int = 32) -> Path:
    """A grid of the channels of one sample's feature maps (C, *S)."""
    a = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps, dtype=np.float32)
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"expected feature maps (C, *S) with 1 to 3 spatial axes, got shape {a.shape}")
    n = min(a.shape[0], max_maps)
    rows, cols = _grid(n)
    fig = _figure(1.5 * cols + 0.5, 1.3 * rows + 0.6)
    fig.suptitle((title + "  " if title else "") + f"{a.shape[0]} maps of {tuple(a.shape[1:])}"
                 + (f" (first {n})" if n < a.shape[0] else "") + (", middle slice" if a.ndim == 4 else ""))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        m = to_plane(a[i])
        if m.ndim == 1:
            ax.plot(m, lw=1)
        else:
            ax.imshow(m, cmap="viridis", interpolation="nearest")
            ax.set_yticks([])
        ax.set_xticks([])
        ax.set_title(str(i), fontsize=7)
    return _save(fig, path)


def _image_for_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, *S) -> a plane to draw (H, W[, 3]) or a curve, scaled to [0, 1]."""
    if image.shape[0] == 3:
        planes = np.stack([to_plane(c) for c in image])
        return _unit(np.moveaxis(planes, 0, -1)) if planes.ndim == 3 else _unit(planes.mean(0)), None
    return _unit(to_plane(image.mean(0))), "gray"


def plot_cam_overlay(image: torch.Tensor | np.ndarray, cam: torch.Tensor | np.ndarray,
                     path: str | os.PathLike, title: str = "", alpha: float = 0.5) -> Path:
    """The input (C, *S) next to it with the class activation map (*S, in [0, 1]) laid over it.

    2-D: image | image + jet-coloured map; 3-D: the same for the middle slice; 1-D: the signal
    with the map as a filled curve on a second axis."""
    img = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    heat = cam.detach().float().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam, np.float32)
    if img.ndim == heat.ndim + 2 and img.shape[0] == 1:
        img = img[0]
    if heat.ndim == img.ndim and heat.shape[0] == 1:
        heat = heat[0]
    if img.shape[1:] != heat.shape:
        raise ValueError(f"image {img.shape} (C, *S) and CAM {heat.shape} (*S) disagree in size")
    shown, cmap = _image_for_display(img)
    heat = to_plane(heat)
    if heat.ndim == 1:
        fig = _figure(7, 3)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(shown, color="k", lw=1, label="input (scaled)")
        ax2 = ax.twinx()
        ax2.fill_between(np.arange(len(heat)), heat, color="tab:red", alpha=0.35, label="CAM")
        ax2.set_ylim(0, 1.05)
        ax.set_title(title)
        return _save(fig, path)
    fig = _figure(6.5, 3.4)
    fig.suptitle(title)
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(shown, cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    ax = fig.add_subplot(1, 2, 2)
    ax.imshow(shown, cmap=cmap, interpolation="nearest")
    im = ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def plot_erf(results: Mapping[str, object], path: str | os.PathLike, title: str = "") -> Path:
    """ERF heatmaps side by side (e.g. ``{"init": r0, "trained": r1}``; values are
    ``erf.ERFResult``), each normalised to its maximum, with sigma and the 95% share."""
    items = list(results.items())
    if not items:
        raise ValueError("plot_erf needs at least one result")
    fig = _figure(3.6 * len(items), 3.6)
    if title:
        fig.suptitle(title)
    for i, (label, r) in enumerate(items):
        ax = fig.add_subplot(1, len(items), i + 1)
        heat = to_plane(np.asarray(r.heatmap))
        peak = float(heat.max()) or 1.0
        sig = ", ".join(f"{s:.1f}" for s in r.sigma)
        ax.set_title(f"{label}\nsigma ({sig}) px, 95% in {r.share95:.0%} of RF", fontsize=9)
        if heat.ndim == 1:
            ax.plot(heat / peak)
            ax.set_xlabel("input position")
        else:
            ax.imshow(heat / peak, cmap="inferno", interpolation="nearest", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, path)


def stack_path(path: str | os.PathLike, suffix: str) -> Path:
    """``out.png`` -> ``out-<suffix>.png`` (for commands that write several pictures)."""
    p = Path(path)
    return p.with_name(f"{p.stem}-{suffix}{p.suffix or '.png'}")

