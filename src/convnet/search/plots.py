"""Figures of a search: the found cell (nodes and labelled edges), the stages of a MobileNet-space
network, the compound grid, and score against cost for every candidate.

Figures are :class:`matplotlib.figure.Figure` objects rendered by the caller (the report writes
them through the Agg canvas); nothing here touches pyplot's global state.
"""
from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from .spaces import SearchSpace

_KIND_STYLE = {  # history kind -> (marker, colour, label)
    "candidate": ("o", "tab:blue", "candidate"),
    "epoch": ("o", "tab:blue", "DARTS epoch (supernet accuracy)"),
    "final": ("D", "tab:purple", "DARTS final"),
    "grid": ("o", "tab:blue", "grid point (phi = 1)"),
    "base": ("s", "tab:green", "base (phi = 0)"),
}


def _draw_cell(ax: Any, edges: list, concat: list[int], title: str) -> None:
    """One cell: inputs c_{k-2}, c_{k-1} on the left, the intermediate nodes left to right in a
    zigzag, c_{k} on the right; every edge an arrow labelled with its operation, the label a
    third of the way from the edge's source (where arrows into one node are apart)."""
    steps = len(edges) // 2
    pos = {0: (0.0, 1.4), 1: (0.0, -1.4)}
    for i in range(steps):
        pos[i + 2] = (1.4 * (i + 1), 0.55 if i % 2 == 0 else -0.55)
    out = (1.4 * (steps + 1) + 0.2, 0.0)
    for k, (op, j) in enumerate(edges):
        target = k // 2 + 2
        (x0, y0), (x1, y1) = pos[j], pos[target]
        bend = 0.2 if k % 2 == 0 else -0.2
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": "0.35", "shrinkA": 14, "shrinkB": 14,
                                "connectionstyle": f"arc3,rad={bend}"})
        # A point a third along the arc: the chord's point plus the arc's sideways offset there.
        dx, dy = x1 - x0, y1 - y0
        t = 1 / 3
        side = 2 * t * (1 - t) * bend  # a quadratic Bezier: 2t(1 - t) of the control point's offset
        lx, ly = x0 + t * dx + side * dy, y0 + t * dy - side * dx
        ax.text(lx, ly, op, fontsize=7, ha="center", va="center", color="tab:red",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    for node in concat:
        ax.annotate("", xy=out, xytext=pos[node],
                    arrowprops={"arrowstyle": "-|>", "color": "0.75", "linestyle": "--", "shrinkA": 14, "shrinkB": 16})
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(steps)}}
    for node, (x, y) in pos.items():
        colour = "lightgreen" if node < 2 else "lightblue"
        ax.text(x, y, labels[node], ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "fc": colour, "ec": "0.3"})
    ax.text(*out, "c_{k}", ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "round,pad=0.4", "fc": "khaki", "ec": "0.3"})
    ax.set_xlim(-0.7, out[0] + 0.7)
    ax.set_ylim(-2.0, 2.0)
    ax.set_title(title)
    ax.axis("off")


def cell_figure(genotype: dict[str, Any]) -> Figure:
    """The normal and the reduction cell of a genotype (JSON form)."""
    fig = Figure(figsize=(14, 4.6))
    ax_normal, ax_reduce = fig.subplots(1, 2)
    _draw_cell(ax_normal, genotype["normal"], genotype["normal_concat"], "normal cell")
    _draw_cell(ax_reduce, genotype["reduce"], genotype["reduce_concat"], "reduction cell (inputs at stride 2)")
    fig.tight_layout()
    return fig


def stages_figure(arch: dict[str, Any]) -> Figure:
    """A MobileNet-space network as a row of stage boxes (kernel, expansion, depth, width, stride)."""
    stages = arch["stages"]
    fig = Figure(figsize=(2.0 + 1.7 * len(stages), 2.6))
    ax = fig.subplots()
    boxes = [f"stem 3x3\n{arch['stem_width']} /{arch['stem_stride']}", f"sep 3x3\n{arch['sep_width']}"]
    boxes += [f"k{s['kernel_size']} e{s['expand_ratio']}\nx{s['layers']} -> {s['out_channels']}"
              + (f" /{s['stride']}" if s["stride"] > 1 else "") for s in stages]
    boxes.append(f"1x1 {arch['head_width']}\npool, fc")
    for i, text in enumerate(boxes):
        searched = 2 <= i < 2 + len(stages)
        ax.text(i, 0, text, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.5", "fc": "lightblue" if searched else "0.92", "ec": "0.3"})
        if i:
            ax.annotate("", xy=(i - 0.45, 0), xytext=(i - 0.55, 0), arrowprops={"arrowstyle": "-|>"})
    ax.set_xlim(-0.6, len(boxes) - 0.4)
    ax.set_ylim(-1, 1)
    ax.set_title("stages (searched: blue): kernel k, expansion e, depth x -> width /stride")
    ax.axis("off")
    fig.tight_layout()
    return fig


def architecture_figure(space: SearchSpace, arch: dict[str, Any]) -> Figure:
    """The figure of ``arch`` in its space: the cells, or the stages."""
    return cell_figure(arch) if space.name == "darts" else stages_figure(arch)


def compound_figure(history: list[dict[str, Any]]) -> Figure:
    """Each scored grid point's search-val accuracy against its measured FLOPs ratio to the base,
    labelled (alpha, beta, gamma)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    grid = [r for r in history if r.get("kind") == "grid" and r.get("score") is not None]
    ax.scatter([r["flops_ratio"] for r in grid], [r["score"] for r in grid], color="tab:blue")
    for r in grid:
        a = r["arch"]
        ax.annotate(f"({a['alpha']:g}, {a['beta']:g}, {a['gamma']:g})", (r["flops_ratio"], r["score"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    base = [r for r in history if r.get("kind") == "base"]
    if base:
        ax.axhline(base[0]["score"], color="tab:green", linestyle="--", label="base (phi = 0)")
        ax.legend()
    ax.axvline(2.0, color="0.6", linestyle=":")
    ax.set_xlabel("measured FLOPs / base FLOPs (formula: 2)")
    ax.set_ylabel("search-val accuracy")
    ax.set_title("compound coefficients at phi = 1: alpha * beta^2 * gamma^2 ~ 2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_vs_cost_figure(history: list[dict[str, Any]], best: dict[str, Any] | None = None) -> Figure:
    """Score against MACs and against parameters for every candidate; rejected candidates as
    crosses on the lower edge (they were never trained), the result ringed."""
    fig = Figure(figsize=(11, 4.2))
    for ax, key, label in zip(fig.subplots(1, 2), ("macs", "params"), ("MACs per sample", "parameters")):
        scored = [r for r in history if r.get("score") is not None and "cost" in r]
        for kind, (marker, colour, text) in _KIND_STYLE.items():
            rows = [r for r in scored if r.get("kind") == kind]
            if rows:
                ax.scatter([r["cost"][key] for r in rows], [r["score"] for r in rows], marker=marker, color=colour,
                           alpha=0.75, label=text)
        epochs = [r for r in scored if r.get("kind") in ("epoch", "final")]
        if len(epochs) > 1:
            ax.plot([r["cost"][key] for r in epochs], [r["score"] for r in epochs], color="tab:blue", alpha=0.3)
        rejected = [r for r in history if r.get("kind") == "rejected" and "cost" in r]
        if rejected:
            low = min((r["score"] for r in scored), default=0.0)
            ax.scatter([r["cost"][key] for r in rejected], [low] * len(rejected), marker="x", color="tab:red",
                       alpha=0.6, label="rejected by the constraint")
        if best is not None and best.get("score") is not None:
            ax.scatter([best["cost"][key]], [best["score"]], s=180, facecolors="none", edgecolors="black",
                       linewidths=1.5, label="result")
        ax.set_xlabel(label)
        ax.set_ylabel("score (search-val accuracy)")
        ax.grid(alpha=0.3)
        if ax.collections:
            ax.legend(fontsize=7)
    fig.suptitle("every candidate: score against cost")
    fig.tight_layout()
    return fig


__all__ = ["architecture_figure", "cell_figure", "compound_figure", "score_vs_cost_figure", "stages_figure"]
