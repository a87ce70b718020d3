"""convnet.deploy.bench: the figures' definitions (never a speed: the machine is shared)."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_model
from convnet.analysis import summary
from convnet.deploy.bench import _PeakMemory, _percentile, bench_model, flops_per_image, matmul_ceiling

KEYS = {"img_per_s", "p50_ms", "p99_ms", "peak_mem_mb", "flops_per_img", "achieved_flops", "ceiling",
        "share_of_ceiling"}


@pytest.fixture(autouse=True, scope="module")
def _small_ceilings():
    # The ceiling is cached per (dtype, device, threads): measure it once here with small GEMMs,
    # so the tests do not pay for the full-size measurement.
    for dtype in (torch.float32, torch.bfloat16):
        matmul_ceiling(dtype, sizes=(512,), repeats=2, refresh=True)


def _positive(r: dict, keys=KEYS) -> None:
    for k in keys:
        assert isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] > 0, (k, r[k])


def test_eager_inference_figures_and_flops_match_summary():
    model = tiny_model("resnet18", in_channels=3)
    r = bench_model(model, batch_size=2, input_size=(3, 32, 32), mode="eager", warmup=1, iters=4)
    _positive(r)
    assert r["p99_ms"] >= r["p50_ms"] and r["dtype"] == "fp32" and r["speedup"] == 1.0
    macs = summary(model, (3, 32, 32)).total_macs
    assert r["flops_per_img"] == 2 * macs
    # achieved = FLOPs per image x images/s; share = achieved / ceiling
    assert r["achieved_flops"] == pytest.approx(r["flops_per_img"] * r["img_per_s"])
    assert r["share_of_ceiling"] == pytest.approx(r["achieved_flops"] / r["ceiling"])
    # images/s is the batch over the mean latency
    assert r["img_per_s"] == pytest.approx(2 / (r["mean_ms"] / 1e3))


def test_flops_by_hand_and_training_counts_three_forwards():
    # conv 3->4, 3x3, padding 1 on 8x8: 8*8 outputs x 4 channels x 3*3*3 MACs; linear 256 -> 5.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))
    hand = 2 * (8 * 8 * 4 * 3 * 9 + 256 * 5)
    assert flops_per_image(model, (3, 8, 8)) == hand
    r = bench_model(model, batch_size=4, input_size=(3, 8, 8), train=True, mode="eager", warmup=1, iters=3)
    assert r["flops_per_img"] == 3 * hand
    _positive(r)
    assert r["p99_ms"] >= r["p50_ms"]


def test_optimized_mode_reports_baseline_and_speedup():
    model = tiny_model("resnet18", in_channels=3)
    r = bench_model(model, batch_size=2, input_size=(3, 32, 32), mode="optimized", compile=False, warmup=1, iters=3)
    _positive(r)
    base = r["baseline"]
    _positive(base, ("img_per_s", "p50_ms", "p99_ms", "peak_mem_mb", "achieved_flops", "ceiling", "share_of_ceiling"))
    assert r["speedup"] == pytest.approx(r["img_per_s"] / base["img_per_s"])
    assert base["ceiling"] == matmul_ceiling(torch.float32)  # the fp32 ceiling, cached for the process
    assert r["ceiling"] == matmul_ceiling(r["dtype"])


def test_onnxruntime_is_inference_only():
    with pytest.raises(ValueError, match="inference only"):
        bench_model(tiny_model("resnet18", in_channels=3), batch_size=2, input_size=(3, 32, 32), train=True,
                    mode="onnxruntime", iters=1)
    with pytest.raises(ValueError, match="mode must be"):
        bench_model(tiny_model("resnet18", in_channels=3), input_size=(3, 32, 32), mode="fast")


def test_matmul_ceiling_is_a_rate():
    # Small sizes for speed; the ceiling is 2 n^3 over the best time, so it is positive and finite.
    c = matmul_ceiling(torch.float32, sizes=(256,), repeats=2, refresh=True)
    assert matmul_ceiling("fp32") == c  # cached for the process: one measurement per benchmark run
    assert math.isfinite(c) and c > 0


def test_percentile_matches_numpy():
    values = [3.0, 1.0, 9.0, 4.0, 4.5, 10.0, 0.5]
    for q in (0, 50, 90, 99, 100):
        assert _percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_peak_memory_sees_an_allocation():
    with _PeakMemory(torch.device("cpu")) as quiet:
        pass
    with _PeakMemory(torch.device("cpu")) as busy:
        block = np.ones(200 * 2 ** 20 // 8)  # 200 MiB, touched
        del block
    assert busy.mb - quiet.mb > 150 or quiet.kind == "rss_peak_lifetime"


def test_cli_bench_json(capsys):
    from convnet.deploy.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["bench", "resnet18", "--input-size", "3,32,32", "--batch-size", "2", "--iters", "2",
                              "--warmup", "1", "--mode", "eager", "--json"])
    assert args.fn(args) == 0
    r = json.loads(capsys.readouterr().out)
    _positive(r)
    assert r["model"] == "resnet18" and r["input_size"] == [3, 32, 32] and r["p99_ms"] >= r["p50_ms"]
    from convnet import create_model

    assert r["flops_per_img"] == flops_per_image(create_model("resnet18"), (3, 32, 32))
