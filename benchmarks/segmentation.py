"""The README's segmentation figures, each with the command that produces it.

- ``unet`` (Ronneberger's valid-convolution layout at reduced width) on ``horse`` and on
  ``coins``: IoU of the foreground class and mIoU on the held-out crops (the right half of the
  image, test squares of its checkerboard), with the training time on the threads given;
- the same 2-D data with a U-Net over ResNet-18 (``model.overrides.encoder=resnet18``);
- ``unet3d`` (Cicek's layout at reduced width, padded convolutions) on the MNI152 slab split: Dice
  per class on the held-out axial slab's test cubes;
- inference speed of ``deeplabv3_resnet50`` at 520x520 (torchvision's evaluation size for VOC),
  eager fp32 against ``convnet.optimize`` (BN folded, bf16 where the CPU has native bf16,
  channels-last, inductor), in images per second.

Every training figure comes from ``convnet train`` run in-process exactly as printed (the
commands are in the JSON), on this machine's CPU with ``threads`` threads. Prints one JSON object.

    python benchmarks/segmentation.py                 # everything (about 40 minutes on 2 busy cores)
    python benchmarks/segmentation.py --only horse,speed --epochs-scale 0.5
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _train import convnet_train  # noqa: E402

# Each recipe: data, flags and overrides of `convnet train` (out, threads and epochs are added).
UNET_2D = ("--model", "unet", "--batch-size", "8")
RECIPES = {
    "horse": dict(data="horse", epochs=4, flags=UNET_2D,
                  overrides=("model.overrides.widths=[16,32,64]", "task.options.pad_to_multiple=true",
                             "augment.hflip=0.5")),
    "coins": dict(data="coins", epochs=4, flags=UNET_2D,
                  overrides=("model.overrides.widths=[16,32,64]", "task.options.pad_to_multiple=true",
                             "augment.hflip=0.5", "augment.vflip=0.5")),
    "horse_resnet18": dict(data="horse", epochs=3, flags=UNET_2D,
                           overrides=("model.overrides.encoder=resnet18", "augment.hflip=0.5")),
    "coins_resnet18": dict(data="coins", epochs=3, flags=UNET_2D,
                           overrides=("model.overrides.encoder=resnet18", "augment.hflip=0.5", "augment.vflip=0.5")),
    # Dice + CE: white matter is 6% of the training voxels (slabs above and below) but a quarter
    # of the held-out slab's; with cross-entropy alone (5 epochs) its test Dice was 0.10.
    "mni152": dict(data="mni152", epochs=8, flags=("--model", "unet3d", "--batch-size", "8"),
                   overrides=("model.overrides.widths=[16,32,64]", "model.overrides.padding=same",
                              "task.options.loss=dice_ce", "augment.shear=0", "augment.hflip=0.5")),
}


def command(name: str, recipe: dict, epochs: int, threads: int) -> list[str]:
    return ["--data", recipe["data"], *recipe["flags"], "--epochs", str(epochs), *recipe["overrides"],
            f"threads={threads}", "report=false"]


def train(name: str, recipe: dict, epochs: int, threads: int, root: Path) -> dict:
    args = command(name, recipe, epochs, threads)
    flags = [a for a in args if "=" not in a]
    overrides = tuple(a for a in args if "=" in a)
    summary = convnet_train(root / name, *flags, overrides=overrides)
    per = summary["test_per_class"]
    return {
        "command": "convnet train " + " ".join(shlex.quote(a) for a in args),
        "test_miou": round(summary["test_miou"], 4),
        "test_iou": {c: (round(v, 4) if v is not None else None) for c, v in zip(per["classes"], per["iou"])},
        "test_dice": {c: (round(v, 4) if v is not None else None) for c, v in zip(per["classes"], per["dice"])},
        "test_pixel_accuracy": round(summary["test_pixel_accuracy"], 4),
        "best_val_miou": summary["best_val_miou"],
        "n_train": summary["n_train"], "n_test": summary["n_test"], "params": summary["params"],
        "epochs": summary["epochs"], "train_s": round(summary["wall_s"], 1), "threads": summary["threads"],
    }


@torch.no_grad()
def speed(threads: int, iters: int, warmup: int) -> dict:
    """deeplabv3_resnet50 (21 VOC classes) at 1x3x520x520: eager fp32 against convnet.optimize."""
    import convnet
    from convnet.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("deeplabv3_resnet50", num_classes=21).eval()
    x = torch.randn(1, 3, 520, 520)

    def rate(fn) -> float:
        for _ in range(warmup):
            fn(x)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(x)
        return iters / (time.perf_counter() - t0)

    eager = rate(model)
    t0 = time.perf_counter()
    fast = convnet.optimize(model)
    fast(x)  # compiles
    compile_s = time.perf_counter() - t0
    optimized = rate(fast)
    ref, got = model(x), fast(x)
    agree = float((ref.argmax(1) == got.argmax(1)).float().mean())
    return {"command": "python benchmarks/segmentation.py --only speed", "input": [1, 3, 520, 520],
            "eager_fp32_img_s": round(eager, 3), "optimized_img_s": round(optimized, 3),
            "speedup": round(optimized / eager, 2), "optimized": fast.extra_repr(),
            "compile_s": round(compile_s, 1), "pixel_agreement_with_eager": round(agree, 4),
            "threads": threads, "iters": iters}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated subset of {', '.join([*RECIPES, 'speed'])}")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every recipe's epochs (shorter runs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=5, help="timed forward passes per speed figure")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default="", help="keep the runs here (default: a temporary folder)")
    args = p.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n] or [*RECIPES, "speed"]
    unknown = sorted(set(chosen) - set(RECIPES) - {"speed"})
    if unknown:
        p.error(f"unknown figure(s) {unknown}; choose from {', '.join([*RECIPES, 'speed'])}")
    torch.set_num_threads(args.threads)
    results: dict = {"torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        for name in chosen:
            if name == "speed":
                results[name] = speed(args.threads, args.iters, args.warmup)
                continue
            recipe = RECIPES[name]
            epochs = max(1, round(recipe["epochs"] * args.epochs_scale))
            results[name] = train(name, recipe, epochs, args.threads, root)
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
