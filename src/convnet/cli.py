"""The ``convnet`` command. Each subcommand is a thin main(args) over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

EXAMPLES = """examples:
  convnet train                                  # LeNet-5 on the bundled digits
  convnet train --model resnet18 --epochs 10 optim.weight_decay=5e-4
  convnet eval --run runs/lenet5-digits-...
  convnet predict --run runs/lenet5-digits-... digit.png
  convnet models 'resnet*'
  convnet summary resnet18 --input-size 3,224,224
"""


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, Trainer, parse_overrides

    cfg = TrainConfig()
    flags = {"model.name": args.model, "data.name": args.data, "epochs": args.epochs,
             "data.batch_size": args.batch_size, "optim.lr": args.lr, "optim.name": args.optimizer,
             "seed": args.seed, "out": args.out, "device": args.device}
    parse_overrides(cfg, [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides))
    summary = Trainer(cfg, resume=args.resume, progress=not args.no_progress).fit()
    print(f"test accuracy: {summary['test_acc']:.4f}  (best val {summary['best_val_acc'] or float('nan'):.4f}, "
          f"{summary['epochs']} epochs, {summary['wall_s']:.1f} s training)")
    print(f"run directory: {summary['run_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from .data import load_data
    from .train import TrainConfig, evaluate, load_run

    model, run_cfg = load_run(args.run)
    cfg = TrainConfig.from_dict(run_cfg["train"])
    data = load_data(cfg.data.name, cfg.data.image_size or None, cfg.data.val_fraction, cfg.data.test_fraction,
                     cfg.data.split_seed)
    out = {}
    for split in ("val", "test"):
        r = evaluate(model, getattr(data, split), torch.device("cpu"), cfg.eval_batch_size)
        out[f"{split}_loss"], out[f"{split}_acc"] = r["loss"], r["acc"]
    out["n_test"] = len(data.test[1])
    print(json.dumps(out, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .data import Preprocess, load_image
    from .train import load_run

    model, run_cfg = load_run(args.run)
    pre = Preprocess.from_dict(run_cfg["data"]["preprocess"])
    classes = run_cfg["data"]["classes"]
    k = max(1, min(args.top_k, len(classes)))
    for path in args.images:
        image = load_image(path, "L" if pre.channels == 1 else "RGB")
        if args.invert:
            image = 1.0 - image
        with torch.no_grad():
            probs = model(pre.from_image(image)).softmax(1)[0]
        top = probs.topk(k)
        ranked = ", ".join(f"{classes[i]} ({p:.3f})" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {ranked}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models, model_info

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = [model_info(n) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.markdown:
        print("| model | family | params | reference | year | paper |\n|---|---|---:|---:|---:|---|")
        for r in rows:
            ref = f"{r['reference_params']:,}" if r["reference_params"] else ""
            print(f"| `{r['name']}` | {r['family']} | {r['params']:,} | {ref} | {r['year']} | {r['paper']} |")
        return 0
    w = max(len(n) for n in names)
    print(f"{'name':<{w}}  {'family':<10}  {'params':>13}  year  paper")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['family']:<10}  {r['params']:>13,}  {r['year']}  {r['paper']}")
    return 0


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3,224,224, got {text!r}") from None


def cmd_summary(args: argparse.Namespace) -> int:
    from .analysis import summary
    from .models import create_model

    size = args.input_size
    spatial_dims = args.spatial_dims or (len(size) - 1 if size else 2)
    in_channels = size[0] if size else None
    model = create_model(args.model, spatial_dims=spatial_dims, in_channels=in_channels)
    result = summary(model, size)
    print(result.to_json() if args.json else result.table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convnet", description="Convolutional neural networks on PyTorch.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model into a run directory (default: LeNet-5 on the digits)")
    t.add_argument("--model", help="registered model name (default lenet5)")
    t.add_argument("--data", help="digits | folder:DIR | mnist:DIR | cifar10:DIR | cifar100:DIR")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", help="sgd | adam | adamw")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    t.add_argument("--device", help="cpu | cuda | auto")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="typed config overrides, e.g. optim.weight_decay=0")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="test metrics of a finished run")
    e.add_argument("--run", required=True)
    e.set_defaults(fn=cmd_eval)

    pr = sub.add_parser("predict", help="top-k classes for image files, preprocessed as in training")
    pr.add_argument("--run", required=True)
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--invert", action="store_true", help="invert gray levels (dark ink on light paper)")
    pr.set_defaults(fn=cmd_predict)

    m = sub.add_parser("models", help="list registered models")
    m.add_argument("pattern", nargs="?", default="*")
    m.add_argument("--json", action="store_true")
    m.add_argument("--markdown", action="store_true", help="a Markdown table (the README's model table)")
    m.set_defaults(fn=cmd_models)

    s = sub.add_parser("summary", help="per-layer output shapes, parameters and MACs")
    s.add_argument("model")
    s.add_argument("--input-size", type=_int_tuple, help="C,H,W (C,L for 1-D, C,D,H,W for 3-D)")
    s.add_argument("--spatial-dims", type=int, choices=(1, 2, 3))
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_summary)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["train", *(argv or [])])
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        # Bad input (config, data, run directory, model name): one clear line, no traceback.
        print(f"convnet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
