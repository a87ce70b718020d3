"""Audio and other waveforms: WAV files, resampling, mu-law companding, a log-mel front-end.

- :func:`read_wav`: PCM WAV through the standard library's ``wave`` module: 8-bit (unsigned),
  16-, 24- and 32-bit (signed) samples scaled to [-1, 1), any channel count, optionally mixed
  down to mono (the mean of the channels). Compressed or floating-point WAVs (and
  WAVE_FORMAT_EXTENSIBLE files that Python's ``wave`` refuses) raise DataFormatError.
- :func:`resample`: linear interpolation with an antialiasing filter when the rate goes down
  (``torch.nn.functional.interpolate(..., antialias=True)``: the triangle kernel widened by the
  rate ratio), good for front-ends, not a studio resampler.
- :func:`mu_law_encode` / :func:`mu_law_decode`: ITU-T G.711's mu-law as WaveNet uses it (§2.2):
  f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu), quantised to mu + 1 = 256 levels by
  code = floor((f + 1) / 2 x mu + 0.5); decoding inverts f at the level's centre.
- :class:`LogMelSpectrogram`: an ``nn.Module`` from waveforms (B, N) to log-mel images
  (B, 1, n_mels, frames) on ``torch.stft`` (periodic Hann window, centred frames with reflect
  padding, power spectrum), so any 2-D classifier takes audio with ``in_channels=1``. The mel
  filterbank is Slaney's (the Auditory Toolbox's: linear below 1 kHz, logarithmic above; filters
  normalised to unit area, librosa's default) or HTK's (2595 log10(1 + f / 700), peak 1,
  torchaudio's default), chosen by ``mel_scale``; log(max(mel, floor)).
- Real waveforms shipped in packages (read as files, the packages never imported except
  pydicom for DICOM): :func:`load_music21_test_audio` (music21's ``audioSearch/test_audio.wav``)
  and :func:`load_dicom_waveform` (pydicom's ``waveform_ecg.dcm``, a 12-lead ECG).
"""
from __future__ import annotations

import math
import os
import wave
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .readers import DataFormatError

__all__ = ["LogMelSpectrogram", "Waveform", "load_dicom_waveform", "load_music21_test_audio", "mel_filterbank",
           "mu_law_decode", "mu_law_encode", "read_wav", "resample"]

PathLike = Union[str, os.PathLike[str]]


@dataclass
class Waveform:
    """Samples (channels, N) float32 at ``sample_rate`` Hz; ``channel_names`` where the file has them."""

    samples: torch.Tensor
    sample_rate: float
    channel_names: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def read_wav(path: PathLike, mono: bool = True) -> Waveform:
    """Read a PCM WAV file.

    Args:
        path: the file.
        mono: average the channels into one (the result is then (1, N)).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: not a RIFF/WAVE file, a non-PCM encoding, or an unsupported sample width.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such WAV file")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise DataFormatError(f"{path}: expected a PCM WAV file readable by Python's wave module: {e}") from None
    if width not in (1, 2, 3, 4):
        raise DataFormatError(f"{path}: expected 8-, 16-, 24- or 32-bit PCM samples, got {8 * width}-bit")
    n = len(data) // (width * channels)
    raw = np.frombuffer(data[:n * width * channels], dtype=np.uint8)
    if width == 1:
        values = (raw.astype(np.float32) - 128.0) / 128.0  # 8-bit WAV is unsigned, 128 is silence
    elif width == 2:
        values = raw.view("<i2").astype(np.float32) / 32768.0
    elif width == 3:
        # Little-endian 24-bit: place the 3 bytes in the top of an int32, shift back with the sign.
        b = raw.reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8
        values = ints.astype(np.float32) / 8388608.0
    else:
        values = (raw.view("<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    samples = torch.from_numpy(values.reshape(n, channels).T.copy())  # (channels, N)
    if mono:
        samples = samples.mean(0, keepdim=True)
    return Waveform(samples, float(rate))


def resample(samples: torch.Tensor, orig_rate: float, new_rate: float) -> torch.Tensor:
    """Resample (..., N) to ``new_rate``: N x new_rate / orig_rate samples (rounded), by linear
    interpolation with antialiasing when downsampling."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return samples
    n = samples.shape[-1]
    out = max(1, round(n * new_rate / orig_rate))
    lead = samples.shape[:-1]
    x = samples.reshape(1, -1, 1, n).float()  # every channel as a 1-pixel-high image row
    y = F.interpolate(x, size=(1, out), mode="bilinear", align_corners=False, antialias=new_rate < orig_rate)
    return y.reshape(*lead, out)


def mu_law_encode(x: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Amplitudes in [-1, 1] (clipped) -> int64 codes in [0, mu] (WaveNet §2.2, Eq. 3)."""
    x = x.clamp(-1.0, 1.0).double()
    f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.floor((f + 1) / 2 * mu + 0.5).long()


def mu_law_decode(codes: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """Codes in [0, mu] -> amplitudes in [-1, 1] (float32): the inverse of f at each level."""
    f = 2 * codes.double() / mu - 1
    return (torch.sign(f) * ((1 + mu) ** f.abs() - 1) / mu).float()


# --- mel scales: Hz <-> mel, by name --------------------------------------------------------

_SLANEY_F_SP = 200.0 / 3  # Hz per mel below the break (linear part)
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOGSTEP = math.log(6.4) / 27.0  # 27 mels per factor 6.4 above 1 kHz


def _hz_to_mel_slaney(f: torch.Tensor) -> torch.Tensor:
    lin = f / _SLANEY_F_SP
    brk = _SLANEY_BREAK_HZ / _SLANEY_F_SP
    log = brk + torch.log(f.clamp_min(1e-10) / _SLANEY_BREAK_HZ) / _SLANEY_LOGSTEP
    return torch.where(f >= _SLANEY_BREAK_HZ, log, lin)


def _mel_to_hz_slaney(m: torch.Tensor) -> torch.Tensor:
    brk = _SLANEY_BREAK_HZ / _SLANEY_F_SP
    return torch.where(m >= brk, _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOGSTEP * (m - brk)), m * _SLANEY_F_SP)


MEL_SCALES = {
    "slaney": (_hz_to_mel_slaney, _mel_to_hz_slaney),
    "htk": (lambda f: 2595.0 * torch.log10(1.0 + f / 700.0), lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)),
}


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                   mel_scale: str = "slaney", norm: str | None = "slaney") -> tuple[torch.Tensor, torch.Tensor]:
    """Triangular mel filters on the rfft bins: ((n_fft // 2 + 1, n_mels) weights, (n_mels,) centre
    frequencies in Hz). Filter m rises from centre m - 1 to centre m and falls to centre m + 1,
    the n_mels + 2 edges equally spaced in mel between f_min and f_max. ``norm="slaney"`` scales
    each filter by 2 / (upper edge - lower edge) (equal area); None keeps peaks at 1."""
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {sorted(MEL_SCALES)}, got {mel_scale!r}")
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    to_mel, to_hz = MEL_SCALES[mel_scale]
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - left) / (centre - left)
    falling = (right - freqs[:, None]) / (right - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0)
    if norm == "slaney":
        weights = weights * (2.0 / (right - left))
    return weights.float(), centre.float()


class LogMelSpectrogram(nn.Module):
    """Waveforms (B, N) or (B, 1, N) -> log-mel spectrograms (B, 1, n_mels, frames).

    Args:
        sample_rate: of the input, in Hz.
        n_fft: FFT size (and the Hann window's length unless ``win_length``); 400 = 25 ms at 16 kHz.
        hop_length: frame step; 160 = 10 ms at 16 kHz.
        n_mels: mel bands.
        f_min, f_max: the filterbank's range (f_max None: the Nyquist frequency).
        mel_scale: "slaney" or "htk" (see the module docstring); norm: "slaney" or None.
        floor: the smallest mel energy before the log (avoids log 0 on silence).
    """

    def __init__(self, sample_rate: float = 16_000, n_fft: int = 400, hop_length: int = 160, n_mels: int = 64,
                 win_length: int | None = None, f_min: float = 0.0, f_max: float | None = None,
                 mel_scale: str = "slaney", norm: str | None = "slaney", floor: float = 1e-10):
        super().__init__()
        win_length = n_fft if win_length is None else win_length
        if not 0 < win_length <= n_fft or hop_length < 1:
            raise ValueError(f"need 0 < win_length <= n_fft and hop_length >= 1, got {win_length}, {n_fft}, {hop_length}")
        self.sample_rate, self.n_fft, self.hop_length, self.win_length = sample_rate, n_fft, hop_length, win_length
        self.n_mels, self.floor = n_mels, floor
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        fb, centres = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)
        self.register_buffer("filterbank", fb, persistent=False)  # (n_fft // 2 + 1, n_mels)
        self.register_buffer("centre_hz", centres, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim == 3 and waveform.shape[1] == 1:
            waveform = waveform[:, 0]
        if waveform.ndim != 2:
            raise ValueError(f"LogMelSpectrogram expects waveforms (B, N) or (B, 1, N), got shape {tuple(waveform.shape)}")
        spec = torch.stft(waveform.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=True, pad_mode="reflect", return_complex=True)  # (B, freqs, frames)
        power = spec.real ** 2 + spec.imag ** 2
        mel = torch.einsum("bft,fm->bmt", power, self.filterbank)
        return torch.log(mel.clamp_min(self.floor))[:, None]  # (B, 1, n_mels, frames)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"n_mels={self.n_mels}")


# --- waveforms shipped in packages ------------------------------------------------------------


def _package_file(dist: str, inner: str) -> Path:
    try:
        path = Path(metadata.distribution(dist).locate_file(inner))
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the {dist} package is not installed; {inner} is read from its wheel") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {dist} is installed but lacks {inner}")
    return path


def load_music21_test_audio() -> Waveform:
    """music21's ``audioSearch/test_audio.wav`` (about 20 s of recorded music, 44.1 kHz, mono)."""
    return read_wav(_package_file("music21", "music21/audioSearch/test_audio.wav"))


def load_dicom_waveform(path: PathLike | None = None, group: int = 0) -> Waveform:
    """A DICOM waveform (ECG and the like) through pydicom: (channels, samples) float32 in the
    file's units (pydicom applies the channel sensitivity), the sampling frequency, the channel
    names. ``path`` None reads pydicom's ``data/test_files/waveform_ecg.dcm`` (a 12-lead ECG).

    Raises:
        ImportError: pydicom is not installed.
        DataFormatError: the file holds no waveform (or no multiplex group ``group``).
    """
    import pydicom  # an optional dependency, imported only here

    path = Path(path) if path is not None else _package_file("pydicom", "pydicom/data/test_files/waveform_ecg.dcm")
    ds = pydicom.dcmread(path)
    groups = ds.get("WaveformSequence")
    if not groups or group >= len(groups):
        raise DataFormatError(f"{path}: expected a DICOM waveform with multiplex group {group}, "
                              f"found {len(groups) if groups else 0} group(s)")
    signal = np.asarray(ds.waveform_array(group), dtype=np.float32)  # (samples, channels)
    item = groups[group]
    names = []
    for ch in item.get("ChannelDefinitionSequence", []):
        source = ch.get("ChannelSourceSequence")
        names.append(str(source[0].get("CodeMeaning", "")) if source else "")
    return Waveform(torch.from_numpy(signal.T.copy()), float(item.SamplingFrequency), tuple(names))
