"""Detection: boxes and classes of every object in an image, scored with COCO's mAP.

Samples: ``{"input": (C, H, W) image in [0, 1], "target": {"boxes": (N, 4) absolute xyxy float,
"labels": (N,) int64 in 0..K-1, optional "iscrowd", "area"}, "index", "path"}``. Images stay in
[0, 1]: every detector normalises inside (as torchvision's do), so predictions need no
knowledge of a data set's statistics. A batch keeps images stacked when they share a size (the
in-memory fast path) and as a list otherwise; targets are always a list of dicts.

Labels: the data's classes are 0..K-1; a model whose label 0 is the background
(``label_offset = 1``: Faster R-CNN, SSD) is built with K + 1 classes and sees labels 1..K. The
task maps in both directions in :meth:`DetectionTask.forward`, so targets, predictions, metrics
and files always speak the data's labels.

``forward`` in training mode returns the model's loss dict (``loss`` sums it and logs each
part); in evaluation it returns one dict of ``boxes``, ``scores``, ``labels`` per image (images
are run in chunks of ``task.options.eval_chunk``, whatever the evaluation batch size). The
metric keeps every image's predictions and targets (``cat`` states) and computes COCO's
figures with :func:`convnet.evaluate_detections` (equal to pycocotools): ``map`` (mAP@[.5:.95],
the primary metric), ``map_50``, ``map_75``, ``map_small/medium/large``, ``mar_1/10/100`` and
AP per class. The training metric records nothing (mAP over a training epoch would need every
image's detections in evaluation mode).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.samples import Batch, Sample, as_samples
from .base import Task, register_task
from .metric import Metric

_METRIC_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100",
                "mar_small", "mar_medium", "mar_large")


def unwrap(model: nn.Module) -> nn.Module:
    """The detector inside DistributedDataParallel or torch.compile wrappers."""
    for attr in ("_orig_mod", "module"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    return model


def label_offset(model: nn.Module) -> int:
    return int(getattr(unwrap(model), "label_offset", 0))


def _cpu(target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in target.items() if isinstance(v, torch.Tensor)}


class DetectionMetrics(Metric):
    """Every image's predictions and targets over a split, and COCO's figures from them.

    Args:
        training: the progress bar's version, which records nothing.
        class_metrics: also compute AP per class (``compute`` returns ``ap_per_class``).
    """

    def __init__(self, training: bool = False, class_metrics: bool = True):
        super().__init__()
        self.training, self.class_metrics = training, class_metrics
        if not training:
            self.add_state("predictions", [], reduce="cat")
            self.add_state("targets", [], reduce="cat")
            self.add_state("indices", [], reduce="cat")

    @torch.no_grad()
    def update(self, outputs: Any, batch: Batch) -> None:
        if self.training:
            return
        indices = batch.get("index")
        indices = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices or range(len(outputs)))
        for pred, target, index in zip(outputs, batch["target"], indices):
            self.predictions.append(_cpu(pred))
            self.targets.append(_cpu(target))
            self.indices.append(int(index))

    def compute(self) -> dict[str, Any]:
        if self.training:
            return {}
        if not self.targets:
            return {k: float("nan") for k in _METRIC_KEYS}
        from ..ops import evaluate_detections

        result = evaluate_detections(self.predictions, self.targets, class_metrics=self.class_metrics)
        out: dict[str, Any] = {k: float(result[k]) for k in _METRIC_KEYS}
        if self.class_metrics:
            out["ap_per_class"] = {int(c): float(v) for c, v in zip(result["classes"].tolist(),
                                                                   result["map_per_class"].tolist())}
        return out


def _shift_labels(target: dict[str, torch.Tensor], offset: int) -> dict[str, torch.Tensor]:
    if not offset:
        return target
    return {**target, "labels": target["labels"] + offset}


@register_task
class DetectionTask(Task):
    """Boxes and classes per image: the model's own losses, COCO mAP, drawn predictions."""

    name = "detect"
    primary_metric = "map"
    primary_label = "mAP@[.5:.95]"
    option_defaults = {
        "score_thresh": 0.3,  # predictions written by predict and drawn in the report
        "eval_chunk": 8,  # images per model call in evaluation (a detector's memory grows with it)
        "mosaic": 0.0,  # probability a training image becomes a mosaic of four (the YOLO recipe)
        "min_visibility": 0.4,  # augmented boxes keeping less of their area are dropped
        "report_images": 12,  # validation images drawn in the report
    }

    # ------------------------------------------------------------------ model and data
    def build_model(self, model_cfg: Any, data: Any) -> nn.Module:
        """A registered detector for the data's classes (K, or K + 1 for models with a background label)."""
        from ..models import create_model, get_entry

        entry = get_entry(model_cfg.name)
        if entry.task != "detect":
            raise ValueError(f"model {model_cfg.name!r} is a {entry.task} model; the detect task needs a detector "
                             "(convnet.list_models(task='detect'))")
        offset = int(getattr(entry.cls, "label_offset", 0))
        return create_model(model_cfg.name, spatial_dims=model_cfg.spatial_dims, in_channels=data.channels,
                            num_classes=data.num_classes + offset, **model_cfg.overrides)

    def collate(self, samples: list[Sample]) -> Batch:
        images = [s["input"] for s in samples]
        same = len({tuple(x.shape) for x in images}) == 1
        batch: Batch = {"input": torch.stack(images) if same else images,
                        "index": torch.as_tensor([s.get("index", 0) for s in samples], dtype=torch.long)}
        if "target" in samples[0]:
            batch["target"] = [s["target"] for s in samples]
        for key in ("path", "scale"):
            if key in samples[0]:
                batch[key] = [s[key] for s in samples]
        return batch

    def build_augment(self, augment_cfg: Any, data: Any, spatial_dims: int) -> Any:
        from ..data.detection_augment import DetectionAugment, DetectionAugmentConfig

        return DetectionAugment(DetectionAugmentConfig.from_augment(augment_cfg, float(self.options["mosaic"]),
                                                                    float(self.options["min_visibility"])))

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        """Training: the model's loss dict for the batch's targets (labels shifted to the
        model's). Evaluation: per-image predictions with the data's labels."""
        offset = label_offset(model)
        images = batch["input"]
        if model.training:
            targets = [{"boxes": t["boxes"].float(), "labels": t["labels"].long() + offset} for t in batch["target"]]
            return model(images, targets)
        chunk = max(1, int(self.options["eval_chunk"]))
        outputs = []
        for start in range(0, len(images), chunk):
            for pred in model(images[start:start + chunk]):
                pred = dict(pred)
                pred["labels"] = pred["labels"] - offset
                outputs.append(pred)
        return outputs

    # ------------------------------------------------------------------ learning
    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if not isinstance(outputs, dict) or not outputs:
            raise ValueError("a detector in training mode returns a dict of losses; got "
                             f"{type(outputs).__name__} (is the model in training mode with targets?)")
        total = sum(outputs.values())
        return total, {k: float(v.detach()) for k, v in outputs.items()}

    def metrics(self, training: bool = False) -> DetectionMetrics:
        return DetectionMetrics(training=training)

    # ------------------------------------------------------------------ predictions
    def postprocess(self, outputs: list[dict[str, torch.Tensor]], batch: Batch) -> list[dict[str, Any]]:
        """Per image: the detections scoring at least ``score_thresh``, boxes in the input file's
        pixels (undoing the data's resize where there was one), with class names."""
        thresh = float(self.options["score_thresh"])
        scales = batch.get("scale") or [None] * len(outputs)
        out = []
        for pred, scale in zip(outputs, scales):
            keep = pred["scores"] >= thresh
            boxes = pred["boxes"][keep].detach().float().cpu()
            if scale is not None:
                sx, sy = scale
                boxes = boxes / torch.tensor([sx, sy, sx, sy])
            labels = pred["labels"][keep].detach().cpu().long()
            names = [self.classes[i] if 0 <= i < len(self.classes) else str(i) for i in labels.tolist()]
            out.append({"boxes": boxes, "labels": labels, "scores": pred["scores"][keep].detach().float().cpu(),
                        "classes": names})
        return out

    def load_input(self, path: str, run: dict[str, Any], invert: bool = False) -> Sample:
        """An image file in [0, 1] at its own size, resized as the run's data were when they
        were (``image_resize``); ``scale`` maps boxes back to the file's pixels."""
        from ..data.samples import read_image

        max_pixels = run.get("train", {}).get("data", {}).get("max_pixels", 0)
        image, _ = read_image(path, "RGB", max_pixels)
        if invert:
            image = 1.0 - image
        sample: Sample = {"input": image, "path": path, "index": 0}
        size = int((run.get("data") or {}).get("image_resize") or 0)
        if size:
            h, w = image.shape[-2:]
            sample["input"] = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)[0].clamp_(0.0, 1.0)
            sample["scale"] = (size / w, size / h)
        return sample

    def describe(self, prediction: dict[str, Any], run: dict[str, Any], top_k: int | None = None) -> str:
        n = len(prediction["scores"])
        if n == 0:
            return f"no object scored {self.options['score_thresh']} or more"
        shown = []
        for i in range(min(n, top_k or n)):
            box = ", ".join(f"{v:.0f}" for v in prediction["boxes"][i].tolist())
            shown.append(f"{prediction['classes'][i]} ({float(prediction['scores'][i]):.2f}) at [{box}]")
        more = f" and {n - len(shown)} more" if n > len(shown) else ""
        return f"{n} object{'s' if n != 1 else ''}: " + "; ".join(shown) + more

    def to_response(self, prediction: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        """``serve``'s answer: ``boxes`` as the page draws them (``{"box": [x1, y1, x2, y2] in the
        uploaded image's pixels, "label", "score"}``, best first)."""
        order = torch.argsort(prediction["scores"], descending=True).tolist()
        boxes = [{"box": [round(float(v), 2) for v in prediction["boxes"][i].tolist()],
                  "label": prediction["classes"][i], "score": round(float(prediction["scores"][i]), 4)}
                 for i in order]
        return {"boxes": boxes}

    def write_prediction(self, prediction: dict[str, Any], sample: Sample, out_dir: Path, run: dict[str, Any]
                         ) -> list[Path]:
        """``<name>.boxes.png`` (the input image with its boxes drawn) and ``<name>.json``."""
        from PIL import Image

        from ..weights.io import atomic_write_bytes, atomic_write_json

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = Path(str(sample.get("path", f"sample_{sample.get('index', 0)}"))).name
        path = sample.get("path")
        if path is not None:
            with Image.open(path) as img:
                image = img.convert("RGB")
        else:  # no file: the model's input, back to 8-bit
            image = Image.fromarray((sample["input"].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
        drawn = draw_boxes(image, prediction["boxes"], prediction["labels"], prediction["classes"],
                           prediction["scores"])
        png = out_dir / f"{name}.boxes.png"
        import io

        buffer = io.BytesIO()
        drawn.save(buffer, format="PNG")
        atomic_write_bytes(png, buffer.getvalue())
        record = {"boxes": prediction["boxes"].tolist(), "labels": prediction["labels"].tolist(),
                  "classes": prediction["classes"], "scores": prediction["scores"].tolist(), "box_format": "xyxy",
                  "image": str(path) if path is not None else None}
        return [png, atomic_write_json(out_dir / f"{name}.json", record)]

    # ------------------------------------------------------------------ report
    def report_figures(self, evaluation: DetectionMetrics, model: nn.Module, data: Any, run: dict[str, Any]):
        """Predictions (score >= ``score_thresh``, in colour) over the first test images with
        their ground truth (white), and AP per class."""
        from matplotlib.figure import Figure

        figures = []
        n = min(int(self.options["report_images"]), len(evaluation.predictions))
        if n:
            samples = as_samples(data.test)
            cols = min(4, n)
            rows = math.ceil(n / cols)
            fig = Figure(figsize=(3 * cols, 3 * rows))
            axes = fig.subplots(rows, cols, squeeze=False).ravel()
            thresh = float(self.options["score_thresh"])
            for ax in axes:
                ax.axis("off")
            for ax, pred, target, index in zip(axes, evaluation.predictions, evaluation.targets, evaluation.indices):
                image = samples[index]["input"]
                ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy() if image.shape[0] == 3 else image[0].numpy(),
                          cmap=None if image.shape[0] == 3 else "gray")
                for box in target["boxes"].tolist():
                    ax.add_patch(_rect(box, "white", 1.0, "--"))
                for box, label, score in zip(pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist()):
                    if score < thresh:
                        continue
                    colour = _colour(label)
                    ax.add_patch(_rect(box, tuple(c / 255 for c in colour), 1.5, "-"))
                    name = self.classes[label] if 0 <= label < len(self.classes) else str(label)
                    ax.text(box[0], box[1], f"{name} {score:.2f}", fontsize=6, color="black",
                            bbox={"facecolor": tuple(c / 255 for c in colour), "pad": 0.5, "linewidth": 0})
            fig.suptitle(f"predictions (score >= {thresh}) over test images; dashed: ground truth", fontsize=9)
            fig.tight_layout()
            figures.append(("predictions", "Predictions on test images", fig))
        per_class = evaluation.compute().get("ap_per_class") if evaluation.targets else None
        if per_class:
            fig = Figure(figsize=(max(4, 0.4 * len(per_class) + 2), 3))
            ax = fig.subplots()
            names = [self.classes[c] if 0 <= c < len(self.classes) else str(c) for c in per_class]
            ax.bar(range(len(per_class)), [max(v, 0.0) for v in per_class.values()], color="#4878cf")
            ax.set_xticks(range(len(per_class)), names, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel("AP@[.5:.95]")
            ax.set_ylim(0, 1)
            fig.tight_layout()
            figures.append(("ap_per_class", "AP per class (test)", fig))
        return figures

    def summary_extra(self, evaluation: DetectionMetrics) -> dict[str, Any]:
        if not evaluation.targets:
            return {}
        per_class = evaluation.compute().get("ap_per_class") or {}
        return {"test_ap_per_class": {self.classes[c] if 0 <= c < len(self.classes) else str(c): v
                                      for c, v in per_class.items()}}


# ---------------------------------------------------------------------- drawing

def _colour(label: int) -> tuple[int, int, int]:
    """A distinct, stable colour per class (golden-ratio hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _rect(box: list[float], colour: Any, width: float, style: str) -> Any:
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=width, linestyle=style)


def draw_boxes(image: Any, boxes: torch.Tensor, labels: torch.Tensor, names: list[str], scores: torch.Tensor) -> Any:
    """A copy of a PIL image with each box outlined in its class's colour and labelled (name and score)."""
    from PIL import ImageDraw

    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 200))
    for box, label, name, score in zip(boxes.tolist(), labels.tolist(), names, scores.tolist()):
        colour = _colour(int(label))
        draw.rectangle(box, outline=colour, width=width)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text)
        y = max(0, box[1] - (bottom - top) - 2)
        draw.rectangle((box[0], y, box[0] + (right - left) + 2, y + (bottom - top) + 2), fill=colour)
        draw.text((box[0] + 1, y), text, fill=(0, 0, 0))
    return out
