"""Tests for convnet.train.report."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

try:
    from convnet.train.report import write_report
except ImportError:  # running from a plain checkout without an installed package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
    from convnet.train.report import write_report

CLASSES = ["cat", "dog", "bird"]
FIGURES = ("curves", "confusion", "filters", "misclassified")


def _history(with_val: bool = True) -> list[dict]:
    history = []
    for epoch in range(1, 4):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5 + 0.1 * epoch,
               "lr": 0.1}
        if with_val:
            row.update(val_loss=1.2 / epoch, val_acc=0.45 + 0.1 * epoch)
        history.append(row)
    return history


def _confusion() -> np.ndarray:
    return np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]], dtype=np.int64)  # empty last row


def _metrics() -> dict:
    return {"test_acc": 0.91234, "epochs": 3, "note": "loss<0.5 & ok"}


def _check_pngs(paths: dict, names) -> None:
    for name in names:
        path = paths[name]
        assert path.name == f"{name}.png" and path.stat().st_size > 0
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0


def _report(tmp_path, weight, misclassified, history=None):
    return write_report(
        tmp_path / "run", history if history is not None else _history(), _confusion(),
        CLASSES, weight, misclassified, "lenet5 <on> digits", _metrics())


def test_2d_full_report(tmp_path: pathlib.Path) -> None:
    torch.manual_seed(0)
    wrong = [(torch.randn(1, 12, 12), 0, 1), (torch.randn(1, 12, 12), 1, 2),
             (torch.zeros(1, 12, 12), 2, 0)]  # constant image: no division by zero
    paths = _report(tmp_path, torch.randn(6, 1, 5, 5), wrong)

    report = tmp_path / "run" / "report"
    assert set(paths) == {*FIGURES, "index"}
    assert all(p.parent == report for p in paths.values())
    _check_pngs(paths, FIGURES)
    assert not [p for p in report.iterdir() if p.name.endswith(".tmp")]

    page = paths["index"].read_text(encoding="utf-8")
    for name in FIGURES:
        assert f'src="{name}.png"' in page
    assert "lenet5 &lt;on&gt; digits" in page and "<on>" not in page
    assert "loss&lt;0.5 &amp; ok" in page and "loss<0.5" not in page
    assert "test_acc" in page and "0.9123" in page and "epochs" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_rgb_and_missing_val(tmp_path: pathlib.Path) -> None:
    wrong = [(torch.rand(3, 8, 8), 0, 2)]
    paths = _report(tmp_path, torch.randn(4, 3, 3, 3), wrong, history=_history(with_val=False))
    _check_pngs(paths, FIGURES)


def test_1d(tmp_path: pathlib.Path) -> None:
    wrong = [(torch.randn(1, 32), 0, 1), (torch.randn(1, 32), 2, 1)]
    paths = _report(tmp_path, torch.randn(4, 1, 3), wrong)
    _check_pngs(paths, FIGURES)


def test_3d(tmp_path: pathlib.Path) -> None:
    wrong = [(torch.randn(1, 8, 8, 8), 1, 0), (torch.randn(1, 8, 8, 8), 2, 0)]
    paths = _report(tmp_path, torch.randn(4, 1, 3, 3, 3), wrong)
    _check_pngs(paths, FIGURES)


def test_skips_missing_inputs(tmp_path: pathlib.Path) -> None:
    paths = _report(tmp_path, None, [])
    report = tmp_path / "run" / "report"
    assert set(paths) == {"curves", "confusion", "index"}
    _check_pngs(paths, ("curves", "confusion"))
    assert not (report / "filters.png").exists()
    assert not (report / "misclassified.png").exists()
    page = paths["index"].read_text(encoding="utf-8")
    assert "curves.png" in page and "confusion.png" in page
    assert "filters.png" not in page and "misclassified.png" not in page


def test_overwrite_is_atomic_and_idempotent(tmp_path: pathlib.Path) -> None:
    first = _report(tmp_path, None, [])
    second = _report(tmp_path, None, [])
    assert first == second
    assert sorted(p.name for p in (tmp_path / "run" / "report").iterdir()) == [
        "confusion.png", "curves.png", "index.html"]


def test_bad_image_rank_raises(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        _report(tmp_path, None, [(torch.randn(1, 2, 2, 2, 2), 0, 1)])
