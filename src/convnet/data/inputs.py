"""Input readers: how ``convnet predict`` (and ``cam``, ``serve``) turns a file into a model input
exactly as a run's training data were prepared.

A data source records the reader its samples need in ``DataSplits.info["input"]``; the trainer
saves the info under the run's ``config.json`` ``data`` section, so a run knows how to read a
new file without knowing its data set. Runs without the key are image runs (every run made
before this registry existed).

A reader is ``read(path, run, **options) -> tensor (C, *S)``: ``run`` is the run's config.json
(readers take what they need from ``run["data"]``: the preprocessing, the sample rate, the clip
settings), ``options`` are reading options such as ``invert`` for images. Readers registered
here:

- ``"image"``: any image Pillow reads, brought to the training images' size and normalisation
  (``Preprocess.from_image``); ``invert=True`` turns dark ink on light paper into the digits'
  polarity first;
- ``"ts"``: the first case of a UCR/UEA ``.ts`` file, normalised as the run's series were
  (``data.normalize``: per case, by the training split's channel statistics, or not), at its
  own length (the time-series networks take any);
- ``"wav"``: a PCM WAV file mixed to mono (or, for a ``.dcm`` file, the run's channel of a DICOM
  waveform), resampled to the run's ``data.sample_rate`` and scaled by its ``data.gain``: (1, N);
- ``"video"``: the centre clip of a video file with the run's ``data.clip`` settings (frames,
  stride, short side, crop), normalised with the run's mean and std: (3, T, H, W).

Register more with :func:`register_input_reader`; a name that is not registered gets an error
listing those that are.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .readers import DataFormatError

__all__ = ["INPUT_READERS", "InputReader", "get_input_reader", "input_kind", "read_input", "register_input_reader"]

InputReader = Callable[..., torch.Tensor]
INPUT_READERS: dict[str, InputReader] = {}


def register_input_reader(name: str, read: InputReader) -> InputReader:
    """Make ``read(path, run, **options) -> (C, *S)`` the reader of runs whose data say
    ``info["input"] = name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in INPUT_READERS:
        raise ValueError(f"input reader {name!r} is already registered")
    INPUT_READERS[name] = read
    return read


def get_input_reader(name: str) -> InputReader:
    """The reader registered as ``name``; an unknown name lists the registered ones."""
    if name not in INPUT_READERS:
        close = difflib.get_close_matches(name, INPUT_READERS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown input reader {name!r}{hint}; readers: {', '.join(sorted(INPUT_READERS))}")
    return INPUT_READERS[name]


def input_kind(run: dict[str, Any]) -> str:
    """The reader a run's inputs need: ``run["data"]["input"]``, "image" when absent."""
    return str((run.get("data") or {}).get("input") or "image")


def read_input(path: str, run: dict[str, Any], **options: Any) -> torch.Tensor:
    """``path`` read by the run's input reader (see the module docstring): (C, *S)."""
    return get_input_reader(input_kind(run))(path, run, **options)


def _no_invert(kind: str, invert: bool) -> None:
    if invert:
        raise ValueError(f"--invert applies to images; this run reads {kind} inputs")


# ----------------------------------------------------------------------------- the readers
def _read_image(path: str, run: dict[str, Any], invert: bool = False) -> torch.Tensor:
    from .samples import read_image
    from .transforms import Preprocess

    pre = Preprocess.from_dict(run["data"]["preprocess"])
    max_pixels = run.get("train", {}).get("data", {}).get("max_pixels", 0)
    image, _ = read_image(path, "L" if pre.channels == 1 else "RGB", max_pixels, pre.source_size)
    if invert:
        image = 1.0 - image
    return pre.from_image(image)[0]


def _read_ts(path: str, run: dict[str, Any], invert: bool = False) -> torch.Tensor:
    from .sources_sequences import normalize_series
    from .timeseries import read_ts

    _no_invert("time-series", invert)
    data = read_ts(path)
    info = run["data"]
    channels = int(info["preprocess"]["channels"])
    if data.num_channels != channels:
        raise DataFormatError(f"{path}: the run was trained on series of {channels} channel(s), "
                              f"the file has {data.num_channels}")
    n = int(data.lengths[0])
    stats = (info["channel_mean"], info["channel_std"]) if "channel_mean" in info else None
    return normalize_series(data.series[0, :, :n], None, info.get("normalize", "case"), stats)


def _read_wav(path: str, run: dict[str, Any], invert: bool = False) -> torch.Tensor:
    from .audio import load_dicom_waveform, read_wav, resample

    _no_invert("waveform", invert)
    info = run["data"]
    if Path(path).suffix.lower() == ".dcm":
        wave = load_dicom_waveform(path)
        channel = int(info.get("channel", 0))
        if channel >= wave.samples.shape[0]:
            raise DataFormatError(f"{path}: the run used channel {channel}, the file has {wave.samples.shape[0]}")
        samples = wave.samples[channel:channel + 1]
    else:
        wave = read_wav(path, mono=True)
        samples = wave.samples
    rate = float(info.get("sample_rate", wave.sample_rate))
    samples = resample(samples, wave.sample_rate, rate) * float(info.get("gain", 1.0))
    if samples.shape[-1] < 1:
        raise DataFormatError(f"{path}: the waveform holds no samples")
    return samples.float()


def _read_video(path: str, run: dict[str, Any], invert: bool = False) -> torch.Tensor:
    from .transforms import Preprocess
    from .video import load_clip

    _no_invert("video", invert)
    clip = run["data"].get("clip") or {}
    x = load_clip(path, int(clip.get("frames", 16)), int(clip.get("stride", 1)), "center",
                  short_side=clip.get("short_side"), crop=clip.get("crop"))
    return Preprocess.from_dict(run["data"]["preprocess"])(x[None])[0]


register_input_reader("image", _read_image)
register_input_reader("ts", _read_ts)
register_input_reader("wav", _read_wav)
register_input_reader("video", _read_video)
