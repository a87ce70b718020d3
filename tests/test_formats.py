"""Deployment formats (convnet.deploy.export): ONNX, torch.export and OpenVINO IR, each written
atomically and verified against eager PyTorch at two batch sizes and two spatial sizes other
than the export's; benchmarks/formats.py's table and targets.

OpenVINO is an optional extra (``pip install 'convnet[openvino]'``): its tests skip, naming it,
where it is absent; ``make test`` installs it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from convnet.deploy.export import (EXPORT_FORMATS, FORMAT_SUFFIX, ExportTargetError, ExportVerificationError,
                                   export_openvino, export_verified, is_convnet_export, verify_openvino)

TOL = 1e-4
NEEDS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "torch_export": (), "openvino": ("openvino", "onnx", "onnxscript")}


def _needs(fmt: str) -> None:
    missing = [p for p in NEEDS[fmt] if importlib.util.find_spec(p) is None]
    if missing:
        extra = "openvino" if fmt == "openvino" else "export"
        pytest.skip(f"format {fmt!r} needs {', '.join(missing)} (pip install 'convnet[{extra}]')")


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_each_format_is_verified_at_two_sizes(tmp_path, fmt: str) -> None:
    _needs(fmt)
    model = tiny_model("resnet18", in_channels=3).eval()
    example = torch.randn(2, 3, 32, 32)
    path = tmp_path / f"m{FORMAT_SUFFIX[fmt]}"
    report = export_verified(model, path, fmt, example)
    assert report["format"] == fmt and report["max_rel_err"] < TOL
    batches = {c["shape"][0] for c in report["cases"]}
    sizes = {tuple(c["shape"][2:]) for c in report["cases"]}
    assert batches == {1, 3} and sizes == {(40, 40), (48, 48)}  # two sizes, neither the traced 32
    assert is_convnet_export(path)


def test_openvino_ir_round_trip_and_its_files(tmp_path) -> None:
    _needs("openvino")
    import openvino as ov

    model = tiny_model("resnet18", in_channels=3).eval()
    path = export_openvino(model, tmp_path / "m.xml", torch.randn(2, 3, 32, 32))
    # The IR is two files, nothing else is left behind (atomic write through a scratch folder).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    # An independent run at a size the verifier does not use: dynamic batch and spatial axes.
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(5, 3, 57, 43)
    got = torch.from_numpy(compiled.create_infer_request().infer({0: x.numpy()})[0].copy())
    with torch.no_grad():
        ref = model(x)
    assert got.shape == ref.shape and float((got - ref).abs().max()) < TOL * float(ref.abs().max())
    # The verifier can fail: other weights give a large error.
    other = tiny_model("resnet18", in_channels=3).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    assert verify_openvino(path, other, torch.randn(1, 3, 32, 32))["max_rel_err"] > 1e-2


def test_openvino_export_refuses_a_foreign_file_and_keeps_it_on_failure(tmp_path) -> None:
    _needs("openvino")
    model = tiny_model("resnet18", in_channels=3).eval()
    foreign = tmp_path / "theirs.xml"
    foreign.write_text("<net name='theirs'/>")
    with pytest.raises(ExportTargetError, match="not a convnet export"):
        export_openvino(model, foreign, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\.xml"):
        export_openvino(model, tmp_path / "m.onnx", torch.randn(2, 3, 32, 32))
    # A file that fails verification does not replace the previous export.
    target = tmp_path / "m.xml"
    export_openvino(model, target, torch.randn(2, 3, 32, 32))
    before = target.read_bytes()
    with pytest.raises(ExportVerificationError, match="left unchanged"):
        export_verified(model, target, "openvino", torch.randn(2, 3, 32, 32), tolerance=1e-12)
    assert target.read_bytes() == before


def test_cli_export_openvino_from_a_run(tmp_path, capsys) -> None:
    _needs("openvino")
    from convnet.data import Preprocess
    from convnet.deploy.cli import add_commands
    from convnet.weights import atomic_write_json, read_json, save_pretrained

    save_pretrained(tiny_model("resnet18", in_channels=3).eval(), tmp_path)
    cfg = read_json(tmp_path / "config.json", "config")
    pre = Preprocess(channels=3, source_size=(32, 32), size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    atomic_write_json(tmp_path / "config.json", {**cfg, "data": {"preprocess": pre.to_dict(), "classes": list("abcde")}})
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["export", "--run", str(tmp_path), "--format", "openvino", "--json"])
    assert args.fn(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(tmp_path / "model.xml") and report["max_rel_err"] < TOL
    assert (tmp_path / "model.bin").is_file()


def _formats_module():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import formats
    finally:
        sys.path.pop(0)
    return formats


def test_formats_targets_are_ratios_of_the_table() -> None:
    """The benchmark's verdicts, on figures given here: the best int8 cell against bf16 and
    eager at ResNet-50 batch 16, the best cell against eager at batch 1 per model."""
    formats = _formats_module()

    def row(model, batch, column, img_per_s):
        return {"model": model, "batch": batch, "column": column, "img_per_s": img_per_s}

    rows = [row("resnet50", 16, "eager fp32", 10), row("resnet50", 16, "optimize bf16", 40),
            row("resnet50", 16, "int8 onnxruntime", 70), row("resnet50", 16, "int8 openvino", 55),
            row("resnet50", 1, "eager fp32", 8), row("resnet50", 1, "ort fp32", 20),
            row("resnet50", 1, "int8 openvino", 30)]
    goals = {t["target"]: t for t in formats.targets(rows)}
    vs_bf16 = goals["resnet50 b16: best int8 (int8 onnxruntime) vs optimize bf16"]
    assert vs_bf16["ratio"] == pytest.approx(70 / 40) and vs_bf16["met"]
    vs_eager = goals["resnet50 b16: best int8 (int8 onnxruntime) vs eager fp32"]
    assert vs_eager["ratio"] == pytest.approx(7.0) and vs_eager["met"]
    b1 = goals["resnet50 b1: best (int8 openvino) vs eager fp32"]
    assert b1["ratio"] == pytest.approx(30 / 8) and b1["met"]
    rows[2]["img_per_s"] = 45  # now openvino's 55 is the best int8: 1.375x bf16, missed
    goals = {t["target"]: t for t in formats.targets(rows)}
    assert not goals["resnet50 b16: best int8 (int8 openvino) vs optimize bf16"]["met"]


@pytest.mark.slow
def test_formats_benchmark_quick_run(tmp_path, capsys) -> None:
    """benchmarks/formats.py --quick: every available column at both batches, in one table."""
    formats = _formats_module()
    assert formats.main(["--quick", "--threads", "1", "--json", str(tmp_path / "f.json")]) == 0
    result = json.loads((tmp_path / "f.json").read_text())
    columns = {r["column"] for r in result["rows"]}
    assert {"eager fp32", "optimize bf16", "ort fp32"} <= columns
    assert {r["batch"] for r in result["rows"]} == {1, 2}
    assert all(r["p99_ms"] >= r["p50_ms"] > 0 and r["share_of_ceiling"] > 0 for r in result["rows"])
    assert "load average" in capsys.readouterr().out and len(result["load"]["start"]) == 3
