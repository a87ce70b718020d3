"""WAV reading, resampling, mu-law, the log-mel front-end, and the waveforms shipped in packages."""
import math
import wave
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from convnet import create_model
from convnet.data import DataFormatError
from convnet.data.audio import (
    LogMelSpectrogram,
    load_dicom_waveform,
    load_music21_test_audio,
    mel_filterbank,
    mu_law_decode,
    mu_law_encode,
    read_wav,
    resample,
)


def _write_wav(path, samples: np.ndarray, rate: int, width: int):
    """samples: (N, channels) ints already in the file's representation."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 3:
            ints = samples.astype("<i4").reshape(-1)
            data = np.stack([ints & 0xFF, (ints >> 8) & 0xFF, (ints >> 16) & 0xFF], 1).astype(np.uint8).tobytes()
        else:
            data = samples.astype({1: "u1", 2: "<i2", 4: "<i4"}[width]).tobytes()
        w.writeframes(data)
    return path


@pytest.mark.parametrize("width, scale, offset", [(1, 128, 128), (2, 32768, 0), (3, 8388608, 0), (4, 2147483648, 0)])
def test_pcm_widths_scale_to_unit_range(tmp_path, width, scale, offset):
    values = np.array([-1.0, -0.5, 0.0, 0.25, 0.5])
    left = np.round(values * scale).astype(np.int64) + offset
    right = np.round(-values * scale / 2).astype(np.int64) + offset
    path = _write_wav(tmp_path / "x.wav", np.stack([left, right], 1), 8000, width)
    stereo = read_wav(path, mono=False)
    assert stereo.samples.shape == (2, 5) and stereo.sample_rate == 8000
    torch.testing.assert_close(stereo.samples[0], torch.tensor(values, dtype=torch.float32), atol=1e-6, rtol=0)
    torch.testing.assert_close(stereo.samples[1], torch.tensor(-values / 2, dtype=torch.float32), atol=1e-2, rtol=0)
    mono = read_wav(path)
    torch.testing.assert_close(mono.samples[0], stereo.samples.mean(0))


def test_bad_wav_is_named(tmp_path):
    (tmp_path / "not.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DataFormatError, match=r"not\.wav: expected a PCM WAV file"):
        read_wav(tmp_path / "not.wav")
    with pytest.raises(FileNotFoundError, match="no such WAV file"):
        read_wav(tmp_path / "missing.wav")


def test_resample_keeps_a_tone_and_filters_above_nyquist():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 440 * t)
    down = resample(tone, 16000, 8000)
    assert down.shape == (8000,)
    spectrum = torch.fft.rfft(down).abs()
    assert int(spectrum.argmax()) == 440  # 1-s signal: bin k is k Hz
    high = torch.sin(2 * math.pi * 7000 * t)  # above the new Nyquist (4 kHz)
    aliased = resample(high, 16000, 8000)
    assert aliased.abs().max() < 0.35 * high.abs().max()  # attenuated by the antialiasing filter
    up = resample(tone[None], 16000, 44100)
    assert up.shape == (1, 44100)
    assert resample(tone, 16000, 16000) is tone


def test_mu_law_matches_the_formula():
    mu = 255
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    f = torch.sign(x) * torch.log(1 + mu * x.abs()) / math.log(1 + mu)
    expected = torch.floor((f + 1) / 2 * mu + 0.5).long()
    codes = mu_law_encode(x)
    assert torch.equal(codes, expected) and codes.min() == 0 and codes.max() == 255
    assert mu_law_encode(torch.tensor([0.0])).item() == 128  # silence
    # Decoding: f = 2 c / mu - 1, x = sign(f) ((1 + mu)^|f| - 1) / mu; codes round-trip exactly.
    c = torch.arange(256)
    fc = 2 * c.double() / mu - 1
    torch.testing.assert_close(mu_law_decode(c), (torch.sign(fc) * ((1 + mu) ** fc.abs() - 1) / mu).float())
    assert torch.equal(mu_law_encode(mu_law_decode(c)), c)
    # Companding: quantisation error is small near 0 and grows with the amplitude.
    err = (mu_law_decode(mu_law_encode(x)).double() - x).abs()
    assert err[x.abs() < 0.01].max() < 3e-4 and err.max() < 0.04
    assert torch.equal(mu_law_encode(torch.tensor([-3.0, 3.0])), torch.tensor([0, 255]))  # clipped


@pytest.mark.parametrize("mel_scale, norm", [("slaney", "slaney"), ("htk", None)])
@pytest.mark.parametrize("freq", [300.0, 1000.0, 3500.0])
def test_tone_energy_peaks_in_its_mel_bin(mel_scale, norm, freq):
    front = LogMelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40, mel_scale=mel_scale, norm=norm)
    t = torch.arange(16000) / 16000
    out = front(torch.sin(2 * math.pi * freq * t)[None])
    assert out.shape == (1, 1, 40, 16000 // 160 + 1)
    profile = out[0, 0].mean(-1)
    peak = int(profile.argmax())
    nearest = int((front.centre_hz - freq).abs().argmin())
    assert abs(peak - nearest) <= 1
    assert profile[peak] > profile.median() + 5  # far above the rest (log energy)


def test_filterbank_scales():
    fb, centres = mel_filterbank(16000, 512, 40, mel_scale="htk", norm=None)
    assert fb.shape == (257, 40) and fb.max() <= 1 + 1e-6 and (fb.max(0).values > 0.5).all()
    mels = 2595 * torch.log10(1 + centres.double() / 700)
    gaps = mels.diff()
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-4, atol=1e-4)  # equally spaced in HTK mel
    _, slaney = mel_filterbank(16000, 512, 40)
    low = slaney[slaney < 1000].double()
    torch.testing.assert_close(low.diff(), low.diff().mean().expand_as(low.diff()), rtol=1e-4, atol=1e-3)  # linear < 1 kHz
    with pytest.raises(ValueError, match="mel_scale must be one of"):
        mel_filterbank(16000, 512, 40, mel_scale="bark")


def test_any_2d_classifier_takes_audio():
    front = LogMelSpectrogram(8000, n_fft=256, hop_length=128, n_mels=32)
    model = torch.nn.Sequential(front, create_model("resnet18", in_channels=1, num_classes=3,
                                                    layers=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=4))
    logits = model(torch.randn(2, 4000))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert torch.isfinite(front(torch.zeros(1, 1, 800))).all()  # silence: the floor, not -inf


@pytest.mark.skipif(find_spec("music21") is None, reason="music21 not installed (pip install --no-deps music21)")
def test_music21_recording():
    audio = load_music21_test_audio()
    assert audio.sample_rate == 44100 and audio.samples.shape[0] == 1
    assert 15 < audio.duration < 25 and 0.01 < audio.samples.abs().max() <= 1
    mel = LogMelSpectrogram(44100, n_fft=2048, hop_length=512, n_mels=64)(audio.samples[:, :44100 * 2])
    assert mel.shape[2] == 64 and torch.isfinite(mel).all()


@pytest.mark.skipif(find_spec("pydicom") is None, reason="pydicom not installed")
def test_dicom_ecg_twelve_leads():
    ecg = load_dicom_waveform()
    assert ecg.samples.shape == (12, 10000) and ecg.sample_rate == 1000  # tasks-facts.md: 10,000 samples at 1 kHz
    assert len(ecg.channel_names) == 12 and any("Lead" in n or n for n in ecg.channel_names)
    assert ecg.samples.std(1).min() > 0  # every lead carries a signal
