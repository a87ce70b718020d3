"""Waveform generation (WaveNet, van den Oord et al. 2016): a softmax over the 256 mu-law levels
of the next sample at every time step.

A batch is ``{"input": (B, T) int64 codes, "target": (B, T) int64}``, the target being the
input one sample later (``wav:`` / ``ecg:`` sources), -1 where a position only gives context
(not scored). The loss is the cross-entropy over the scored positions, in nats; the metrics are
the negative log-likelihood over a whole split in nats (``loss``) and in bits per sample
(``bits_per_sample`` = nats / ln 2, the primary metric: lower is better) and how often the most
likely level is the next one (``acc``).

``predict`` takes a WAV file (or, for an ECG run, a DICOM waveform), prepared as the run's data
(resampled, scaled, mu-law coded), and continues its last ``window`` samples (``seed_samples``)
by ``task.options.samples`` new ones drawn from the model (``temperature``, ``seed``; the
``method`` "cached" of Paine et al. 2016 or "naive", which draw the same samples); ``--out``
writes the generated audio as a 16-bit WAV and a plot of seed and continuation. The run report
shows a generated continuation of held-out audio next to the real one.
"""
from __future__ import annotations

import io
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.samples import Batch, Sample
from .base import Task, _jsonable, register_task
from .metric import Metric

__all__ = ["GenerationMetrics", "GenerationTask", "write_wav"]

LN2 = math.log(2.0)


class GenerationMetrics(Metric):
    """Over a split: the summed negative log-likelihood (nats) of the scored next samples, how
    many there are, and how many the model's most likely level got right. The training version
    counts only the latter (the loss already gives the progress bar its NLL)."""

    def __init__(self, training: bool = False):
        super().__init__()
        self.training = training
        self.add_state("correct", torch.zeros((), dtype=torch.long))
        self.add_state("count", torch.zeros((), dtype=torch.long))
        if not training:
            self.add_state("nll_sum", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, batch: Batch) -> None:
        logits, target = next_sample_targets(outputs, batch)
        scored = target >= 0
        self.correct += int(((logits.argmax(1) == target) & scored).sum())
        self.count += int(scored.sum())
        if not self.training:
            self.nll_sum += F.cross_entropy(logits.float(), target, ignore_index=-1, reduction="sum").double().cpu()

    def progress(self) -> dict[str, float]:
        return {"acc": int(self.correct) / max(int(self.count), 1)}

    def compute(self) -> dict[str, Any]:
        n = int(self.count)
        out: dict[str, Any] = {"acc": int(self.correct) / n if n else float("nan")}
        if not self.training:
            nats = float(self.nll_sum) / n if n else float("nan")
            out.update({"loss": nats, "bits_per_sample": nats / LN2})
        return out


def next_sample_targets(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, Q, T'), targets (B, T')): the batch's targets where it has them; else the
    codes one step later (logits[:, :, :-1] against input[:, 1:])."""
    target = batch.get("target")
    if target is not None and target.ndim == 2:
        return logits, target.to(logits.device)
    return logits[:, :, :-1], batch["input"][:, 1:].to(logits.device)


def write_wav(path: Path, samples: np.ndarray, rate: float) -> Path:
    """Amplitudes in [-1, 1] as a mono 16-bit PCM WAV, written atomically."""
    from ..weights.io import atomic_write_bytes

    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(round(rate)))
        w.writeframes(pcm.tobytes())
    return atomic_write_bytes(path, buffer.getvalue())


@register_task
class GenerationTask(Task):
    """Next-sample prediction over mu-law levels and sampling from it; see the module docstring."""

    name = "generate"
    primary_metric = "bits_per_sample"
    primary_label = "NLL (bits/sample)"
    higher_is_better = False
    unit = "win"
    option_defaults = {"samples": 4000, "seed_samples": 0, "temperature": 1.0, "seed": 0, "method": "cached",
                       "report_samples": 1000}

    def build_model(self, model_cfg: Any, data: Any) -> nn.Module:
        from ..models import create_model

        levels = int(data.info.get("mu", 255)) + 1
        return create_model(model_cfg.name, spatial_dims=1, in_channels=levels, num_classes=levels,
                            **model_cfg.overrides)

    def collate(self, samples: list[Sample]) -> Batch:
        batch: Batch = {"input": torch.stack([s["input"] for s in samples]),
                        "index": torch.as_tensor([s["index"] for s in samples], dtype=torch.long)}
        if "target" in samples[0]:
            batch["target"] = torch.stack([torch.as_tensor(s["target"]) for s in samples])
        for key in ("generate", "path"):
            if key in samples[0]:
                batch[key] = samples[0][key] if key == "generate" else [s[key] for s in samples]
        return batch

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        """The logits (B, 256, T); a batch to continue (``"generate": N``, from load_input)
        returns ``{"generated": (B, N) codes, "prime": (B, T0)}`` instead."""
        n = batch.get("generate")
        if not n:
            return model(batch["input"])
        from ..models.wavenet import generate

        prime = batch["input"]
        rf = getattr(model, "receptive_field", None)
        if rf:  # nothing older than the receptive field reaches the next sample: feed only that
            prime = prime[:, -int(rf):]
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(int(self.options["seed"]))
        threads = torch.get_num_threads()
        if device.type == "cpu":
            # A step is a few hundred tiny kernels: splitting them over threads costs more than
            # it gains (5x slower with 2 threads than 1 on a loaded 2-core machine).
            torch.set_num_threads(1)
        try:
            codes = generate(model, int(n), prime, temperature=float(self.options["temperature"]),
                             generator=generator, method=str(self.options["method"]))
        finally:
            torch.set_num_threads(threads)
        return {"generated": codes, "prime": batch["input"]}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits, target = next_sample_targets(outputs, batch)
        return F.cross_entropy(logits.float(), target, ignore_index=-1), {}

    def metrics(self, training: bool = False) -> GenerationMetrics:
        return GenerationMetrics(training)

    # ------------------------------------------------------------------ predictions
    def postprocess(self, outputs: Any, batch: Batch) -> list[dict[str, Any]]:
        if isinstance(outputs, dict):
            return [{"codes": g.tolist(), "seed_codes": p.tolist()} for g, p in zip(outputs["generated"],
                                                                                    outputs["prime"])]
        return [{"next_codes": row.tolist()} for row in outputs.argmax(1)]

    def load_input(self, path: str, run: dict[str, Any], invert: bool = False) -> Sample:
        """A waveform file read as the run's data (resampled, scaled), mu-law coded; its last
        ``seed_samples`` codes (0: the run's window) seed ``samples`` new ones."""
        from ..data.audio import mu_law_encode
        from ..data.inputs import read_input

        data = run["data"]
        x = read_input(path, run, invert=invert)[0]
        codes = mu_law_encode(x, int(data.get("mu", 255)))
        keep = int(self.options["seed_samples"]) or int(data.get("context", 0)) + int(data.get("window", len(codes)))
        return {"input": codes[-keep:], "generate": int(self.options["samples"]), "path": path, "index": 0}

    def describe(self, prediction: dict[str, Any], run: dict[str, Any], top_k: int | None = None) -> str:
        rate = float(run["data"].get("sample_rate", 1.0))
        if "codes" not in prediction:
            return f"most likely next levels of {len(prediction['next_codes'])} samples"
        n, m = len(prediction["codes"]), len(prediction["seed_codes"])
        return f"generated {n} samples ({n / rate:.3f} s at {rate:g} Hz) after a seed of {m} samples"

    def write_prediction(self, prediction: dict[str, Any], sample: Sample, out_dir: Path,
                         run: dict[str, Any]) -> list[Path]:
        from ..data.audio import mu_law_decode
        from ..weights.io import atomic_write_json

        data = run["data"]
        rate, mu = float(data.get("sample_rate", 16_000)), int(data.get("mu", 255))
        stem = Path(str(sample.get("path", "input"))).stem
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [atomic_write_json(out_dir / f"{stem}.generated.json",
                                     _jsonable({**prediction, "sample_rate": rate, "mu": mu,
                                                "gain": data.get("gain", 1.0)}))]
        if "codes" not in prediction:
            return written
        seed = mu_law_decode(torch.tensor(prediction["seed_codes"]), mu).numpy()
        new = mu_law_decode(torch.tensor(prediction["codes"]), mu).numpy()
        written.append(write_wav(out_dir / f"{stem}.generated.wav", new, rate))
        fig = waveform_figure({"seed (from the file)": (np.arange(len(seed)), seed),
                               "generated": (np.arange(len(seed), len(seed) + len(new)), new)}, rate,
                              f"{stem}: {len(new)} generated samples")
        png = out_dir / f"{stem}.generated.png"
        fig.savefig(png, dpi=100)
        written.append(png)
        return written

    # ------------------------------------------------------------------ report
    def report_figures(self, evaluation: Metric, model: nn.Module, data: Any, run: dict[str, Any]):
        """The first test window: its first half seeds the model, which continues it for up to
        ``report_samples`` samples, drawn against the real continuation."""
        from ..data.audio import mu_law_decode
        from ..data.samples import as_samples

        test = as_samples(data.test)
        if len(test) == 0 or not hasattr(model, "receptive_field"):
            return []
        codes = test[0]["input"]
        half = len(codes) // 2
        n = min(int(self.options["report_samples"]), len(codes) - half)
        if half < 1 or n < 1:
            return []
        was_training = model.training
        model.eval()
        try:
            out = self.forward(model, {"input": codes[None, :half].to(next(model.parameters()).device), "generate": n})
        finally:
            model.train(was_training)
        mu = int(data.info.get("mu", 255))
        rate = float(data.info.get("sample_rate", 1.0))
        real = mu_law_decode(codes[:half + n], mu).numpy()
        new = mu_law_decode(out["generated"][0].cpu(), mu).numpy()
        t = np.arange(len(real))
        fig = waveform_figure({"real": (t, real), "generated": (t[half:half + n], new)}, rate,
                              f"held-out audio (first {half} samples seed the model) and {n} generated samples",
                              mark=half)
        return [("generated", "A generated continuation against the real waveform (test)", fig)]


def waveform_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], rate: float, title: str,
                    mark: int | None = None):
    """Waveforms against time in seconds, one line per entry; ``mark``: a sample to mark."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    ax = fig.subplots()
    for label, (t, y) in curves.items():
        ax.plot(t / rate, y, linewidth=0.6, label=label)
    if mark is not None:
        ax.axvline(mark / rate, color="k", linestyle="--", linewidth=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
