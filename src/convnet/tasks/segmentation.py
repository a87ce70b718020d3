"""Semantic segmentation: a class per position (pixel or voxel), in 1, 2 and 3 dims.

The batch is ``{"input": (B, C, *S), "target": (B, *S) int64}``; labels equal to ``ignore_index``
(255 by default, VOC's "void") count nowhere. The model returns logits (B, K, *O) (a dict
``{"out", "aux"}`` for torchvision's layouts in training).

- **Loss** (``task.options.loss``): "ce" (cross-entropy with class weights), "dice" (Milletari's
  soft Dice), "dice_ce" (both, summed) or "focal" (Lin et al.'s, ``focal_gamma``; class weights
  are its alpha) from ``tasks/segmentation_losses.py``. An auxiliary output adds ``aux_weight``
  times its loss: 0.5, as torchvision's reference recipe (``references/segmentation/train.py``,
  ``criterion``: ``losses["out"] + 0.5 * losses["aux"]``).
- **Metrics**: one K x K confusion matrix over the whole split (a summed state, so ranks reduce
  by addition), read once into per-class IoU and Dice, mIoU, mean Dice and pixel accuracy
  (``tasks/segmentation_metrics.py``), plus the mean loss; the training metric only counts
  correctly labelled positions.
- **Sizes**: a model takes the sizes its ``output_size`` accepts; a split of another size is
  refused when the model is built, naming the nearest valid sizes and the divisor, unless
  ``pad_to_multiple`` is on: then every input is padded (``pad_for_model``: to the next size the
  model takes; for a valid-convolution U-Net its margin, mirrored) and the output cropped back to
  the input. Without padding, the valid-convolution ``unet`` predicts the centre of its input
  only, and the target is cropped to that centre: Ronneberger's overlap-tile training ("the
  segmentation map only contains the pixels, for which the full context is available in the
  input image", §2). ``convnet predict`` always pads (mirrored), so every input position gets a
  prediction.
- **Sliding windows** (``window``: an extent per axis, or one for all): evaluation and predict run
  the model on overlapping windows blended with a Gaussian (``tasks/sliding_window.py``), so an
  input much larger than the training patch needs memory for ``window_batch`` windows only.
- **Augmentation**: geometry moves image and mask together, colour touches the image
  (``tasks/segmentation_augment.py``).
- **Predictions**: the arg-max mask at the input file's size and each class's share; ``predict``
  writes a palette mask PNG and an overlay (volumes: NIfTI with the input's affine and a montage).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ..data.samples import Batch, Sample, as_samples
from .base import Task, data_dims, register_task
from .metric import Metric
from .segmentation_losses import segmentation_loss
from .segmentation_metrics import confusion_matrix, scores_from_confusion
from .sliding_window import _pad, pad_for_model, sliding_window_inference

AUX_WEIGHT = 0.5  # torchvision references/segmentation/train.py: losses["out"] + 0.5 * losses["aux"]
SEGMENTATION_DATA = "horse, coins, mni152, segfolder:DIR, nifti:DIR"


def main_output(outputs: Any) -> torch.Tensor:
    """The logits of a model's output (a dict's ``"out"``)."""
    return outputs["out"] if isinstance(outputs, dict) else outputs


def fit_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target (B, *S) cut to the logits' spatial size: as it is when equal, its centre when
    the model predicts only the centre of its input (valid convolutions); else a ValueError."""
    out, have = tuple(logits.shape[2:]), tuple(target.shape[1:])
    if out == have:
        return target
    if len(out) != len(have) or any(o > h for o, h in zip(out, have)):
        raise ValueError(f"the model's output {out} does not fit the target {have} (B, *S)")
    index = (slice(None),) + tuple(slice((h - o) // 2, (h - o) // 2 + o) for h, o in zip(have, out))
    return target[index]


def _crop_outputs(outputs: Any, crop: tuple[slice, ...]) -> Any:
    if isinstance(outputs, dict):
        return {k: v[crop] for k, v in outputs.items()}
    return outputs[crop]


def _nan_to_none(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else float(v) for v in values.tolist()]


def unwrapped(model: nn.Module) -> nn.Module:
    """The model behind DistributedDataParallel and torch.compile (its size rules live there)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


class SegmentationMetrics(Metric):
    """Over a split: the confusion matrix (rows: true class) of every labelled position, the
    summed loss, and for the report the first ``keep_examples`` samples (image, true and predicted
    mask; 3-D: the middle slice along the last axis). The training version only counts correct
    and labelled positions (small state, cheap per step).

    Args:
        classes: the class names (K of them).
        ignore_index: a label that counts nowhere (None: none).
        training: the progress bar's version.
        loss_fn: ``(outputs, batch) -> (loss, parts)`` for the mean loss (None: no loss).
        keep_examples: samples kept for the report.
    """

    def __init__(self, classes: list[str], ignore_index: int | None = 255, training: bool = False,
                 loss_fn: Callable[[Any, Batch], tuple[torch.Tensor, dict]] | None = None, keep_examples: int = 0):
        super().__init__()
        self.classes, self.num_classes = list(classes), len(classes)
        self.ignore_index, self.training = ignore_index, training
        self.loss_fn, self.keep_examples = loss_fn, keep_examples
        self.add_state("correct", torch.zeros((), dtype=torch.long))
        self.add_state("labelled", torch.zeros((), dtype=torch.long))
        if not training:
            k = self.num_classes
            self.add_state("confusion", torch.zeros(k, k, dtype=torch.long))
            self.add_state("loss_sum", torch.zeros((), dtype=torch.float64))
            self.add_state("seen", torch.zeros((), dtype=torch.long))
            self.add_state("examples", [], reduce="cat")

    @torch.no_grad()
    def update(self, outputs: Any, batch: Batch) -> None:
        logits = main_output(outputs).float()
        target = fit_target(logits, batch["target"].to(logits.device))
        pred = logits.argmax(1)
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
        self.correct += int(((pred == target) & valid).sum())
        self.labelled += int(valid.sum())
        if self.training:
            return
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index).cpu()
        b = len(target)
        if self.loss_fn is not None:
            loss, _ = self.loss_fn(outputs, batch)
            self.loss_sum += float(loss) * b
        self.seen += b
        room = self.keep_examples - len(self.examples)
        for i in range(min(max(room, 0), b)):
            x = batch["input"][i].detach().float().cpu()
            x = x[(slice(None),) + tuple(slice((s - o) // 2, (s - o) // 2 + o)
                                         for s, o in zip(x.shape[1:], pred.shape[1:]))]  # the region predicted
            t, p = target[i].cpu(), pred[i].cpu()
            if p.ndim == 3:  # a volume: its middle slice along the last axis
                z = p.shape[-1] // 2
                x, t, p = x[..., z], t[..., z], p[..., z]
            self.examples.append((x, t, p))

    def progress(self) -> dict[str, float]:
        return {"pixel_acc": int(self.correct) / max(int(self.labelled), 1)}

    def scores(self) -> dict[str, Any]:
        """Per-class IoU, Dice and accuracy and their means, from the confusion matrix."""
        return scores_from_confusion(self.confusion)

    def compute(self) -> dict[str, Any]:
        labelled = int(self.labelled)
        out: dict[str, Any] = {"pixel_acc": int(self.correct) / labelled if labelled else float("nan")}
        if self.training:
            return out
        s = self.scores()
        seen = int(self.seen)
        out.update({"miou": s["miou"], "mean_dice": s["mean_dice"], "pixel_accuracy": s["pixel_accuracy"]})
        if self.loss_fn is not None:
            out["loss"] = float(self.loss_sum) / seen if seen else float("nan")
        out["iou_per_class"] = dict(zip(self.classes, _nan_to_none(s["iou"])))
        out["dice_per_class"] = dict(zip(self.classes, _nan_to_none(s["dice"])))
        del out["pixel_acc"]  # the same figure as pixel_accuracy, from the matrix
        return out

    def per_class(self) -> dict[str, list[Any]]:
        s = self.scores()
        return {"classes": self.classes, "iou": _nan_to_none(s["iou"]), "dice": _nan_to_none(s["dice"]),
                "accuracy": _nan_to_none(s["class_accuracy"])}


@register_task
class SegmentationTask(Task):
    """A class per position: losses of ``segmentation_losses``, mIoU, masks (module docstring)."""

    name = "segment"
    primary_metric = "miou"
    primary_label = "mIoU"
    unit = "img"
    option_defaults = {
        "loss": "ce",  # ce, dice, dice_ce, focal
        "ignore_index": 255,  # VOC's void label; null: every label counts
        "class_weights": None,  # one weight per class (ce, dice_ce's ce, focal's alpha)
        "aux_weight": AUX_WEIGHT,  # the auxiliary head's share of the loss (torchvision's reference)
        "include_background": True,  # Dice over class 0 too
        "focal_gamma": 2.0,
        "pad_to_multiple": False,  # pad inputs to a size the model takes, crop outputs back
        "pad_mode": "reflect",  # reflect (Ronneberger's mirroring), constant (zeros), replicate
        "window": 0,  # sliding-window extent for eval/predict (0: whole inputs)
        "overlap": 0.25,
        "window_batch": 4,  # windows per forward pass: the memory bound
        "gaussian": True,  # Gaussian weighting of window positions (nnU-Net)
        "keep_examples": 6,  # test samples shown in the report
    }

    def __init__(self, options: dict[str, Any] | None = None, cfg: Any = None):
        super().__init__(options, cfg)
        o = self.options
        if o["ignore_index"] is not None:
            o["ignore_index"] = int(o["ignore_index"])
        if not 0 <= float(o["overlap"]) < 1:
            raise ValueError(f"task.options.overlap must be in [0, 1), got {o['overlap']}")
        if int(o["window_batch"]) < 1:
            raise ValueError(f"task.options.window_batch must be positive, got {o['window_batch']}")
        if o["pad_mode"] not in ("reflect", "constant", "replicate"):
            raise ValueError(f"task.options.pad_mode must be reflect, constant or replicate, got {o['pad_mode']!r}")
        self._criterion: nn.Module | None = None
        self._criterion_for = None
        segmentation_loss(o["loss"])  # an unknown name fails now, naming the choices

    # ------------------------------------------------------------------ data and model
    def setup(self, classes: Any) -> SegmentationTask:
        super().setup(classes)
        weights = self.options["class_weights"]
        if weights is not None and len(weights) != len(self.classes):
            raise ValueError(f"task.options.class_weights needs one weight per class ({len(self.classes)}: "
                             f"{', '.join(self.classes)}), got {len(weights)}")
        return self

    def collate(self, samples: list[Sample]) -> Batch:
        inputs = [s["input"] for s in samples]
        if any(x.shape != inputs[0].shape for x in inputs):
            sizes = ", ".join(str(tuple(x.shape[1:])) for x in inputs[:3])
            raise ValueError(f"samples of different sizes in one batch ({sizes}, ...): set data.image_size to "
                             "resize them, or data.batch_size=1")
        batch: Batch = {"input": torch.stack(inputs),
                        "index": torch.as_tensor([int(s.get("index", 0)) for s in samples], dtype=torch.long)}
        if "target" in samples[0]:
            batch["target"] = torch.stack([torch.as_tensor(s["target"]).long() for s in samples])
        for key in ("path", "orig_size"):
            if key in samples[0]:
                batch[key] = [s[key] for s in samples]
        if any(s.get("cover") for s in samples):
            batch["cover"] = True
        return batch

    def build_model(self, model_cfg: Any, data: Any) -> nn.Module:
        """The model for ``data``: a registered segmentation model, or a registered classifier
        as the encoder of a U-Net (``create_model("unet", encoder=NAME)``); refuses data
        without masks and input sizes the model cannot take (see the module docstring)."""
        from ..models import create_model, get_entry

        _check_masks(data)
        dims = data_dims(model_cfg.spatial_dims, data)
        entry = get_entry(model_cfg.name)
        if entry.task == "classify":
            model = create_model("unet", spatial_dims=dims, in_channels=data.channels, num_classes=data.num_classes,
                                 encoder=model_cfg.name, encoder_overrides=dict(model_cfg.overrides) or None)
        elif entry.task == "segment":
            model = create_model(model_cfg.name, spatial_dims=dims, in_channels=data.channels,
                                 num_classes=data.num_classes, **model_cfg.overrides)
        else:
            raise ValueError(f"{model_cfg.name} is a {entry.task} model; segmentation needs a segmentation model "
                             "(convnet models --task segment) or a classifier to use as a U-Net encoder")
        self.check_sizes(model, data)
        return model

    def _window(self, dims: int) -> tuple[int, ...] | None:
        w = self.options["window"]
        if not w:
            return None
        w = (int(w),) * dims if isinstance(w, (int, float)) else tuple(int(v) for v in w)
        if len(w) != dims or any(v < 1 for v in w):
            raise ValueError(f"task.options.window must be a positive extent or one per spatial axis ({dims}), got {w}")
        return w

    def check_sizes(self, model: nn.Module, data: Any) -> None:
        """Refuse splits whose inputs the model cannot take (module docstring)."""
        if self.options["pad_to_multiple"]:
            return
        window = self._window(model.spatial_dims)
        if window is not None:
            _check_size(model, window, "task.options.window", "set task.options.window to one of them")
        for part in ("train",) if window is not None else ("train", "val", "test"):
            samples = as_samples(getattr(data, part))
            if len(samples) == 0:
                continue
            size = tuple(samples.inputs.shape[2:]) if samples.in_memory else None
            if size is None and not getattr(samples, "native", True):
                size = tuple(data.preprocess.size)
            if size is not None:
                _check_size(model, size, f"the {part} inputs",
                            "set data.image_size to one of them, or task.options.pad_to_multiple=true to pad "
                            "inputs and crop outputs back")

    def build_augment(self, augment_cfg: Any, data: Any, spatial_dims: int) -> Any:
        from .segmentation_augment import JointAugment

        return JointAugment(augment_cfg, data_dims(spatial_dims, data), data.preprocess.mean, data.preprocess.std,
                            self.options["ignore_index"])

    def resize_batch(self, batch: Batch, size: tuple[int, ...]) -> Batch:
        """Progressive learning's smaller inputs: the image by linear interpolation, the mask by
        nearest neighbour, so labels stay labels."""
        resized = super().resize_batch(batch, size)
        target = batch.get("target")
        if resized is batch or not isinstance(target, torch.Tensor):
            return resized
        mask = F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0]
        return {**resized, "target": mask.to(target.dtype)}

    # ------------------------------------------------------------------ forward
    def analysis_input(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        """Padded as predict pads a file (mirrored; a valid-convolution U-Net's margin), so a
        model of restricted sizes takes any file; the crop maps a (B, *S) map back."""
        padded, crop = pad_for_model(unwrapped(model), x, mode=self.options["pad_mode"])
        return padded, (slice(None), *crop[2:])

    def _padded(self, model: nn.Module, x: torch.Tensor) -> Any:
        padded, crop = pad_for_model(unwrapped(model), x, mode=self.options["pad_mode"])
        return _crop_outputs(model(padded), crop)

    def _windowed(self, model: nn.Module, x: torch.Tensor, window: tuple[int, ...], cover: bool) -> torch.Tensor:
        inner = unwrapped(model)
        out = inner.output_size(window) if hasattr(inner, "output_size") else window
        margins = [(w - o) // 2 for w, o in zip(window, out)]
        if cover and any(margins):  # the valid-convolution margin, mirrored, so the output covers the input
            x = _pad(x, margins, margins, self.options["pad_mode"], 0.0)
        o = self.options
        return sliding_window_inference(inner, x, window, overlap=float(o["overlap"]), gaussian=bool(o["gaussian"]),
                                        batch_size=int(o["window_batch"]), pad_mode="constant")

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        """Training: the model on the batch (padded and cropped back with ``pad_to_multiple``).
        Evaluation and predict: sliding windows when ``window`` is set; padding (so the output
        covers the input) with ``pad_to_multiple`` or for files given to predict."""
        x = batch["input"]
        cover = bool(self.options["pad_to_multiple"] or batch.get("cover"))
        if not model.training:
            window = self._window(x.ndim - 2)
            if window is not None:
                return self._windowed(model, x, window, cover)
        return self._padded(model, x) if cover else model(x)

    # ------------------------------------------------------------------ learning
    def criterion(self, num_classes: int) -> nn.Module:
        """The loss module of ``task.options.loss`` (built once)."""
        if self._criterion is None or self._criterion_for != num_classes:
            o = self.options
            ignore, weights = o["ignore_index"], o["class_weights"]
            kwargs: dict[str, Any] = {
                "ce": {"weight": weights, "ignore_index": -100 if ignore is None else ignore},
                "dice": {"ignore_index": ignore, "include_background": bool(o["include_background"])},
                "dice_ce": {"weight": weights, "ignore_index": ignore,
                            "include_background": bool(o["include_background"])},
                "focal": {"gamma": float(o["focal_gamma"]), "alpha": weights,
                          "ignore_index": -100 if ignore is None else ignore},
            }[o["loss"]]
            self._criterion, self._criterion_for = segmentation_loss(o["loss"], **kwargs), num_classes
        return self._criterion

    def _one_loss(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits.float()
        target = fit_target(logits, target)
        crit = self.criterion(logits.shape[1])
        if hasattr(crit, "parts"):  # Dice + CE: log both terms
            parts = crit.parts(logits, target)
            total = crit.dice_weight * parts["dice"] + crit.ce_weight * parts["ce"]
            return total, {k: float(v) for k, v in parts.items()}
        return crit(logits, target), {}

    def loss(self, outputs: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        target = batch["target"]
        total, parts = self._one_loss(main_output(outputs), target)
        if isinstance(outputs, dict) and outputs.get("aux") is not None:
            aux, _ = self._one_loss(outputs["aux"], target)
            parts.update({"out": float(total), "aux": float(aux)})
            total = total + float(self.options["aux_weight"]) * aux
        return total, parts

    def metrics(self, training: bool = False) -> SegmentationMetrics:
        return SegmentationMetrics(self.classes, self.options["ignore_index"], training=training,
                                   loss_fn=None if training else self.loss,
                                   keep_examples=0 if training else int(self.options["keep_examples"]))

    # ------------------------------------------------------------------ predictions
    def postprocess(self, outputs: Any, batch: Batch) -> list[dict[str, Any]]:
        """Per sample: ``mask`` (the arg-max, at the input file's size when predict resized
        it) and ``fractions`` (each class's share of the positions)."""
        from .segmentation_output import class_fractions

        logits = main_output(outputs).float()
        sizes = batch.get("orig_size") or [None] * len(logits)
        out = []
        for row, size in zip(logits, sizes):
            row = row[None]
            if size is not None and tuple(size) != tuple(row.shape[2:]):
                row = F.interpolate(row, size=tuple(int(s) for s in size), mode=L.linear_mode(row.ndim - 2),
                                    align_corners=False)
            mask = row.argmax(1)[0]
            out.append({"mask": mask.to(torch.uint8) if row.shape[1] <= 256 else mask,
                        "fractions": class_fractions(mask, self.classes, row.shape[1])})
        return out

    def to_response(self, prediction: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        """``serve``'s JSON: the mask as a base64 8-bit PNG of class indices (2-D; a volume's
        middle slice along the first axis, with its shape) and each class's share of the pixels."""
        import base64
        import io

        import numpy as np
        from PIL import Image

        mask = prediction["mask"]
        classes = list(run.get("data", {}).get("classes") or self.classes)
        plane = mask if mask.ndim == 2 else mask[mask.shape[0] // 2] if mask.ndim == 3 else mask[None]
        buf = io.BytesIO()
        Image.fromarray(plane.to(torch.uint8).cpu().numpy().astype(np.uint8), mode="L").save(buf, format="PNG")
        answer = {"mask": {"png": base64.b64encode(buf.getvalue()).decode("ascii"), "classes": classes,
                           "shape": list(mask.shape)},
                  "fractions": prediction.get("fractions")}
        if mask.ndim == 3:
            answer["mask"]["slice"] = {"axis": 0, "index": int(mask.shape[0] // 2)}
        return answer

    def load_input(self, path: str, run: dict[str, Any], invert: bool = False, **options: Any) -> Sample:
        """An image file (PNG, JPEG, anything Pillow reads) or, for a run on volumes, a NIfTI file
        (``.nii``/``.nii.gz``, nibabel) or ``.npy`` array, prepared as the run's data were: the
        same channels, intensity scaling and normalisation, the run's voxel size (volumes are
        resampled from the file's), and for runs on resized images the run's size (the mask is
        brought back to the file's size). ``invert``: dark-on-light images flipped first."""
        from ..data.samples import read_image
        from ..data.segmentation_data import (VOLUME_SUFFIXES, normalise_volume, read_volume, resize_pair,
                                              volume_suffix)
        from ..data.transforms import Preprocess

        data = run.get("data") or {}
        seg = data.get("segmentation") or {"kind": "image", "scale": "native"}
        pre = Preprocess.from_dict(data["preprocess"])
        volume = seg.get("kind") == "volume" or volume_suffix(path) in VOLUME_SUFFIXES
        sample: dict[str, Any] = {"path": path, "index": 0, "cover": True}
        if volume:
            if invert:
                raise ValueError("--invert applies to images; this run reads volumes")
            if len(pre.size) != 3:
                raise ValueError(f"{path}: this run segments {len(pre.size)}-D images, not volumes")
            array, affine, zooms = read_volume(path)
            x = normalise_volume(array)
            x = x[None] if x.ndim == 3 else x
            sample["orig_size"], sample["affine"] = tuple(x.shape[1:]), affine.tolist()
            image = x
            voxel = seg.get("voxel_size")
            if voxel and seg.get("scale") != "resize":  # to the run's voxel size, back for the mask
                size = [max(1, round(s * z / v)) for s, z, v in zip(x.shape[1:], zooms, voxel)]
                x, _ = resize_pair(x, None, size)
        else:
            mode = "L" if pre.channels == 1 else "RGB"
            max_pixels = (run.get("train") or {}).get("data", {}).get("max_pixels", 0)
            x, _ = read_image(path, mode, max_pixels)
            if len(pre.size) != 2:
                raise ValueError(f"{path}: this run segments {len(pre.size)}-D inputs, not images")
            if invert:
                x = 1.0 - x
            sample["orig_size"] = tuple(x.shape[1:])
            image = x
        if x.shape[0] != pre.channels:
            raise ValueError(f"{path}: {x.shape[0]} channel(s); the run was trained on {pre.channels}")
        if seg.get("scale") == "resize":
            x, _ = resize_pair(x, None, pre.size)
        shape = (-1,) + (1,) * (x.ndim - 1)
        mean, std = torch.tensor(pre.mean).view(shape), torch.tensor(pre.std).view(shape)
        sample["input"] = ((x.float() - mean) / std).contiguous()
        sample["image"] = image
        return sample

    def describe(self, prediction: dict[str, Any], run: dict[str, Any], top_k: int | None = None) -> str:
        shares = sorted(prediction["fractions"].items(), key=lambda kv: -kv[1])[:top_k or None]
        return ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares)

    def write_prediction(self, prediction: dict[str, Any], sample: Sample, out_dir: Any,
                         run: dict[str, Any]) -> list[Any]:
        from .segmentation_output import write_prediction_files

        return write_prediction_files(prediction, sample, out_dir)

    # ------------------------------------------------------------------ report
    def report_figures(self, evaluation: SegmentationMetrics, model: nn.Module, data: Any, run: dict[str, Any]):
        from .segmentation_output import examples_figure, iou_figure

        figures = []
        if evaluation.examples:
            dims = len(getattr(data.preprocess, "size", ()) or ()) or 2
            figures.append(("segmentation_examples", "Test samples: input, true mask, predicted mask",
                            examples_figure(evaluation.examples, self.classes, dims)))
        per = evaluation.per_class()
        figures.append(("per_class_iou", "Per-class IoU and Dice on the test split",
                        iou_figure(per["iou"], per["dice"], self.classes)))
        return figures

    def summary_extra(self, evaluation: SegmentationMetrics) -> dict[str, Any]:
        return {"test_per_class": evaluation.per_class()}


def _check_masks(data: Any) -> None:
    """Refuse data whose targets are class labels (a classification set)."""
    if (data.info or {}).get("segmentation"):
        return
    samples = as_samples(data.train)
    if samples.in_memory:
        targets = samples.targets
        ok = isinstance(targets, torch.Tensor) and targets.ndim == samples.inputs.ndim - 1
    else:
        ok = len(samples) == 0 or "error" in samples[0] or torch.as_tensor(samples[0]["target"]).ndim >= 1
    if not ok:
        raise ValueError(f"data set {data.name} has a class per input, not masks: the segment task needs "
                         f"segmentation data ({SEGMENTATION_DATA})")


def _check_size(model: nn.Module, size: tuple[int, ...], what: str, advice: str) -> None:
    """A ValueError naming the reason, the divisor and the nearest valid extents when ``model``
    cannot take ``size``."""
    name = getattr(model, "default_cfg", {}).get("name", type(model).__name__)
    for axis, s in enumerate(size):
        try:
            model.axis_output_size(int(s))
        except ValueError as e:
            below, above = model.nearest_valid_sizes(int(s))
            near = " or ".join(str(v) for v in (below, above) if v is not None) or "none"
            divisor = getattr(model, "size_divisor", 1)
            rule = f"; its extents must be multiples of {divisor}" if divisor > 1 else ""
            raise ValueError(f"{name} cannot take {what} of size {tuple(size)} (spatial axis {axis}: {e}{rule}); "
                             f"nearest valid extents: {near}; {advice}") from None


__all__ = ["AUX_WEIGHT", "SegmentationMetrics", "SegmentationTask", "fit_target", "main_output"]
