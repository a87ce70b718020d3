"""A small WaveNet on music21's recording: held-out negative log-likelihood in bits per sample
against n-gram baselines over the mu-law levels, and the speed of cached against naive generation.

The model is trained by ``convnet train`` on ``wav:music21`` (the 20 s recording inside the
music21 wheel, resampled to 16 kHz as in the paper's §3.1, mu-law coded to 256 levels): the first
70% of the recording trains, the next 10% validates and the last 20% tests, so the test audio is
a later passage the model never heard. A window scores ``window`` next samples after
``receptive field - 1`` samples of context, so every scored sample sees a full receptive field.

Baselines on exactly the same scored test samples:
- unigram: the level frequencies of the training part (add-one smoothing);
- bigram: the next level given the current one, counted on the training part, with additive
  smoothing whose strength is chosen on the validation part from {0.01, 0.1, 0.5, 1}.
A uniform guess costs 8 bits per sample.

Generation: samples per second in steady state (a receptive field of held-out audio in context;
see :func:`steady_speed`), one thread, the cached queues of Paine et al. 2016 against
re-running the network over the last receptive field for every sample (the two draw identical
samples; tests/test_wavenet.py checks it), for the trained model and for an untrained one of the
paper's size (3 x dilations 1..512, receptive field 3,070), where the naive path has six times
more positions to re-run per sample.

    python benchmarks/wavenet.py                    # ~15 min on a shared 2-core machine
    python benchmarks/wavenet.py --reuse            # the measurements again on the finished run
    python benchmarks/wavenet.py --epochs 2 --blocks 1 --layers 6   # a quick look

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _train import convnet_train  # noqa: E402

LN2 = math.log(2.0)


def scored(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(previous codes, next codes) of every scored sample of a split (targets >= 0)."""
    x, y = split
    keep = y >= 0
    return x[keep], y[keep]  # the input at a position is the code before its target


def ngram_bits(train: Any, test: Any, val: Any) -> dict[str, Any]:
    """Unigram and bigram cross-entropies (bits per sample) of the test samples."""
    levels = 256
    prev_tr, next_tr = scored(train)
    prev_va, next_va = scored(val)
    prev_te, next_te = scored(test)
    uni = torch.bincount(next_tr, minlength=levels).double() + 1.0
    uni_bits = float(-(uni / uni.sum()).log()[next_te].mean()) / LN2
    pairs = torch.zeros(levels, levels, dtype=torch.float64)
    pairs.index_put_((prev_tr, next_tr), torch.ones(len(next_tr), dtype=torch.float64), accumulate=True)

    def bigram(alpha: float, prev: torch.Tensor, nxt: torch.Tensor) -> float:
        p = (pairs + alpha) / (pairs.sum(1, keepdim=True) + alpha * levels)
        return float(-p[prev, nxt].log().mean()) / LN2

    alphas = (0.01, 0.1, 0.5, 1.0)
    best = min(alphas, key=lambda a: bigram(a, prev_va, next_va))
    return {"unigram_bits": uni_bits, "bigram_bits": bigram(best, prev_te, next_te), "bigram_alpha": best,
            "scored_test_samples": len(next_te)}


def steady_speed(model: Any, samples: int, method: str, context: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Samples per second of ``generate`` in steady state, where each new sample has a whole
    receptive field of past samples: the naive path re-runs the network over ``context`` (a
    receptive field of real audio) and the samples that follow; the cached path's cost per
    sample is one step per layer whatever its queues hold, so it starts from one code (feeding
    a long prime through the queues costs a step per code and is not generation)."""
    import time

    from convnet.models.wavenet import generate

    prime = context if method == "naive" else context[:, -1:]
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    generate(model, samples, prime, generator=g, method=method)
    seconds = max(time.perf_counter() - start, 1e-9)
    return {"seconds": seconds, "samples_per_second": samples / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rate", type=int, default=16_000)
    p.add_argument("--window", type=int, default=2048, help="scored samples per window")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--layers", type=int, default=8, help="layers per block: dilations 1 .. 2^(layers - 1)")
    p.add_argument("--channels", type=int, default=32, help="residual and gate channels")
    p.add_argument("--skip", type=int, default=128, help="skip channels")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gen-samples", type=int, default=200, help="samples per generation timing")
    p.add_argument("--paper-gen-samples", type=int, default=30,
                   help="samples per timing of the paper-size network (receptive field 3,070)")
    p.add_argument("--reuse", action="store_true", help="measure the finished run in --out instead of training")
    p.add_argument("--out", default="runs/bench-wavenet")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from convnet.models import create_model
    from convnet.models.wavenet import WaveNetSpec
    from convnet.train import TrainConfig, load_configured_data, load_run

    rf = WaveNetSpec(blocks=args.blocks, layers_per_block=args.layers).receptive_field
    data_name = f"wav:music21,rate={args.rate},window={args.window},context={rf - 1}"
    overrides = (f"model.overrides.blocks={args.blocks}", f"model.overrides.layers_per_block={args.layers}",
                 f"model.overrides.residual_channels={args.channels}",
                 f"model.overrides.dilation_channels={args.channels}", f"model.overrides.skip_channels={args.skip}",
                 "optim.weight_decay=0", "data.val_fraction=0.1", "data.test_fraction=0.2", f"threads={args.threads}",
                 "task.options.report_samples=2000")
    finished = Path(args.out) / "summary.json"
    if args.reuse and finished.is_file():  # the run of an earlier call: only the measurements again
        summary = json.loads(finished.read_text())
        if json.loads((Path(args.out) / "config.json").read_text())["train"]["data"]["name"] != data_name:
            raise SystemExit(f"{args.out} holds a run on other data; drop --reuse or choose another --out")
    else:
        summary = convnet_train(Path(args.out), "--model", "wavenet", "--data", data_name, "--epochs",
                                str(args.epochs), "--batch-size", str(args.batch_size), "--optimizer", "adam", "--lr",
                                str(args.lr), "--device", "cpu", "--overwrite", overrides=overrides)
    model, run_cfg = load_run(args.out)
    data = load_configured_data(TrainConfig.from_dict(run_cfg["train"]))
    baselines = ngram_bits(data.train, data.test, data.val)
    audio = data.test[0][0]  # real codes: the held-out audio's first window
    model.eval()
    prime = audio[None, -rf:]
    cached = steady_speed(model, args.gen_samples, "cached", prime)
    naive = steady_speed(model, args.gen_samples, "naive", prime)
    # The paper's size (three stacks of dilations 1..512, receptive field 3,070): the naive path
    # re-runs 3,070 positions per sample, the cached one a step per layer. Speed does not depend
    # on the weights, so an untrained network is timed.
    paper = create_model("wavenet").eval()
    codes = torch.cat([x[x >= 0] for x in data.test[1]])  # every scored test code, in order
    paper_prime = codes[None, :paper.receptive_field]
    paper_cached = steady_speed(paper, args.paper_gen_samples, "cached", paper_prime)
    paper_naive = steady_speed(paper, args.paper_gen_samples, "naive", paper_prime)
    result = {
        "data": data_name, "receptive_field": rf, "params": summary["params"], "epochs": summary["epochs"],
        "steps": summary["steps"], "train_s": summary["wall_s"],
        "test_bits_per_sample": summary["test_bits_per_sample"], **baselines, "uniform_bits": 8.0,
        "generation": {"samples": args.gen_samples, "threads": args.threads,
                       "cached_samples_per_s": round(cached["samples_per_second"], 1),
                       "naive_samples_per_s": round(naive["samples_per_second"], 1),
                       "speedup": round(naive["seconds"] / cached["seconds"], 1)},
        "generation_paper_size": {"receptive_field": paper.receptive_field, "samples": args.paper_gen_samples,
                                  "cached_samples_per_s": round(paper_cached["samples_per_second"], 1),
                                  "naive_samples_per_s": round(paper_naive["samples_per_second"], 1),
                                  "speedup": round(paper_naive["seconds"] / paper_cached["seconds"], 1)},
        "run_dir": summary["run_dir"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
