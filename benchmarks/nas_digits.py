"""Architecture search on the digits: every algorithm at the same time budget, three seeds, the
found network retrained, against random search and LeNet-5 (the README's NAS table).

Each job is two commands a user can type: ``convnet search ...`` (the algorithm, a time budget,
a seed) and the ``convnet train ...`` the search prints to retrain its result (here with a
fixed number of epochs and the seed). LeNet-5 is trained by the same recipe. Jobs run as
subprocesses, ``--jobs`` at a time, each with one torch thread (on a CPU shared with other work,
two threads per process wait on each other). One JSON line per job goes to stdout; the summary
table (mean and standard deviation over the seeds) goes to stdout at the end.

    python benchmarks/nas_digits.py                          # the README's configuration
    python benchmarks/nas_digits.py --budget 1m --seeds 0 --retrain-epochs 1   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The search settings of each algorithm, all on the 12x12 digits (the 8x8 digits drawn into a
# 12x12 field). The cell-space algorithms search a proxy network of 3 cells at C = 4 and the
# found cell is retrained in 5 cells at C = 8 (DARTS' protocol: search small, evaluate larger).
SEARCH_SIZE = ["--init-channels", "4", "--layers", "3"]
RETRAIN_SIZE = {"init_channels": 8, "layers": 5}  # darts_cell overrides of the retrained network
ALGOS: dict[str, list[str]] = {
    "darts": ["--algo", "darts", "--space", "darts", *SEARCH_SIZE],
    "darts2": ["--algo", "darts", "--space", "darts", "--order", "2", *SEARCH_SIZE],
    "evolution": ["--algo", "evolution", "--space", "darts", "--population", "3", "--sample", "2", *SEARCH_SIZE],
    "random": ["--algo", "random", "--space", "darts", *SEARCH_SIZE],
    "compound": ["--algo", "compound"],
}
COMMON = ["--data", "digits", "--image-size", "12", "--threads", "1", "--no-progress"]
# The retraining recipe of every network, LeNet-5 included: convnet train's defaults (AdamW,
# cosine schedule, planar distortions) for a few epochs.
RETRAIN = ["--batch-size", "64", "threads=1", "report=false"]


def _run(args: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(args)}\n")
        f.flush()
        code = subprocess.call(args, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if code != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {code} (log: {log})")


def search_job(algo: str, seed: int, budget: str, epochs: int, out: Path) -> dict:
    """``convnet search`` then the ``convnet train`` of its result; their figures."""
    search_dir, run_dir, log = out / f"{algo}-{seed}", out / f"{algo}-{seed}-retrain", out / f"{algo}-{seed}.log"
    search = [sys.executable, "-m", "convnet", "search", *ALGOS[algo], *COMMON, "--budget", budget,
              "--seed", str(seed), "--out", str(search_dir), "--overwrite"]
    t0 = time.time()
    _run(search, log)
    summary = json.loads((search_dir / "summary.json").read_text())
    name, overrides = summary["model"]["name"], dict(summary["model"]["overrides"])
    if name == "darts_cell":
        overrides.update(RETRAIN_SIZE)
    size = summary.get("image_size") or 12
    train = [sys.executable, "-m", "convnet", "train", "--model", name, "--data", "digits", "--epochs", str(epochs),
             "--seed", str(seed), "--out", str(run_dir), "--overwrite", "--no-progress", *RETRAIN,
             f"data.image_size={size}"]
    for key, value in overrides.items():
        train.append(f"model.overrides.{key}={value if isinstance(value, str) else json.dumps(value)}")
    t1 = time.time()
    _run(train, log)
    trained = json.loads((run_dir / "summary.json").read_text())
    return {"job": algo, "seed": seed, "test_acc": trained["test_acc"], "params": trained["params"],
            "macs": _macs(name, overrides, size), "search_score": summary["score"], "steps": summary["steps"],
            "scored": summary["candidates_scored"], "rejected": summary["candidates_rejected"],
            "architecture": summary["architecture"], "search_s": round(t1 - t0, 1),
            "retrain_s": round(time.time() - t1, 1), "image_size": summary.get("image_size"),
            "search": "convnet " + " ".join(search[3:]), "retrain": "convnet " + " ".join(train[3:])}


def _macs(name: str, overrides: dict, size: int) -> int:
    """MACs per sample of the retrained network (convnet.summary on the meta device)."""
    from convnet import create_model, summary

    with __import__("torch").device("meta"):
        model = create_model(name, in_channels=1, num_classes=10, **overrides)
    return summary(model, (1, size, size), device="meta", receptive_field=False).total_macs


def lenet_job(seed: int, epochs: int, out: Path) -> dict:
    """LeNet-5 (32x32, its fixed input) by the same training recipe."""
    run_dir, log = out / f"lenet5-{seed}", out / f"lenet5-{seed}.log"
    train = [sys.executable, "-m", "convnet", "train", "--model", "lenet5", "--data", "digits", "--epochs", str(epochs),
             "--seed", str(seed), "--out", str(run_dir), "--overwrite", "--no-progress", *RETRAIN]
    t0 = time.time()
    _run(train, log)
    trained = json.loads((run_dir / "summary.json").read_text())
    return {"job": "lenet5", "seed": seed, "test_acc": trained["test_acc"], "params": trained["params"],
            "macs": _macs("lenet5", {}, 32), "retrain_s": round(time.time() - t0, 1), "image_size": 32,
            "retrain": "convnet " + " ".join(train[3:])}


def _mean_std(values: list[float], fmt: str = ".2f") -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} +- {format(statistics.stdev(values), fmt)}"


def table(rows: list[dict]) -> str:
    lines = ["| network | test accuracy % (mean +- sd) | per seed | parameters | MACs | search: steps / scored |",
             "|---|---:|---|---:|---:|---|"]
    for job in dict.fromkeys(r["job"] for r in rows):
        rs = sorted((r for r in rows if r["job"] == job), key=lambda r: r["seed"])
        acc = [100 * r["test_acc"] for r in rs]
        params = _mean_std([r["params"] for r in rs], ",.0f")
        macs = _mean_std([r["macs"] for r in rs], ",.0f")
        search = ", ".join(f"{r['steps']}/{r['scored']}" for r in rs) if "steps" in rs[0] else "-"
        per_seed = ", ".join(f"{a:.2f}" for a in acc)
        lines.append(f"| {job} | {_mean_std(acc)} | {per_seed} | {params} | {macs} | {search} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="3m", help="time budget of every search (default 3m)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--retrain-epochs", type=int, default=4)
    parser.add_argument("--algos", default="darts,evolution,random,compound", help=f"of {', '.join(ALGOS)}")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time")
    parser.add_argument("--out", default="runs/nas_digits")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    algos = args.algos.split(",")
    unknown = [a for a in algos if a not in ALGOS]
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {', '.join(ALGOS)}")
    t0 = time.time()
    rows: list[dict] = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(search_job, a, s, args.budget, args.retrain_epochs, out) for s in seeds for a in algos]
        futures += [pool.submit(lenet_job, s, args.retrain_epochs, out) for s in seeds]
        for f in futures:
            row = f.result()
            rows.append(row)
            print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: (list(ALGOS).index(r["job"]) if r["job"] in ALGOS else len(ALGOS), r["seed"]))
    print(table(rows))
    print(f"total wall time {time.time() - t0:.0f} s; budget {args.budget} per search, {args.retrain_epochs} "
          f"retraining epochs, seeds {args.seeds}, {args.jobs} jobs at a time, one thread each")


if __name__ == "__main__":
    main()
