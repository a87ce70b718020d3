"""The Trainer: config, schedules, a short end-to-end run, exact resume, the default job."""
import json

import pytest
import torch

from convnet.train import ConfigError, RunError, TrainConfig, Trainer, load_run, parse_overrides
from convnet.train import checkpoint as ckpt
from convnet.train.config import ScheduleConfig
from convnet.train.optim import build_optimizer, lr_factor, param_groups
from convnet import create_model
from convnet.weights import load_tensors


def _cfg(tmp_path, *overrides, name="run"):
    cfg = TrainConfig()
    parse_overrides(cfg, [f"out={tmp_path / name}", "epochs=2", "report=false", *overrides])
    return cfg


def test_overrides_are_typed_and_checked():
    cfg = parse_overrides(TrainConfig(), ["lr=0.1", "optim.betas=0.8,0.9", "nesterov=yes",
                                          "model.overrides.drop_rate=0.2", "epochs=3"])
    assert cfg.optim.lr == 0.1 and cfg.optim.betas == (0.8, 0.9) and cfg.optim.nesterov is True
    assert cfg.model.overrides == {"drop_rate": 0.2} and cfg.epochs == 3
    with pytest.raises(ConfigError, match=r"unknown config key 'lrr'; did you mean optim\.lr"):
        parse_overrides(TrainConfig(), ["lrr=1"])
    with pytest.raises(ConfigError, match=r"'epochs' expects int, got 'ten'"):
        parse_overrides(TrainConfig(), ["epochs=ten"])
    with pytest.raises(ConfigError, match=r"'data\.batch_size' expects int, got '1\.5'"):
        parse_overrides(TrainConfig(), ["batch_size=1.5"])
    with pytest.raises(ConfigError, match="ambiguous"):
        parse_overrides(TrainConfig(), ["name=x"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_warmup_then_cosine():
    f = lr_factor(ScheduleConfig(name="cosine", warmup_epochs=2, warmup_start=0.1), 1.0, total_steps=100,
                  steps_per_epoch=10)
    assert f(0) == pytest.approx(0.1)
    assert f(10) == pytest.approx(0.55)  # linear: halfway through the warm-up
    assert f(20) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)  # halfway through the cosine
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    step = lr_factor(ScheduleConfig(name="step", warmup_epochs=0, step_epochs=3, gamma=0.1), 1.0, 100, 10)
    assert [step(s) for s in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])


def test_no_weight_decay_on_biases_and_norms():
    model = create_model("resnet18", layers=(1, 1, 1, 1))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    cfg = TrainConfig().optim
    cfg.name = "bogus"
    with pytest.raises(ValueError, match="unknown optimizer 'bogus'"):
        build_optimizer(model, cfg)


def test_short_run_writes_the_run_directory(tmp_path):
    cfg = _cfg(tmp_path, "model.name=lenet5_modern", "report=true")
    summary = Trainer(cfg, progress=False).fit()
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "summary.json",
                 "report/index.html", "report/curves.png", "report/confusion.png", "report/filters.png"):
        assert (run / name).is_file(), name
    # 1,257 training images in batches of 32: 40 optimiser steps per epoch, a checkpoint after each epoch.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000040", "step_00000080"]
    saved = json.loads((run / "summary.json").read_text())
    assert {"test_acc", "best_val_acc", "epochs", "wall_s", "params"} <= set(saved)
    assert saved["epochs"] == 2 and saved["params"] == 61_706 and saved["n_test"] == 360
    assert 0.5 < saved["test_acc"] <= 1.0  # two epochs already learn the digits
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2] and summary["test_acc"] == saved["test_acc"]
    with pytest.raises(RunError, match="already holds a run"):
        Trainer(_cfg(tmp_path, "model.name=lenet5_modern"), progress=False)


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, step):
    real = ckpt.save_checkpoint

    def save_then_crash(directory, st, *a, **k):
        path = real(directory, st, *a, **k)
        if st == step:
            raise _Crash()
        return path

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_crash)


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, monkeypatch):
    args = ("epochs=3", "keep_checkpoints=3")
    Trainer(_cfg(tmp_path, *args, name="straight"), progress=False).fit()
    with monkeypatch.context() as m:
        _crash_after(m, 80)  # the end of epoch 2
        with pytest.raises(_Crash):
            Trainer(_cfg(tmp_path, *args, name="crashed"), progress=False).fit()
    # The newest checkpoint is damaged: resume must fall back to epoch 1, with a warning.
    newest = tmp_path / "crashed" / "checkpoints" / "step_00000080" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="skipping damaged checkpoint .*step_00000080"):
        Trainer(_cfg(tmp_path, *args, name="crashed"), resume=True, progress=False).fit()
    a = load_tensors(tmp_path / "straight" / "model.safetensors")
    b = load_tensors(tmp_path / "crashed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "model.safetensors").read_bytes() == (tmp_path / "crashed" / "model.safetensors").read_bytes()
    lines = (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]


def test_resume_errors_are_named(tmp_path):
    with pytest.raises(RunError, match="holds no run"):
        Trainer(_cfg(tmp_path, name="empty"), resume=True, progress=False)
    Trainer(_cfg(tmp_path, "epochs=1", name="one"), progress=False).fit()
    with pytest.raises(RunError, match=r"differs from the run .* in \['epochs'\]"):
        Trainer(_cfg(tmp_path, "epochs=5", name="one"), resume=True, progress=False)


@pytest.mark.slow
def test_default_job_reaches_the_readme_accuracy(tmp_path):
    """`make run` / `convnet train`: LeNet-5 on the digits, >= 98.5% on the test split."""
    cfg = TrainConfig()
    cfg.out, cfg.report = str(tmp_path / "default"), False
    summary = Trainer(cfg, progress=False).fit()
    print(f"default job: test_acc={summary['test_acc']:.4f} wall_s={summary['wall_s']}")
    assert summary["params"] == 60_000
    assert summary["test_acc"] >= 0.985


@pytest.mark.slow
def test_neocognitron_trains_without_labels_through_the_trainer(tmp_path):
    """`convnet train --model neocognitron`: the Trainer runs its unsupervised learning instead
    of backprop; labels reach only the readouts, and both readouts are reported."""
    cfg = _cfg(tmp_path, "model.name=neocognitron")
    summary = Trainer(cfg, progress=False).fit()
    print(f"neocognitron: probe {summary['test_probe_acc']:.4f} prototype {summary['test_prototype_acc']:.4f}")
    assert summary["test_acc"] >= 0.90  # the bar; forward() is the linear probe
    assert summary["test_probe_acc"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert 0.5 < summary["test_prototype_acc"] <= 1.0
    model, _ = load_run(tmp_path / "run")
    assert model.stages[0].s.num_planes.item() > 0  # the learned planes were saved with the run
    with pytest.raises(RunError, match="resume does not apply"):
        Trainer(_cfg(tmp_path, "model.name=neocognitron"), resume=True, progress=False).fit()
