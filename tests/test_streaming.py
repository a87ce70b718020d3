"""Data that streams from disk: folders decoded per sample (in DataLoader workers), the same
order and weights as the in-memory path, sharding under torchrun, bad files, exact resume."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data import load_data
from convnet.data.datasets import DataOptions
from convnet.data.loader import BatchStream, EpochBatchSampler
from convnet.data.samples import ImageFileSamples, TensorSamples, as_samples
from convnet.tasks import get_task
from convnet.train import RunError, TrainConfig, Trainer, parse_overrides
from convnet.weights import load_tensors

CLASSES = ("circle", "square", "stripes")


def make_folder(root: Path, per_class: int = 12, size: int = 20, fmt: str = "png", seed: int = 0) -> Path:
    """Small images of three kinds of shapes, gray, with noise: a class folder each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cx, cy = rng.integers(6, size - 6, 2)
            if c == 0:
                img = ((xx - cx) ** 2 + (yy - cy) ** 2 < 16) * 200.0
            elif c == 1:
                img = ((abs(xx - cx) < 4) & (abs(yy - cy) < 4)) * 200.0
            else:
                img = ((xx + i) % 6 < 3) * 200.0
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / name / f"{i:03d}.{fmt}")
    return root


def _cfg(out, data, *overrides):
    return parse_overrides(TrainConfig(), [f"out={out}", f"data.name=folder:{data}", "data.image_size=32",
                                           "epochs=2", "report=false", "device=cpu", "data.batch_size=8",
                                           "model.name=lenet5_modern", *overrides])


def test_folder_streams_or_loads_by_size_and_samples_are_identical(tmp_path):
    root = make_folder(tmp_path / "f")
    memory = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="memory"))
    disk = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="disk"))
    auto_small = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="auto"))
    auto_tight = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="auto", memory_limit_mb=0))
    assert memory.in_memory and auto_small.in_memory
    assert not disk.in_memory and not auto_tight.in_memory
    assert disk.classes == list(CLASSES) and disk.channels == 1  # gray files: one channel
    x, y = memory.train
    streamed = as_samples(disk.train)
    assert isinstance(streamed, ImageFileSamples) and len(streamed) == len(y)
    for i in range(len(streamed)):
        s = streamed[i]
        assert torch.equal(s["input"], x[i]) and s["target"] == int(y[i]) and Path(s["path"]).is_file()


def test_one_decision_for_every_split(tmp_path):
    """data.memory_limit_mb bounds the whole data set: 36 gray files at 512x512 are 36 MiB of
    tensors, so a 20 MiB limit streams every split, though the validation and test splits
    (4 and 7 MiB) would each fit alone; a 40 MiB limit holds them all."""
    root = make_folder(tmp_path / "f")
    tight = load_data(f"folder:{root}", options=DataOptions(image_size=512, stream="auto", memory_limit_mb=20))
    assert not any(as_samples(split).in_memory for split in (tight.train, tight.val, tight.test))
    assert len(as_samples(tight.val)) * 2**20 < 20 * 2**20  # the old per-split rule kept it in memory
    roomy = load_data(f"folder:{root}", options=DataOptions(image_size=512, stream="auto", memory_limit_mb=40))
    assert all(as_samples(split).in_memory for split in (roomy.train, roomy.val, roomy.test))


def test_listing_a_folder_decodes_nothing(tmp_path, monkeypatch):
    import convnet.data.samples as samples_module

    root = make_folder(tmp_path / "f")
    calls = []
    real = samples_module.load_image
    monkeypatch.setattr(samples_module, "load_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    data = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="disk"))
    assert calls == [] and data.info["n_train"] + data.info["n_val"] + data.info["n_test"] == 36
    as_samples(data.train)[0]
    assert len(calls) == 1


def test_streaming_and_in_memory_runs_see_the_same_order_and_end_equal(tmp_path):
    """workers = 0: the streamed run decodes every sample in the training process; same sample
    order, same augmentation draws, the same weights as the in-memory run."""
    root = make_folder(tmp_path / "f")
    common = ("augment.hflip=0.5", "checkpoint_every=2", "keep_checkpoints=100")
    a = Trainer(_cfg(tmp_path / "memory", root, "data.stream=memory", *common), progress=False).fit()
    b = Trainer(_cfg(tmp_path / "disk", root, "data.stream=disk", *common), progress=False).fit()
    assert a["steps"] == b["steps"] > 0
    wa, wb = load_tensors(tmp_path / "memory" / "model.safetensors"), load_tensors(tmp_path / "disk" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-6, msg=k)
    # Both drew the same order in every epoch: the mid-epoch checkpoints hold it.
    orders = {run: [t["order"] for t in (load_tensors(p / "training.safetensors")
                                         for p in sorted((tmp_path / run / "checkpoints").iterdir())) if "order" in t]
              for run in ("memory", "disk")}
    assert len(orders["memory"]) >= 2 and len(orders["memory"]) == len(orders["disk"])
    assert all(torch.equal(a, b) for a, b in zip(orders["memory"], orders["disk"]))
    assert a["test_acc"] == b["test_acc"]


def test_workers_deliver_the_same_batches_as_the_main_process(tmp_path):
    root = make_folder(tmp_path / "f", per_class=6)
    data = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="disk", val_fraction=0,
                                                           test_fraction=0))
    task = get_task("classify").setup(data.classes)
    order = torch.randperm(18, generator=torch.Generator().manual_seed(3))
    seen = {}
    for workers in (0, 2):
        stream = BatchStream(as_samples(data.train), task.collate, 4, workers=workers)
        batches = list(stream.epoch(order, start=1))  # from the second batch on (a resume)
        seen[workers] = batches
        assert [b["index"].tolist() for b in batches] == [order[i:i + 4].tolist() for i in range(4, 18, 4)]
    for b0, b2 in zip(seen[0], seen[2]):
        assert torch.equal(b0["input"], b2["input"]) and torch.equal(b0["target"], b2["target"])


def test_epoch_sampler_shards_each_global_batch():
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    parts = []
    for rank in range(3):
        s = EpochBatchSampler(23, 5, rank, 3)
        s.order = order
        parts.append(list(s))
    for b in range(5):  # batch b of every rank together is global batch b, in order
        assert sum((parts[r][b] for r in range(3)), []) == order[5 * b:5 * b + 5].tolist()
    seen = sorted(i for p in parts for batch in p for i in batch)
    assert seen == list(range(23))


def test_in_memory_batches_are_one_index():
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
    stream = BatchStream(TensorSamples(x, y), get_task("classify").setup(list("0123456789")).collate, 4)
    batches = list(stream.epoch(torch.arange(10).flip(0)))
    assert [b["target"].tolist() for b in batches] == [[9, 8, 7, 6], [5, 4, 3, 2], [1, 0]]
    assert torch.equal(batches[0]["input"], x[[9, 8, 7, 6]])


# ----------------------------------------------------------------------------- bad files
def _spoil(root: Path) -> list[Path]:
    """A corrupt file, a truncated PNG and a decompression bomb among good images."""
    corrupt = root / "circle" / "zz_corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    good = (root / "square" / "000.png").read_bytes()
    truncated = root / "square" / "zz_truncated.png"
    truncated.write_bytes(good[: len(good) // 2])
    bomb = root / "stripes" / "zz_bomb.png"
    Image.new("P", (6000, 6000)).save(bomb, optimize=True)  # 36 Mpixel, a few KB on disk
    return [corrupt, truncated, bomb]


def test_bad_files_are_skipped_listed_and_counted(tmp_path):
    root = make_folder(tmp_path / "f")
    bad = _spoil(root)
    out = tmp_path / "run"
    summary = Trainer(_cfg(out, root, "data.stream=disk", "data.max_pixels=1000000", "data.max_bad_fraction=0.2",
                           "data.val_fraction=0", "data.test_fraction=0.1", "report=true"), progress=False).fit()
    listed = {Path(p).name for p, _ in summary["bad_files"]}
    in_train = {p.name for p in bad} & listed
    assert in_train and listed <= {p.name for p in bad}
    reasons = " ".join(e for _, e in summary["bad_files"])
    assert "zz_bomb.png" not in listed or "pixels" in reasons
    saved = json.loads((out / "summary.json").read_text())
    assert saved["bad_files"] == summary["bad_files"]
    page = (out / "report" / "index.html").read_text()
    assert any(name in page for name in listed)


def test_too_many_bad_files_stop_the_run_naming_them_and_keep_what_was_written(tmp_path):
    root = make_folder(tmp_path / "f", per_class=4)
    bad = _spoil(root)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"cannot be read, more than data\.max_bad_fraction=0\.01; first: .*zz_"):
        Trainer(_cfg(out, root, "data.stream=disk", "data.max_pixels=1000000", "data.val_fraction=0",
                     "data.test_fraction=0"), progress=False).fit()
    assert not out.exists()  # failed before its first step: nothing half-made is left
    # The same stop after a finished epoch keeps the checkpoints written so far.
    clean = make_folder(tmp_path / "g", per_class=4)
    out2 = tmp_path / "run2"
    Trainer(_cfg(out2, clean, "data.stream=disk", "epochs=1", "data.val_fraction=0", "data.test_fraction=0"),
            progress=False).fit()
    before = sorted(p.name for p in (out2 / "checkpoints").iterdir())
    weights = (out2 / "model.safetensors").read_bytes()
    for p in bad:
        target = clean / p.parent.name / p.name
        target.write_bytes(p.read_bytes())
    with pytest.raises(RunError, match="already holds a run"):
        Trainer(_cfg(out2, clean, "data.stream=disk", "epochs=1"), progress=False)
    assert sorted(p.name for p in (out2 / "checkpoints").iterdir()) == before
    assert (out2 / "model.safetensors").read_bytes() == weights


def test_in_memory_folder_skips_bad_files_too(tmp_path):
    root = make_folder(tmp_path / "f")
    _spoil(root)
    data = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="memory", max_pixels=1_000_000,
                                                           max_bad_fraction=0.2))
    names = {Path(p).name for p, _ in data.info["bad_files"]}
    assert names == {"zz_corrupt.png", "zz_truncated.png", "zz_bomb.png"}
    assert data.info["n_train"] + data.info["n_val"] + data.info["n_test"] == 36


def test_one_colour_file_in_a_gray_folder_is_converted_and_reported(tmp_path):
    root = make_folder(tmp_path / "f")
    colour = root / "circle" / "zz_colour.png"
    Image.fromarray(np.full((20, 20, 3), (200, 10, 10), np.uint8)).save(colour)
    data = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="memory"))
    assert data.channels == 1 and data.info["converted_files"] == [str(colour)]
    forced = load_data(f"folder:{root}", options=DataOptions(image_size=16, stream="memory", channels=3))
    assert forced.channels == 3 and len(forced.info["converted_files"]) == 36


# ----------------------------------------------------------------------------- torchrun
SHARD_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch, torch.distributed as dist
    from convnet.data import load_data
    from convnet.data.datasets import DataOptions
    from convnet.data.loader import BatchStream
    from convnet.data.samples import as_samples
    from convnet.tasks import get_task

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = load_data("folder:" + sys.argv[1], options=DataOptions(image_size=16, stream="disk",
                                                                  val_fraction=0, test_fraction=0))
    task = get_task("classify").setup(data.classes)
    stream = BatchStream(as_samples(data.train), task.collate, 8, workers=1, rank=rank, world=world)
    seen = {}
    for epoch in range(2):
        order = torch.randperm(len(stream.samples), generator=torch.Generator().manual_seed(epoch))
        seen[epoch] = [i for batch in stream.epoch(order) for i in batch["index"].tolist()]
    json.dump(seen, open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w"))
    dist.destroy_process_group()
""")


def _torchrun(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_torchrun_every_sample_once_per_epoch_across_ranks(tmp_path):
    root = make_folder(tmp_path / "f", per_class=7)  # 21 samples: slices of unequal size
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    done = _torchrun(str(script), str(root), str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in ("0", "1"):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert not set(a) & set(b) and sorted(a + b) == list(range(21))
    assert ranks[0]["0"] != ranks[0]["1"]  # a new order each epoch


def test_torchrun_trains_on_a_streamed_folder(tmp_path):
    root = make_folder(tmp_path / "f", per_class=8)
    out = tmp_path / "two"
    done = _torchrun("-m", "convnet", "train", "--no-progress", "--out", str(out), "--data", f"folder:{root}",
                     "--workers", "1", "--model", "lenet5_modern", "data.image_size=32", "data.stream=disk",
                     "epochs=1", "report=false", "device=cpu", "data.batch_size=8", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == -(-summary["n_train"] // 8)
