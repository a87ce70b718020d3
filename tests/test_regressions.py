"""Replay every input kept in tests/regressions/ (see its README): only the documented errors may
come out of the reader it is meant for."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_model
from convnet.data import load_image
from convnet.train.config import TrainConfig, parse_overrides
from convnet.weights import load_pretrained, load_tensors

CASES = sorted((Path(__file__).parent / "regressions").glob("*.case"))
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _read_weights(path: Path) -> None:
    for read in (lambda: load_tensors(path), lambda: load_pretrained(tiny_model("lenet5", 2, 1, 10), path)):
        try:
            read()
        except (ValueError, FileNotFoundError):
            pass


def _read_image(path: Path) -> None:
    try:
        load_image(path, max_pixels=1 << 20)
    except (ValueError, FileNotFoundError):
        pass


def _read_overrides(path: Path) -> None:
    try:
        parse_overrides(TrainConfig(), path.read_text(errors="replace").splitlines())
    except ValueError:
        pass


def test_there_are_cases():
    assert len(CASES) >= 2


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_replay(case, tmp_path):
    target = tmp_path / case.name.removesuffix(".case")
    target.write_bytes(case.read_bytes())
    ext = target.suffix.lower()
    if ext in (".safetensors", ".pth", ".pt"):
        _read_weights(target)
    elif ext in IMAGE_EXTENSIONS:
        _read_image(target)
    elif ext == ".overrides":
        _read_overrides(target)
    else:
        pytest.fail(f"{case.name}: no reader for {ext!r}")
