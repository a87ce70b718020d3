"""The `convnet` command: train, eval, predict, models, summary, and its error messages."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from convnet import create_model
from convnet.cli import main
from convnet.data import load_digits
from convnet.train import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--epochs", "2", "--out", str(out), "--no-progress", "--seed", "1", "report=false"]) == 0
    return out


def test_train_prints_accuracy_and_run_dir(run_dir, capsys):
    assert (run_dir / "summary.json").is_file()
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["seed"] == 1
    assert cfg["model"]["name"] == "lenet5" and cfg["data"]["classes"] == [str(i) for i in range(10)]


def test_eval_matches_summary(run_dir, capsys):
    assert main(["eval", "--run", str(run_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert out["test_acc"] == pytest.approx(summary["test_acc"]) and out["n_test"] == 360


def test_predict_prepares_files_as_training_did(run_dir, tmp_path, capsys):
    """A digit written to an 8x8 PNG (and the same digit as a large RGB JPEG-free PNG) gets the
    class and probabilities the model gives the training tensor of that digit."""
    from sklearn.datasets import load_digits as sk_digits

    images = sk_digits().images
    data = load_digits()
    model, _ = load_run(run_dir)
    i = 0  # sklearn sample 0 is a 0; it lies in one of the splits; recompute its input directly
    x = data.preprocess(torch.from_numpy(images[i:i + 1, None] / 16.0).float())
    with torch.no_grad():
        expected = model(x).softmax(1)[0]
    small = tmp_path / "digit.png"
    Image.fromarray(np.round(images[i] * 255 / 16).astype(np.uint8), mode="L").save(small)
    assert main(["predict", "--run", str(run_dir), "--top-k", "2", str(small)]) == 0
    line = capsys.readouterr().out.strip()
    top = expected.topk(2)
    assert line.startswith(f"{small}: {top.indices[0].item()} ({top.values[0].item():.3f})"), line


def test_predict_errors_name_the_file(run_dir, tmp_path, capsys):
    assert main(["predict", "--run", str(run_dir), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    assert main(["predict", "--run", str(run_dir), str(fake)]) == 2
    assert "fake.png" in capsys.readouterr().err


def test_run_directory_without_a_run(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path)]) == 2
    assert "holds no finished run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume", "--no-progress"]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_bad_config_and_model_names(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x"), "epochs=many"]) == 2
    assert "'epochs' expects int, got 'many'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), "--model", "lenet6", "--no-progress"]) == 2
    assert "unknown model 'lenet6'; did you mean lenet5" in capsys.readouterr().err


def test_models_lists_params_paper_year(capsys):
    assert main(["models", "lenet5*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "family", "params", "year", "paper"]
    assert out[1].split()[:4] == ["lenet5", "lenet", "60,000", "1998"] and "LeCun" in out[1]
    assert main(["models", "zzz*"]) == 1
    capsys.readouterr()
    assert main(["models", "--task", "segment", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"unet", "unet3d", "deeplabv3_resnet50"} <= names and "resnet18" not in names
    assert main(["models", "lenet5", "--task", "segment"]) == 1
    assert "for task 'segment'" in capsys.readouterr().err


def test_summary_table_and_json(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "features.c3 (ConnectionTableConv)" in out and "Total params: 60,000" in out
    assert main(["summary", "resnet18", "--input-size", "3,64", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    # C,L: a 1-D ResNet-18, whose kernels have 1/k of the 2-D weights.
    assert s["input_shape"] == [3, 64] and s["output_shape"] == [1000]
    assert s["total_params"] == sum(p.numel() for p in create_model("resnet18", spatial_dims=1).parameters())
    assert s["total_params"] < 11_689_512
