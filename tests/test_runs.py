"""Runs people can trust: exact resume after SIGKILL, non-finite losses, torchrun, cross-validation,
recipes, transfer learning, distillation, progressive learning, precision and accumulation."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from convnet import create_model
from convnet.data import load_digits
from convnet.data.datasets import DataSplits, select_classes
from convnet.train import (ConfigError, RunError, TrainConfig, Trainer, apply_recipe, cross_validate,
                           distillation_loss, classification_loss, list_recipes, load_recipe, parse_overrides)
from convnet.train.cv import cv_folds
from convnet.train.recipes import recipe_settings
from convnet.weights import load_tensors

ROOT = Path(__file__).resolve().parents[1]


def _cfg(out, *overrides):
    return parse_overrides(TrainConfig(), [f"out={out}", "epochs=2", "report=false", "device=cpu", *overrides])


def _same_file(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def _cli(*args):
    return [sys.executable, "-m", "convnet", *args]


def _subenv():
    env = dict(os.environ)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


# ----------------------------------------------------------------------------- exact resume
RESUME_ARGS = ("epochs=3", "checkpoint_every=7", "keep_checkpoints=100", "augment.hflip=0.5",
               "augment.erase=0.5", "augment.mixup=0.2", "optim.ema_decay=0.9")


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(tmp_path):
    """A real training process is killed with SIGKILL in the middle of an epoch; `convnet train
    <same args> --out DIR --resume` ends with the same model.safetensors as a run never killed.
    The negative control resumes the same crash without restoring the RNG states and must differ."""
    # 40 optimiser steps per epoch; a checkpoint at step 14 or 21 is mid-epoch 1.
    _sigkill_then_resume(tmp_path, RESUME_ARGS, steps_per_epoch=40, first_mid=14)


def test_sigkill_mid_epoch_with_loader_workers_then_resume_is_bitwise_equal(tmp_path):
    """The same with a folder streamed from disk by two DataLoader worker processes: the order,
    the position in the epoch and the workers' seeds are restored."""
    from test_streaming import make_folder

    root = make_folder(tmp_path / "folder", per_class=60)  # 126 training images: 16 steps of 8
    args = ("epochs=3", "checkpoint_every=5", "keep_checkpoints=100", "augment.hflip=0.5", "augment.erase=0.5",
            "augment.mixup=0.2", "optim.ema_decay=0.9", f"data.name=folder:{root}", "data.stream=disk",
            "data.workers=2", "data.image_size=32", "data.batch_size=8", "model.name=lenet5_modern")
    _sigkill_then_resume(tmp_path, args, steps_per_epoch=16, first_mid=5)


def _sigkill_then_resume(tmp_path, run_args, steps_per_epoch, first_mid):
    straight = tmp_path / "straight"
    Trainer(_cfg(straight, *run_args), progress=False).fit()

    crashed = tmp_path / "crashed"
    args = ["train", "--no-progress", "--out", str(crashed), "report=false", "device=cpu", *run_args]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_subenv(), cwd=tmp_path)
    ckdir = crashed / "checkpoints"
    deadline = time.time() + 120
    mid_epoch = None
    while time.time() < deadline and proc.poll() is None:
        names = sorted(p.name for p in ckdir.iterdir() if p.name.startswith("step_")) if ckdir.is_dir() else []
        mid = [n for n in names if int(n.split("_")[1]) % steps_per_epoch and int(n.split("_")[1]) >= first_mid]
        if mid:
            mid_epoch = mid[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    out = proc.communicate(timeout=60)[0].decode()
    assert mid_epoch is not None and proc.returncode == -signal.SIGKILL, out
    assert not (crashed / "model.safetensors").exists()
    control = tmp_path / "control"
    shutil.copytree(crashed, control)

    done = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True, env=_subenv(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _same_file(straight / "model.safetensors", crashed / "model.safetensors")
    rows = [json.loads(line) for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]

    cfg = _cfg(control, *run_args)
    Trainer(cfg, resume=True, progress=False, restore_rng=False).fit()
    assert not _same_file(straight / "model.safetensors", control / "model.safetensors")


def test_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    Trainer(_cfg(tmp_path / "a", "epochs=1", "checkpoint_every=10", "keep_checkpoints=10"), progress=False).fit()
    ck = tmp_path / "a" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == [f"step_{s:08d}" for s in (10, 20, 30, 40)]
    (ck / "step_00000040" / "training.safetensors").write_bytes(b"\x00" * 10)
    cfg = _cfg(tmp_path / "a", "epochs=1", "checkpoint_every=10", "keep_checkpoints=10")
    with pytest.warns(UserWarning, match="skipping damaged checkpoint .*step_00000040"):
        Trainer(cfg, resume=True, progress=False).fit()


# ----------------------------------------------------------------------------- non-finite losses
def _digits_with_nan(every: int) -> DataSplits:
    data = load_digits()
    x = data.train[0].clone()
    x[::every] = float("nan")
    return DataSplits(data.name, (x, data.train[1]), data.val, data.test, data.classes, data.preprocess, data.info)


def test_non_finite_losses_skip_the_step_and_are_counted(tmp_path):
    # One NaN image in 400 poisons a batch now and then; the run goes on without it.
    summary = Trainer(_cfg(tmp_path / "r", "epochs=1", "augment.shift=0"), progress=False,
                      data=_digits_with_nan(400)).fit()
    assert summary["skipped_steps"] >= 1
    weights = load_tensors(tmp_path / "r" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert summary["test_acc"] > 0.5


def test_non_finite_losses_in_a_row_stop_the_run_naming_step_and_batch(tmp_path):
    with pytest.raises(RunError, match=r"3 non-finite losses in a row .* epoch 1, batch 2 \(optimiser step 0\)"):
        Trainer(_cfg(tmp_path / "r", "max_nonfinite=3"), progress=False, data=_digits_with_nan(1)).fit()
    assert not (tmp_path / "r" / "model.safetensors").exists()


# ----------------------------------------------------------------------------- torchrun
def test_torchrun_two_processes_match_one_process(tmp_path):
    """gloo on CPU: 2 processes with half the global batch each reach the weights of 1 process.
    SGD: Adam divides by sqrt(v), which turns the rounding differences of an all-reduce on
    near-zero gradients into visible ones (measured: 6e-4 on LeNet's F6 after one epoch, 1e-9 with SGD)."""
    common = ["epochs=1", "report=false", "device=cpu", "augment.hflip=0.5", "data.batch_size=32", "optim.name=sgd",
              "lr=0.05"]
    Trainer(_cfg(tmp_path / "one", *common), progress=False).fit()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "convnet", "train", "--no-progress", "--out", str(tmp_path / "two"), *common]
    env = {**_subenv(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    a = load_tensors(tmp_path / "one" / "model.safetensors")
    b = load_tensors(tmp_path / "two" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


# ----------------------------------------------------------------------------- cross-validation
def test_cv_folds_are_sklearns_stratified_folds():
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import StratifiedKFold

    y = sk_digits().target
    ours = cv_folds(y, 5)
    theirs = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    for (a, b), (c, d) in zip(ours, theirs):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    assert sorted(np.concatenate([te for _, te in ours]).tolist()) == list(range(len(y)))


def test_cross_validate_writes_fold_runs_and_summary(tmp_path, capsys):
    from convnet.cli import main

    out = tmp_path / "cv"
    assert main(["train", "--cv", "3", "--no-progress", "--out", str(out), "epochs=1", "device=cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 3 and len(summary["fold_acc"]) == 3
    assert summary["cv_acc_mean"] == pytest.approx(np.mean(summary["fold_acc"]))
    assert summary["cv_acc_std"] == pytest.approx(np.std(summary["fold_acc"]))
    n_test = [json.loads((out / f"fold_{k}" / "summary.json").read_text())["n_test"] for k in range(3)]
    assert sum(n_test) == 1797 and summary["n"] == 1797
    assert "3-fold cross-validation: accuracy" in capsys.readouterr().out
    with pytest.raises(RunError, match="already holds a cross-validation"):
        cross_validate(_cfg(out, "epochs=1"), 3)


# ----------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_instantiates(name):
    from convnet.models import list_models

    cfg = load_recipe(name)
    assert cfg.recipe == name and cfg.model.name in list_models()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with torch.device("meta"):  # the model builds with the recipe's overrides
        create_model(cfg.model.name, **cfg.model.overrides)


def test_recipes_inherit_and_check_their_keys(tmp_path):
    base, child = load_recipe("digits"), load_recipe("digits_finetune")
    assert child.model == base.model and child.augment == base.augment
    assert child.optim.backbone_lr_scale == 0.1 and child.epochs != base.epochs
    parent, settings = recipe_settings("digits"), recipe_settings("digits_finetune")
    assert settings[:len(parent)] == parent and ("epochs", 100) in settings[len(parent):]  # parent first
    bad = tmp_path / "bad.toml"
    bad.write_text('inherit = "digits"\n[optim]\nlrr = 0.1\n')
    with pytest.raises(ConfigError, match=r"recipe .*bad\.toml.*unknown config key 'optim\.lrr'"):
        load_recipe(str(bad))
    loop = tmp_path / "loop.toml"
    loop.write_text(f'inherit = "{loop}"\n')
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_recipe(str(loop))
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; packaged recipes: .*digits"):
        load_recipe("nope")
    cfg = apply_recipe(TrainConfig(), "cifar_resnet")
    assert cfg.schedule.milestones == (91, 136) and cfg.optim.name == "sgd"


# ----------------------------------------------------------------------------- transfer learning
def test_select_classes_relabels_and_keeps_few_per_class():
    data = select_classes(load_digits(), "5-9", train_per_class=10)
    assert data.classes == ["5", "6", "7", "8", "9"]
    assert torch.bincount(data.train[1]).tolist() == [10] * 5
    assert set(data.test[1].tolist()) == set(range(5)) and len(data.test[1]) == 180
    with pytest.raises(ValueError, match="cannot read 'x'"):
        select_classes(load_digits(), "x")


def test_init_freeze_backbone_trains_only_the_head(tmp_path):
    src = tmp_path / "src"
    Trainer(_cfg(src, "epochs=1", "data.classes=0-4", "model.name=lenet5_modern"), progress=False).fit()
    src_w = load_tensors(src / "model.safetensors")
    frozen = tmp_path / "frozen"
    Trainer(_cfg(frozen, "epochs=1", "data.classes=5-9", "data.train_per_class=10", "model.name=lenet5_modern",
                 f"transfer.init={src}", "transfer.freeze=backbone"), progress=False).fit()
    w = load_tensors(frozen / "model.safetensors")
    backbone = [k for k in w if not k.startswith("head.")]
    assert backbone and all(torch.equal(w[k], src_w[k]) for k in backbone)  # incl. BN statistics
    assert any(not torch.equal(w[k], src_w[k]) for k in w if k.startswith("head.") and k in src_w)
    tuned = tmp_path / "tuned"
    Trainer(_cfg(tuned, "epochs=1", "data.classes=5-9", "data.train_per_class=10", "model.name=lenet5_modern",
                 f"transfer.init={src}"), progress=False).fit()
    w2 = load_tensors(tuned / "model.safetensors")
    assert any(not torch.equal(w2[k], src_w[k]) for k in backbone if w2[k].is_floating_point())


def test_init_from_a_torchvision_checkpoint_with_another_head(tmp_path):
    from oracle import torchvision_models

    tv = torchvision_models()
    if tv is None:
        pytest.skip("torchvision oracle unavailable")
    ref = tv.resnet18(weights=None, num_classes=1000)
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    from convnet.weights import load_pretrained

    model = create_model("resnet18", num_classes=7)
    head_before = model.head.fc.weight.clone()
    load_pretrained(model, tmp_path / "tv.pth", exclude=("head.",))
    assert torch.equal(model.state_dict()["stem.conv.conv.weight"], ref.conv1.weight)
    assert torch.equal(model.head.fc.weight, head_before)
    with pytest.raises(ValueError, match="tv.pth does not fit ResNet"):  # the whole model: the head differs
        load_pretrained(create_model("resnet18", num_classes=7), tmp_path / "tv.pth")


# ----------------------------------------------------------------------------- losses
def test_label_smoothing_targets_and_soft_targets():
    logits = torch.randn(4, 5)
    y = torch.tensor([0, 3, 1, 4])
    eps = 0.1
    target = torch.full((4, 5), eps / 5)
    target[torch.arange(4), y] += 1 - eps  # (1 - eps) on the label, eps spread evenly over all K
    expected = -(target * logits.log_softmax(1)).sum(1).mean()
    assert classification_loss(logits, y, eps) == pytest.approx(expected.item(), rel=1e-6)
    onehot = torch.nn.functional.one_hot(y, 5).float()
    assert classification_loss(logits, onehot, eps) == pytest.approx(expected.item(), rel=1e-6)


def test_distillation_loss_is_hintons_soft_target_kl():
    s, t, temp = torch.randn(6, 10), torch.randn(6, 10), 4.0
    p_t = (t / temp).softmax(1)
    expected = (p_t * (p_t.log() - (s / temp).log_softmax(1))).sum(1).mean() * temp ** 2
    assert distillation_loss(s, t, temp) == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(t, t, temp).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_run_uses_the_teacher(tmp_path):
    teacher = tmp_path / "teacher"
    t = Trainer(_cfg(teacher, "epochs=2"), progress=False).fit()
    student = Trainer(_cfg(tmp_path / "student", "epochs=2", f"distill.teacher={teacher}", "distill.alpha=1.0",
                           "distill.temperature=2", "model.name=lenet5_modern"), progress=False)
    summary = student.fit()
    # No label reaches the student (alpha = 1): what it knows of the digits comes from the teacher.
    assert summary["test_acc"] > 0.5 and t["test_acc"] > 0.5
    with pytest.raises(RunError, match="classes"):
        Trainer(_cfg(tmp_path / "s2", "epochs=1", "data.classes=0-4", f"distill.teacher={teacher}"),
                progress=False).fit()


# ----------------------------------------------------------------------------- progressive learning
def test_progressive_learning_ramps_size_dropout_magnitude_and_mixup(tmp_path):
    cfg = _cfg(tmp_path / "p", "epochs=8", "model.name=resnet20_cifar", "model.overrides.drop_rate=0.5",
               "progressive.stages=4", "progressive.min_image_size=16", "progressive.dropout=0.1,0.4",
               "progressive.rand_augment_m=5,20", "progressive.mixup=0,0.3")
    trainer = Trainer(cfg, progress=False)
    data = load_digits()
    trainer._build(data)
    drops = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    seen = []
    for epoch in range(8):
        size = trainer._progressive(epoch, data)
        seen.append((size, round(drops[0].p, 6), trainer.augment.rand_augment_m, round(trainer.augment.mixup, 6)))
    # Stage i of 4 (two epochs each) interpolates linearly: t = 0, 1/3, 2/3, 1.
    assert [s[0] for s in seen[::2]] == [(16, 16), (21, 21), (27, 27), (32, 32)]
    assert [s[1] for s in seen[::2]] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert [s[2] for s in seen[::2]] == pytest.approx([5, 10, 15, 20])
    assert [s[3] for s in seen[::2]] == pytest.approx([0, 0.1, 0.2, 0.3])
    assert seen[0] == seen[1] and seen[6] == seen[7]


# ----------------------------------------------------------------------------- precision, layout, accumulation
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_learn(tmp_path, precision):
    summary = Trainer(_cfg(tmp_path / precision, "epochs=1", f"precision={precision}", "channels_last=true",
                           "model.name=lenet5_modern"), progress=False).fit()
    assert summary["test_acc"] > 0.5


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    plain = ("epochs=1", "augment.shift=0", "augment.scale=0", "augment.shear=0", "optim.name=sgd", "lr=0.05",
             "momentum=0", "model.name=lenet5")
    Trainer(_cfg(tmp_path / "big", *plain, "data.batch_size=32"), progress=False).fit()
    Trainer(_cfg(tmp_path / "acc", *plain, "data.batch_size=16", "optim.accumulate=2"), progress=False).fit()
    a, b = load_tensors(tmp_path / "big" / "model.safetensors"), load_tensors(tmp_path / "acc" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_compile_failure_falls_back_to_eager(tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

        def forward(self, x):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda m, **k: Broken(m))
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler.*training eagerly"):
        summary = Trainer(_cfg(tmp_path / "c", "epochs=1", "compile=true"), progress=False).fit()
    assert summary["test_acc"] > 0.5


def test_cross_validate_on_a_subset_of_classes(tmp_path):
    """data.classes subsets once, before folding; each fold trains on its split as given."""
    from sklearn.datasets import load_digits as sk_digits

    result = cross_validate(_cfg(tmp_path / "cv", "epochs=1", "data.classes=5-9"), 2)
    assert result["n"] == int((sk_digits().target >= 5).sum()) and len(result["fold_acc"]) == 2
    assert json.loads((tmp_path / "cv" / "fold_0" / "config.json").read_text())["data"]["classes"] == list("56789")
