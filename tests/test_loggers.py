"""Training logs where people look: a short real run through the Trainer, read back with
TensorBoard's own reader and MLflow's own client; every logged value equals metrics.jsonl's."""
from __future__ import annotations

import json
import sys

import pytest

from convnet.train import TrainConfig, Trainer, parse_overrides
from convnet.train.loggers import build_logger
from convnet.train.run import RunDir


def _train(tmp_path, logger: str, *overrides: str) -> tuple[RunDir, list[dict], dict]:
    cfg = TrainConfig()
    parse_overrides(cfg, [f"out={tmp_path / 'run'}", "model.name=lenet5_modern", "data.name=digits", "epochs=2",
                          "data.train_per_class=4", "data.batch_size=20",
                          f"logger={logger}", *overrides])
    summary = Trainer(cfg, progress=False).fit()
    run = RunDir(tmp_path / "run")
    return run, run.read_metrics(), summary


def _numeric(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.mark.slow  # a real run with its report: ~30 s on 2 busy cores
def test_tensorboard_event_files_hold_the_metrics_figures_and_config(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra 'tensorboard' is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, rows, summary = _train(tmp_path, "tensorboard")
    events = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    keys = set().union(*(_numeric(r) for r in rows))
    assert {"train_loss", "val_loss", "val_acc", "lr", "img_per_s", "epoch_s"} <= keys
    for key in keys:  # every numeric value of every epoch row, at its step
        logged = events.Scalars(key)
        expected = [(r["step"], _numeric(r)[key]) for r in rows if key in r]
        assert [e.step for e in logged] == [s for s, _ in expected], key
        assert [e.value for e in logged] == pytest.approx([v for _, v in expected], rel=1e-6), key  # float32
    assert events.Scalars("test_acc")[-1].value == pytest.approx(summary["test_acc"], rel=1e-6)
    assert events.Scalars("test_acc")[-1].step == summary["steps"]
    # The report's figures, as images TensorBoard decodes (PNG).
    images = [t for t in tags["images"] if t.startswith("report/")]
    assert images, tags["images"]
    for tag in images:
        image = events.Images(tag)[-1]
        assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and image.width > 0 and image.height > 0
    # The config, as text.
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    config = json.loads("\n".join(line[4:] for line in text.splitlines()))
    assert config == json.loads(json.dumps(run.read_config()))


@pytest.mark.slow  # MLflow's import and its SQLite store's migrations take ~20 s on 2 busy cores
def test_mlflow_store_holds_params_metrics_figures_and_the_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the optional extra 'mlflow' is not installed")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports from a test
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    from mlflow.tracking import MlflowClient

    run, rows, summary = _train(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{run.path.resolve() / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("convnet")
    (logged,) = client.search_runs([experiment.experiment_id])
    run_id = logged.info.run_id
    assert logged.info.status == "FINISHED" and logged.info.run_name == "run"
    params = logged.data.params
    assert params["train.model.name"] == "lenet5_modern" and params["train.epochs"] == "2"
    assert params["train.optim.lr"] == str(run.read_config()["train"]["optim"]["lr"])
    keys = set().union(*(_numeric(r) for r in rows))
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(r["step"], _numeric(r)[key]) for r in rows if key in r], key
    (test_acc,) = client.get_metric_history(run_id, "test_acc")
    assert test_acc.value == summary["test_acc"] and test_acc.step == summary["steps"]
    figures = [a.path for a in client.list_artifacts(run_id, "report")]
    assert figures and all(p.endswith(".png") for p in figures)
    files = {a.path for a in client.list_artifacts(run_id, "run")}
    assert {"run/config.json", "run/metrics.jsonl", "run/summary.json", "run/model.safetensors"} <= files
    assert not any(p.startswith("run/mlflow") for p in files)  # the store is not copied into itself
    copy = client.download_artifacts(run_id, "run/metrics.jsonl", str(tmp_path))
    assert open(copy, "rb").read() == run.metrics.read_bytes()


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def test_tensorboard_logger_writes_numbers_figures_and_text(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra 'tensorboard' is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from convnet.train.loggers_tensorboard import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)
    fig = _figure()
    logger.log_config({"train": {"optim": {"lr": 0.25}}})
    logger.log_metrics({"epoch": 1, "train_loss": 0.5, "resumed_from": "checkpoints/x", "ok": True}, step=7)
    logger.log_metrics({"epoch": 2, "train_loss": 0.25}, step=9)
    logger.log_figures([("confusion", "Confusion matrix", fig)], step=9)
    logger.close()
    assert fig.canvas.get_width_height()[0] > 0  # still open: the report renders it next
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["epoch", "train_loss"]  # text and bools are not scalars
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(7, 0.5), (9, 0.25)]
    assert events.Tags()["images"] == ["report/confusion"]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads("\n".join(line[4:] for line in text.splitlines())) == {"train": {"optim": {"lr": 0.25}}}


def test_mlflow_logger_writes_to_a_given_tracking_uri(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the optional extra 'mlflow' is not installed")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store: quick to create (a server in use)
    from mlflow.tracking import MlflowClient

    from convnet.train.loggers_mlflow import MLflowLogger

    uri = (tmp_path / "store").as_uri()
    run_dir = tmp_path / "run"
    (run_dir / "report").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "report" / "index.html").write_text("<html></html>")
    (run_dir / ".lock").write_text("held")
    logger = MLflowLogger(run_dir, uri=uri, run_name="first")
    logger.log_config({"train": {"optim": {"lr": 0.25, "betas": [0.9, 0.99]}, "epochs": 2}, "data": {}})
    logger.log_metrics({"epoch": 1, "train_loss": 0.5, "resumed_from": "x", "ok": True}, step=7)
    logger.log_figures([("curves", "Curves", _figure())], step=7)
    logger.log_artifacts(run_dir)
    logger.close()
    failed = MLflowLogger(run_dir, uri=uri, run_name="second")
    failed.close()  # closed without reaching the end of training
    assert not (run_dir / "mlflow").exists()  # the given URI, not a store in the run
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("convnet").experiment_id])}
    assert runs["first"].info.status == "FINISHED" and runs["second"].info.status == "FAILED"
    first = runs["first"]
    assert first.data.params == {"train.optim.lr": "0.25", "train.optim.betas": "[0.9, 0.99]", "train.epochs": "2",
                                 "data": "{}"}
    assert first.data.metrics == {"epoch": 1.0, "train_loss": 0.5}
    assert [(m.step, m.value) for m in client.get_metric_history(first.info.run_id, "train_loss")] == [(7, 0.5)]
    run_files = {a.path for a in client.list_artifacts(first.info.run_id, "run")}
    assert run_files == {"run/config.json", "run/report"}
    assert [a.path for a in client.list_artifacts(first.info.run_id, "run/report")] == ["run/report/index.html"]
    assert [a.path for a in client.list_artifacts(first.info.run_id, "report")] == ["report/curves.png"]


def test_a_missing_tracker_package_is_named(tmp_path, monkeypatch):
    for module in ("mlflow", "mlflow.entities", "mlflow.tracking", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    for name in ("mlflow", "tensorboard"):
        monkeypatch.delitem(sys.modules, f"convnet.train.loggers_{name}", raising=False)
        with pytest.raises(ValueError, match=rf"logger={name} needs an optional package .* "
                                             rf"pip install 'convnet\[{name}\]'"):
            build_logger(name, tmp_path)
