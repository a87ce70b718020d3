"""Checks on weight files before their tensors are trusted.

A safetensors file is 8 bytes (the header's length N, little-endian), N bytes of JSON naming
every tensor's dtype, shape and ``data_offsets`` (begin and end, relative to the data region),
then the data region (https://github.com/huggingface/safetensors, "Format").
:func:`read_safetensors_header` parses and checks that header before a single tensor byte is
read, so a file whose declared tensors cannot fit a model is refused at the cost of reading its
header, however large the file. :func:`check_finite` refuses NaN and Inf after reading.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .io import open_regular_file

# safetensors' own bound on the header (MAX_HEADER_SIZE in its Rust crate): a larger length
# field is damage or an attempt to make the reader allocate it.
MAX_HEADER_BYTES = 100_000_000

# The dtype names of the safetensors format and the torch dtype each is read as. A name torch
# cannot represent (e.g. a newer 4-bit format) is refused as unknown.
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    name: dtype for name, dtype in {
        "BOOL": torch.bool,
        "U8": torch.uint8, "I8": torch.int8,
        "U16": getattr(torch, "uint16", None), "I16": torch.int16,
        "U32": getattr(torch, "uint32", None), "I32": torch.int32,
        "U64": getattr(torch, "uint64", None), "I64": torch.int64,
        "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
        "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
        "C64": torch.complex64,
    }.items() if dtype is not None
}


def dtype_kind(dtype: torch.dtype) -> str:
    """"float", "complex", "bool" or "int": tensors of one kind load into each other
    (``load_state_dict`` casts between float16 and float32), tensors of two kinds do not
    (integers copied into float weights are a wrong file, not a precision choice)."""
    if dtype.is_floating_point:
        return "float"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "int"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header declares it; ``begin``/``end`` are absolute file offsets."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: every tensor's declaration, the metadata, and where the data starts."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int

    def meta_state(self) -> dict[str, torch.Tensor]:
        """Tensors of the declared dtypes and shapes on the meta device (no data): what
        name, shape and dtype checks need, before anything is read."""
        return {k: torch.empty(t.shape, dtype=t.dtype, device="meta") for k, t in self.tensors.items()}


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


# Strides are int64 in torch. A zero-length axis makes any other axis fit the byte count, so the
# byte check alone does not bound the product of the other axes: this does.
_MAX_STRIDE = 1 << 62


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Parse and check the header of a safetensors file, reading nothing else.

    Checked: the length field (at most :data:`MAX_HEADER_BYTES`, within the file), valid UTF-8
    JSON of the documented shape (an object of ``{"dtype", "shape", "data_offsets"}`` entries
    plus an optional ``__metadata__`` of strings; no duplicate names), known dtypes,
    non-negative shapes, each tensor's byte size (its elements times its dtype's size) equal
    to its offsets' span, and offsets that tile the data region exactly: sorted by begin, each
    tensor starts where the previous one ends (no overlap, no gap) and the last ends at the end
    of the file.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: anything else, naming the file, the tensor and the numbers that disagree.
    """
    path = Path(path)
    fd = open_regular_file(path, "a safetensors file")
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a readable safetensors file: {size} bytes, shorter than the "
                             f"8-byte header length")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: not a readable safetensors file: declares a header of {n} bytes, "
                             f"above the format's limit of {MAX_HEADER_BYTES}")
        if 8 + n > size:
            raise ValueError(f"{path}: not a readable safetensors file: declares a header of {n} bytes, "
                             f"but only {size - 8} bytes follow the length field (truncated?)")
        raw = f.read(n)
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a readable safetensors file: its header is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a readable safetensors file: its header must be a JSON object, "
                         f"got {type(obj).__name__}")
    metadata = obj.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: not a readable safetensors file: __metadata__ must map strings to strings, "
                         f"got {metadata!r:.200}")

    data_start = 8 + n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        where = f"{path}: not a readable safetensors file: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where}: expected an object with exactly dtype, shape and data_offsets, "
                             f"got {entry!r:.200}")
        dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in SAFETENSORS_DTYPES:
            raise ValueError(f"{where}: unknown dtype {dtype_name!r:.50}; known: {', '.join(SAFETENSORS_DTYPES)}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise ValueError(f"{where}: shape must be a list of non-negative integers, got {shape!r:.200}")
        if math.prod(max(s, 1) for s in shape) > _MAX_STRIDE:
            raise ValueError(f"{where}: shape {shape!r:.200} is too large to index (strides above 2**62)")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise ValueError(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                             f"got {offsets!r:.200}")
        dtype = SAFETENSORS_DTYPES[dtype_name]
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ValueError(f"{where}: shape {tuple(shape)} of {dtype_name} needs {nbytes} bytes, "
                             f"its data_offsets {offsets} span {offsets[1] - offsets[0]}")
        tensors[name] = TensorInfo(dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])

    position = data_start
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != position:
            problem = "overlaps the one before" if t.begin < position else "leaves a gap before it"
            raise ValueError(f"{path}: not a readable safetensors file: tensor {name!r} starts at data byte "
                             f"{t.begin - data_start}, expected {position - data_start}: its offsets {problem} "
                             f"(the data region must be tiled exactly)")
        position = t.end
    if position != size:
        raise ValueError(f"{path}: not a readable safetensors file: the tensors declare {position - data_start} "
                         f"data bytes, but the file holds {size - data_start} after its header "
                         f"(truncated, or extra data)")
    return SafetensorsHeader(path, tensors, dict(metadata), data_start)


def check_finite(state: Mapping[str, torch.Tensor], source: str, chunk: int = 1 << 24) -> None:
    """Raise a ValueError naming the first tensor of ``state`` holding NaN or Inf.

    Tensors are scanned ``chunk`` elements at a time, so the check needs little memory beside
    the tensors themselves. Integer and bool tensors are always finite; meta tensors have no
    values to check."""
    for name, t in state.items():
        if t.is_meta or not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        flat = t.detach().reshape(-1)
        # isfinite has no kernel for some 8-bit floats; widening a chunk costs little.
        widen = t.is_floating_point() and t.element_size() == 1
        bad = sum(int((~torch.isfinite(part.float() if widen else part)).sum()) for part in flat.split(chunk))
        if bad:
            raise ValueError(f"{source}: tensor {name!r} holds {bad} non-finite value(s) (NaN or Inf) out of "
                             f"{t.numel()}; refusing weights that would compute NaN")
