"""Running a search into a directory that survives a kill, like a training run.

    search/
      config.json       the settings (algorithm, space, data, budget, constraint, seed, options)
      history.jsonl     one line per candidate: kind, architecture, cost (MACs, params), score, ...
      checkpoints/      step_NNNNNNNN/ state.json (+ tensors.safetensors): the state to resume from
      genotype.json     the architecture found (arch.json for the MobileNet space, compound.json)
      architecture.png  the cell (nodes and labelled edges), the stages, or the compound grid
      summary.json      the result: score, cost, steps, wall time, and the command that retrains it
      report/           index.html with score against cost for every candidate and the architecture
      failed.json       why a search that had started stopped (removed when it finishes)
      .lock             held by the process that writes the search

The directory is a :class:`convnet.train.run.RunDir` (its lock, its atomic writes). Every step's
rows are appended to history.jsonl; a checkpoint (the algorithm's state, every random generator,
the step, the time spent and the history) is written atomically every ``checkpoint_every``
steps (every candidate for evolution, random and compound search). ``resume=True`` continues
from the newest checkpoint that reads back whole and rewrites history.jsonl from it, so a kill
at any moment loses at most the steps after the last checkpoint, which are redone identically:
with a step budget a resumed search ends with the same history as an uninterrupted one.
"""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..train.run import RunDir, RunError
from ..weights import atomic_write_json, load_tensors, read_json, save_tensors
from ..weights.io import atomic_write_bytes, fsync_dir
from .base import SearchContext, SearchResult, best_row, get_algorithm
from .evaluate import EvalSettings, load_search_data
from .limits import Budget, Constraint, jsonable
from .spaces import get_space

PREFIX = "step_"


@dataclass
class SearchSettings:
    """Everything that defines a search (config.json); a resumed search must match it."""

    algo: str = "evolution"  # darts, evolution, random, compound
    space: str | None = None  # darts, mobilenet; None: darts for the cell algorithms, none for compound
    data: str = "digits"
    image_size: int = 0  # 0: the data set's default
    train_portion: float = 0.5  # search-train share of the training split (the rest scores)
    split_seed: int = 0
    budget: str = "10m"
    constraint: str = ""
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0: torch's default (1 is fastest on a busy CPU)
    space_options: dict[str, Any] = field(default_factory=dict)
    algo_options: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)  # EvalSettings fields

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSettings:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown search setting(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


class SearchDir(RunDir):
    """A search directory: a run directory with a history and an architecture instead of weights."""

    HISTORY = "history.jsonl"
    ARCH_PNG = "architecture.png"
    ARCH_FILES = ("genotype.json", "arch.json", "compound.json")
    OWNED = (RunDir.CONFIG, RunDir.SUMMARY, RunDir.CHECKPOINTS, RunDir.REPORT, RunDir.FAILED, HISTORY, ARCH_PNG,
             *ARCH_FILES)

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def describe(self) -> str:
        if self.is_finished():
            return "a finished search"
        if self.failed.is_file():
            return "a failed search"
        return "an unfinished search" if self.has_checkpoints() else "a search that never took a step"

    def read_history(self) -> list[dict[str, Any]]:
        if not self.history.is_file():
            return []
        return [json.loads(line) for line in self.history.read_text().splitlines() if line.strip()]

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        from ..weights import atomic_write_text

        atomic_write_text(self.history, "".join(json.dumps(r) + "\n" for r in rows))

    def append_history(self, rows: list[dict[str, Any]]) -> None:
        with open(self.history, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def mark_failed(self, error: BaseException, step: int) -> None:
        atomic_write_json(self.failed, {"error": f"{type(error).__name__}: {error}", "step": step,
                                        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "resume": f"convnet search --out {self.path} --resume (same arguments)"})

    def remove_if_empty_start(self, created: bool) -> None:
        if self.history.is_file():
            self.history.unlink()
        super().remove_if_empty_start(created)


# -- checkpoints ------------------------------------------------------------------------------------

def save_state(directory: Path, step: int, state: dict[str, Any], tensors: dict[str, torch.Tensor],
               keep: int = 2) -> Path:
    """Write ``state`` (JSON) and ``tensors`` as checkpoint ``step`` under a temporary name, rename
    it into place, keep the newest ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    final, tmp = directory / f"{PREFIX}{step:08d}", directory / f".tmp-{PREFIX}{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if tensors:
        save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / "tensors.safetensors")
    atomic_write_json(tmp / "state.json", state)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    fsync_dir(directory)
    for old in sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(directory: Path) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]] | None:
    """The newest checkpoint that reads back whole (a damaged one is skipped with a warning)."""
    if not directory.is_dir():
        return None
    for path in sorted((p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), reverse=True):
        try:
            state = read_json(path / "state.json", "search checkpoint state")
            tensors = load_tensors(path / "tensors.safetensors") if (path / "tensors.safetensors").exists() else {}
            if not isinstance(state, dict) or not {"step", "elapsed_s", "history", "algo"} <= set(state):
                raise ValueError("state.json lacks step, elapsed_s, history or algo")
        except (OSError, ValueError) as e:
            warnings.warn(f"skipping damaged search checkpoint {path}: {e}", stacklevel=2)
            continue
        return path, state, tensors
    return None


# -- the search -----------------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here; use cpu or auto")
    return torch.device(name)


def retrain_command(result: SearchResult, arch_path: Path, data: str, image_size: int) -> tuple[str, dict[str, Any]]:
    """The ``convnet train`` command that retrains ``result``, and its model overrides."""
    overrides = dict(result.overrides)
    if result.arch_key is not None:
        overrides = {result.arch_key: str(arch_path), **overrides}
    parts = ["convnet", "train", "--model", result.model_name, "--data", data]
    size = result.image_size or image_size
    if size:
        parts.append(f"data.image_size={size}")
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"model.overrides.{key}={text}")
    return " ".join(shlex.quote(p) for p in parts), overrides


def run_search(settings: SearchSettings, out: str | Path, *, resume: bool = False, overwrite: bool = False,
               progress: bool = True, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a search into ``out`` and return its summary.

    Args:
        settings: what to search and how.
        out: the search directory.
        resume: continue the search in ``out`` from its newest checkpoint.
        overwrite: replace a search already in ``out``.
        progress: a progress bar.
        on_step: called with the number of steps done after each step (and its checkpoint);
            an exception it raises stops the search as a kill would (the tests' interruption).

    Raises:
        RunError: ``out`` is in use, holds another search, or holds nothing to resume.
        ValueError: a bad setting, or a constraint no architecture of the space can meet.
    """
    budget, constraint = Budget.parse(settings.budget), Constraint.parse(settings.constraint)
    algo_cls = get_algorithm(settings.algo)
    if not algo_cls.needs_space and settings.space:
        raise ValueError(f"search algorithm {settings.algo!r} scales a fixed base network and takes no space "
                         f"(got space {settings.space!r})")
    space_name = settings.space or ("darts" if algo_cls.needs_space else None)
    space = get_space(space_name, **settings.space_options) if space_name else None
    eval_settings = EvalSettings.from_dict(settings.eval)
    if settings.threads < 0:
        raise ValueError(f"threads must be >= 0, got {settings.threads}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    run = SearchDir(out)
    created = not run.path.exists()
    run.lock()
    step, history = 0, []
    done = {"step": 0}  # steps taken, kept current by the loop (what a failure reports)
    try:
        if resume:
            if not run.config.is_file():
                raise RunError(f"--resume: {run.path} holds no search (no {run.CONFIG}); start it without --resume")
            saved = run.read_config().get("settings", {})
            mine = settings.to_dict()
            diff = sorted(k for k in set(mine) | set(saved) if mine.get(k) != saved.get(k))
            if diff:
                raise RunError(f"--resume: the settings differ from the search in {run.path} in {diff}; "
                               "resume with the same arguments")
            if run.is_finished():
                return run.read_summary()
        elif run.holds_a_run() or run.history.is_file():
            if not overwrite:
                raise RunError(f"{run.path} already holds {run.describe()}; pass --resume to continue it, "
                               "--overwrite to replace it, or choose another --out")
            run.clear()
        data = load_search_data(settings.data, settings.image_size, settings.train_portion, settings.split_seed)
        ctx = SearchContext(space, data, constraint, settings.seed, eval_settings, _device(settings.device), budget)
        algo = algo_cls(ctx, **settings.algo_options)
        if space is not None and constraint:
            cheapest = ctx.cost(space.cheapest())
            why = constraint.violation(cheapest)
            if why is not None:
                raise ValueError(f"constraint {constraint} cannot be met in this {space.name} space: its cheapest "
                                 f"architecture has {why}; loosen the constraint or shrink the space")
        elapsed = 0.0
        if resume:
            found = load_state(run.checkpoints)
            if found is not None:
                path, state, tensors = found
                algo.load_state_dict(state["algo"], tensors)
                step, elapsed, history = int(state["step"]), float(state["elapsed_s"]), list(state["history"])
                done["step"] = step
                if progress:
                    print(f"resumed from {path} (step {step}, {elapsed:.0f} s spent)", flush=True)
            run.write_history(history)  # rows written after the checkpoint are redone
            run.clear_failed()
        else:
            run.write_config({"settings": settings.to_dict(), "algo_options": jsonable(algo.options()),
                              "space_options": jsonable(space.options()) if space else None,
                              "eval": eval_settings.to_dict(), "data": {"name": data.name, "input_size":
                                                                        list(data.input_size),
                                                                        "search_train": len(data.train_y),
                                                                        "search_val": len(data.val_y)}})
            run.write_history([])
        step, history, elapsed = _loop(run, algo, budget, step, elapsed, history, progress, on_step, done)
        return _finish(run, settings, algo, history, step, elapsed)
    except BaseException as e:
        if done["step"] > 0 or resume or run.has_checkpoints():
            run.mark_failed(e, done["step"])
        else:
            run.remove_if_empty_start(created)
        raise
    finally:
        run.unlock()


def _loop(run: SearchDir, algo: Any, budget: Budget, step: int, elapsed: float, history: list[dict[str, Any]],
          progress: bool, on_step: Callable[[int], None] | None,
          done: dict[str, int]) -> tuple[int, list[dict[str, Any]], float]:
    total = budget.steps if budget.steps is not None else int(budget.seconds)
    bar = tqdm(total=total, initial=min(step if budget.steps else int(elapsed), total), disable=not progress,
               unit="step" if budget.steps is not None else "s", desc=f"search {algo.name}", dynamic_ncols=True)
    state_at = step
    try:
        while not budget.exhausted(step, elapsed) and not algo.finished():
            t0 = time.perf_counter()
            rows = algo.step(budget.fraction(step, elapsed))
            step += 1
            done["step"] = step
            for row in rows:
                row["step"] = step
            history += rows
            run.append_history(rows)
            if step - state_at >= algo.checkpoint_every or budget.exhausted(step, elapsed) or algo.finished():
                state, tensors = algo.state_dict()
                spent = elapsed + time.perf_counter() - t0
                save_state(run.checkpoints, step, {"step": step, "elapsed_s": spent, "history": history,
                                                   "algo": jsonable(state)}, tensors)
                state_at = step
            dt = time.perf_counter() - t0
            elapsed += dt
            bar.update(1 if budget.steps is not None else min(dt, max(total - bar.n, 0)))
            best = best_row(history, ("candidate", "epoch", "final", "grid"))
            bar.set_postfix({"best": f"{best['score']:.4f}" if best else "-", **algo.progress()}, refresh=False)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
    if step > state_at:  # the last steps since a checkpoint (a time budget ended between two)
        state, tensors = algo.state_dict()
        save_state(run.checkpoints, step, {"step": step, "elapsed_s": elapsed, "history": history,
                                           "algo": jsonable(state)}, tensors)
    final_rows = algo.finish(history)
    for row in final_rows:
        row["step"] = step
    history += final_rows
    run.append_history(final_rows)
    return step, history, elapsed


def _finish(run: SearchDir, settings: SearchSettings, algo: Any, history: list[dict[str, Any]],
            step: int, elapsed: float) -> dict[str, Any]:
    from ..train.report import write_page
    from .plots import score_vs_cost_figure

    result = algo.result(history)
    arch_path = (run.path / result.arch_file).resolve()  # the retraining command works from anywhere
    atomic_write_json(arch_path, jsonable(result.arch))
    command, overrides = retrain_command(result, arch_path, settings.data, settings.image_size)
    scored = [r for r in history if r.get("score") is not None]
    summary = {
        "algo": settings.algo, "space": algo.ctx.space.name if algo.ctx.space is not None else None,
        "data": settings.data, "budget": settings.budget,
        "constraint": settings.constraint or None, "seed": settings.seed, "steps": step,
        "wall_s": round(elapsed, 3),
        "candidates_scored": len(scored), "candidates_rejected": sum(r.get("kind") == "rejected" for r in history),
        "score": result.score, "cost": result.cost, "architecture": result.description,
        "arch_file": result.arch_file, "model": {"name": result.model_name, "overrides": jsonable(overrides)},
        "image_size": result.image_size or settings.image_size or None, "retrain": command, **jsonable(result.extra),
    }
    if result.figure is not None:
        _save_png(result.figure(), run.path / run.ARCH_PNG)
    best = {"cost": result.cost, "score": result.score}
    figures = [("score_vs_cost", "Score against cost, every candidate", score_vs_cost_figure(history, best))]
    if result.figure is not None:
        figures.append(("architecture", "The architecture found", result.figure()))
    table = {k: summary[k] for k in ("algo", "space", "budget", "constraint", "steps", "wall_s", "candidates_scored",
                                     "candidates_rejected", "score", "architecture", "retrain")}
    table.update({"MACs": result.cost.get("macs"), "parameters": result.cost.get("params")})
    write_page(run.path, [], f"{settings.algo} search on {settings.data}", table, figures)
    run.write_summary(summary)
    run.clear_failed()
    return summary


def _save_png(fig: Any, path: Path) -> None:
    """Render ``fig`` to a PNG written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


__all__ = ["SearchDir", "SearchSettings", "load_state", "retrain_command", "run_search", "save_state"]
