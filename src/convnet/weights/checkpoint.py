"""Checkpoint files: convnet's own (safetensors + config.json), and torchvision/timm files.

convnet never unpickles arbitrary objects: .pth/.pt files go through
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from . import keymaps
from .io import atomic_write_bytes, atomic_write_json, read_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# Key converters for other libraries' layouts, tried in order when keys do not match as they are.
# A converter takes (state_dict, model) and returns a state dict in convnet's layout, or None if
# the layout is not its own.
Converter = Callable[[dict[str, torch.Tensor], nn.Module], "dict[str, torch.Tensor] | None"]
CONVERTERS: list[Converter] = [keymaps.convert]


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as a safetensors file, atomically. Shared or strided tensors are copied to
    contiguous memory first (safetensors refuses aliases).

    Keep ``metadata`` to one key: safetensors writes it from a hash map, so with two keys the
    same tensors could give files that differ byte-wise."""
    metadata = {"format": "pt"} if metadata is None else metadata
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, st_save(plain, metadata=metadata))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a .safetensors, .pth, .pt or .bin file into a flat dict of tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return st_load(path.read_bytes())
        except (SafetensorError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle errors of many kinds; the message says which
            raise ValueError(
                f"{path}: refused or unreadable: only plain tensor state dicts are loaded "
                f"(torch.load(weights_only=True)): {type(e).__name__}: {str(e).splitlines()[0]}"
            ) from None
        return _unwrap_state_dict(obj, path)
    raise ValueError(f"{path}: unknown checkpoint type {path.suffix!r}; expected .safetensors, .pth or .pt")


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    # Training scripts often save {"state_dict": ...} or {"model": ...}.
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    # DataParallel / DDP wrap every key in "module.".
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                       exclude: tuple[str, ...] = ()) -> str | None:
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(exclude)}
    state = {k: v for k, v in state.items() if not k.startswith(exclude)} if exclude else state
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return None

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")

    parts = [f"{source} does not fit {type(model).__name__}"]
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {show(shapes)}")
    return "; ".join(parts)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict",
               exclude: tuple[str, ...] = ()) -> nn.Module:
    """Load a state dict, converting another library's key layout if needed; raise a ValueError
    listing missing and unexpected keys and shape mismatches when nothing fits.

    ``exclude``: key prefixes (in convnet's layout) left out on both sides, e.g. ``("head.",)``
    to take a backbone and keep the model's own new classifier (transfer learning)."""
    problem = _describe_mismatch(model, state, source, exclude)
    if problem is not None:
        for convert in CONVERTERS:
            converted = convert(state, model, exclude) if exclude else convert(state, model)
            if converted is not None and _describe_mismatch(model, converted, source, exclude) is None:
                state, problem = converted, None
                break
    if problem is not None:
        raise ValueError(problem)
    if exclude:
        kept = {k: v for k, v in state.items() if not k.startswith(exclude)}
        missing, unexpected = model.load_state_dict(kept, strict=False)
        assert not unexpected and all(k.startswith(exclude) for k in missing), (missing, unexpected)
    else:
        model.load_state_dict(state, strict=True)
    return model


def load_pretrained(model: nn.Module, path: str | os.PathLike, exclude: tuple[str, ...] = ()) -> nn.Module:
    """Load weights from a convnet run or model directory, or a .safetensors/.pth/.pt file.

    ``exclude``: key prefixes not loaded (see :func:`load_state`).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: unreadable file, or keys/shapes that do not fit the model (all listed).
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    return load_state(model, load_tensors(path), str(path), exclude)


def save_pretrained(model: nn.Module, directory: str | os.PathLike, config: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (what create_model needs to rebuild it)."""
    directory = Path(directory)
    config = dict(config if config is not None else getattr(model, "model_config", {}))
    if "name" not in config:
        raise ValueError("save_pretrained needs the model config (a model made by create_model, or config=...)")
    save_tensors(model.state_dict(), directory / WEIGHTS_NAME)
    atomic_write_json(directory / CONFIG_NAME, {"model": config})
    return directory


def read_model_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The model section of a convnet directory's config.json, with a clear error otherwise."""
    directory = Path(directory)
    cfg = read_json(directory / CONFIG_NAME, "convnet config.json")
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict) or "name" not in model_cfg:
        raise ValueError(f"{directory / CONFIG_NAME}: no 'model' section with a 'name'")
    return model_cfg


def from_pretrained(directory: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Rebuild a model saved by save_pretrained (or a training run's directory) with its weights."""
    from ..models import create_model

    cfg = read_model_config(directory)
    overrides = dict(cfg.get("overrides") or {})
    # JSON has no tuples; specs use tuples for per-stage settings.
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    inflated = cfg.get("inflate")
    model = create_model(cfg["name"], spatial_dims=2 if inflated else cfg.get("spatial_dims", 2),
                         in_channels=cfg.get("in_channels"), num_classes=cfg.get("num_classes"), **overrides, **kwargs)
    if inflated:  # a 2-D model inflated to 3-D (models.inflate): rebuild it the same way
        from ..models import inflate

        model = inflate(model, **inflated)
    return load_pretrained(model, directory)
