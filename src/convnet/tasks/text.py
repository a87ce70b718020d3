"""Sentence classification (Kim 2014): one class per sentence of token ids.

A batch is ``{"input": (B, L) int64 token ids, 0 = padding, "lengths": (B,), "target": (B,)}``;
``forward`` cuts it after its longest sentence (the split is padded to its own longest) and,
with ``task.options.max_len``, truncates longer sentences. The model masks the padding itself
(Kim's CNN: windows of padding only pool to 0 after the ReLU), so a padded batch gives each
sentence's logits alone. Loss and metrics are the classification ones; after every optimiser
step the model's ``apply_constraints`` runs (Kim's max-norm 3 on the softmax weights, §2.1).
Augmentation is off: the image distortions mean nothing for token ids.

The vocabulary comes with the data (``data.vocabulary`` in the run's config.json, built from
the training split; ``convnet.data.sources_sequences``) and is what ``predict`` encodes new text
with. ``task.options.vectors=PATH`` (a word2vec or GloVe text file, or word2vec's ``.bin``)
starts CNN-static, CNN-non-static and CNN-multichannel from pretrained vectors: known words get
theirs, the others U[-0.25, 0.25] (Kim's ``add_unknown_words``), and ``embed_dim`` follows the
file. Without vectors those variants start from random vectors, as CNN-rand does.

``predict`` reads a text file (or ``-``, standard input): every non-empty line is one
sentence, and the file's prediction lists one entry per line (``lines``), printed one line per
sentence.
"""
from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.samples import Batch, Sample
from .base import register_task
from .classification import ClassificationMetrics, ClassificationTask

__all__ = ["TextClassificationTask", "read_sentences"]


def read_sentences(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, or of standard input for ``-``.

    Raises:
        ValueError: the file is not UTF-8 or holds no text (the file named).
        FileNotFoundError: no such file.
    """
    if path == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{path}: no such text file")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{'standard input' if path == '-' else path}: no text (expected one sentence per line)")
    return lines


@register_task
class TextClassificationTask(ClassificationTask):
    """One class per sentence (token ids); see the module docstring."""

    name = "classify_text"
    unit = "sent"
    option_defaults = {**ClassificationTask.option_defaults, "vectors": "", "max_len": 0}

    # ------------------------------------------------------------------ model and data
    @staticmethod
    def vocabulary(info: dict[str, Any]):
        """The run's (or the data's) vocabulary from its info / config.json ``data`` section."""
        from ..data.text import Vocabulary

        tokens = info.get("vocabulary")
        if not tokens:
            raise ValueError("the data carry no vocabulary (data.vocabulary): classify_text needs token-id data "
                             "such as --data rt_polarity")
        return Vocabulary(tokens)

    def build_model(self, model_cfg: Any, data: Any) -> nn.Module:
        from ..data.text import embedding_matrix, read_word_vectors
        from ..models import create_model

        vocab = self.vocabulary(data.info)
        overrides = dict(model_cfg.overrides)
        if overrides.setdefault("vocab_size", len(vocab)) != len(vocab):
            raise ValueError(f"model.overrides.vocab_size={overrides['vocab_size']} but the vocabulary has "
                             f"{len(vocab)} entries; leave it unset")
        vectors = None
        if self.options["vectors"]:
            vectors = read_word_vectors(self.options["vectors"], vocab)
            if overrides.setdefault("embed_dim", vectors.dim) != vectors.dim:
                raise ValueError(f"model.overrides.embed_dim={overrides['embed_dim']} but "
                                 f"{self.options['vectors']} holds vectors of size {vectors.dim}")
        model = create_model(model_cfg.name, spatial_dims=1, num_classes=data.num_classes, **overrides)
        mode = getattr(getattr(model, "spec", None), "mode", None)
        if vectors is not None:
            if mode == "rand":
                raise ValueError(f"{model_cfg.name} starts from random vectors (CNN-rand); task.options.vectors "
                                 "applies to kim_cnn_static, kim_cnn_non_static and kim_cnn_multichannel")
            model.load_embeddings(embedding_matrix(vocab, vectors))
        elif mode in ("static", "multichannel"):
            warnings.warn(f"{model_cfg.name} without task.options.vectors: its frozen embedding stays random",
                          stacklevel=2)
        return model

    def build_augment(self, augment_cfg: Any, data: Any, spatial_dims: int) -> None:
        return None

    def collate(self, samples: list[Sample]) -> Batch:
        """Token ids padded to the batch's longest sentence, with ``lengths``; a sample of
        several sentences (a file to predict: input (n, L)) adds n rows and ``groups`` says
        which rows are whose."""
        from .padding import pad_sequences

        rows, lengths, groups = [], [], []
        for s in samples:
            x = s["input"]
            n = s.get("lengths")
            start = len(rows)
            if x.ndim == 2:
                n = n if n is not None else torch.full((len(x),), x.shape[1])
                rows += list(x)
                lengths += [int(v) for v in torch.as_tensor(n).flatten()]
            else:
                rows.append(x)
                lengths.append(int(n) if n is not None else x.shape[-1])
            groups.append((start, len(rows)))
        ids, lengths_t = pad_sequences(rows, [max(1, v) for v in lengths])
        batch: Batch = {"input": ids, "lengths": lengths_t,
                        "index": torch.as_tensor([s["index"] for s in samples], dtype=torch.long)}
        if any(hi - lo != 1 for lo, hi in groups):
            batch["groups"] = groups
        if "target" in samples[0]:
            batch["target"] = torch.as_tensor([int(s["target"]) for s in samples], dtype=torch.long)
        for key in ("path", "lines"):
            if key in samples[0]:
                batch[key] = [s[key] for s in samples]
        return batch

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x = batch["input"]
        if batch.get("lengths") is not None and len(batch["lengths"]):
            x = x[:, :max(1, int(batch["lengths"].max()))]
        if self.options["max_len"]:
            x = x[:, :int(self.options["max_len"])]
        return model(x)

    def after_step(self, model: nn.Module) -> None:
        constrain = getattr(model, "apply_constraints", None)
        if callable(constrain):
            constrain()

    # ------------------------------------------------------------------ predictions
    def postprocess(self, outputs: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        rows = super().postprocess(outputs, batch)
        groups = batch.get("groups")
        if groups is None:
            return rows
        return [{"lines": rows[lo:hi]} for lo, hi in groups]

    def load_input(self, path: str, run: dict[str, Any], invert: bool = False) -> Sample:
        """A text file (or ``-``: standard input), one sentence per line, encoded with the run's
        vocabulary and tokenizer."""
        from ..data.text import encode

        if invert:
            raise ValueError("--invert applies to images; this run reads text")
        lines = read_sentences(path)
        ids, lengths = encode(lines, self.vocabulary(run["data"]))
        return {"input": ids, "lengths": lengths, "lines": lines, "path": path, "index": 0}

    def describe(self, prediction: dict[str, Any], run: dict[str, Any], top_k: int | None = None) -> str:
        if "lines" not in prediction:
            return super().describe(prediction, run, top_k)
        out = [f"{len(prediction['lines'])} sentences"]
        for i, p in enumerate(prediction["lines"], 1):
            out.append(f"  {i}: {super().describe(p, run, top_k)}")
        return "\n".join(out)

    def write_prediction(self, prediction: dict[str, Any], sample: Sample, out_dir: Path,
                         run: dict[str, Any]) -> list[Path]:
        from ..weights.io import atomic_write_json
        from .base import _jsonable

        classes = run["data"]["classes"]
        rows = prediction.get("lines", [prediction])
        named = [{**p, "labels": [classes[i] for i in p["classes"]], "text": t}
                 for p, t in zip(rows, sample.get("lines", [""] * len(rows)))]
        stem = "stdin" if sample.get("path") == "-" else Path(str(sample.get("path", "text"))).name
        return [atomic_write_json(out_dir / f"{stem}.json", _jsonable({"lines": named}))]

    # ------------------------------------------------------------------ report
    def report_figures(self, evaluation: ClassificationMetrics, model: nn.Module, data: Any, run: dict[str, Any]):
        from .figures import classification_figures

        figures = classification_figures(evaluation.confusion.numpy(), data.classes, None, [])
        if evaluation.examples:
            figures.append(("misclassified", "Misclassified sentences (true → predicted)",
                            sentence_figure(evaluation.examples, self.vocabulary(data.info), data.classes)))
        return figures


def sentence_figure(examples: list[tuple[torch.Tensor, int, int]], vocab: Any, classes: list[str], limit: int = 20):
    """Misclassified sentences as text lines (decoded from their token ids)."""
    from matplotlib.figure import Figure

    shown = examples[:limit]
    fig = Figure(figsize=(10, 0.45 * len(shown) + 0.6))
    ax = fig.subplots()
    ax.axis("off")
    for row, (ids, true, pred) in enumerate(shown):
        words = " ".join(t for t in vocab.lookup(int(i) for i in ids.long().tolist() if int(i) != vocab.pad_index))
        label = f"{classes[true]} → {classes[pred]}: "
        ax.text(0, 1 - (row + 0.5) / max(len(shown), 1), label + textwrap.shorten(words, 140), fontsize=8,
                va="center", family="monospace", transform=ax.transAxes)
    fig.tight_layout()
    return fig
