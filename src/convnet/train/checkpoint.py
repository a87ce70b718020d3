"""Training checkpoints: everything needed to continue a run, as safetensors + JSON.

A checkpoint is a directory ``checkpoints/step_NNNNNNNN`` (the optimiser step it was taken
after) holding ``model.safetensors``, ``training.safetensors`` (optimiser tensors, RNG states,
the epoch's sample order, EMA weights) and ``state.json`` (epoch, position in the epoch, step,
history, optimiser hyper-parameters, scheduler, grad scaler, numpy and python RNG). It is written under a
temporary name and renamed into place, so a directory with the final name is always complete.
No pickle is involved anywhere.
"""
from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..weights import atomic_write_json, load_tensors, read_json, save_tensors
from ..weights.io import fsync_dir

PREFIX = "step_"


def _optimizer_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, generator: torch.Generator, extra: dict[str, Any], keep: int = 2,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the checkpoint of optimiser step ``step`` atomically and keep only the newest
    ``keep``. ``tensors``: more state to restore (keys must not start with optim. or rng.)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:08d}"
    tmp = directory / f".tmp-{PREFIX}{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    opt_tensors, opt_meta = _optimizer_split(optimizer)
    tensors = {**(tensors or {}), **opt_tensors}
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = generator.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    save_tensors(model.state_dict(), tmp / "model.safetensors")
    save_tensors(tensors, tmp / "training.safetensors")
    atomic_write_json(tmp / "state.json", {
        "step": step,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "rng_python": [py_state[0], list(py_state[1]), py_state[2]],
        **extra,
    })
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    fsync_dir(directory)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_latest(directory: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest checkpoint that reads back whole: (path, model tensors, training tensors,
    state). A damaged one is skipped with a warning naming it, never silently."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state, model_sd, training = _read(path)
        except (OSError, ValueError) as e:
            warnings.warn(f"skipping damaged checkpoint {path}: {e}", stacklevel=2)
            continue
        return path, model_sd, training, state
    return None


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    state = read_json(path / "state.json", "checkpoint state")
    model_sd = load_tensors(path / "model.safetensors")
    training = load_tensors(path / "training.safetensors")
    return state, model_sd, training


# What state.json must hold, and of which type, for a checkpoint to be restorable.
_STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "step": int, "epoch": int, "batch": int, "optimizer": dict, "scheduler": dict, "rng_numpy": list,
    "rng_python": list, "train_s": (int, float), "skipped": int, "nonfinite_run": int, "sums": dict,
}


def check_checkpoint(model: torch.nn.Module, model_sd: dict[str, torch.Tensor], training: dict[str, torch.Tensor],
                     state: dict[str, Any], needs_ema: bool = False) -> None:
    """Raise a ValueError naming what is wrong with a checkpoint that parses: tensors of another
    model's names, shapes or dtypes, non-finite values, or a state file with a missing key or a
    wrong type."""
    if not isinstance(state, dict):
        raise ValueError(f"state.json holds {type(state).__name__}, not an object")
    for key, kind in _STATE_TYPES.items():
        if key not in state:
            raise ValueError(f"state.json has no {key!r}")
        value = state[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"state.json {key!r} is {type(value).__name__}, expected "
                             f"{getattr(kind, '__name__', kind)}")
    if not isinstance(state["optimizer"].get("param_groups"), list):
        raise ValueError("state.json 'optimizer' has no param_groups list")
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(model_sd)), sorted(set(model_sd) - set(expected))
    if missing or unexpected:
        raise ValueError(f"model tensors of another model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    for name, want in expected.items():
        got = model_sd[name]
        if got.shape != want.shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(got.shape)}, the model's is {tuple(want.shape)}")
        if got.dtype != want.dtype:
            raise ValueError(f"tensor {name!r} is {got.dtype}, the model's is {want.dtype}")
    for where, tensors in (("model", model_sd), ("training", training)):
        for name, t in tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"{where} tensor {name!r} holds non-finite values")
    for key in ("rng.torch", "rng.loader"):
        if key not in training or training[key].dtype != torch.uint8:
            raise ValueError(f"training tensors lack a uint8 {key!r}")
    if needs_ema and not any(k.startswith("ema.") for k in training):
        raise ValueError("training tensors lack the EMA weights (ema.*)")


def restore_latest(directory: Path, model: torch.nn.Module,
                   apply: Callable[[Path, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]], None],
                   needs_ema: bool = False) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """Restore from the newest checkpoint that reads back whole, fits ``model`` and restores
    cleanly (``apply(path, model tensors, training tensors, state)`` puts it in place); a damaged
    or wrong one is skipped with a warning naming what was wrong, and the one before is tried.
    Returns (path, training tensors, state) of the one used, or None."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state, model_sd, training = _read(path)
        except (OSError, ValueError) as e:
            warnings.warn(f"skipping damaged checkpoint {path}: {e}", stacklevel=2)
            continue
        try:
            check_checkpoint(model, model_sd, training, state, needs_ema)
            apply(path, model_sd, training, state)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:
            warnings.warn(f"skipping wrong checkpoint {path}: {e}", stacklevel=2)
            continue
        return path, training, state
    return None


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
            model_sd: dict[str, torch.Tensor], training: dict[str, torch.Tensor], state: dict[str, Any],
            rng: bool = True) -> None:
    """Put model, optimiser, scheduler and every RNG back as they were at the checkpoint.

    ``rng=False`` leaves the random number generators as they are: only the negative control
    of the exact-resume test uses it, to show that restoring them is what makes resume exact."""
    model.load_state_dict(model_sd)
    optimizer.load_state_dict(_optimizer_join(training, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    if not rng:
        return
    torch.set_rng_state(training["rng.torch"])
    generator.set_state(training["rng.loader"])
    cuda = [training[k] for k in sorted(k for k in training if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, *rest = state["rng_numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["rng_python"]
    random.setstate((version, tuple(internal), gauss))
