"""COCO JSON, Pascal VOC XML and COCO results files: reading, writing, and naming what is wrong."""
from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
import torch

from convnet import evaluate_detections
from convnet.data import DataFormatError
from convnet.data.detection_formats import (
    VOC_CLASSES,
    read_coco_detection,
    read_coco_results,
    read_voc_annotations,
    read_voc_xml,
    write_coco_results,
)


def coco_dict() -> dict:
    return {
        "images": [{"id": 10, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 11, "file_name": "empty.jpg", "width": 32, "height": 32},   # no annotations
                   {"id": 12, "file_name": "c.jpg", "width": 100, "height": 80}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "bird"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1.5, 2, 10, 20], "area": 150.0, "iscrowd": 0},
            {"id": 2, "image_id": 12, "category_id": 1, "bbox": [0, 0, 30, 40], "iscrowd": 1},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [5, 6, 7, 8]},
        ],
    }


def write(path, obj) -> str:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def test_read_coco(tmp_path):
    ann = read_coco_detection(write(tmp_path / "instances.json", coco_dict()))
    assert [img["id"] for img in ann.images] == [10, 11, 12]
    assert ann.images[0] == {"id": 10, "file_name": "a.jpg", "width": 64, "height": 48}
    # categories in id order -> contiguous labels 0, 1, 2 = ids 1, 3, 7
    assert ann.classes == ["cat", "bird", "dog"] and [ann.category_id(i) for i in range(3)] == [1, 3, 7]
    first = ann.targets[0]
    assert torch.equal(first["boxes"], torch.tensor([[1.5, 2, 11.5, 22], [5, 6, 12, 14]]))
    assert first["labels"].tolist() == [2, 1] and first["iscrowd"].tolist() == [0, 0]
    assert first["area"].tolist() == [150.0, 56.0]  # given, else the box area
    assert ann.targets[1]["boxes"].shape == (0, 4) and ann.targets[1]["labels"].dtype == torch.int64
    assert ann.targets[2]["iscrowd"].tolist() == [1] and ann.targets[2]["area"].tolist() == [1200.0]
    shifted = read_coco_detection(tmp_path / "instances.json", first_label=1)
    assert shifted.targets[0]["labels"].tolist() == [3, 2] and shifted.label(7) == 3 and shifted.category_id(1) == 1
    # a test split has no annotations at all
    data = coco_dict()
    del data["annotations"]
    assert all(len(t["boxes"]) == 0 for t in read_coco_detection(write(tmp_path / "test.json", data)).targets)


def malformed_coco():
    def edit(fn):
        data = coco_dict()
        fn(data)
        return data
    ann = lambda i, **kw: (lambda d: d["annotations"][i].update(kw))
    return [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        (edit(lambda d: d.pop("images")), "'images' must be a list, got nothing"),
        (edit(lambda d: d.update(categories={"id": 1})), "'categories' must be a list, got dict"),
        (edit(lambda d: d["categories"].append({"id": 7, "name": "again"})), r"duplicate category ids \[7\]"),
        (edit(lambda d: d["categories"].append({"name": "no id"})), r"categories\[3\] must have an integer 'id'"),
        (edit(lambda d: d["images"].append({"id": 10})), r"images\[3\] \(id 10\) repeats image id 10"),
        (edit(lambda d: d["images"][1].update(width=0)), r"images\[1\] \(id 11\) width must be a positive integer"),
        (edit(ann(1, image_id=99)), r"annotations\[1\] \(id 2\) names image_id 99, which is not in 'images'"),
        (edit(ann(0, category_id=2)), r"annotations\[0\] \(id 1\) names category_id 2, which is not in 'categories'"),
        (edit(ann(2, bbox=[1, 2, 3])), r"annotations\[2\] \(id 3\): bbox must be \[x, y, width, height\].*\[1, 2, 3\]"),
        (edit(ann(2, bbox=[1, 2, -3, 4])), r"annotations\[2\] \(id 3\): bbox .* got \[1, 2, -3, 4\]"),
        (edit(ann(2, bbox=[1, "2", 3, 4])), r"annotations\[2\] \(id 3\): bbox"),
        (edit(ann(0, iscrowd=2)), r"annotations\[0\] \(id 1\): iscrowd must be 0 or 1, got 2"),
        (edit(ann(0, area=-1)), r"annotations\[0\] \(id 1\): area must be a finite number >= 0, got -1"),
        (edit(lambda d: d.update(annotations={"a": 1})), "'annotations' must be a list"),
    ]


@pytest.mark.parametrize("content,message", malformed_coco())
def test_malformed_coco_is_named(tmp_path, content, message):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_coco_detection(path)
    assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_coco_reader_refuses_what_is_not_a_file(tmp_path):
    with pytest.raises(DataFormatError, match="not a regular file"):
        read_coco_detection(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_coco_detection(tmp_path / "missing.json")
    nan = write(tmp_path / "nan.json", json.dumps(coco_dict()).replace("[5, 6, 7, 8]", "[5, NaN, 7, 8]"))
    with pytest.raises(DataFormatError, match=r"annotations\[2\] \(id 3\): bbox"):
        read_coco_detection(nan)


VOC = """<annotation>
  <folder>VOC2007</folder><filename>000005.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object><name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox></object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>500</xmax><ymax>375</ymax></bndbox></object>
  <object><name>chair</name>
    <bndbox><xmin>5.5</xmin><ymin>3</ymin><xmax>5.5</xmax><ymax>3</ymax></bndbox></object>
</annotation>
"""


def test_read_voc(tmp_path):
    image, target = read_voc_xml(write(tmp_path / "000005.xml", VOC))
    assert image == {"id": "000005", "file_name": "000005.jpg", "width": 500, "height": 375}
    # 1-based inclusive pixels -> continuous: the whole image is (0, 0, W, H); a 1-pixel box is 1 wide
    assert torch.equal(target["boxes"], torch.tensor([[262.0, 210, 324, 339], [0, 0, 500, 375], [4.5, 2, 5.5, 3]]))
    chair, person = VOC_CLASSES.index("chair"), VOC_CLASSES.index("person")
    assert target["labels"].tolist() == [chair, person, chair]
    assert target["difficult"].tolist() == [False, True, False] and target["iscrowd"].tolist() == [0, 0, 0]
    assert target["area"].tolist() == [62 * 129, 500 * 375, 1.0]
    _, own = read_voc_xml(tmp_path / "000005.xml", classes=("person", "chair"), first_label=1)
    assert own["labels"].tolist() == [2, 1, 2]
    empty = write(tmp_path / "empty.xml", "<annotation><filename>x.jpg</filename></annotation>")
    many = read_voc_annotations([tmp_path / "000005.xml", empty])
    assert len(many.targets[1]["boxes"]) == 0 and many.images[1]["width"] is None
    assert many.category_id(chair) == chair + 1 and many.classes == list(VOC_CLASSES)


@pytest.mark.parametrize("content,message", [
    ("<annotation><object>", "not well-formed XML"),
    ("<annotations/>", "root element must be <annotation>, got <annotations>"),
    (VOC.replace("<name>person</name>", "<name>persn</name>"), "object 1: unknown class 'persn'"),
    (VOC.replace("<xmin>263</xmin>", "<xmin>a</xmin>"), r"object 0 \(chair\) <bndbox>: <xmin> must be a number, got 'a'"),
    (VOC.replace("<ymax>339</ymax>", ""), r"object 0 \(chair\) <bndbox>: missing <ymax>"),
    (VOC.replace("<xmax>324</xmax>", "<xmax>200</xmax>"), r"object 0 \(chair\): box must have xmin <= xmax"),
    (VOC.replace("<difficult>1</difficult>", "<difficult>2</difficult>"), r"object 1 \(person\): <difficult> must be 0 or 1"),
    (VOC.replace("<object><name>person</name><difficult>1</difficult>\n    <bndbox><xmin>1</xmin><ymin>1</ymin>"
                 "<xmax>500</xmax><ymax>375</ymax></bndbox></object>", "<object><name>person</name></object>"),
     r"object 1 \(person\): missing <bndbox>"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>', "has a DTD"),
    (VOC.replace("<width>500</width>", "<width>inf</width>"), "<width> must be finite"),
])
def test_malformed_voc_is_named(tmp_path, content, message):
    path = write(tmp_path / "bad.xml", content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_voc_xml(path)
    assert str(info.value).startswith(path)


def predictions_for(ann, seed=0):
    g = torch.Generator().manual_seed(seed)
    preds = []
    for target in ann.targets:
        n = len(target["boxes"]) + 2
        boxes = torch.rand(n, 4, generator=g) * 30
        boxes[:, 2:] += boxes[:, :2]
        boxes[: len(target["boxes"])] = target["boxes"] + torch.rand(len(target["boxes"]), 4, generator=g)
        preds.append({"boxes": boxes, "scores": torch.rand(n, generator=g),
                      "labels": torch.randint(ann.first_label, ann.first_label + len(ann.categories), (n,), generator=g)})
    return preds


@pytest.mark.parametrize("first_label", [0, 1])
def test_coco_results_round_trip(tmp_path, first_label):
    ann = read_coco_detection(write(tmp_path / "instances.json", coco_dict()), first_label=first_label)
    preds = predictions_for(ann)
    path = write_coco_results(tmp_path / "results.json", preds, ann)
    rows = json.loads(path.read_text())
    assert len(rows) == sum(len(p["boxes"]) for p in preds)
    assert set(rows[0]) == {"image_id", "category_id", "bbox", "score"} and rows[0]["image_id"] == 10
    assert {r["category_id"] for r in rows} <= {1, 3, 7}
    first = preds[0]
    assert rows[0]["category_id"] == ann.category_id(int(first["labels"][0]))
    assert rows[0]["bbox"][2] == pytest.approx(float(first["boxes"][0, 2] - first["boxes"][0, 0]))
    back = read_coco_results(path, ann)
    for p, q in zip(preds, back):
        assert torch.allclose(p["boxes"], q["boxes"], atol=1e-4) and torch.equal(p["scores"], q["scores"])
        assert torch.equal(p["labels"], q["labels"])
    assert [k for k in os.listdir(tmp_path) if k.endswith(".tmp")] == []  # written atomically
    with pytest.raises(ValueError, match="one dict per image: 3 images, got 2"):
        write_coco_results(tmp_path / "r.json", preds[:2], ann)
    with pytest.raises(ValueError, match="label 9 is outside"):
        write_coco_results(tmp_path / "r.json", [{**preds[0], "labels": torch.full_like(preds[0]["labels"], 9)}]
                           + preds[1:], ann)


def test_results_file_scores_like_the_annotations_with_pycocotools(tmp_path):
    pytest.importorskip("pycocotools", reason="pycocotools (the test extra) is the COCO mAP oracle")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = coco_dict()
    for a in data["annotations"]:  # pycocotools needs both on every annotation
        a.setdefault("iscrowd", 0)
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
    gt_path = write(tmp_path / "instances.json", data)
    ann = read_coco_detection(gt_path)
    preds = predictions_for(ann, seed=3)
    results = write_coco_results(tmp_path / "results.json", preds, ann)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        evaluator = COCOeval(gt, gt.loadRes(str(results)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = evaluate_detections(read_coco_results(results, ann), ann.targets)
    assert float(ours["map"]) == pytest.approx(evaluator.stats[0], abs=1e-6)
    assert float(ours["mar_100"]) == pytest.approx(evaluator.stats[8], abs=1e-6)


@pytest.mark.parametrize("content,message", [
    ("{}", "a results file is a JSON list of detections, got dict"),
    ('[{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]', r"\[0\] names image_id 99"),
    ('[{"image_id": 10, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5}]', r"\[0\] names category_id 2"),
    ('[{"image_id": 10, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]', r"\[0\]: bbox must be"),
    ('[{"image_id": 10, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]', r"\[0\]: score must be"),
    ("[1]", r"\[0\] must be an object"),
])
def test_malformed_results_are_named(tmp_path, content, message):
    ann = read_coco_detection(write(tmp_path / "instances.json", coco_dict()))
    path = write(tmp_path / "results.json", content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_coco_results(path, ann)
    assert str(info.value).startswith(path)
