"""Samples: what every data set yields, one dict per sample, and the two ways a split is held.

A sample is a dict ``{"input": tensor, "target": ..., "index": i}`` plus metadata such as
``"path"``. The target is whatever the task needs: a class index, a mask, a dict of boxes and
labels, a sequence. Batches are made by the task's ``collate``.

A split is held either

* **in memory** (:class:`TensorSamples`): every input already preprocessed into one tensor, for
  small sets (the digits, MNIST, CIFAR); a batch is one fancy-index, the fast path; or
* **on disk** (:class:`ImageFileSamples` and the other streamed readers): a list of files, each
  decoded and preprocessed when it is asked for, in DataLoader worker processes, so memory does
  not grow with the data set.

A file that cannot be decoded yields ``{"error": message, "path": ..., "index": i}`` instead of
raising: the collate step drops it and the trainer counts it against ``data.max_bad_fraction``.
"""
from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .readers import _LUMA_WEIGHTS, DataFormatError, load_image
from .transforms import Preprocess

Sample = dict[str, Any]
Batch = dict[str, Any]


class Samples(Dataset, abc.ABC):
    """A split of a data set: ``len()`` samples, ``samples[i]`` a sample dict.

    ``targets`` lists every sample's target without decoding any input where the set allows it
    (class labels for stratified splits and folds), else None. ``in_memory`` says whether
    :meth:`batch` serves whole batches by indexing (the fast path)."""

    in_memory = False

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of samples."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Sample:
        """Sample ``index`` as a dict (``{"error": ...}`` for a file that cannot be read)."""

    @property
    def targets(self) -> Sequence[Any] | None:
        return None

    def batch(self, indices: torch.Tensor) -> Batch:
        raise TypeError(f"{type(self).__name__} streams its samples; batches come from a DataLoader")


class TensorSamples(Samples):
    """Preprocessed inputs (N, C, *S) and their targets held in memory.

    ``targets`` is a tensor with one row per sample (class indices (N,), masks (N, *S), ...) or a
    list (one object per sample, e.g. detection targets)."""

    in_memory = True

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor | list[Any], extra: dict[str, Any] | None = None):
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs
        self._targets = targets
        self.extra = extra or {}  # per-sample tensors or lists that travel with the batch (e.g. lengths)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def targets(self) -> torch.Tensor | list[Any]:
        return self._targets

    def __getitem__(self, index: int) -> Sample:
        sample = {"input": self.inputs[index], "target": self._targets[index], "index": index}
        sample.update({k: v[index] for k, v in self.extra.items()})
        return sample

    def batch(self, indices: torch.Tensor) -> Batch:
        """The samples at ``indices`` as one batch, by indexing (no per-sample work)."""
        out: Batch = {"input": self.inputs[indices], "index": indices}
        out["target"] = _take(self._targets, indices)
        out.update({k: _take(v, indices) for k, v in self.extra.items()})
        return out


class SubsetSamples(Samples):
    """The samples at ``indices`` of another split, class targets renumbered by ``remap``
    (old index -> new index), e.g. a few classes for transfer learning."""

    def __init__(self, base: Samples, indices: Sequence[int], remap: torch.Tensor | None = None):
        self.base, self.indices, self.remap = base, list(indices), remap
        self.in_memory = base.in_memory

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def targets(self) -> list[Any] | None:
        base = self.base.targets
        if base is None:
            return None
        return [self._target(base[i]) for i in self.indices]

    def _target(self, target: Any) -> Any:
        return int(self.remap[int(target)]) if self.remap is not None else target

    def __getitem__(self, index: int) -> Sample:
        sample = dict(self.base[self.indices[index]])
        sample["index"] = index
        if "target" in sample:
            sample["target"] = self._target(sample["target"])
        return sample

    def batch(self, indices: torch.Tensor) -> Batch:
        batch = self.base.batch(torch.as_tensor(self.indices)[indices])
        batch["index"] = indices
        if self.remap is not None:
            batch["target"] = self.remap[batch["target"]]
        return batch


def _take(values: torch.Tensor | list[Any], indices: torch.Tensor) -> torch.Tensor | list[Any]:
    if isinstance(values, torch.Tensor):
        return values[indices]
    return [values[i] for i in indices.tolist()]


def as_samples(split: Samples | tuple[torch.Tensor, Any]) -> Samples:
    """A split as :class:`Samples`: an ``(inputs, targets)`` pair becomes :class:`TensorSamples`."""
    if isinstance(split, Samples):
        return split
    if isinstance(split, (tuple, list)) and len(split) == 2:
        return TensorSamples(*split)
    raise TypeError(f"a split is Samples or an (inputs, targets) pair, got {type(split).__name__}")


class ImageFileSamples(Samples):
    """Image files and their class labels, decoded one at a time.

    Every file is read by :func:`readers.load_image` (which refuses special files and images over
    ``max_pixels`` before decoding them, and decodes a large JPEG at reduced size) and brought to
    the model's input by ``preprocess.from_image``, the same function ``convnet predict`` uses,
    so a streamed sample equals the in-memory one bit for bit.

    Args:
        files: image paths.
        labels: one class index per file.
        preprocess: the split's preprocessing (its ``channels`` decide gray or RGB decoding).
        max_pixels: images with more pixels are refused before decoding (0: no cap).
    """

    def __init__(self, files: Sequence[str], labels: Sequence[int], preprocess: Preprocess,
                 max_pixels: int = 0):
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = list(files)
        self.labels = list(labels)
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.mode = "L" if preprocess.channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.files)

    @property
    def targets(self) -> list[int]:
        return self.labels

    def __getitem__(self, index: int) -> Sample:
        path = self.files[index]
        try:
            image, native = read_image(path, self.mode, self.max_pixels, self.preprocess.source_size)
            x = self.preprocess.from_image(image)[0]
        except (DataFormatError, OSError, ValueError) as e:
            return {"error": str(e), "path": path, "index": index}
        sample = {"input": x, "target": self.labels[index], "index": index, "path": path}
        if native != self.preprocess.channels:
            sample["converted"] = True  # a colour file in a gray set or the other way round
        return sample


def read_image(path: str, mode: str, max_pixels: int = 0, size: Sequence[int] | None = None
               ) -> tuple[torch.Tensor, int]:
    """Decode ``path`` as ``mode`` ("L" or "RGB"); returns the image and its native channel count.

    :func:`readers.load_image` refuses special files and images over ``max_pixels`` (0: no cap)
    before decoding, and decodes a JPEG much larger than ``size`` at reduced size."""
    image = load_image(path, None, max_pixels=max_pixels or None, target_size=tuple(size) if size else None)
    native = image.shape[0]
    if mode == "L" and native == 3:
        image = torch.tensordot(torch.from_numpy(_LUMA_WEIGHTS), image, dims=([0], [0])).unsqueeze(0)
    elif mode == "RGB" and native == 1:
        image = image.expand(3, *image.shape[1:])
    return image, native


class Collate:
    """The task's collate behind a filter: samples that failed to decode are dropped and listed
    in the batch under ``"bad"`` as (path, error) pairs; files converted to the set's channel
    count are listed under ``"converted"``. A top-level class, so worker processes can pickle it."""

    def __init__(self, collate: Callable[[list[Sample]], Batch]):
        self.collate = collate

    def __call__(self, samples: list[Sample]) -> Batch:
        good = [s for s in samples if "error" not in s]
        bad = [(s.get("path", f"#{s['index']}"), s["error"]) for s in samples if "error" in s]
        batch = self.collate(good) if good else {"input": None, "index": torch.zeros(0, dtype=torch.long)}
        batch["bad"] = bad
        batch["converted"] = [s["path"] for s in good if s.get("converted")]
        return batch


def batch_size_of(batch: Batch) -> int:
    """How many samples a batch holds."""
    index = batch.get("index")
    if index is not None:
        return len(index)
    x = batch["input"]
    return 0 if x is None else len(x)


def majority_channels(files: Sequence[str], limit: int = 256) -> int:
    """1 or 3: the channel count most of ``files`` have, read from the headers of up to ``limit``
    files spread evenly over the list (no pixel is decoded), so that one colour file in a gray
    folder does not turn the whole set 3-channel."""
    from PIL import Image

    from .readers import _GRAYSCALE_MODES

    if not files:
        return 3
    step = max(1, len(files) // limit)
    gray = colour = 0
    for path in files[::step][:limit]:
        try:
            if not os.path.isfile(path):
                continue
            with Image.open(path) as img:
                if img.mode in _GRAYSCALE_MODES or (img.mode == "P" and _palette_is_gray(img)):
                    gray += 1
                else:
                    colour += 1
        except (OSError, ValueError, SyntaxError):
            continue  # unreadable files are counted when they are decoded, not here
    return 1 if gray > colour else 3


def _palette_is_gray(img: Any) -> bool:
    palette = img.getpalette() or []
    triples = [palette[i:i + 3] for i in range(0, len(palette), 3)]
    return bool(triples) and all(r == g == b for r, g, b in triples)


__all__ = ["Batch", "Collate", "ImageFileSamples", "Sample", "Samples", "SubsetSamples", "TensorSamples", "as_samples",
           "batch_size_of", "majority_channels", "read_image"]
