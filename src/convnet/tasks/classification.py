"""Classification: one class per input (an image, a signal, a volume, a clip).

The batch is ``{"input": (B, C, *S), "target": (B,) int64}``; augmentation may add
``"soft_target"`` (B, K) (Mixup, CutMix), which the loss then reads instead. The loss is
cross-entropy with label smoothing (Szegedy et al. 2016, §7) and, with a teacher, Hinton et
al.'s distillation term. The metrics keep a confusion matrix over the split, from which accuracy
and per-class figures follow, plus the summed cross-entropy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ..data.samples import Batch, Sample, as_samples
from .base import Task, data_dims, register_task
from .metric import Metric
from .padding import masked_forward, pad_sequences, trim_to_longest


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy against int labels (B,) or soft targets (B, K) (Mixup/CutMix), with
    label smoothing: the target becomes (1 - eps) * target + eps / K (Szegedy et al. 2016, §7)."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    k = logits.shape[1]
    soft = targets * (1.0 - label_smoothing) + label_smoothing / k
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(softmax(t / T) || softmax(s / T)) * T^2, averaged over the batch.
    The T^2 keeps the soft targets' gradient on the same scale as the labels' when T changes."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


class ClassificationMetrics(Metric):
    """Over a split: a K x K confusion matrix (rows: true class), the summed cross-entropy, and,
    for the report, the first ``keep_examples`` misclassified inputs. The training version
    (``training=True``) only counts correct predictions: it runs every step, and a checkpoint
    keeps its state.

    Args:
        num_classes: K.
        training: the progress bar's version (no confusion matrix, no loss, no examples).
        keep_examples: misclassified inputs kept for the report (0: none).
    """

    def __init__(self, num_classes: int, training: bool = False, keep_examples: int = 0):
        super().__init__()
        self.num_classes, self.training, self.keep_examples = num_classes, training, keep_examples
        self.add_state("correct", torch.zeros((), dtype=torch.long))
        self.add_state("seen", torch.zeros((), dtype=torch.long))
        if not training:
            self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long))
            self.add_state("loss_sum", torch.zeros((), dtype=torch.float64))
            self.add_state("examples", [], reduce="cat")

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, batch: Batch) -> None:
        logits = outputs.float()
        target = batch["target"].to(logits.device)
        pred = logits.argmax(1)
        correct = pred == target
        self.correct += int(correct.sum())
        self.seen += len(target)
        if self.training:
            return
        k = self.num_classes
        self.confusion += torch.bincount((target * k + pred).cpu(), minlength=k * k).view(k, k)
        self.loss_sum += F.cross_entropy(logits, target, reduction="sum").double().cpu()
        room = self.keep_examples - len(self.examples)
        for i in (~correct).nonzero().flatten()[:max(0, room)].tolist():
            self.examples.append((batch["input"][i].detach().float().cpu(), int(target[i]), int(pred[i])))

    def progress(self) -> dict[str, float]:
        return {"acc": int(self.correct) / max(int(self.seen), 1)}

    def compute(self) -> dict[str, Any]:
        seen = int(self.seen)
        out: dict[str, Any] = {"acc": int(self.correct) / seen if seen else float("nan")}
        if not self.training:
            out["loss"] = float(self.loss_sum) / seen if seen else float("nan")
        return out

    def per_class(self) -> dict[str, list[float | None]]:
        """Recall and precision of every class (None where a class never occurs / is never predicted)."""
        cm = self.confusion.double()
        tp = cm.diagonal()
        recall = [float(t / r) if r > 0 else None for t, r in zip(tp, cm.sum(1))]
        precision = [float(t / c) if c > 0 else None for t, c in zip(tp, cm.sum(0))]
        return {"recall": recall, "precision": precision}


class ClassificationAugment:
    """BatchAugment on a classification batch: the input is augmented; Mixup/CutMix add soft
    targets under ``"soft_target"``, the hard labels stay for the metrics."""

    def __init__(self, augment: Any):
        self.augment = augment  # progressive learning adjusts its magnitude and Mixup strength

    @property
    def enabled(self) -> bool:
        return self.augment.enabled

    def __getattr__(self, name: str) -> Any:
        # The chain's settings (rand_augment_m, mixup, cfg) read through, as on BatchAugment.
        if name == "augment":
            raise AttributeError(name)
        return getattr(self.augment, name)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        x, target = self.augment(batch["input"], batch["target"], generator)
        batch = {**batch, "input": x}
        if target is not batch["target"]:
            batch["soft_target"] = target  # (B, K) probabilities
        return batch


@register_task
class ClassificationTask(Task):
    """One class per input: cross-entropy, accuracy, top-k predictions."""

    name = "classify"
    primary_metric = "acc"
    primary_label = "accuracy"
    option_defaults = {"top_k": 5, "keep_examples": 32}

    def collate(self, samples: list[Sample]) -> Batch:
        inputs = [s["input"] for s in samples]
        batch: Batch = {"index": torch.as_tensor([s["index"] for s in samples], dtype=torch.long)}
        if "lengths" in samples[0] or any(x.shape != inputs[0].shape for x in inputs):
            # Sequences of different lengths (JapaneseVowels, a .ts file to predict): padded
            # after their ends, with their lengths; forward masks the padding.
            batch["input"], batch["lengths"] = pad_sequences(inputs, [int(s.get("lengths", x.shape[-1]))
                                                                      for s, x in zip(samples, inputs)])
        else:
            batch["input"] = torch.stack(inputs)
        if "target" in samples[0]:  # inputs to predict have none
            batch["target"] = torch.as_tensor([int(s["target"]) for s in samples], dtype=torch.long)
        if "path" in samples[0]:
            batch["path"] = [s["path"] for s in samples]
        return batch

    def build_model(self, model_cfg: Any, data: Any) -> nn.Module:
        from ..models import create_model

        return create_model(model_cfg.name, spatial_dims=data_dims(model_cfg.spatial_dims, data),
                            in_channels=data.channels, num_classes=data.num_classes, **model_cfg.overrides)

    def build_augment(self, augment_cfg: Any, data: Any, spatial_dims: int) -> ClassificationAugment:
        from ..data.augment import BatchAugment

        return ClassificationAugment(BatchAugment(augment_cfg, spatial_dims=data_dims(spatial_dims, data),
                                                  num_classes=data.num_classes, mean=data.preprocess.mean,
                                                  std=data.preprocess.std))

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """``model(batch["input"])``; a batch with ``lengths`` (padded sequences) is cut to its
        longest sequence and run with the padding masked in every layer (tasks/padding.py)."""
        lengths = batch.get("lengths")
        if lengths is None:
            return model(batch["input"])
        x = trim_to_longest(batch["input"], lengths)
        return masked_forward(model, x, lengths)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = outputs.float()
        smoothing = self.cfg.label_smoothing if self.cfg is not None else 0.0
        loss = classification_loss(logits, batch.get("soft_target", batch["target"]), smoothing)
        teacher = batch.get("teacher_outputs")
        if teacher is not None:
            d = self.cfg.distill
            loss = (1 - d.alpha) * loss + d.alpha * distillation_loss(logits, teacher.float(), d.temperature)
        return loss, {}

    def metrics(self, training: bool = False) -> ClassificationMetrics:
        return ClassificationMetrics(len(self.classes), training=training,
                                     keep_examples=0 if training else int(self.options["keep_examples"]))

    # ------------------------------------------------------------------ no-gradient learners
    def learns_without_gradients(self, model: nn.Module) -> bool:
        from ..models import LayerwiseLearner

        return isinstance(model, LayerwiseLearner)

    def fit_without_gradients(self, model: nn.Module, data: Any, device: torch.device,
                              generator: torch.Generator) -> dict[str, Any] | None:
        """The neocognitron learns its features by competition, without labels, one layer at a
        time; labels reach only its readouts. Any model with ``fit_unsupervised`` and
        ``fit_readout`` (the models.LayerwiseLearner protocol) is fitted this way."""
        if not self.learns_without_gradients(model):
            return None
        train_x, train_y = stacked(data.train)
        stats = model.fit_unsupervised(train_x.to(device), generator=generator)
        readout = model.fit_readout(train_x.to(device), train_y.to(device))
        test_x, test_y = stacked(data.test)
        scores = model.evaluate_readouts(test_x.to(device), test_y.to(device))
        row = {f"test_{k}": v for k, v in scores.items()}
        row.update({k: v for k, v in {**stats, **readout}.items() if isinstance(v, (int, float, list))})
        return row

    # ------------------------------------------------------------------ predictions
    def postprocess(self, outputs: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        probs = outputs.float().softmax(1)
        k = min(int(self.options["top_k"]), probs.shape[1])
        top = probs.topk(k, dim=1)
        return [{"classes": idx.tolist(), "probs": p.tolist()} for p, idx in zip(top.values, top.indices)]

    def load_input(self, path: str, run: dict[str, Any], invert: bool = False) -> Sample:
        """A file prepared as the run's training inputs were, by the run's input reader
        (``convnet.data.inputs``: an image, a .ts series, a WAV, a video clip); ``invert``: an
        image's dark ink on light paper becomes light on dark (the digits' polarity) first."""
        from ..data.inputs import read_input

        return {"input": read_input(path, run, invert=invert), "path": path, "index": 0}

    def describe(self, prediction: dict[str, Any], run: dict[str, Any], top_k: int | None = None) -> str:
        classes = run["data"]["classes"]
        pairs = list(zip(prediction["classes"], prediction["probs"]))[:top_k or None]
        return ", ".join(f"{classes[i] if i < len(classes) else i} ({p:.3f})" for i, p in pairs)

    def to_response(self, prediction: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        """The top-k classes with their names and probabilities, best first (``serve``'s JSON)."""
        classes = run["data"].get("classes") or []
        top = [{"index": int(i), "label": str(classes[i]) if i < len(classes) else str(i), "prob": float(p)}
               for i, p in zip(prediction["classes"], prediction["probs"])]
        return {"label": top[0]["label"], "index": top[0]["index"], "top_k": top}

    # ------------------------------------------------------------------ report
    def report_figures(self, evaluation: ClassificationMetrics, model: nn.Module, data: Any, run: dict[str, Any]):
        from .figures import classification_figures

        return classification_figures(evaluation.confusion.numpy(), data.classes, first_conv_weight(model),
                                      evaluation.examples)

    def summary_extra(self, evaluation: ClassificationMetrics) -> dict[str, Any]:
        return {"test_per_class": evaluation.per_class()}


def stacked(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as (inputs, targets) tensors: in-memory splits as they are; streamed ones
    decoded (files that fail are left out)."""
    samples = as_samples(split)
    if samples.in_memory:
        return samples.inputs, torch.as_tensor(samples.targets)
    good = [s for s in (samples[i] for i in range(len(samples))) if "error" not in s]
    return torch.stack([s["input"] for s in good]), torch.as_tensor([int(s["target"]) for s in good])


def first_conv_weight(model: nn.Module) -> torch.Tensor | None:
    """The first convolution's kernel (out, in, *k), for the filters figure."""
    for m in model.modules():
        if isinstance(m, L.CONV_TYPES):
            return m.weight.detach().cpu()
    return None
