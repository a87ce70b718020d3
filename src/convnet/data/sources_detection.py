"""Detection data sets by name: the generated scene set, and users' COCO or Pascal VOC data.

* ``scenes``: the real-data scene set of :mod:`convnet.data.scenes` (800 train / 200 val images
  of ``data.image_size`` pixels, default 160, seeded by ``data.split_seed``), generated on first
  use into ``$CONVNET_CACHE/scenes/size<S>-seed<N>`` (default ``~/.cache/convnet``); held in
  memory; its test split is its validation split. A scene set in a folder of one's choosing
  (``convnet.data.scenes.write_scene_set(DIR, ...)``) is read with ``coco:DIR``. (``load_scenes``
  takes a folder too, for when ``load_data`` accepts optional arguments: ``scenes:DIR``.)
* ``coco:ANNOTATIONS[,IMAGE_DIR]``: a COCO instances file, its images under IMAGE_DIR (default:
  the file's folder); split into train / val / test by ``data.val_fraction`` and
  ``data.test_fraction`` (images drawn at random with ``data.split_seed``). ANNOTATIONS may also
  be a folder holding ``train.json`` and ``val.json`` (and optionally ``test.json``), used as
  given (a missing test split is the validation split).
* ``voc:DIR``: a Pascal VOC folder (``Annotations/*.xml``, ``JPEGImages/``), split by
  ``ImageSets/Main/{train,val,test}.txt`` where present, else at random as above.

Samples are ``{"input": (C, H, W) float in [0, 1], "target": {"boxes", "labels", ...}, "index",
"path"}`` with labels 0..K-1 in the order of the categories (the task maps them to a model's
labels). Images are kept at their size; ``data.image_size`` (for COCO and VOC) resizes every
image to that square size, boxes scaled alike. A split whose images share one size and fit in
``data.memory_limit_mb`` is decoded into memory (one tensor); otherwise it streams from disk.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import DataOptions, DataSplits, check_bad_files, register_dataset, streams
from .detection_formats import DetectionAnnotations, read_coco_detection, read_voc_annotations
from .readers import DataFormatError
from .samples import Sample, Samples, TensorSamples, read_image
from .transforms import Preprocess

__all__ = ["DetectionFileSamples", "default_scene_dir", "load_coco", "load_scenes", "load_voc"]


def default_scene_dir(size: int, seed: int) -> Path:
    """Where ``scenes`` without a directory lives: ``$CONVNET_CACHE/scenes/size<S>-seed<N>``."""
    root = Path(os.environ.get("CONVNET_CACHE") or Path.home() / ".cache" / "convnet")
    return root / "scenes" / f"size{size}-seed{seed}"


def _scale_target(target: dict[str, torch.Tensor], sx: float, sy: float) -> dict[str, torch.Tensor]:
    boxes = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=target["boxes"].dtype)
    out = {**target, "boxes": boxes}
    if "area" in target:
        out["area"] = target["area"] * (sx * sy)
    return out


class DetectionFileSamples(Samples):
    """Image files and their detection targets, decoded one at a time.

    Args:
        files: Image paths.
        targets: One target dict per file (boxes in the file's pixel coordinates).
        image_size: Resize every image to this square size (boxes scaled alike); None keeps it.
        max_pixels: Images with more pixels are refused before decoding (0: no cap).
    """

    def __init__(self, files: Sequence[str], targets: Sequence[dict[str, torch.Tensor]],
                 image_size: int | None = None, max_pixels: int = 0):
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} targets")
        self.files, self._targets = list(files), list(targets)
        self.image_size, self.max_pixels = image_size, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    @property
    def targets(self) -> list[dict[str, torch.Tensor]]:
        return self._targets

    def __getitem__(self, index: int) -> Sample:
        path = self.files[index]
        try:
            image, _ = read_image(path, "RGB", self.max_pixels)
        except (DataFormatError, OSError, ValueError) as e:
            return {"error": str(e), "path": path, "index": index}
        target = self._targets[index]
        if self.image_size:
            h, w = image.shape[-2:]
            image = F.interpolate(image[None], size=(self.image_size, self.image_size), mode="bilinear",
                                  antialias=True, align_corners=False)[0].clamp_(0.0, 1.0)
            target = _scale_target(target, self.image_size / w, self.image_size / h)
        return {"input": image, "target": target, "index": index, "path": path}


def _in_memory(samples: DetectionFileSamples, options: DataOptions, what: str) -> tuple[Samples, dict[str, Any]]:
    """Decode a split into one tensor when asked to or when it fits (and its images share a
    size); otherwise keep it streamed. Unreadable files are dropped, up to max_bad_fraction."""
    if options.stream == "disk" or not len(samples):
        return samples, {}
    decoded, bad = [], []
    for i in range(len(samples)):
        s = samples[i]
        if "error" in s:
            bad.append((s["path"], s["error"]))
            continue
        decoded.append(s)
        if streams(options, len(samples), s["input"].numel() * 4):  # "auto" and too big: stream
            return samples, {}
    check_bad_files(bad, len(samples), options.max_bad_fraction, what)
    shapes = {tuple(s["input"].shape) for s in decoded}
    if len(shapes) != 1:
        return samples, {"bad_files": [list(b) for b in bad]}  # different sizes cannot stack: stream
    inputs = torch.stack([s["input"] for s in decoded]) if decoded else torch.zeros((0, 3, 1, 1))
    return TensorSamples(inputs, [s["target"] for s in decoded], extra={"path": [s["path"] for s in decoded]}), \
        {"bad_files": [list(b) for b in bad]}


def _preprocess(size: tuple[int, int]) -> Preprocess:
    # Detectors normalise inside: the data are images in [0, 1] (mean 0, std 1). The size is the
    # images' common size where they share one ((0, 0) where they do not); whether files are
    # resized to it is the data info's ``image_resize``.
    return Preprocess(channels=3, source_size=size, size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _splits(name: str, annotations: dict[str, DetectionAnnotations], image_dirs: dict[str, Path],
            options: DataOptions, image_size: int | None, classes: list[str]) -> DataSplits:
    parts, info = {}, {"n_train": 0, "n_val": 0, "n_test": 0, "image_resize": image_size or 0}
    for split in ("train", "val", "test"):
        ann = annotations[split]
        files = [str(image_dirs[split] / img["file_name"]) for img in ann.images]
        samples = DetectionFileSamples(files, ann.targets, image_size, options.max_pixels)
        parts[split], extra = _in_memory(samples, options, f"{name} ({split})")
        info[f"n_{split}"] = len(parts[split])
        if extra.get("bad_files"):
            info.setdefault("bad_files", []).extend(extra["bad_files"])
    info["stream"] = not parts["train"].in_memory
    if image_size:
        size = (image_size, image_size)
    elif parts["train"].in_memory and len(parts["train"]):
        size = tuple(int(v) for v in parts["train"].inputs.shape[-2:])
    else:
        size = (0, 0)
    return DataSplits(name, parts["train"], parts["val"], parts["test"], classes, _preprocess(size), info)


def _subset(ann: DetectionAnnotations, indices: Sequence[int]) -> DetectionAnnotations:
    return DetectionAnnotations([ann.images[i] for i in indices], [ann.targets[i] for i in indices], ann.categories,
                                ann.first_label, ann.source)


def _random_split(ann: DetectionAnnotations, options: DataOptions) -> dict[str, DetectionAnnotations]:
    n = len(ann.images)
    order = np.random.default_rng(options.seed).permutation(n)
    n_test, n_val = int(round(n * options.test_fraction)), int(round(n * options.val_fraction))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return {"train": _subset(ann, sorted(train)), "val": _subset(ann, sorted(val)), "test": _subset(ann, sorted(test))}


def load_scenes(arg: str, options: DataOptions) -> DataSplits:
    """The scene set in ``arg`` (or the default cache folder), generated there if absent."""
    from .scenes import scene_set_exists, write_scene_set

    size = options.image_size or 160
    directory = Path(arg) if arg else default_scene_dir(size, options.seed)
    if not scene_set_exists(directory):
        write_scene_set(directory, 800, 200, size, options.seed)
    data = load_coco_folder(directory, DataOptions(**{**options.__dict__, "image_size": None}), f"scenes:{directory}")
    return data


def load_coco_folder(directory: Path, options: DataOptions, name: str) -> DataSplits:
    """A folder of ``train.json`` / ``val.json`` (/ ``test.json``) COCO files; images relative to it."""
    annotations = {}
    for split in ("train", "val", "test"):
        path = directory / f"{split}.json"
        if path.is_file():
            annotations[split] = read_coco_detection(path, first_label=0)
    if "train" not in annotations or "val" not in annotations:
        raise DataFormatError(f"{directory}: a COCO folder needs train.json and val.json (test.json optional)")
    annotations.setdefault("test", annotations["val"])
    classes = annotations["train"].classes
    for split, ann in annotations.items():
        if ann.classes != classes:
            raise DataFormatError(f"{directory / (split + '.json')}: categories {ann.classes} differ from "
                                  f"train.json's {classes}")
    dirs = {split: directory for split in annotations}
    return _splits(name, annotations, dirs, options, options.image_size, classes)


def load_coco(arg: str, options: DataOptions) -> DataSplits:
    """``coco:ANNOTATIONS[,IMAGE_DIR]`` (see the module docstring)."""
    ann_path, _, image_dir = arg.partition(",")
    path = Path(ann_path)
    if path.is_dir():
        return load_coco_folder(path, options, f"coco:{arg}")
    if not path.is_file():
        raise FileNotFoundError(f"coco:{arg}: no annotation file or folder at {path}")
    ann = read_coco_detection(path, first_label=0)
    images = Path(image_dir) if image_dir else path.parent
    if not images.is_dir():
        raise FileNotFoundError(f"coco:{arg}: image folder {images} not found")
    split = _random_split(ann, options)
    return _splits(f"coco:{arg}", split, dict.fromkeys(split, images), options, options.image_size, ann.classes)


def load_voc(arg: str, options: DataOptions) -> DataSplits:
    """``voc:DIR`` (see the module docstring)."""
    root = Path(arg)
    xml_dir = root / "Annotations"
    if not xml_dir.is_dir():
        raise FileNotFoundError(f"voc:{arg}: no Annotations folder in {root}")
    sets = root / "ImageSets" / "Main"
    ids: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        f = sets / f"{split}.txt"
        if f.is_file():
            ids[split] = [line.split()[0] for line in f.read_text().splitlines() if line.strip()]
    image_dir = root / "JPEGImages"

    def read(names: Sequence[str]) -> DetectionAnnotations:
        ann = read_voc_annotations([xml_dir / f"{n}.xml" for n in names], first_label=0)
        for img in ann.images:  # VOC's <filename> is relative to JPEGImages
            img["file_name"] = img["file_name"] or f"{img['id']}.jpg"
        return ann

    if "train" in ids and "val" in ids:
        split = {s: read(ids.get(s, ids["val"])) for s in ("train", "val", "test")}
    else:
        split = _random_split(read(sorted(p.stem for p in xml_dir.glob("*.xml"))), options)
    classes = split["train"].classes
    return _splits(f"voc:{arg}", split, dict.fromkeys(split, image_dir), options, options.image_size, classes)


register_dataset("scenes", load_scenes, "scenes or scenes:DIR (digits on real photos, COCO JSON)", task="detect")
register_dataset("coco", load_coco, "coco:ANNOTATIONS.json[,IMAGE_DIR] or coco:DIR (train.json, val.json)",
                 needs_arg=True, task="detect")
register_dataset("voc", load_voc, "voc:DIR (Pascal VOC: Annotations/, JPEGImages/)", needs_arg=True, task="detect")
