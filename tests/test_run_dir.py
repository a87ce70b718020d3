"""Run directories that lose nothing: a lock naming its holder, finished runs never overwritten
unless asked, failed starts leave nothing behind, resume skips wrong checkpoints and says where it
resumed from; and the command line around them."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from convnet.cli import main
from convnet.train import RunDir, RunError, TrainConfig, Trainer, parse_overrides
from convnet.weights import load_tensors, save_tensors


def _cfg(out, *overrides):
    return parse_overrides(TrainConfig(), [f"out={out}", "epochs=2", "report=false", "device=cpu",
                                           "model.name=lenet5_modern", *overrides])


def _env():
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}


# ----------------------------------------------------------------------------- the lock
def test_a_second_run_on_the_same_directory_stops_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from convnet.train import RunDir; r = RunDir(sys.argv[1]); r.lock(); "
        "print('locked', flush=True); time.sleep(60)"), str(out)], stdout=subprocess.PIPE, env=_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(RunError, match=rf"in use by another run \(pid {holder.pid} on {socket.gethostname()}"):
            Trainer(_cfg(out), progress=False)
        assert time.monotonic() - start < 30  # at once, not after waiting for the holder
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the lock with the holder: the directory is free again.
    Trainer(_cfg(out, "epochs=1"), progress=False).fit()
    assert (out / "summary.json").is_file()


def test_concurrent_cli_runs_do_not_mix(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "convnet", "train", "--no-progress", "--out", str(out), "--model", "lenet5_modern",
            "epochs=2", "report=false", "device=cpu"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 120
    while not (out / RunDir.LOCK).exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.01)
    second = subprocess.run(args[:-3] + ["epochs=1", "report=false", "device=cpu"], capture_output=True, text=True,
                            env=_env())
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    if second.returncode != 0:  # it came while the first held the lock
        assert "in use by another run" in second.stderr or "already holds a run" in second.stderr
    cfg = json.loads((out / "config.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert cfg["train"]["epochs"] == 2 and [r["epoch"] for r in rows] == [1, 2]


# ----------------------------------------------------------------------------- finished runs
def test_a_finished_run_without_checkpoints_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    Trainer(_cfg(out, "epochs=1"), progress=False).fit()
    shutil.rmtree(out / "checkpoints")  # as the neocognitron leaves a run: no checkpoints
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match=rf"{out} already holds a run \(a finished run\).*--overwrite"):
        Trainer(_cfg(out, "epochs=1"), progress=False)
    assert (out / "model.safetensors").read_bytes() == weights
    assert main(["train", "--out", str(out), "--no-progress", "--model", "lenet5_modern", "epochs=1",
                 "report=false", "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 1
    assert (out / "checkpoints").is_dir()


def test_a_failed_start_leaves_no_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", "--data", f"folder:{tmp_path / 'nothing'}"]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not out.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    assert main(["train", "--out", str(existing), "--no-progress", "--data", f"folder:{tmp_path / 'nothing'}"]) == 2
    assert sorted(p.name for p in existing.iterdir()) in (["notes.txt"], [".lock", "notes.txt"])
    assert (existing / "notes.txt").read_text() == "keep me"


def test_a_run_that_fails_after_training_began_keeps_its_checkpoints_and_says_why(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(_cfg(out, "epochs=2"), progress=False)
    real = trainer._evaluate
    calls = []

    def fail_second_validation(split, model=None):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt()
        return real(split, model)

    monkeypatch.setattr(trainer, "_evaluate", fail_second_validation)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000040"]
    failed = json.loads((out / "failed.json").read_text())
    assert failed["step"] == 80 and "KeyboardInterrupt" in failed["error"] and "--resume" in failed["resume"]
    Trainer(_cfg(out, "epochs=2"), resume=True, progress=False).fit()
    assert not (out / "failed.json").exists() and (out / "summary.json").is_file()


# ----------------------------------------------------------------------------- resume from wrong checkpoints
def _two_checkpoints(tmp_path):
    out = tmp_path / "run"
    Trainer(_cfg(out, "epochs=2", "keep_checkpoints=5"), progress=False).fit()
    (out / "model.safetensors").unlink()
    (out / "summary.json").unlink()
    newest = out / "checkpoints" / "step_00000080"
    return out, newest


def _spoil_model(newest: Path, fn) -> None:
    tensors = load_tensors(newest / "model.safetensors")
    save_tensors(fn(tensors), newest / "model.safetensors")


@pytest.mark.parametrize("fault", ["other_shapes", "integer_dtype", "nan", "state_missing_key", "state_wrong_type"])
def test_resume_skips_a_wrong_newest_checkpoint_and_falls_back(tmp_path, fault, capsys):
    out, newest = _two_checkpoints(tmp_path)
    if fault == "other_shapes":
        _spoil_model(newest, lambda t: {k: torch.zeros(3, 3) if k == "head.output.weight" else v for k, v in t.items()})
        reason = "shape"
    elif fault == "integer_dtype":
        _spoil_model(newest, lambda t: {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in t.items()})
        reason = "int32|dtype"
    elif fault == "nan":
        _spoil_model(newest, lambda t: {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                        for k, v in t.items()})
        reason = "non-finite|NaN"
    else:
        state = json.loads((newest / "state.json").read_text())
        if fault == "state_missing_key":
            del state["epoch"]
            reason = "epoch"
        else:
            state["batch"] = "seven"
            reason = "batch"
        (newest / "state.json").write_text(json.dumps(state))
    with pytest.warns(UserWarning, match=rf"skipping (wrong|damaged) checkpoint .*step_00000080.*({reason})"):
        summary = Trainer(_cfg(out, "epochs=2", "keep_checkpoints=5"), resume=True, progress=False).fit()
    assert "resumed from" in capsys.readouterr().out and "step_00000040" in summary["run_dir"] + str(
        json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["resumed_from"])
    weights = load_tensors(out / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_resume_says_where_it_resumed_from_without_progress_bars(tmp_path):
    out, _ = _two_checkpoints(tmp_path)
    shutil.rmtree(out / "checkpoints" / "step_00000080")
    done = subprocess.run([sys.executable, "-m", "convnet", "train", "--no-progress", "--out", str(out), "--resume",
                           "--model", "lenet5_modern", "epochs=2", "keep_checkpoints=5", "report=false", "device=cpu"],
                          capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout and "step_00000040" in done.stdout and "end of epoch 1" in done.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["resumed_from"] == "checkpoints/step_00000040" and "resumed_from" not in rows[0]


# ----------------------------------------------------------------------------- the command line
def test_convnet_alone_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: convnet" in out and "train" in out and "predict" in out


def test_key_value_overrides_after_options(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "epochs=1", "--out", str(out), "report=false", "--no-progress", "--model", "lenet5_modern",
                 "data.batch_size=64"]) == 0
    cfg = json.loads((out / "config.json").read_text())["train"]
    assert cfg["epochs"] == 1 and cfg["report"] is False and cfg["data"]["batch_size"] == 64
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "x"), "--bogus-flag"])


def test_predict_goes_on_past_a_bad_file_and_exits_2(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", "--model", "lenet5_modern", "epochs=1",
                 "report=false"]) == 0
    good = tmp_path / "good.png"
    Image.new("L", (8, 8), 128).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    folder = tmp_path / "a_dir"
    folder.mkdir()
    capsys.readouterr()
    assert main(["predict", "--run", str(out), str(bad), str(good), str(folder), "--out", str(tmp_path / "pred")]) == 2
    captured = capsys.readouterr()
    assert f"{good}: " in captured.out and "bad.png" in captured.err and "a_dir" in captured.err
    assert json.loads((tmp_path / "pred" / "good.png.json").read_text())["classes"]
