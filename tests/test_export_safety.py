"""Exports lose nothing: the file is verified before it replaces anything, a file convnet did not
write is replaced only with --force, and a refused input size is named in the model's words."""
from __future__ import annotations

import argparse

import pytest
import torch

from convnet import create_model
from convnet.deploy import export as export_module
from convnet.deploy.export import (ExportTargetError, ExportVerificationError, export_onnx, export_program,
                                   export_verified, is_convnet_export)


def _lenet():
    return create_model("lenet5").eval()


def _small(out: int = 3):
    """A model that exports in about a second (what is tested here is the file handling)."""
    return torch.nn.Sequential(torch.nn.Conv2d(1, out, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()


EXAMPLE = (1, 12, 12)


def _onnx():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_verification_leaves_the_previous_export_untouched(tmp_path, monkeypatch):
    target = tmp_path / "m.pt2"
    report = export_verified(_small(), target, "torch_export", EXAMPLE)
    assert report["max_rel_err"] < 1e-4 and is_convnet_export(target)
    before = target.read_bytes()

    def wrong(path, model, inputs=None, batch_sizes=(1, 3)):
        assert path != target and path.parent != tmp_path  # verified in the scratch folder
        return {"max_abs_err": 3.0, "max_rel_err": 0.5, "cases": []}

    monkeypatch.setattr(export_module, "verify_program", wrong)
    with pytest.raises(ExportVerificationError, match=r"m\.pt2: the exported file differs from the PyTorch model "
                                                      r"by 5\.00e-01 \(relative\), above the tolerance 0\.001; "
                                                      r"left unchanged"):
        export_verified(_small(4), target, "torch_export", EXAMPLE)
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["m.pt2"]  # no scratch folder left

    def crashes(path, model, inputs=None, batch_sizes=(1, 3)):
        raise RuntimeError("the program rejects batch 3")

    monkeypatch.setattr(export_module, "verify_program", crashes)
    with pytest.raises(ExportVerificationError, match="failed verification, left unchanged: RuntimeError: the program"):
        export_verified(_small(), target, "torch_export", EXAMPLE)
    assert target.read_bytes() == before and _listing(tmp_path) == ["m.pt2"]


def test_a_file_convnet_did_not_write_needs_force(tmp_path):
    target = tmp_path / "their.pt2"
    target.write_bytes(b"someone else's model")
    with pytest.raises(ExportTargetError, match=r"their\.pt2: exists and is not a convnet export .*--force"):
        export_program(_small(), target, EXAMPLE)
    assert target.read_bytes() == b"someone else's model"
    export_program(_small(), target, EXAMPLE, force=True)
    assert is_convnet_export(target)
    export_program(_small(), target, EXAMPLE)  # ours now: replaced without asking
    (tmp_path / "folder.pt2").mkdir()
    with pytest.raises(ExportTargetError, match="is a directory"):
        export_program(_small(), tmp_path / "folder.pt2", EXAMPLE, force=True)


@pytest.mark.slow  # the ONNX exporter takes ~10 s even for LeNet; the .pt2 tests cover the same logic
def test_onnx_exports_carry_the_mark(tmp_path):
    _onnx()
    import onnx

    target = tmp_path / "m.onnx"
    target.write_bytes(b"\x08\x07")  # a protobuf (ir_version 7) without our mark
    assert not is_convnet_export(target)
    with pytest.raises(ExportTargetError):
        export_onnx(_lenet(), target)
    export_onnx(_lenet(), target, force=True)
    assert is_convnet_export(target)
    props = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert '"model": "lenet5"' in props["convnet"]
    # The symbolic batch axis is still renamed in the marked file.
    assert [d.dim_param or d.dim_value for d in onnx.load(str(target)).graph.input[0].type.tensor_type.shape.dim] \
        == ["batch", 1, 32, 32]
    assert not is_convnet_export(tmp_path / "absent.onnx")


@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
def test_a_fixed_size_model_names_the_size_it_needs(tmp_path, fmt):
    if fmt == "onnx":
        _onnx()
    with pytest.raises(ValueError, match=r"^cannot export at example input \(1, 28, 28\): lenet5 expects spatial "
                                         r"size \(32, 32\), got \(28, 28\)") as info:
        export_verified(_lenet(), tmp_path / "m.x", fmt, (1, 28, 28))
    assert "issue" not in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_below_the_minimum_size_names_it(tmp_path):
    model = create_model("resnet18", layers=(1, 1, 1, 1), widths=(8, 8, 8, 8)).eval()
    with pytest.raises(ValueError, match=r"cannot export at example input \(3, 16, 16\): resnet18 expects spatial "
                                         r"size at least \(32, 32\)"):
        export_program(model, tmp_path / "m.pt2", (3, 16, 16))


def test_cli_export_refuses_to_overwrite_and_keeps_the_file_on_failure(tmp_path, monkeypatch, capsys):
    from convnet.deploy.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    out = tmp_path / "lenet.pt2"
    out.write_bytes(b"precious")
    args = parser.parse_args(["export", "--model", "lenet5", "--format", "torch_export", "--out", str(out)])
    with pytest.raises(ExportTargetError, match="--force"):
        args.fn(args)
    assert out.read_bytes() == b"precious"

    monkeypatch.setattr(export_module, "verify_program",
                        lambda *a, **k: {"max_abs_err": 1.0, "max_rel_err": 1.0, "cases": []})
    args = parser.parse_args(["export", "--model", "lenet5", "--format", "torch_export", "--out", str(out),
                              "--force"])
    assert args.fn(args) == 1
    assert out.read_bytes() == b"precious"
    assert "left unchanged" in capsys.readouterr().err
    monkeypatch.undo()
    args = parser.parse_args(["export", "--model", "lenet5", "--format", "torch_export", "--out", str(out),
                              "--force", "--tolerance", "1e-5"])
    assert args.fn(args) == 0 and is_convnet_export(out)
    assert "spatial size fixed" in capsys.readouterr().out
