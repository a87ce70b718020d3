"""Checkpoint files: round trips, other layouts, malicious and damaged files, atomic writes."""
import os
import pickle

import pytest
import torch

from conftest import tiny_model
from convnet import from_pretrained, load_pretrained, save_pretrained
from convnet.weights import atomic_write_bytes, load_tensors


def _out(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = tiny_model("resnet18", 2, in_channels=3, num_classes=4)
    save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    again = from_pretrained(tmp_path / "m")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(_out(model, x), _out(again, x))
    assert again.model_config == model.model_config


def test_pth_state_dict_through_weights_only(tmp_path):
    model = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    path = tmp_path / "w.pth"
    # Training scripts often wrap the state dict and prefix DDP's "module.".
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    other = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    load_pretrained(other, path)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(_out(model, x), _out(other, x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/convnet_pwned_by_pickle",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = "/tmp/convnet_pwned_by_pickle"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    with pytest.raises(ValueError, match=r"evil\.pth: refused or unreadable"):
        load_pretrained(tiny_model("lenet5", 2, 1, 10), path)
    assert not os.path.exists(marker)


def test_corrupt_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(ValueError, match=r"bad\.safetensors: not a readable safetensors file"):
        load_tensors(bad)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_tensors(tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="unknown checkpoint type"):
        (tmp_path / "w.txt").write_text("x")
        load_tensors(tmp_path / "w.txt")


def test_mismatched_checkpoint_lists_keys(tmp_path):
    src = tiny_model("resnet18", 2, in_channels=3, num_classes=4)
    save_pretrained(src, tmp_path / "m")
    dst = tiny_model("lenet5", 2, in_channels=1, num_classes=10)
    with pytest.raises(ValueError, match=r"missing keys: .*features\.c1\.weight.*unexpected keys: .*stages\.0\.blocks\.0\.conv1"):
        load_pretrained(dst, tmp_path / "m")
    wrong_classes = tiny_model("resnet18", 2, in_channels=3, num_classes=7)
    with pytest.raises(ValueError, match=r"shape mismatches: head\.fc\.weight: checkpoint \(4, 16\) vs model \(7, 16\)"):
        load_pretrained(wrong_classes, tmp_path / "m")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left
