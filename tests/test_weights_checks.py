"""Weight files are checked before they are trusted: the safetensors header (sizes, offsets,
dtypes, names and shapes against the model) before any tensor data is read, finite values
after; written files follow the umask; special files are refused without being opened."""
from __future__ import annotations

import json
import os
import resource
import struct

import pytest
import torch

from conftest import tiny_model
from guards import run_with_timeout
from convnet import from_pretrained, load_pretrained, save_pretrained
from convnet.weights import (atomic_write_bytes, check_finite, current_umask, load_state, load_tensors,
                             read_safetensors_header, save_tensors)
from convnet.weights import checkpoint as checkpoint_module
from convnet.weights import io as io_module


def _write_safetensors(path, header: dict, data: bytes = b"", raw_header: bytes | None = None,
                       declared_length: int | None = None):
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(raw) if declared_length is None else declared_length
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


def _entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# --- finite values ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["dir", "pth"])
def test_weights_with_nan_or_inf_are_refused_naming_the_tensor(tmp_path, fmt):
    model = tiny_model("resnet18", 2, in_channels=3, num_classes=4)
    with torch.no_grad():
        model.head.fc.weight[1, 2] = float("nan")
    if fmt == "dir":
        save_pretrained(model, tmp_path / "m")
        path = tmp_path / "m"
    else:
        path = tmp_path / "w.pth"
        torch.save(model.state_dict(), path)
    fresh = tiny_model("resnet18", 2, in_channels=3, num_classes=4)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match=r"tensor 'head\.fc\.weight' holds 1 non-finite value"):
        load_pretrained(fresh, path)
    # Refused before anything was copied into the model.
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    if fmt == "dir":  # predict, eval, export and serve rebuild the model through from_pretrained
        with pytest.raises(ValueError, match=r"head\.fc\.weight"):
            from_pretrained(tmp_path / "m")


def test_inf_in_a_buffer_is_refused_but_an_excluded_head_is_not_checked(tmp_path):
    model = tiny_model("resnet18", 2, in_channels=3, num_classes=4)
    state = model.state_dict()
    state["head.fc.bias"] = torch.full_like(state["head.fc.bias"], float("inf"))
    save_tensors(state, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"'head\.fc\.bias' holds 4 non-finite"):
        load_pretrained(tiny_model("resnet18", 2, in_channels=3, num_classes=4), tmp_path / "w.safetensors")
    # Transfer learning drops the head: its values are not loaded, so they are not judged.
    load_pretrained(tiny_model("resnet18", 2, in_channels=3, num_classes=7), tmp_path / "w.safetensors",
                    exclude=("head.",))
    bn = next(k for k in state if k.endswith("running_var"))
    state = model.state_dict()
    state[bn] = state[bn].clone()
    state[bn][0] = float("-inf")
    with pytest.raises(ValueError, match=rf"'{bn}' holds 1 non-finite"):
        load_state(tiny_model("resnet18", 2, in_channels=3, num_classes=4), state)


def test_check_finite_low_precision_and_chunks():
    check_finite({"a": torch.zeros(10, dtype=torch.float8_e4m3fn), "i": torch.arange(3)}, "s")
    t = torch.zeros(100)
    t[97] = float("nan")
    with pytest.raises(ValueError, match="'t' holds 1 non-finite value"):
        check_finite({"t": t}, "s", chunk=8)  # found in the last chunk


# --- dtypes ---------------------------------------------------------------------------------

def test_integer_tensor_where_the_model_has_floats_is_refused(tmp_path):
    model = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    state = model.state_dict()
    key = next(iter(state))
    state[key] = torch.ones_like(state[key], dtype=torch.int32)
    save_tensors(state, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=rf"dtype mismatches: {key}: checkpoint int32 vs model float32"):
        load_pretrained(tiny_model("lenet5", 2, in_channels=1, num_classes=10), tmp_path / "w.safetensors")
    # float16 for float32 is a precision, not a wrong file: it loads.
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_tensors(half, tmp_path / "half.safetensors")
    load_pretrained(tiny_model("lenet5", 2, in_channels=1, num_classes=10), tmp_path / "half.safetensors")


# --- the header, before any data ------------------------------------------------------------

def test_oversized_file_with_a_valid_header_is_refused_without_reading_its_data(tmp_path, monkeypatch):
    """A 2 GiB (sparse) file whose header is valid but whose shapes cannot fit the model: the
    mismatch is reported from the header alone."""
    nbytes = 2 << 30
    path = _write_safetensors(tmp_path / "big.safetensors",
                              {"head.fc.weight": _entry("F32", [nbytes // 4], 0, nbytes)})
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + nbytes)
    assert path.stat().st_size > nbytes

    def no_read(*a, **k):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(checkpoint_module, "safe_open", no_read)
    monkeypatch.setattr(checkpoint_module, "_read_safetensors", no_read)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    model = tiny_model("resnet18", 2, in_channels=3, num_classes=4)
    with pytest.raises(ValueError, match=r"does not fit ResNet.*shape mismatches: head\.fc\.weight: "
                                         r"checkpoint \(536870912,\) vs model \(4, 16\)"):
        load_pretrained(model, path)
    with pytest.raises(ValueError, match=r"does not fit the expected tensors"):
        load_tensors(path, expected=model)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 256, f"peak memory grew by {grown_mib:.0f} MiB"


def test_safetensors_reads_through_a_memory_map(tmp_path, monkeypatch):
    model = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    save_pretrained(model, tmp_path / "m")
    original = type(tmp_path).read_bytes

    def no_whole_file(self):
        assert self.suffix != ".safetensors", "the whole weights file was read into memory"
        return original(self)

    monkeypatch.setattr(type(tmp_path), "read_bytes", no_whole_file)
    again = from_pretrained(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def _tiny_valid() -> tuple[dict, bytes]:
    return ({"a": _entry("F32", [2, 2], 0, 16), "b": _entry("I64", [1], 16, 24)},
            bytes(16) + struct.pack("<q", 7))


def test_a_valid_header_is_accepted_and_read(tmp_path):
    header, data = _tiny_valid()
    header["__metadata__"] = {"format": "pt"}
    path = _write_safetensors(tmp_path / "ok.safetensors", header, data)
    parsed = read_safetensors_header(path)
    assert set(parsed.tensors) == {"a", "b"} and parsed.metadata == {"format": "pt"}
    assert parsed.tensors["a"].shape == (2, 2) and parsed.tensors["b"].dtype == torch.int64
    tensors = load_tensors(path)
    assert tensors["b"].item() == 7 and tensors["a"].shape == (2, 2)


BAD_HEADERS = {
    # name: (header, data, expected message)
    "byte size differs from offsets": ({"a": _entry("F32", [2, 2], 0, 8)}, bytes(8),
                                       r"shape \(2, 2\) of F32 needs 16 bytes, its data_offsets \[0, 8\] span 8"),
    "gap": ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 12, 20)}, bytes(20),
            r"tensor 'b' starts at data byte 12, expected 8: its offsets leaves a gap"),
    "overlap": ({"a": _entry("F32", [4], 0, 16), "b": _entry("F32", [2], 8, 16)}, bytes(16),
                r"tensor 'b' starts at data byte 8, expected 0|tensor 'a' starts at data byte 0, expected 8|overlaps"),
    "extra data after the tensors": ({"a": _entry("F32", [2], 0, 8)}, bytes(12),
                                     r"declare 8 data bytes, but the file holds 12"),
    "truncated data": ({"a": _entry("F32", [4], 0, 16)}, bytes(10), r"declare 16 data bytes, but the file holds 10"),
    "unknown dtype": ({"a": _entry("F4X", [2], 0, 1)}, bytes(1), r"unknown dtype 'F4X'"),
    "negative shape": ({"a": _entry("F32", [-1], 0, 0)}, b"", r"shape must be a list of non-negative integers"),
    "boolean shape": ({"a": _entry("F32", [True], 0, 4)}, bytes(4), r"shape must be a list of non-negative"),
    "huge shape of no elements": ({"a": _entry("F32", [0, 2**62, 2**62], 0, 0)}, b"", r"too large to index"),
    "offsets reversed": ({"a": _entry("F32", [0], 8, 0)}, bytes(8), r"data_offsets must be \[begin, end\]"),
    "missing field": ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), r"exactly dtype, shape and data_offsets"),
    "extra field": ({"a": {**_entry("F32", [1], 0, 4), "x": 1}}, bytes(4), r"exactly dtype, shape and data_offsets"),
    "metadata not strings": ({"__metadata__": {"k": 1}}, b"", r"__metadata__ must map strings to strings"),
    "not an object": ([1, 2], b"", r"must be a JSON object, got list"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_inconsistent_headers_are_refused_with_the_numbers(tmp_path, case):
    header, data, message = BAD_HEADERS[case]
    path = _write_safetensors(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError, match=r"bad\.safetensors: not a readable safetensors file: .*" + f"(?:{message})"):
        load_tensors(path)


@pytest.mark.parametrize("raw,declared,message", [
    (b'{"a": 1', None, "not valid JSON"),
    (b'{"a": {}, "a": {}}', None, "duplicate key 'a'"),
    (b"\xff\xfe{}", None, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, None, "not valid JSON"),  # nesting deep enough to overflow a recursive parser
    (b"{}", 200_000_000, "above the format's limit of 100000000"),
    (b"{}", 50, r"declares a header of 50 bytes, but only 2 bytes follow"),
])
def test_malformed_header_bytes_are_refused(tmp_path, raw, declared, message):
    path = _write_safetensors(tmp_path / "bad.safetensors", {}, raw_header=raw, declared_length=declared)
    with pytest.raises(ValueError, match=message):
        read_safetensors_header(path)


def test_shorter_than_the_length_field(tmp_path):
    (tmp_path / "s.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match=r"2 bytes, shorter than the 8-byte header length"):
        load_tensors(tmp_path / "s.safetensors")


# --- .pth files -----------------------------------------------------------------------------

def test_pth_in_torchs_old_format_still_loads(tmp_path):
    model = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    torch.save(model.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    other = load_pretrained(tiny_model("lenet5", 2, in_channels=1, num_classes=10), tmp_path / "old.pth")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_pth_is_memory_mapped(tmp_path, monkeypatch):
    model = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    seen = []
    real = torch.load

    def spy(*a, **k):
        seen.append(k.get("mmap"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    load_pretrained(tiny_model("lenet5", 2, in_channels=1, num_classes=10), tmp_path / "w.pth")
    assert seen == [True]


# --- special files --------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_fifo_given_as_weights_is_refused_without_blocking(tmp_path, suffix):
    fifo = tmp_path / f"w{suffix}"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=rf"w\{suffix}: is a FIFO, expected .* \(a regular file\); not read"):
        run_with_timeout(lambda: load_pretrained(tiny_model("lenet5", 2, 1, 10), fifo))


def test_a_directory_without_weights_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained(tiny_model("lenet5", 2, 1, 10), tmp_path)


# --- file modes -----------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        save_pretrained(tiny_model("lenet5", 2, 1, 10), tmp_path / "m")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in [tmp_path / "a.bin", tmp_path / "m" / "model.safetensors", tmp_path / "m" / "config.json"]:
        assert path.stat().st_mode & 0o777 == expected, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"


def test_umask_without_proc(monkeypatch):
    """Where /proc does not show it, the umask is read by setting and restoring it."""
    real_open = open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    old = os.umask(0o027)
    try:
        monkeypatch.setattr("builtins.open", no_proc)
        assert io_module.current_umask() == 0o027
        monkeypatch.undo()
        assert current_umask() == 0o027  # and left unchanged
    finally:
        os.umask(old)
