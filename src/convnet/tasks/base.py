"""The Task contract: everything that differs between classification, segmentation, detection,
sequences and video, in one object per task, so that the Trainer, ``eval``, ``predict``, ``cv``,
the report and ``serve`` call the task and name none.

A task says

* how its model is built for a data set (``build_model``; a head on a backbone's ``feature_info``
  where it needs one);
* what a batch is (``collate``: inputs stack; class indices stack; masks stack; boxes stay lists);
* how a training batch is augmented on the device (``build_augment``: images alone, or an image
  and its mask or boxes together);
* the loss (``loss``: the total to minimise and the parts to log);
* the metrics over a whole split, reduced across ranks (``metrics``; ``primary_metric`` and
  ``higher_is_better`` choose the best epoch);
* predictions (``postprocess``: outputs to one dict per sample), how a file becomes an input
  (``load_input``), what ``predict`` prints and writes (``describe`` / ``write_prediction``);
* the figures of the run report (``report_figures``).

Prior art: Lightning's ``LightningModule`` (one object per task's steps), torchmetrics' ``Metric``
(update / compute / reset / sync) and the per-task Trainer/Validator/Predictor split of
detection libraries. convnet keeps one Trainer and moves only what differs into the task.
"""
from __future__ import annotations

import abc
import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..data.samples import Batch, Sample
from .metric import Metric

if TYPE_CHECKING:  # tasks/ sits below train/ (DESIGN.md); the config is only a type here
    from matplotlib.figure import Figure

    from ..data.datasets import DataSplits


class Task(abc.ABC):
    """One task. Subclasses set ``name``, ``primary_metric`` and implement the abstract methods.

    Args:
        options: the task's own settings (``task.options.*`` in the training config).
        cfg: the whole training config (label smoothing, distillation and the like are read from it).
    """

    name: ClassVar[str]
    primary_metric: ClassVar[str]  # the metric (without split prefix) that picks the best epoch
    higher_is_better: ClassVar[bool] = True
    primary_label: ClassVar[str] = ""  # how people call the primary metric ("accuracy", "mIoU")
    unit: ClassVar[str] = "img"  # what the progress bar counts
    option_defaults: ClassVar[dict[str, Any]] = {}  # the task.options it reads, with their defaults

    def __init__(self, options: dict[str, Any] | None = None, cfg: Any = None):
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(f"task.options.{k}" for k in self.option_defaults) or "none"
            raise ValueError(f"task {self.name!r} has no option(s) {unknown}; its options: {known}")
        self.options = {**self.option_defaults, **options}
        self.cfg = cfg
        self.classes: list[str] = []

    def setup(self, classes: Sequence[str]) -> Task:
        """Tell the task the data's classes (from the data set, or from a run's config.json)."""
        self.classes = list(classes)
        return self

    # ------------------------------------------------------------------ model and data
    def build_model(self, model_cfg: Any, data: DataSplits) -> nn.Module:
        """The model for this data: by default ``create_model`` with the data's channels and classes."""
        from ..models import create_model

        return create_model(model_cfg.name, spatial_dims=model_cfg.spatial_dims, in_channels=data.channels,
                            num_classes=data.num_classes, **model_cfg.overrides)

    @abc.abstractmethod
    def collate(self, samples: list[Sample]) -> Batch:
        """Samples (dicts) to one batch (a dict of stacked tensors and lists)."""

    def build_augment(self, augment_cfg: Any, data: DataSplits, spatial_dims: int
                      ) -> Callable[[Batch, torch.Generator], Batch] | None:
        """The training batch's augmentation on the device (None: none)."""
        return None

    def resize_batch(self, batch: Batch, size: tuple[int, ...]) -> Batch:
        """The batch at spatial size ``size`` (EfficientNetV2's progressive learning trains on
        smaller inputs first): the input resized (linear interpolation); tasks whose targets are
        spatial (masks) resize those too."""
        import torch.nn.functional as F

        from ..layers import linear_mode

        x = batch["input"]
        if not isinstance(x, torch.Tensor) or tuple(x.shape[2:]) == tuple(size):
            return batch
        return {**batch, "input": F.interpolate(x, size=size, mode=linear_mode(x.ndim - 2), align_corners=False)}

    def analysis_input(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        """An input (B, C, *S) as an analysis (Grad-CAM) should feed it to ``model``, and the
        index that crops a (B, *S') map back to the input's positions (None: nothing to crop)."""
        return x, None

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        """Run ``model`` on a batch: ``model(batch["input"])`` by default; a detector in training
        mode also takes the targets (and returns its losses)."""
        return model(batch["input"])

    # ------------------------------------------------------------------ learning
    @abc.abstractmethod
    def loss(self, outputs: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss over the batch and its parts to log (floats)."""

    @abc.abstractmethod
    def metrics(self, training: bool = False) -> Metric:
        """A fresh metric over a split. ``training``: the cheap version the progress bar shows
        during an epoch (no loss recomputation); otherwise the full one, whose result holds
        ``loss`` and ``primary_metric``."""

    def learns_without_gradients(self, model: nn.Module) -> bool:
        """Whether ``model`` is fitted by :meth:`fit_without_gradients` instead of epochs of backprop."""
        return False

    def fit_without_gradients(self, model: nn.Module, data: DataSplits, device: torch.device,
                              generator: torch.Generator) -> dict[str, Any] | None:
        """Models that learn by their own rule instead of backprop are fitted here, once; returns
        the figures to log, or None for a model trained by gradient descent (the usual case)."""
        return None

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step (e.g. Kim's max-norm constraint)."""

    # ------------------------------------------------------------------ predictions
    @abc.abstractmethod
    def postprocess(self, outputs: Any, batch: Batch) -> list[dict[str, Any]]:
        """Outputs to one prediction per sample (top-k, a mask, boxes)."""

    def load_input(self, path: str, run: dict[str, Any], **options: Any) -> Sample:
        """A file given to ``predict`` or ``serve`` as a model input, prepared as the run's data
        was (``run`` is the run's config.json; ``options``: the task's reading options)."""
        raise ValueError(f"task {self.name!r} does not read input files")

    def load_input_bytes(self, data: bytes, filename: str, run: dict[str, Any], **options: Any) -> Sample:
        """An input received as bytes (an upload to ``serve``), read as :meth:`load_input` reads a
        file. By default the bytes go to a private temporary file (a fresh 0700 directory) named
        with ``filename``'s suffix, since readers choose by suffix (``.wav``, ``.nii.gz``), and
        are read from there, so an upload and the same file given to ``predict`` are one input.
        Errors name ``filename``, never the temporary path."""
        import tempfile

        from ..data.readers import DataFormatError

        with tempfile.TemporaryDirectory(prefix="convnet-input-") as tmp:
            path = str(Path(tmp) / f"input{_safe_suffix(filename)}")
            with open(path, "wb") as fh:
                fh.write(data)
            try:
                sample = self.load_input(path, run, **options)
            except ValueError as e:
                raise DataFormatError(str(e).replace(path, filename)) from e
        return {**sample, "path": filename}

    def describe(self, prediction: dict[str, Any], run: dict[str, Any], top_k: int | None = None) -> str:
        """One line about a prediction for the console (``top_k``: how many alternatives to name)."""
        return str(prediction)

    def to_response(self, prediction: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        """A prediction as ``serve`` answers it: a JSON-safe dict (by default the prediction with
        tensors as lists). The web page draws the keys it knows: ``top_k`` (a list of
        ``{"index", "label", "prob"}``, best first; ``label`` is shown as the answer), ``mask``
        (``{"png": base64 8-bit PNG of class indices, "classes": [names]}``) and ``boxes`` (a list
        of ``{"box": [x1, y1, x2, y2] in the uploaded image's pixels, "label", "score"}``)."""
        return _jsonable(prediction)

    def write_prediction(self, prediction: dict[str, Any], sample: Sample, out_dir: Path,
                         run: dict[str, Any]) -> list[Path]:
        """What ``predict --out DIR`` leaves on disk for one input; returns the files written."""
        from ..weights.io import atomic_write_json

        stem = Path(str(sample.get("path", f"sample_{sample.get('index', 0)}"))).name
        return [atomic_write_json(out_dir / f"{stem}.json", _jsonable(prediction))]

    # ------------------------------------------------------------------ report
    def report_figures(self, evaluation: Metric, model: nn.Module, data: DataSplits, run: dict[str, Any]
                       ) -> list[tuple[str, str, Figure]]:
        """The task's figures for the run report: (file stem, heading, figure) triples, from the
        test split's metric state (after ``result()``)."""
        return []

    def summary_extra(self, evaluation: Metric) -> dict[str, Any]:
        """More entries for summary.json from the test metric (e.g. per-class figures)."""
        return {}


def data_dims(configured: int, data: Any) -> int:
    """The spatial axes a model gets for ``data``: the configured number, except that the
    config's default (2) yields to data of another rank (a 1-D time series, a 3-D clip), whose
    preprocessing names one size per axis."""
    rank = len(getattr(data.preprocess, "size", ()) or ())
    return rank if configured == 2 and rank in (1, 3) else configured


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _safe_suffix(filename: str) -> str:
    """``filename``'s suffixes (".png", ".nii.gz") when they are short and plain, else ""."""
    suffix = "".join(Path(filename).suffixes[-2:]).lower()
    return suffix if len(suffix) <= 12 and all(c.isalnum() or c == "." for c in suffix) else ""


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its ``name``."""
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is already registered")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, options: dict[str, Any] | None = None, cfg: Any = None) -> Task:
    """A task by name; an unknown name lists the registered ones."""
    from . import _load_all

    _load_all()
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](options, cfg)


def list_tasks() -> Sequence[str]:
    from . import _load_all

    _load_all()
    return sorted(TASKS)
