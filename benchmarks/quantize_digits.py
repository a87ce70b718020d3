"""int8 post-training quantisation on the digits: accuracy change and speed, printed as JSON.

Trains LeNet-5 (the modern variant by default: ReLU, max pooling, linear output) on the bundled
digits, or takes a trained run directory, quantises it with ~100 training images as the
calibration set (convnet.deploy.quantize_int8), and compares fp32 and int8 on the test split:
accuracy, top-1 agreement, and the time to classify the whole test split (median of repeats,
warm-up excluded).

    python benchmarks/quantize_digits.py                       # train lenet5_modern, then quantise
    python benchmarks/quantize_digits.py --run runs/lenet5     # a `convnet train` run directory
    python benchmarks/quantize_digits.py --model lenet1 --steps 600
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from convnet import create_model, from_pretrained
from convnet.data.datasets import load_digits
from convnet.deploy import int8_modules, quantize_int8


def train(name: str, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name)
    opt = torch.optim.Adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        model(x)  # warm-up: lazy initialisation, weight prepacking
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run directory (model.safetensors + config.json) to quantise instead of training")
    parser.add_argument("--model", default="lenet5_modern")
    parser.add_argument("--steps", type=int, default=600, help="Adam steps of --batch images")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--calibration", type=int, default=100, help="training images used to calibrate")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny kernels gain nothing from more)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_digits()
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    start = time.perf_counter()
    if args.run:
        model, name = from_pretrained(args.run).eval(), args.run
    else:
        model, name = train(args.model, x_train, y_train, args.steps, args.batch, args.lr, args.seed), args.model
    train_s = time.perf_counter() - start

    start = time.perf_counter()
    qmodel = quantize_int8(model, x_train[:args.calibration].split(50))
    quantize_s = time.perf_counter() - start

    with torch.inference_mode():
        fp32_pred, int8_pred = model(x_test).argmax(1), qmodel(x_test).argmax(1)
    fp32_s, int8_s = time_forward(model, x_test, args.repeats), time_forward(qmodel, x_test, args.repeats)
    one = x_test[:1]
    fp32_1, int8_1 = time_forward(model, one, args.repeats * 5), time_forward(qmodel, one, args.repeats * 5)
    result = {
        "model": name,
        "n_test": len(y_test),
        "calibration_images": min(args.calibration, len(x_train)),
        "fp32_test_acc": round((fp32_pred == y_test).float().mean().item(), 4),
        "int8_test_acc": round((int8_pred == y_test).float().mean().item(), 4),
        "top1_agreement": round((fp32_pred == int8_pred).float().mean().item(), 4),
        "int8_layers": len(int8_modules(qmodel)),
        "fp32_test_set_ms": round(fp32_s * 1e3, 2),
        "int8_test_set_ms": round(int8_s * 1e3, 2),
        "int8_speedup_test_set": round(fp32_s / int8_s, 2),
        "fp32_batch1_ms": round(fp32_1 * 1e3, 3),
        "int8_batch1_ms": round(int8_1 * 1e3, 3),
        "train_s": round(train_s, 1),
        "quantize_s": round(quantize_s, 2),
        "threads": args.threads,
        "engine": torch.backends.quantized.engine,
    }
    result["acc_change"] = round(result["int8_test_acc"] - result["fp32_test_acc"], 4)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
