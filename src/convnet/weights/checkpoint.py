"""Checkpoint files: convnet's own (safetensors + config.json), and torchvision/timm files.

convnet never unpickles arbitrary objects: .pth/.pt files go through
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers. Every file
is checked before it is trusted (weights/checks.py): sizes before data, dtypes, finite values.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import nn

from . import keymaps
from .checks import SafetensorsHeader, check_finite, dtype_kind, read_safetensors_header
from .io import atomic_write_bytes, atomic_write_json, open_regular_file, read_json

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


def load_tensors(path: str | os.PathLike, expected: Mapping[str, torch.Tensor] | nn.Module | None = None
                 ) -> dict[str, torch.Tensor]:
    """Read a .safetensors, .pth, .pt or .bin file into a flat dict of tensors.

    A safetensors header is checked whole before any tensor is read (see
    :func:`~convnet.weights.checks.read_safetensors_header`), and the tensors are then read
    through a memory map. A .pth file goes through ``torch.load(weights_only=True, mmap=True)``
    (tensors stay in the file's pages until used; files in torch's old non-zip format are read
    without the map).

    Args:
        path: the file.
        expected: a state dict (or a module, for its ``state_dict()``) the file must match
            exactly: the same names, shapes and dtype kinds (float / int / bool). Checked against
            the safetensors header before any data is read, so a file that cannot fit costs
            only its header. No key conversion (see :func:`load_pretrained` for that).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a regular file, an unreadable or inconsistent file, or a mismatch with
            ``expected`` (all names listed).
    """
    path = Path(path)
    if path.suffix not in (".safetensors", *_TORCH_SUFFIXES):
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        raise ValueError(f"{path}: unknown checkpoint type {path.suffix!r}; expected .safetensors, .pth or .pt")
    if not os.path.lexists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if isinstance(expected, nn.Module):
        expected = expected.state_dict()
    if path.suffix == ".safetensors":
        header = read_safetensors_header(path)
        if expected is not None:
            _raise_mismatch(expected, header.meta_state(), str(path))
        return _read_safetensors(header)
    os.close(open_regular_file(path, "a checkpoint file"))  # a FIFO would hang torch.load
    state = _unwrap_state_dict(_torch_load(path), path)
    if expected is not None:
        _raise_mismatch(expected, state, str(path))
    return state


_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def _read_safetensors(header: SafetensorsHeader) -> dict[str, torch.Tensor]:
    """The tensors of a file whose header :func:`read_safetensors_header` accepted, through
    safetensors' memory map (never the whole file in one buffer)."""
    try:
        with safe_open(str(header.path), framework="pt", device="cpu") as f:
            return {name: f.get_tensor(name) for name in header.tensors}
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{header.path}: not a readable safetensors file ({e})") from None


def _torch_load(path: Path) -> Any:
    def load(mmap: bool) -> Any:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            return load(mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # only torch's old non-zip format cannot be mapped
                raise
            return load(mmap=False)
    except Exception as e:  # pickle errors of many kinds; the message says which
        raise ValueError(
            f"{path}: refused or unreadable: only plain tensor state dicts are loaded "
            f"(torch.load(weights_only=True)): {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        ) from None


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    # Training scripts often save {"state_dict": ...} or {"model": ...}.
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    # DataParallel / DDP wrap every key in "module.".
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _describe_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str,
                       exclude: tuple[str, ...] = (), target: str = "the model") -> str | None:
    """What keeps ``state`` from loading where ``expected`` is: missing and unexpected names,
    other shapes, and tensors of another dtype kind (integers where floats are expected: a
    wrong file, where float16 for float32 is only a precision). None if it fits."""
    expected = {k: v for k, v in expected.items() if not k.startswith(exclude)} if exclude else expected
    state = {k: v for k, v in state.items() if not k.startswith(exclude)} if exclude else state
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = [k for k in expected if k in state]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in common if state[k].shape != expected[k].shape]
    dtypes = [f"{k}: checkpoint {str(state[k].dtype).removeprefix('torch.')} vs model "
              f"{str(expected[k].dtype).removeprefix('torch.')}"
              for k in common if dtype_kind(state[k].dtype) != dtype_kind(expected[k].dtype)]
    if not (missing or unexpected or shapes or dtypes):
        return None

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")

    parts = [f"{source} does not fit {target}"]
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {show(shapes)}")
    if dtypes:
        parts.append(f"dtype mismatches: {show(dtypes)}")
    return "; ".join(parts)


def _raise_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str) -> None:
    problem = _describe_mismatch(expected, state, source, target="the expected tensors")
    if problem is not None:
        raise ValueError(problem)


def _fit(model: nn.Module, state: dict[str, torch.Tensor], source: str,
         exclude: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """``state`` in the model's layout (converted from another library's if needed), or a
    ValueError listing what does not fit. Works on meta tensors too (names, shapes, dtypes)."""
    expected = model.state_dict()
    problem = _describe_mismatch(expected, state, source, exclude, type(model).__name__)
    if problem is None:
        return state
    for convert in CONVERTERS:
        converted = convert(state, model, exclude) if exclude else convert(state, model)
        if converted is not None and _describe_mismatch(expected, converted, source, exclude) is None:
            return converted
    raise ValueError(problem)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict",
               exclude: tuple[str, ...] = ()) -> nn.Module:
    """Load a state dict, converting another library's key layout if needed; raise a ValueError
    listing missing and unexpected keys, shape and dtype-kind mismatches when nothing fits, or
    naming a tensor that holds NaN or Inf (a diverged run's weights compute NaN everywhere).

    ``exclude``: key prefixes (in convnet's layout) left out on both sides, e.g. ``("head.",)``
    to take a backbone and keep the model's own new classifier (transfer learning)."""
    state = _fit(model, state, source, exclude)
    if exclude:
        state = {k: v for k, v in state.items() if not k.startswith(exclude)}
    check_finite(state, source)
    if exclude:
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith(exclude) for k in missing), (missing, unexpected)
    else:
        model.load_state_dict(state, strict=True)
    return model


def load_pretrained(model: nn.Module, path: str | os.PathLike, exclude: tuple[str, ...] = (),
                    sha256: str | None = None) -> nn.Module:
    """Load weights from a convnet run or model directory, a .safetensors/.pth/.pt file, an
    http(s) URL of one, or the weights table (``"pretrained"``, ``"pretrained:TAG"``).

    Nothing is trusted blindly: a download is verified and cached by :mod:`.hub` before it is
    read; a safetensors header is checked (sizes, offsets, dtypes) and its names, shapes and
    dtypes fitted to the model before any tensor data is read; a .pth file is memory-mapped and
    fitted before its data is touched; NaN or Inf is refused.

    Args:
        model: the model to fill.
        path: a directory, a file, a URL, or ``pretrained[:TAG]`` (the table's weights of the
            model's own architecture, see :mod:`.pretrained`; write ``./pretrained`` for a local
            directory of that name).
        exclude: key prefixes not loaded (see :func:`load_state`).
        sha256: the file's expected SHA-256 (or a prefix of it, 8 hex digits or more); a file or
            download that does not match is refused before it is read.

    Raises:
        FileNotFoundError: nothing at ``path`` (or offline without the file in the cache).
        ValueError: unreadable file, a wrong hash, a failed download, keys/shapes/dtypes that do
            not fit the model (all listed), or a tensor with non-finite values (named).
    """
    from . import hub
    from .pretrained import load_named, parse_spec

    tag = parse_spec(path) if isinstance(path, str) else None
    if tag is not None:
        if sha256:
            raise ValueError(f"{path!r}: the weights table has the hash; sha256= is for files and URLs")
        return load_named(model, tag, exclude)
    if isinstance(path, str) and hub.is_url(path):
        path = hub.fetch(path, sha256=sha256)
    elif sha256:
        hub.verify_file(Path(path) / WEIGHTS_NAME if Path(path).is_dir() else path, sha256)
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if path.suffix == ".safetensors" and os.path.lexists(path):
        header = read_safetensors_header(path)
        _fit(model, header.meta_state(), str(path), exclude)  # before reading a byte of data
        state = _read_safetensors(header)
    else:
        state = load_tensors(path)
    return load_state(model, state, str(path), exclude)


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
