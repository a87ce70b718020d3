"""Video clips through PyAV (the optional extra ``video``: ``pip install 'convnet[video]'``).

A clip is ``clip_len`` frames taken every ``stride`` frames from a start frame, resized so that
its short side is ``short_side`` (bilinear, antialiased), centre-cropped to ``crop`` x ``crop``,
and returned as float32 (C, T, H, W) in [0, 1]: the layout of ``convnet.models.video``.

Start frames (:func:`clip_starts`): ``"random"`` draws one uniformly among the starts that fit
(from a ``torch.Generator``, for training), ``"center"`` takes the middle one, ``"uniform"``
spreads ``num_clips`` starts evenly over the video (the multi-clip evaluation of C3D/I3D), or an
int gives it. A clip that runs past the last frame (a video shorter than ``(clip_len - 1) x
stride + 1`` frames) is padded by repeating the last frame (``pad="repeat"``, the common
practice, e.g. torchvision's video sampler loops instead) or refused (``pad="refuse"``,
ValueError naming the video's length).

Decoding stops at the last frame a clip needs; frames are converted to RGB by FFmpeg.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from .readers import DataFormatError

__all__ = ["VideoInfo", "clip_indices", "clip_starts", "load_clip", "read_frames", "resize_clip", "video_info"]

PathLike = Union[str, os.PathLike[str]]


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("reading video needs PyAV: pip install 'convnet[video]' (or pip install av)") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """A video stream's frame count, rate (frames per second) and size."""

    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: PathLike):
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise DataFormatError(f"{path}: not a video FFmpeg can open: {e}") from None
    if not container.streams.video:
        container.close()
        raise DataFormatError(f"{path}: the file has no video stream")
    return container


def video_info(path: PathLike) -> VideoInfo:
    """Frame count (from the container, or by decoding when the container does not say), fps, size."""
    with _open(path) as container:
        stream = container.streams.video[0]
        n = stream.frames
        if not n:
            n = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(int(n), float(rate) if rate else 0.0, stream.codec_context.width, stream.codec_context.height)


def read_frames(path: PathLike, indices: list[int] | None = None) -> torch.Tensor:
    """Decode frames as uint8 (T, H, W, 3) RGB: all of them, or those at ``indices`` (in that
    order, repeats allowed); decoding stops after the last index needed.

    Raises:
        DataFormatError: the file cannot be decoded, or an index lies past the last frame.
    """
    av = _av()
    wanted = None if indices is None else sorted(set(indices))
    last = None if wanted is None else wanted[-1]
    frames: dict[int, np.ndarray] = {}
    decoded: list[np.ndarray] = []
    count = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            for i, frame in enumerate(container.decode(stream)):
                count = i + 1
                if wanted is None:
                    decoded.append(frame.to_ndarray(format="rgb24"))
                elif i in wanted:
                    frames[i] = frame.to_ndarray(format="rgb24")
                if last is not None and i >= last:
                    break
        except av.FFmpegError as e:
            raise DataFormatError(f"{path}: decoding failed: {e}") from None
    if wanted is None:
        if not decoded:
            raise DataFormatError(f"{path}: the video stream holds no frames")
        return torch.from_numpy(np.stack(decoded))
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise DataFormatError(f"{path}: frame {missing[0]} requested, the video has {count} frames")
    return torch.from_numpy(np.stack([frames[i] for i in indices]))


def clip_starts(num_frames: int, clip_len: int, stride: int = 1, mode: str | int = "random", num_clips: int = 1,
                generator: torch.Generator | None = None) -> list[int]:
    """Start frames of clips of ``clip_len`` frames every ``stride`` (see the module docstring)."""
    if num_frames < 1 or clip_len < 1 or stride < 1:
        raise ValueError(f"need num_frames, clip_len and stride >= 1, got {num_frames}, {clip_len}, {stride}")
    span = (clip_len - 1) * stride + 1
    last_start = max(num_frames - span, 0)  # a short video: every clip starts at 0 and is padded
    if isinstance(mode, int) and not isinstance(mode, bool):
        if not 0 <= mode < num_frames:
            raise ValueError(f"start {mode} lies outside the video's {num_frames} frames")
        return [mode]
    if mode == "random":
        return [int(torch.randint(0, last_start + 1, (1,), generator=generator)) for _ in range(num_clips)]
    if mode == "center":
        return [last_start // 2]
    if mode == "uniform":
        if num_clips == 1:
            return [last_start // 2]
        return [round(i * last_start / (num_clips - 1)) for i in range(num_clips)]
    raise ValueError(f"start must be 'random', 'center', 'uniform' or a frame index, got {mode!r}")


def clip_indices(num_frames: int, clip_len: int, stride: int, start: int, pad: str = "repeat") -> list[int]:
    """Frame indices start, start + stride, ...; past the end the last frame repeats (``"repeat"``)
    or a ValueError is raised (``"refuse"``)."""
    if pad not in ("repeat", "refuse"):
        raise ValueError(f"pad must be 'repeat' or 'refuse', got {pad!r}")
    indices = [start + i * stride for i in range(clip_len)]
    if indices[-1] >= num_frames:
        if pad == "refuse":
            raise ValueError(f"a clip of {clip_len} frames every {stride} from frame {start} needs "
                             f"{indices[-1] + 1} frames, the video has {num_frames}")
        indices = [min(i, num_frames - 1) for i in indices]
    return indices


def resize_clip(frames: torch.Tensor, short_side: int | None = None, crop: int | None = None) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H', W') in [0, 1]: short side to ``short_side``
    (bilinear, antialiased), then a centre crop of ``crop`` x ``crop``."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
    if short_side is not None:
        h, w = x.shape[-2:]
        scale = short_side / min(h, w)
        size = (max(short_side, round(h * scale)), max(short_side, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if crop is not None:
        h, w = x.shape[-2:]
        if crop > min(h, w):
            raise ValueError(f"crop {crop} is larger than the frames ({h} x {w}); set short_side >= crop")
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[..., top:top + crop, left:left + crop]
    return x.permute(1, 0, 2, 3).contiguous()  # (3, T, H', W')


def load_clip(path: PathLike, clip_len: int = 16, stride: int = 1, start: str | int = "random",
              generator: torch.Generator | None = None, short_side: int | None = None, crop: int | None = None,
              pad: str = "repeat") -> torch.Tensor:
    """One clip of a video file as float32 (3, clip_len, H, W) in [0, 1].

    Example: C3D's input, ``load_clip(path, 16, short_side=128, crop=112)`` (Tran et al. resize
    frames to 128 x 171 and crop 112 x 112).
    """
    info = video_info(path)
    first = clip_starts(info.num_frames, clip_len, stride, start, 1, generator)[0]
    indices = clip_indices(info.num_frames, clip_len, stride, first, pad)
    return resize_clip(read_frames(path, indices), short_side, crop)
