"""Property-based tests (Hypothesis) of what reads untrusted input: the safetensors and .pth
loaders, the image reader and the config parser. Whatever the bytes or the text, only the
documented errors come out: ValueError (and its subclasses DataFormatError, ConfigError) and
FileNotFoundError; anything else is a crash.

The examples are derandomized, so CI runs the same ones every time; set CONVNET_FUZZ_EXAMPLES
(e.g. 2000) and CONVNET_FUZZ_RANDOM=1 to search further. An input that crashed is kept in
tests/regressions/ and replayed by test_regressions.py.
"""
from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import tiny_model
from convnet.data import DataFormatError, load_image
from convnet.train.config import ConfigError, TrainConfig, config_keys, parse_overrides
from convnet.weights import load_pretrained, load_tensors, save_tensors

EXAMPLES = int(os.environ.get("CONVNET_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CONVNET_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DOCUMENTED = (ValueError, FileNotFoundError)
# A cap far below the default keeps a mutated header's declared size from costing memory here.
FUZZ_MAX_PIXELS = 1 << 20


def _only_documented(fn, *args, **kwargs):
    """Run ``fn``; a documented error is fine, anything else propagates (a crash)."""
    try:
        fn(*args, **kwargs)
    except DOCUMENTED:
        pass


def _in_tmp(name: str, data: bytes, fn) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        fn(path)


def mutate(data: bytes, draw) -> bytes:
    """A few byte flips, insertions, deletions and a truncation of ``data``."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:i + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


# --- weights ----------------------------------------------------------------------------------

_MODEL = tiny_model("lenet5", 2, in_channels=1, num_classes=10)


def _valid_safetensors() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        save_tensors({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64),
                      "c": torch.zeros(0)}, Path(d) / "x.safetensors")
        return (Path(d) / "x.safetensors").read_bytes()


VALID_SAFETENSORS = _valid_safetensors()


def _load_both(path: Path) -> None:
    _only_documented(load_tensors, path)
    _only_documented(load_tensors, path, expected=_MODEL)
    _only_documented(load_pretrained, _MODEL, path)  # a successful load only changes its weights


@FUZZ
@given(st.binary(max_size=256))
def test_safetensors_random_bytes(data):
    _in_tmp("w.safetensors", data, _load_both)


@FUZZ
@given(st.data())
def test_safetensors_mutated_file(data):
    _in_tmp("w.safetensors", mutate(VALID_SAFETENSORS, data.draw), _load_both)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                     lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children,
                                                                                        max_size=3),
                     max_leaves=8)
_ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "C64", "F4", "", "f32"]) | _JSON,
    "shape": st.lists(st.integers(-2, 2**40) | st.integers(2**61, 2**66), max_size=4) | _JSON,
    "data_offsets": st.lists(st.integers(-8, 2**40), min_size=2, max_size=2) | _JSON,
})


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b", "conv1.weight", "features.c1.weight", "__metadata__"]),
                       _ENTRY | _JSON, max_size=4),
       st.binary(max_size=64), st.integers(-16, 16))
def test_safetensors_generated_header(header, payload, length_delta):
    raw = json.dumps(header).encode()
    n = max(len(raw) + length_delta, 0)
    _in_tmp("w.safetensors", struct.pack("<Q", n) + raw + payload, _load_both)


def _valid_pth() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"a": torch.ones(3), "b": torch.zeros(2, dtype=torch.int64)}}, buf)
    return buf.getvalue()


VALID_PTH = _valid_pth()


@FUZZ
@given(st.data())
def test_pth_mutated_file(data):
    _in_tmp("w.pth", mutate(VALID_PTH, data.draw), _load_both)


@FUZZ
@given(st.sampled_from([b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b""]), st.binary(max_size=128))
def test_pth_random_bytes(magic, data):
    _in_tmp("w.pth", magic + data, _load_both)


# --- images -----------------------------------------------------------------------------------

def _encoded(fmt: str, mode: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (7, 5), 90).save(buf, fmt, **kw)
    return buf.getvalue()


VALID_IMAGES = {
    "png": _encoded("PNG", "RGB"), "png16": _encoded("PNG", "I;16"), "pngp": _encoded("PNG", "P"),
    "jpg": _encoded("JPEG", "RGB"), "jpgl": _encoded("JPEG", "L"), "gif": _encoded("GIF", "P"),
    "bmp": _encoded("BMP", "RGB"), "tif": _encoded("TIFF", "RGB"), "webp": _encoded("WEBP", "RGB"),
    "pgm": _encoded("PPM", "L"),
}
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBP", b"P5\n", b"P6\n"]


def _read(path: Path) -> None:
    for mode in (None, "L", "RGB"):
        try:
            image = load_image(path, mode, max_pixels=FUZZ_MAX_PIXELS, target_size=2)
        except DOCUMENTED:
            continue
        assert image.dtype == torch.float32 and image.ndim == 3 and torch.isfinite(image).all()


@FUZZ
@given(st.sampled_from(MAGIC), st.binary(max_size=200))
def test_images_random_bytes_behind_a_magic_number(magic, data):
    _in_tmp("x.img", magic + data, _read)


@FUZZ
@given(st.sampled_from(sorted(VALID_IMAGES)), st.data())
def test_images_mutated_files(kind, data):
    _in_tmp(f"x.{kind}", mutate(VALID_IMAGES[kind], data.draw), _read)


# --- config -----------------------------------------------------------------------------------

KEYS = config_keys()
_VALUE_TEXT = st.text(max_size=12) | st.sampled_from(["0", "-1", "1e309", "nan", "-inf", "1,2", "[1]", "{}", "true",
                                                      "0x10", " 3 ", "1_000", "１"])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=16), _VALUE_TEXT), max_size=4))
def test_config_overrides(items):
    cfg = TrainConfig()
    try:
        parse_overrides(cfg, [f"{k}={v}" for k, v in items])
    except ConfigError:
        return
    cfg.validate()  # what was accepted is in range


@FUZZ
@given(st.dictionaries(st.sampled_from([k.split(".")[0] for k in KEYS]) | st.text(max_size=8),
                       _JSON | st.dictionaries(st.sampled_from([k.rsplit(".", 1)[-1] for k in KEYS]), _JSON, max_size=3),
                       max_size=4))
def test_config_from_dict(d):
    try:
        cfg = TrainConfig.from_dict(d)
    except ConfigError:
        return
    cfg.validate()


def test_fuzz_error_types_are_the_documented_ones():
    """The harness itself: the errors it lets pass are the documented ones only."""
    assert issubclass(DataFormatError, ValueError) and issubclass(ConfigError, ValueError)
    with pytest.raises(TypeError):
        _only_documented(lambda: (_ for _ in ()).throw(TypeError("crash")))
