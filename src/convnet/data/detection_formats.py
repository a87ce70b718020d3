"""Detection annotations on disk: COCO JSON, Pascal VOC XML, and COCO results JSON.

Targets in memory are what every detector and :func:`convnet.ops.evaluate_detections` take:
one dict per image with ``boxes`` (``(N, 4)`` float32, absolute ``xyxy`` pixels), ``labels``
(``(N,)`` int64), ``iscrowd`` (``(N,)`` int64) and ``area`` (``(N,)`` float32), plus
``difficult`` (bool) for VOC.

Conventions:

* **Labels** are contiguous: category ``k`` in increasing order of its COCO id gets label
  ``first_label + k``. ``first_label=0`` suits heads without a background class, ``1``
  torchvision's R-CNNs (label 0 = background). :class:`DetectionAnnotations` keeps the
  mapping, and :func:`write_coco_results` maps labels back to the file's category ids.
* **COCO** boxes are ``[x, y, width, height]`` in continuous pixel coordinates (the image
  spans ``[0, W] x [0, H]``): ``xyxy = (x, y, x + w, y + h)``.
* **VOC** boxes are 1-based inclusive pixel indices (``xmin = 1`` is the first column,
  ``xmax`` the last column covered). In continuous coordinates, where pixel ``i`` (0-based)
  spans ``[i, i + 1)``, that is ``xyxy = (xmin - 1, ymin - 1, xmax, ymax)``: a box over the
  whole image is ``(0, 0, W, H)``, as in COCO (detectron2's conversion). ``difficult``
  objects are kept and flagged; VOC's evaluation ignores them.

Every malformed file raises :class:`~convnet.data.DataFormatError` naming the file and the
entry (``annotations[12] (id 57)``, ``object 3``) with what was expected and found.
"""
from __future__ import annotations

import json
import math
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from ..weights.io import atomic_write_text
from .readers import DataFormatError

__all__ = [
    "VOC_CLASSES",
    "DetectionAnnotations",
    "read_coco_detection",
    "read_coco_results",
    "read_voc_annotations",
    "read_voc_xml",
    "write_coco_results",
]

PathLike = Union[str, os.PathLike]

# Pascal VOC's 20 classes in the devkit's order (Everingham et al., IJCV 2010).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass
class DetectionAnnotations:
    """Images, their targets and the category mapping of one annotation source.

    Attributes:
        images: Per image ``{"id", "file_name", "width", "height"}`` (width/height None if unknown).
        targets: Per image ``{"boxes", "labels", "iscrowd", "area"}`` (+ ``"difficult"``).
        categories: Per label, in label order, ``{"id", "name"}`` as in the source file.
        first_label: Label of ``categories[0]``.
        source: The file (or first file) read, for messages.
    """

    images: list[dict[str, Any]]
    targets: list[dict[str, Tensor]]
    categories: list[dict[str, Any]]
    first_label: int = 0
    source: str = ""
    _label_of: dict[Any, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._label_of = {c["id"]: self.first_label + i for i, c in enumerate(self.categories)}

    @property
    def classes(self) -> list[str]:
        """Category names in label order."""
        return [c["name"] for c in self.categories]

    def label(self, category_id: Any) -> int:
        """The label of a category id of the source file."""
        try:
            return self._label_of[category_id]
        except KeyError:
            raise DataFormatError(f"{self.source}: unknown category id {category_id!r}; the categories are "
                                  f"{sorted(self._label_of, key=str)}") from None

    def category_id(self, label: int) -> Any:
        """The source file's category id of a label."""
        index = int(label) - self.first_label
        if not 0 <= index < len(self.categories):
            raise ValueError(f"label {int(label)} is outside {self.first_label}.."
                             f"{self.first_label + len(self.categories) - 1} ({len(self.categories)} categories)")
        return self.categories[index]["id"]


# ---------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------

def _read_bytes(path: PathLike, what: str) -> bytes:
    """The bytes of a regular file (a FIFO would block, a directory is a mistake)."""
    mode = os.stat(path).st_mode  # FileNotFoundError names the path
    if not stat.S_ISREG(mode):
        raise DataFormatError(f"{os.fspath(path)}: is not a regular file, expected {what}")
    with open(path, "rb") as f:
        return f.read()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _empty_target() -> dict[str, Tensor]:
    return {"boxes": torch.zeros((0, 4), dtype=torch.float32), "labels": torch.zeros(0, dtype=torch.int64),
            "iscrowd": torch.zeros(0, dtype=torch.int64), "area": torch.zeros(0, dtype=torch.float32)}


def _stack_target(rows: list[tuple]) -> dict[str, Tensor]:
    """``rows`` of (xyxy, label, iscrowd, area) into a target dict."""
    if not rows:
        return _empty_target()
    boxes, labels, crowd, area = zip(*rows)
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": torch.tensor(crowd, dtype=torch.int64), "area": torch.tensor(area, dtype=torch.float32)}


def _entry(kind: str, index: int, item: Any) -> str:
    if isinstance(item, dict) and "id" in item:
        return f"{kind}[{index}] (id {item['id']!r})"
    return f"{kind}[{index}]"


def read_coco_detection(path: PathLike, first_label: int = 0) -> DetectionAnnotations:
    """Read a COCO instances file (``instances_val2017.json`` and the like).

    Images keep the file's order, including images without annotations (their targets are
    empty); a missing ``annotations`` list (test splits) means no objects anywhere. Crowd
    annotations are kept with ``iscrowd = 1``; an annotation's ``area`` (the segment's area
    in COCO, which the size ranges of the evaluation use) is kept, or is the box area.

    Args:
        path: The JSON file.
        first_label: Label of the category with the smallest id.

    Returns:
        The images, targets and category mapping.

    Raises:
        FileNotFoundError: No file at ``path``.
        DataFormatError: Invalid JSON or UTF-8; missing or ill-typed ``images``, ``categories``
            or fields; duplicate ids; an annotation naming an unknown image or category; a
            bbox that is not 4 finite numbers with width and height >= 0; ``iscrowd`` not
            0/1; a negative or non-finite ``area``.
    """
    name = os.fspath(path)
    try:
        data = json.loads(_read_bytes(path, "a COCO JSON file").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{name}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{name}: expected a JSON object with images, annotations and categories, got "
                              f"{type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(f"{name}: {key!r} must be a list, got "
                                  f"{'nothing' if key not in data else type(data[key]).__name__}")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise DataFormatError(f"{name}: 'annotations' must be a list, got {type(annotations).__name__}")

    categories = []
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or isinstance(cat.get("id"), bool):
            raise DataFormatError(f"{name}: {_entry('categories', i, cat)} must have an integer 'id', got {cat!r}")
        categories.append({"id": cat["id"], "name": str(cat.get("name", cat["id"]))})
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataFormatError(f"{name}: duplicate category ids {dup}")
    categories.sort(key=lambda c: c["id"])
    result = DetectionAnnotations(images=[], targets=[], categories=categories, first_label=first_label,
                                  source=name)

    image_index: dict[Any, int] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not isinstance(img.get("id"), (int, str)) or isinstance(img.get("id"), bool):
            raise DataFormatError(f"{name}: {_entry('images', i, img)} must have an integer or string 'id', got "
                                  f"{img!r}")
        if img["id"] in image_index:
            raise DataFormatError(f"{name}: {_entry('images', i, img)} repeats image id {img['id']!r}")
        for key in ("width", "height"):
            if key in img and (not isinstance(img[key], int) or isinstance(img[key], bool) or img[key] <= 0):
                raise DataFormatError(f"{name}: {_entry('images', i, img)} {key} must be a positive integer, got "
                                      f"{img[key]!r}")
        image_index[img["id"]] = i
        result.images.append({"id": img["id"], "file_name": str(img.get("file_name", "")),
                              "width": img.get("width"), "height": img.get("height")})

    rows: list[list[tuple]] = [[] for _ in result.images]
    for i, ann in enumerate(annotations):
        where = f"{name}: {_entry('annotations', i, ann)}"
        if not isinstance(ann, dict):
            raise DataFormatError(f"{where} must be an object, got {type(ann).__name__}")
        if ann.get("image_id") not in image_index:
            raise DataFormatError(f"{where} names image_id {ann.get('image_id')!r}, which is not in 'images'")
        label = result._label_of.get(ann.get("category_id"))
        if label is None or isinstance(ann.get("category_id"), bool):
            raise DataFormatError(f"{where} names category_id {ann.get('category_id')!r}, which is not in "
                                  f"'categories' ({ids})")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)
                and bbox[2] >= 0 and bbox[3] >= 0):
            raise DataFormatError(f"{where}: bbox must be [x, y, width, height], 4 finite numbers with width and "
                                  f"height >= 0, got {bbox!r}")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            raise DataFormatError(f"{where}: iscrowd must be 0 or 1, got {crowd!r}")
        x, y, w, h = (float(v) for v in bbox)
        area = ann.get("area", w * h)
        if not _number(area) or area < 0:
            raise DataFormatError(f"{where}: area must be a finite number >= 0, got {area!r}")
        rows[image_index[ann["image_id"]]].append(((x, y, x + w, y + h), label, int(crowd), float(area)))
    result.targets = [_stack_target(r) for r in rows]
    return result


def _xml_text(node: ET.Element, tag: str, where: str, required: bool = True) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise DataFormatError(f"{where}: missing <{tag}>")
        return None
    return child.text.strip()


def _xml_number(node: ET.Element, tag: str, where: str) -> float:
    text = _xml_text(node, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(f"{where}: <{tag}> must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise DataFormatError(f"{where}: <{tag}> must be finite, got {text!r}")
    return value


def read_voc_xml(path: PathLike, classes: Sequence[str] = VOC_CLASSES, first_label: int = 0
                 ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read one Pascal VOC annotation file.

    Args:
        path: The ``Annotations/*.xml`` file.
        classes: Class names in label order (VOC's 20 by default).
        first_label: Label of ``classes[0]``.

    Returns:
        The image ``{"id" (file stem), "file_name", "width", "height"}`` and its target,
        with boxes converted as the module docstring says and a ``difficult`` flag.

    Raises:
        FileNotFoundError: No file at ``path``.
        DataFormatError: Not well-formed XML, a DTD (refused: entity expansion can blow up
            memory), no ``<annotation>`` root, an object without ``<name>`` or
            ``<bndbox>``, an unknown class, non-numeric or inverted coordinates, or
            ``<difficult>`` other than 0/1.
    """
    name = os.fspath(path)
    raw = _read_bytes(path, "a VOC XML file")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise DataFormatError(f"{name}: has a DTD (<!DOCTYPE or <!ENTITY), which VOC files never have; not parsed")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise DataFormatError(f"{name}: not well-formed XML: {e}") from None
    if root.tag != "annotation":
        raise DataFormatError(f"{name}: root element must be <annotation>, got <{root.tag}>")
    label_of = {c: first_label + i for i, c in enumerate(classes)}
    size = root.find("size")
    width = height = None
    if size is not None:
        width = int(_xml_number(size, "width", f"{name}: <size>"))
        height = int(_xml_number(size, "height", f"{name}: <size>"))
    image = {"id": Path(name).stem, "file_name": _xml_text(root, "filename", name, required=False) or "",
             "width": width, "height": height}
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.findall("object")):
        where = f"{name}: object {i}"
        cls = _xml_text(obj, "name", where)
        if cls not in label_of:
            raise DataFormatError(f"{where}: unknown class {cls!r}; the classes are {list(classes)}")
        box = obj.find("bndbox")
        if box is None:
            raise DataFormatError(f"{where} ({cls}): missing <bndbox>")
        xmin, ymin, xmax, ymax = (_xml_number(box, t, f"{where} ({cls}) <bndbox>")
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise DataFormatError(f"{where} ({cls}): box must have xmin <= xmax and ymin <= ymax, got "
                                  f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})")
        flag = _xml_text(obj, "difficult", where, required=False) or "0"
        if flag not in ("0", "1"):
            raise DataFormatError(f"{where} ({cls}): <difficult> must be 0 or 1, got {flag!r}")
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))  # 1-based inclusive -> continuous
        labels.append(label_of[cls])
        difficult.append(flag == "1")
    target = _stack_target([(b, lab, 0, (b[2] - b[0]) * (b[3] - b[1])) for b, lab in zip(boxes, labels)])
    target["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return image, target


def read_voc_annotations(paths: Sequence[PathLike], classes: Sequence[str] = VOC_CLASSES,
                         first_label: int = 0) -> DetectionAnnotations:
    """Read several VOC files into one :class:`DetectionAnnotations`; the categories get ids
    1, 2, ... in the order of ``classes`` (so that COCO results files can name them)."""
    images, targets = [], []
    for p in paths:
        image, target = read_voc_xml(p, classes, first_label)
        images.append(image)
        targets.append(target)
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    return DetectionAnnotations(images, targets, categories, first_label,
                                source=os.fspath(paths[0]) if len(paths) else "")


# ---------------------------------------------------------------------------------------
# COCO results files
# ---------------------------------------------------------------------------------------

def write_coco_results(path: PathLike, predictions: Sequence[dict[str, Tensor]],
                       annotations: DetectionAnnotations) -> Path:
    """Write detections as a COCO results file: ``[{"image_id", "category_id", "bbox", "score"}]``
    with ``bbox`` as ``[x, y, width, height]``, the format of the COCO test server and of
    pycocotools' ``loadRes``. The file is written atomically.

    Args:
        path: The JSON file to write.
        predictions: One dict per image of ``annotations.images`` with ``boxes`` (absolute
            ``xyxy``), ``scores`` and ``labels``.
        annotations: Where the image ids and the label -> category id mapping come from.

    Returns:
        ``path``.
    """
    if len(predictions) != len(annotations.images):
        raise ValueError(f"predictions must give one dict per image: {len(annotations.images)} images, got "
                         f"{len(predictions)}")
    results = []
    for i, (pred, image) in enumerate(zip(predictions, annotations.images)):
        boxes = pred["boxes"].detach().cpu().double().reshape(-1, 4)
        scores = pred["scores"].detach().cpu().double().reshape(-1)
        labels = pred["labels"].detach().cpu().reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"predictions[{i}]: boxes, scores and labels differ in length ({len(boxes)}, "
                             f"{len(scores)}, {len(labels)})")
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(xywh, scores.tolist(), labels.tolist()):
            results.append({"image_id": image["id"], "category_id": annotations.category_id(label),
                            "bbox": box, "score": score})
    return atomic_write_text(path, json.dumps(results, separators=(",", ":")))


def read_coco_results(path: PathLike, annotations: DetectionAnnotations) -> list[dict[str, Tensor]]:
    """Read a COCO results file back into per-image predictions (``boxes`` absolute ``xyxy``,
    ``scores``, ``labels``), in the order of ``annotations.images``; images without results
    get empty tensors.

    Raises:
        DataFormatError: Invalid JSON, not a list, an entry without a known ``image_id`` or
            ``category_id``, a bad ``bbox`` or a non-finite ``score``.
    """
    name = os.fspath(path)
    try:
        data = json.loads(_read_bytes(path, "a COCO results JSON file").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{name}: not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{name}: a results file is a JSON list of detections, got {type(data).__name__}")
    image_index = {img["id"]: i for i, img in enumerate(annotations.images)}
    per_image: list[list[tuple]] = [[] for _ in annotations.images]
    for i, det in enumerate(data):
        where = f"{name}: [{i}]"
        if not isinstance(det, dict):
            raise DataFormatError(f"{where} must be an object, got {type(det).__name__}")
        if det.get("image_id") not in image_index:
            raise DataFormatError(f"{where} names image_id {det.get('image_id')!r}, which the annotations lack")
        try:
            label = annotations.label(det.get("category_id"))
        except DataFormatError:
            raise DataFormatError(f"{where} names category_id {det.get('category_id')!r}, which the annotations "
                                  "lack") from None
        bbox, score = det.get("bbox"), det.get("score")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise DataFormatError(f"{where}: bbox must be [x, y, width, height] (4 finite numbers), got {bbox!r}")
        if not _number(score):
            raise DataFormatError(f"{where}: score must be a finite number, got {score!r}")
        x, y, w, h = (float(v) for v in bbox)
        per_image[image_index[det["image_id"]]].append(((x, y, x + w, y + h), float(score), label))
    out = []
    for rows in per_image:
        if rows:
            boxes, scores, labels = zip(*rows)
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "scores": torch.tensor(scores, dtype=torch.float32),
                        "labels": torch.tensor(labels, dtype=torch.int64)})
        else:
            out.append({"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0),
                        "labels": torch.zeros(0, dtype=torch.int64)})
    return out
