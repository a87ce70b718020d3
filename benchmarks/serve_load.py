"""Load on ``convnet serve``: throughput, latency percentiles, errors and server memory, with
micro-batching and without, and past the queue bound.

The server runs a ResNet-18 at 224x224 with random weights (a run directory this script makes
with ``convnet.save_pretrained`` and a config.json: the weights do not change the cost of a
forward pass) as ``convnet serve`` in a subprocess on a free loopback port. Clients are threads
with one keep-alive HTTP/1.1 connection each, posting the same 320x240 JPEG (decoded, resized
and normalised by the server on every request, as a real upload is). Nothing leaves 127.0.0.1.

Phases, each against a fresh server:

1. ``batched``: ``--max-batch 16 --max-wait-ms 5``, ``--clients`` concurrent clients;
2. ``batch1``: the same with ``--max-batch 1`` (no batching);
3. ``overload``: ``--queue 16`` and four times as many clients for ``--overload-seconds``: the
   server must answer the excess with fast 503s while the admitted requests keep their latency
   (their median in the first and second half of the phase is printed side by side).

Each phase is bounded by its request count and by ``--max-seconds``; the server's RSS is read
from /proc after a warm-up (``--warmup`` requests per client) and at the end of the phase.

    python benchmarks/serve_load.py                          # 10,000 requests per phase
    python benchmarks/serve_load.py --requests 600 --threads 2 --cpus 0,1 --json
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_run(directory: Path, model_name: str = "resnet18", size: int = 224) -> Path:
    """A run directory holding ``model_name`` with random weights, classifying 224x224 RGB
    images into 1000 classes, with ImageNet's mean and std."""
    import torch

    from convnet import create_model, save_pretrained
    from convnet.weights import atomic_write_json, read_json

    torch.manual_seed(0)
    save_pretrained(create_model(model_name, num_classes=1000).eval(), directory)
    cfg = read_json(directory / "config.json", "config")
    cfg["data"] = {"classes": [f"class_{i}" for i in range(1000)],
                   "preprocess": {"channels": 3, "source_size": [size, size], "size": [size, size], "content": None,
                                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    cfg["task"] = {"name": "classify", "options": {"top_k": 5, "keep_examples": 0}}
    atomic_write_json(directory / "config.json", cfg)
    return directory


def test_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A photo-like JPEG: smooth colour gradients with mild noise (quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], -1) * 0.4 + 0.5
    rgb = np.clip(rgb + rng.normal(0, 0.04, rgb.shape), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``convnet serve`` in a subprocess on a free loopback port."""

    def __init__(self, run: Path, args: list[str], cpus: list[int] | None):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "convnet", "serve", "--run", str(run), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if cpus:
            os.sched_setaffinity(self.proc.pid, cpus)
        deadline = time.time() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"convnet serve did not start:\n{self.log.read().decode(errors='replace')}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def mean_batch(self) -> float:
        """Inputs per forward pass so far, from the server's /metrics."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/metrics")
        values = dict(line.rsplit(" ", 1) for line in conn.getresponse().read().decode().splitlines()
                      if line.startswith("convnet_batch_size_"))
        conn.close()
        return float(values["convnet_batch_size_sum"]) / max(float(values["convnet_batch_size_count"]), 1.0)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(port: int, body: bytes, requests: int, clients: int, max_seconds: float) -> dict:
    """``requests`` POSTs from ``clients`` threads (bounded by ``max_seconds``): per request its
    start time, latency and status (0: connection error)."""
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    issued = [0]
    t_start = time.perf_counter()
    stop_at = t_start + max_seconds
    headers = {"Content-Type": "image/jpeg", "Connection": "keep-alive"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[tuple[float, float, int]] = []
        while True:
            with lock:
                if issued[0] >= requests or time.perf_counter() > stop_at:
                    break
                issued[0] += 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            except OSError:
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append((t0 - t_start, time.perf_counter() - t0, status))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    return {"results": sorted(results), "wall_s": wall}


def summarize(run: dict) -> dict:
    results = run["results"]
    ok = [lat for _, lat, s in results if s == 200]
    busy = [lat for _, lat, s in results if s == 503]
    errors = [s for _, _, s in results if s not in (200, 503)]

    def pct(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q) * 1000) if values else None

    # Halves by start time: does the latency of admitted requests creep up as the phase goes on?
    mid = run["wall_s"] / 2
    first = [lat for t, lat, s in results if s == 200 and t < mid]
    second = [lat for t, lat, s in results if s == 200 and t >= mid]
    return {"requests": len(results), "wall_s": run["wall_s"], "ok_per_s": len(ok) / run["wall_s"],
            "ok": len(ok), "busy_503": len(busy), "errors": len(errors),
            "error_rate": len(errors) / max(len(results), 1),
            "p50_ms": pct(ok, 50), "p95_ms": pct(ok, 95), "p99_ms": pct(ok, 99),
            "busy_p50_ms": pct(busy, 50), "busy_p99_ms": pct(busy, 99),
            "ok_p50_first_half_ms": 1000 * statistics.median(first) if first else None,
            "ok_p50_second_half_ms": 1000 * statistics.median(second) if second else None}


def phase(name: str, run_dir: Path, body: bytes, server_args: list[str], requests: int, clients: int,
          seconds: float, args: argparse.Namespace) -> dict:
    server = Server(run_dir, server_args, args.cpus)
    try:
        # Warm-up: the allocator settles once it has seen the batch sizes the load produces.
        load(server.port, body, args.warmup * clients, clients, 300)
        before = server.rss_mb()
        out = summarize(load(server.port, body, requests, clients, seconds))
        out.update(phase=name, clients=clients, server_args=" ".join(server_args),
                   rss_before_mb=before, rss_after_mb=server.rss_mb(), mean_batch=server.mean_batch())
    finally:
        server.close()
    print(format_row(out), flush=True)
    return out


def format_row(r: dict) -> str:
    def f(v, spec=".0f"):
        return "-" if v is None else format(v, spec)

    text = (f"{r['phase']:9s} {r['clients']:3d} clients  {r['requests']:6d} req in {r['wall_s']:6.1f} s  "
            f"{r['ok_per_s']:6.1f} ok/s  p50 {f(r['p50_ms'])} p95 {f(r['p95_ms'])} p99 {f(r['p99_ms'])} ms  "
            f"errors {r['error_rate']:.2%}  mean batch {r['mean_batch']:.1f}  "
            f"RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB")
    if r["busy_503"]:
        text += (f"\n{'':9s} 503: {r['busy_503']} ({r['busy_503'] / r['requests']:.0%}), p50 {f(r['busy_p50_ms'], '.1f')} "
                 f"p99 {f(r['busy_p99_ms'], '.1f')} ms; admitted p50 first half {f(r['ok_p50_first_half_ms'])} ms, "
                 f"second half {f(r['ok_p50_second_half_ms'])} ms")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=10_000, help="requests per phase")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (overload: four times as many)")
    p.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    p.add_argument("--cpus", type=lambda s: [int(c) for c in s.split(",")], help="pin the server to these CPUs")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--max-seconds", type=float, default=900, help="time bound per phase")
    p.add_argument("--overload-seconds", type=float, default=120, help="length of the overload phase")
    p.add_argument("--warmup", type=int, default=8, help="warm-up requests per client before RSS is read")
    p.add_argument("--phases", default="batched,batch1,overload")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = p.parse_args(argv)

    body = test_jpeg()
    common = ["--threads", str(args.threads), "--timeout-s", "60"]
    plans = {"batched": (["--max-batch", "16", "--max-wait-ms", "5", "--queue", "256"], args.clients),
             "batch1": (["--max-batch", "1", "--queue", "256"], args.clients),
             "overload": (["--max-batch", "16", "--max-wait-ms", "5", "--queue", "16"], 4 * args.clients)}
    print(f"convnet serve, {args.model} at {args.size}x{args.size} (random weights), {len(body):,}-byte JPEG; "
          f"server threads {args.threads}, CPUs {args.cpus or 'any'} of {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp) / "run", args.model, args.size)
        # The overload phase runs for a fixed time (refusals take milliseconds, so a count would be
        # used up long before the admitted requests span the phase), bounded by 100x the count.
        out = {name: phase(name, run_dir, body, plans[name][0] + common,
                           args.requests * (100 if name == "overload" else 1), plans[name][1],
                           args.overload_seconds if name == "overload" else args.max_seconds, args)
               for name in args.phases.split(",")}
    if "batched" in out and "batch1" in out:
        print(f"batching speed-up at {args.clients} clients: "
              f"{out['batched']['ok_per_s'] / out['batch1']['ok_per_s']:.2f}x requests/s")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
