"""The README's detection figures, each with the command that produces it.

- ``yolo_n`` (the modern anchor-free YOLO, nano size) trained from scratch on the CPU on the scene
  set (``--data scenes``: 800 training / 200 validation images of 160x160, digits on real
  photographs): mAP@[.5:.95] and AP50 on the validation split (the set's test split is its
  validation split), with the training time;
- Faster R-CNN on the same split with the same budget of epochs: torchvision's layout
  (``fasterrcnn_resnet50_fpn``) over a ResNet-18 with trainable batch norms (from scratch, no
  ImageNet weights), at the data's size (``min_size=max_size=160``), anchors of 16..256 for
  objects of 10..56 pixels, and fewer RoIs per image than the COCO defaults so that the
  pure-PyTorch RoIAlign stays affordable on a CPU: mAP, AP50 and training time;
- inference speed of both trained models on the validation images (batch 8, eager fp32, the
  threads given), in images per second;
- ``convnet bench fasterrcnn_resnet50_fpn --input-size 3,800,800`` (eager fp32 and optimized, batch
  1), then convnet's and torchvision's ``fasterrcnn_resnet50_fpn`` on the same weights in the same
  process, eager, timed call by call in alternation (torchvision's compiled nms / roi_align do
  not load against this CPU torch: its model runs with convnet's ops patched in, as in
  tests/test_detectors.py), with whether their boxes are identical.

Every training figure comes from ``convnet train`` run in-process exactly as printed (the commands
are in the JSON). Prints one JSON object.

    python benchmarks/detection_scenes.py                     # everything
    python benchmarks/detection_scenes.py --only yolo --epochs-scale 0.5
"""
from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _train import convnet_train  # noqa: E402

# Augmentation for digits: no flips (a mirrored 2 is no digit), scale jitter, colour, mosaic.
_AUGMENT = ("augment.hflip=0", "augment.shift=0", "augment.shear=0", "augment.scale=0.25",
            "augment.color_jitter=0.2", "task.options.mosaic=0.25")
RECIPES = {
    "yolo": dict(epochs=10, flags=("--model", "yolo_n", "--data", "scenes", "--batch-size", "8", "--lr", "0.004"),
                 overrides=_AUGMENT + ("optim.weight_decay=0.0005", "optim.ema_decay=0.999", "optim.ema_warmup=true",
                                       "eval_batch_size=50")),
    # Half the YOLO's epochs: an epoch costs it about three times as much here (RoIAlign, NMS).
    "fasterrcnn": dict(epochs=5, flags=("--model", "fasterrcnn_resnet50_fpn", "--data", "scenes", "--batch-size", "8",
                                         "--lr", "0.001"),
                       overrides=_AUGMENT + (
                           "model.overrides.backbone=resnet18", "model.overrides.backbone_norm=batch",
                           "model.overrides.min_size=160", "model.overrides.max_size=160",
                           "model.overrides.fpn_channels=64", "model.overrides.representation_size=256",
                           "model.overrides.anchor_sizes=[[16],[32],[64],[128],[256]]",
                           "model.overrides.rpn_pre_nms_top_n_train=500", "model.overrides.rpn_pre_nms_top_n_test=300",
                           "model.overrides.rpn_post_nms_top_n_train=500",
                           "model.overrides.rpn_post_nms_top_n_test=300",
                           "model.overrides.box_batch_size_per_image=64", "optim.weight_decay=0.0005",
                           "optim.ema_decay=0.999", "optim.ema_warmup=true", "eval_batch_size=50")),
}


def command(recipe: dict, epochs: int, threads: int) -> list[str]:
    return [*recipe["flags"], "--epochs", str(epochs), *recipe["overrides"], f"threads={threads}", "report=false"]


def train(name: str, recipe: dict, epochs: int, threads: int, root: Path) -> dict:
    args = command(recipe, epochs, threads)
    flags = [a for a in args if "=" not in a]
    overrides = tuple(a for a in args if "=" in a)
    out = root / name
    t0 = time.time()
    summary = convnet_train(out, *flags, overrides=overrides)
    return {"command": "convnet train " + shlex.join(flags + ["--out", "DIR", *overrides]),
            "map": summary["test_map"], "map_50": summary["test_map_50"], "map_75": summary["test_map_75"],
            "mar_100": summary["test_mar_100"], "train_s": summary["wall_s"], "wall_s": round(time.time() - t0, 1),
            "epochs": summary["epochs"], "run": str(out)}


def inference_speed(run: str, threads: int, batch: int = 8, repeats: int = 3) -> tuple[float, int]:
    """Images per second of a trained run's model on the validation images (eager, fp32), and
    its parameter count."""
    from convnet.data import load_data
    from convnet.train import load_run

    model, _ = load_run(run)
    params = sum(p.numel() for p in model.parameters())
    images = load_data("scenes").val.inputs[:batch * repeats]
    torch.set_num_threads(threads)
    with torch.no_grad():
        model(images[:batch])  # warm-up
        t0 = time.perf_counter()
        for i in range(repeats):
            model(images[i * batch:(i + 1) * batch])
    return batch * repeats / (time.perf_counter() - t0), params


def _torchvision():
    """torchvision's models, imported the oracle's way (its compiled ops are absent here), with
    convnet's nms / roi_align in place of its compiled ones."""
    import convnet.ops as ops

    original = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: (lambda fn: fn)
    try:
        models = importlib.import_module("torchvision.models")
    finally:
        torch.library.register_fake = original
    import torchvision.ops.boxes as tv_boxes
    import torchvision.ops.poolers as tv_poolers

    tv_boxes.nms, tv_boxes.batched_nms, tv_poolers.roi_align = ops.nms, ops.batched_nms, ops.roi_align
    return models


def speed_fasterrcnn(threads: int, iters: int) -> dict:
    """``convnet bench fasterrcnn_resnet50_fpn --input-size 3,800,800`` (eager and optimized), then
    ours and torchvision's model on the same weights, eager, alternating call by call."""
    from convnet import create_model
    from convnet.deploy.bench import bench_model
    from convnet.weights import load_pretrained

    out: dict = {"command": f"convnet bench fasterrcnn_resnet50_fpn --input-size 3,800,800 --batch-size 1 "
                            f"--iters {iters} --warmup 1 --threads {threads}"}
    tv = _torchvision()
    from torchvision.models.detection import backbone_utils
    from torchvision.ops import misc

    theirs = tv.detection.FasterRCNN(backbone_utils._resnet_fpn_extractor(
        tv.resnet50(norm_layer=misc.FrozenBatchNorm2d), 3), 91).eval()
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(theirs.state_dict(), Path(tmp) / "w.pth")
        ours = load_pretrained(create_model("fasterrcnn_resnet50_fpn"), Path(tmp) / "w.pth").eval()
    ours.default_cfg = {**ours.default_cfg, "name": "fasterrcnn_resnet50_fpn"}
    r = bench_model(ours, batch_size=1, input_size=(3, 800, 800), mode="optimized", iters=iters, warmup=1,
                    threads=threads)  # the eager fp32 baseline comes with it, measured first
    out.update({"convnet_eager_img_per_s": r["baseline"]["img_per_s"], "convnet_optimized_img_per_s": r["img_per_s"],
                "convnet_optimized_dtype": r["dtype"], "convnet_optimized_compiled": r.get("compiled"),
                "speedup": r["speedup"]})
    # Ours and theirs eager, alternating call by call on one image, so that a change in the
    # machine's load falls on both alike.
    x = [torch.rand(3, 800, 800, generator=torch.Generator().manual_seed(0))]
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"convnet": [], "torchvision": []}
    with torch.inference_mode():
        ours(x), theirs(x)
        for _ in range(iters):
            for name, model in (("convnet", ours), ("torchvision", theirs)):
                t0 = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t0)
        out["same_boxes"] = bool(torch.equal(ours(x)[0]["boxes"], theirs(x)[0]["boxes"]))
    for name, t in times.items():
        out[f"{name}_eager_alternating_img_per_s"] = len(t) / sum(t)
    out["torchvision_note"] = "torchvision's model code with convnet's nms and roi_align (its compiled ops do not load)"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="yolo,fasterrcnn,speed", help="comma-separated: yolo, fasterrcnn, speed")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="scale every recipe's epochs (quick runs)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--iters", type=int, default=3, help="timed iterations of the 800x800 speed figure")
    p.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    only = set(args.only.split(","))
    results: dict = {"threads": args.threads, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for name, recipe in RECIPES.items():
            if name in only:
                epochs = max(1, round(recipe["epochs"] * args.epochs_scale))
                results[name] = train(name, recipe, epochs, args.threads, root)
                results[name]["val_img_per_s"], results[name]["params"] = inference_speed(results[name]["run"],
                                                                                          args.threads)
                print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
        if "speed" in only:
            results["speed"] = speed_fasterrcnn(args.threads, args.iters)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
