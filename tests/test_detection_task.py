"""The detection task: batches, the label mapping between data and models with a background
class, the COCO metric, and a whole run (train, eval, predict --out) on a tiny scene set."""
import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch import nn

from convnet.ops import evaluate_detections
from convnet.tasks import get_task


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _task(**options):
    return get_task("detect", options).setup([str(d) for d in range(10)])


def _sample(i, size=(32, 32), boxes=((2.0, 3.0, 12.0, 20.0),), labels=(4,)):
    return {"input": torch.rand(3, *size), "index": i, "path": f"img{i}.png",
            "target": {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}}


def test_collate_stacks_equal_sizes_and_lists_the_rest():
    task = _task()
    batch = task.collate([_sample(0), _sample(1)])
    assert isinstance(batch["input"], torch.Tensor) and batch["input"].shape == (2, 3, 32, 32)
    assert batch["index"].tolist() == [0, 1] and batch["path"] == ["img0.png", "img1.png"]
    assert isinstance(batch["target"], list) and batch["target"][1]["labels"].tolist() == [4]
    mixed = task.collate([_sample(0), _sample(1, size=(40, 24))])
    assert isinstance(mixed["input"], list) and [tuple(x.shape) for x in mixed["input"]] == [(3, 32, 32), (3, 40, 24)]


class _Background(nn.Module):
    """A stand-in detector whose label 0 is the background: it records what it is given."""

    label_offset = 1

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen = None

    def forward(self, images, targets=None):
        if self.training:
            self.seen = targets
            return {"a": self.w * 2, "b": self.w * 3}
        return [{"boxes": torch.tensor([[1.0, 2, 3, 4]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
                for _ in images]


def test_labels_shift_into_and_out_of_a_background_model():
    task = _task(eval_chunk=1)
    batch = task.collate([_sample(0), _sample(1)])
    model = _Background()
    losses = task.forward(model.train(), batch)
    assert [t["labels"].tolist() for t in model.seen] == [[5], [5]]  # data 4 -> model 5
    total, parts = task.loss(losses, batch)
    assert total.item() == 5.0 and parts == {"a": 2.0, "b": 3.0}
    preds = task.forward(model.eval(), batch)
    assert [p["labels"].tolist() for p in preds] == [[0], [0]]  # model 1 -> data 0
    described = task.postprocess(preds, batch)
    assert described[0]["classes"] == ["0"] and described[0]["boxes"].tolist() == [[1.0, 2, 3, 4]]
    assert task.postprocess(preds, {**batch, "scale": [(0.5, 0.25)] * 2})[0]["boxes"].tolist() == [[2.0, 8, 6, 16]]
    assert _task(score_thresh=0.95).postprocess(preds, batch)[0]["boxes"].shape == (0, 4)


def test_serve_answer_lists_boxes_best_first_in_the_files_pixels():
    """The JSON ``serve`` sends: the keys the page draws (tests/test_serve_browser.py paints them)."""
    task = _task()
    prediction = {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]),
                  "labels": torch.tensor([7, 2]), "classes": ["7", "2"], "scores": torch.tensor([0.5, 0.9])}
    answer = task.to_response(prediction, {})
    assert answer == {"boxes": [{"box": [10.0, 20.0, 30.0, 40.0], "label": "2", "score": 0.9},
                                {"box": [1.0, 2.0, 3.0, 4.0], "label": "7", "score": 0.5}]}
    json.dumps(answer)  # JSON-safe
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "classes": [],
             "scores": torch.zeros(0)}
    assert task.to_response(empty, {}) == {"boxes": []}


def test_build_model_counts_the_background_where_the_model_has_one():
    task = _task()
    data = SimpleNamespace(channels=3, num_classes=10)
    cfg = SimpleNamespace(name="yolo_n", spatial_dims=2, overrides={"width_mult": 0.0625})
    assert task.build_model(cfg, data).num_classes == 10
    cfg = SimpleNamespace(name="ssdlite320_mobilenet_v3_large", spatial_dims=2,
                          overrides={"backbone_overrides": {"width_mult": 0.25, "max_blocks_per_stage": 1}})
    assert task.build_model(cfg, data).num_classes == 11
    with pytest.raises(ValueError, match="classify model; the detect task needs a detector"):
        task.build_model(SimpleNamespace(name="lenet5", spatial_dims=2, overrides={}), data)


def test_metric_equals_evaluate_detections_on_the_collected_predictions():
    task = _task()
    metric = task.metrics()
    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for i in range(6):
        n, m = int(torch.randint(0, 5, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 50
        pred = {"boxes": torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 30], 1),
                "scores": torch.rand(n, generator=g), "labels": torch.randint(0, 3, (n,), generator=g)}
        xy = torch.rand(m, 2, generator=g) * 50
        target = {"boxes": torch.cat([xy, xy + 5 + torch.rand(m, 2, generator=g) * 30], 1),
                  "labels": torch.randint(0, 3, (m,), generator=g)}
        preds.append(pred)
        targets.append(target)
    for start in (0, 4):  # two batches
        metric.update(preds[start:start + 4], {"target": targets[start:start + 4],
                                               "index": torch.arange(start, min(start + 4, 6))})
    result = metric.result()
    expected = evaluate_detections(preds, targets, class_metrics=True)
    for key in ("map", "map_50", "map_75", "map_small", "mar_1", "mar_10", "mar_100"):
        assert result[key] == pytest.approx(float(expected[key]), abs=1e-7)
    assert result["ap_per_class"] == pytest.approx(dict(zip(expected["classes"].tolist(),
                                                            expected["map_per_class"].tolist())))
    assert metric.indices == list(range(6))
    training = task.metrics(training=True)
    training.update({"loss": torch.ones(())}, {"target": targets})
    assert training.progress() == {} and training.state_dict() == {} and training.compute() == {}


def test_a_detection_run_trains_evaluates_and_predicts(tmp_path, capsys):
    """convnet train on a tiny scene set (through the Trainer), eval's JSON, and predict --out
    writing the image with its boxes drawn and a JSON of them."""
    from convnet.cli import main
    from convnet.data.scenes import write_scene_set
    from convnet.train import TrainConfig, Trainer, parse_overrides

    data_dir = write_scene_set(tmp_path / "scenes", n_train=8, n_val=4, size=96, seed=0)
    cfg = TrainConfig()
    parse_overrides(cfg, ["model.name=yolo_n", f"data.name=coco:{data_dir}", "epochs=1", "data.batch_size=4",
                          f"out={tmp_path / 'run'}", "device=cpu", "eval_batch_size=4", "task.options.mosaic=0.5",
                          "augment.hflip=0.5", "task.options.score_thresh=0.0"])
    cfg.model.overrides = {"width_mult": 0.0625}
    summary = Trainer(cfg, progress=False).fit()
    assert summary["task"] == "detect" and summary["steps"] == 2
    assert 0.0 <= summary["test_map"] <= 1.0 and "test_map_50" in summary and "test_ap_per_class" in summary
    run = tmp_path / "run"
    assert (run / "report" / "predictions.png").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["num_classes"] == 10 and config["task"]["name"] == "detect"

    assert main(["eval", "--run", str(run)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert {"val_map", "val_map_50", "test_mar_100"} <= set(figures)

    image = data_dir / "images" / "val_00000.png"
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), str(image), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert str(image) in line and "val_00000.png.boxes.png" in line
    drawn = Image.open(out / "val_00000.png.boxes.png")
    assert drawn.size == Image.open(image).size
    record = json.loads((out / "val_00000.png.json").read_text())
    assert record["box_format"] == "xyxy" and len(record["boxes"]) == len(record["scores"]) == len(record["classes"])
    assert all(0 <= v <= 96 for box in record["boxes"] for v in box)
