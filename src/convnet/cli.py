"""The ``convnet`` command. Each subcommand is a thin main(args) over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ._argtypes import int_tuple

EXAMPLES = """examples:
  convnet train                                  # LeNet-5 on the bundled digits
  convnet train --model resnet18 --epochs 10 optim.weight_decay=5e-4
  convnet train --recipe digits --cv 5                # 5-fold cross-validation with a packaged recipe
  convnet train --init runs/a --freeze backbone data.classes=5-9   # transfer: new head on a trained backbone
  convnet train --out runs/a --resume               # continue after a crash, bitwise as if never stopped
  torchrun --nproc_per_node 2 -m convnet train ...  # data parallel over processes
  convnet recipes                                 # the packaged recipes
  convnet eval --run runs/lenet5-digits-...
  convnet predict --run runs/lenet5-digits-... digit.png
  convnet models 'resnet*'
  convnet erf resnet18 --input-size 3,128,128     # effective receptive field at initialisation
  convnet erf --run runs/lenet5-digits-...       # ... at initialisation and after training
  convnet equivariance resnet18 --input-size 3,64,64 --shift 1
  convnet cam --run runs/lenet5-digits-... digit.png --out cam.png
  convnet summary resnet18 --input-size 3,224,224
  convnet bench resnet50 --batch-size 16          # optimized vs eager fp32, share of the matmul ceiling
  convnet export --run runs/a --format onnx       # verified against ONNX Runtime
"""


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, Trainer, apply_recipe, cross_validate, parse_overrides
    from .train.trainer import dist_info, resolve_task

    cfg = TrainConfig()
    if args.recipe:
        apply_recipe(cfg, args.recipe)
    flags = {"model.name": args.model, "data.name": args.data, "task.name": args.task, "epochs": args.epochs,
             "data.batch_size": args.batch_size, "optim.lr": args.lr, "optim.name": args.optimizer,
             "seed": args.seed, "out": args.out, "device": args.device, "transfer.init": args.init,
             "transfer.freeze": args.freeze, "data.workers": args.workers, "max_steps": args.max_steps}
    parse_overrides(cfg, [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides))
    if args.cv:
        result = cross_validate(cfg, args.cv, progress=not args.no_progress, resume=args.resume)
        m = result["metric"]
        label = resolve_task(cfg).primary_label
        print(f"{args.cv}-fold cross-validation: {label} {result[f'cv_{m}_mean']:.4f} +- {result[f'cv_{m}_std']:.4f} "
              f"(folds {', '.join(f'{a:.4f}' for a in result[f'fold_{m}'])}; {result['wall_s']:.1f} s training)")
        print(f"run directory: {result['run_dir']}")
        return 0
    trainer = Trainer(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    summary = trainer.fit()
    if dist_info()[0] != 0:  # under torchrun, rank 0 speaks for all
        return 0
    m, label = trainer.task.primary_metric, trainer.task.primary_label
    best = summary.get(f"best_val_{m}")
    print(f"test {label}: {summary[f'test_{m}']:.4f}  (best val {best if best is not None else float('nan'):.4f}, "
          f"{summary['epochs']} epochs, {summary['wall_s']:.1f} s training)")
    for key, what in (("bad_files", "files skipped because they cannot be read"),
                      ("converted_files", "files converted to the data set's channels")):
        if summary.get(key):
            print(f"{len(summary[key])} {what} (listed in summary.json)")
    print(f"run directory: {summary['run_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from .train import TrainConfig, evaluate, load_configured_data, load_run, run_task

    model, run_cfg = load_run(args.run)
    cfg = TrainConfig.from_dict(run_cfg["train"])
    task = run_task(run_cfg)
    data = load_configured_data(cfg)
    out = {}
    for split in ("val", "test"):
        _, result = evaluate(task, model, getattr(data, split), torch.device("cpu"), cfg.eval_batch_size,
                             workers=cfg.data.workers)
        out.update({f"{split}_{k}": v for k, v in result.items()})
    out["n_test"] = data.info.get("n_test")
    print(json.dumps(out, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict every input; one that cannot be read is reported and the others go on (exit 2
    when any failed)."""
    from pathlib import Path

    import torch

    from .train import load_run, run_task

    model, run_cfg = load_run(args.run)
    task = run_task(run_cfg)
    out_dir = Path(args.out) if args.out else None
    failed = 0
    for path in args.inputs:
        try:
            sample = task.load_input(path, run_cfg, invert=args.invert)
            batch = task.collate([sample])
            with torch.no_grad():
                prediction = task.postprocess(task.forward(model, batch), batch)[0]
            written = task.write_prediction(prediction, sample, out_dir, run_cfg) if out_dir else []
        except (ValueError, OSError) as e:  # this input only: the rest are still predicted
            failed += 1
            print(f"convnet predict: error: {e}" if str(path) in str(e) else f"convnet predict: error: {path}: {e}",
                  file=sys.stderr)
            continue
        line = f"{path}: {task.describe(prediction, run_cfg, top_k=args.top_k)}"
        print(line + (f"  -> {', '.join(str(w) for w in written)}" if written else ""))
    return 2 if failed else 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .train.recipes import describe_recipe, list_recipes, recipe_settings

    if args.name:
        for key, value in recipe_settings(args.name):
            print(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
        return 0
    for name in list_recipes():
        print(f"{name:24s} {describe_recipe(name)}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models, model_info

    if args.pretrained:
        return _list_pretrained(args)
    names = list_models(args.pattern, task=args.task)
    if not names:
        of_task = f" for task {args.task!r}" if args.task else ""
        print(f"no model matches {args.pattern!r}{of_task}", file=sys.stderr)
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


def _list_pretrained(args: argparse.Namespace) -> int:
    """``convnet models --pretrained``: the weights table (convnet.weights.pretrained)."""
    from .weights.pretrained import get_weights, list_pretrained

    entries = [get_weights(*n.split(".", 1)) for n in list_pretrained(args.pattern)]
    if not entries:
        print(f"no pretrained weights for a model matching {args.pattern!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{**e.summary(), "default": e.default, "preprocess": e.preprocess.to_dict()}
                          for e in entries], indent=2))
        return 0
    w = max(len(e.name) for e in entries) + 2
    print(f"{'weights (* = default)':<{w}}  {'data':<24} {'published':<27} {'hash':<7} preprocessing")
    for e in entries:
        figures = ", ".join(f"{k} {v}" for k, v in e.metrics.items()) or "-"
        print(f"{e.name + (' *' if e.default else ''):<{w}}  {e.dataset:<24} {figures:<27} {e.hash_kind:<7} "
              f"{e.preprocess.describe()}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    import torch

    from .analysis import summary
    from .models import create_model

    size = args.input_size
    spatial_dims = args.spatial_dims or (len(size) - 1 if size else 2)
    in_channels = size[0] if size else None
    # Built on the meta device: shapes and counts without allocating or computing (VGG-16 at
    # 224 is instant); a family whose constructor needs real values is built on the CPU.
    try:
        with torch.device("meta"):
            model = create_model(args.model, spatial_dims=spatial_dims, in_channels=in_channels)
    except (RuntimeError, NotImplementedError):
        model = create_model(args.model, spatial_dims=spatial_dims, in_channels=in_channels)
    result = summary(model, size)
    print(result.to_json() if args.json else result.table())
    return 0


def _fresh_run_model(run_dir: str, seed: int | None = None):
    """The run's architecture freshly initialised: create_model with the run's model config, as
    weights.from_pretrained rebuilds it, under the run's seed (the trainer seeds torch, then
    builds the model, so this is the run's own starting point) without touching global RNG."""
    import torch

    from .models import create_model
    from .weights.checkpoint import read_model_config

    cfg = read_model_config(run_dir)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg.get("overrides") or {}).items()}
    inflated = cfg.get("inflate")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = create_model(cfg["name"], spatial_dims=2 if inflated else cfg.get("spatial_dims", 2),
                             in_channels=cfg.get("in_channels"), num_classes=cfg.get("num_classes"), **overrides)
    if inflated:
        from .models import inflate

        model = inflate(model, **inflated)
    return model.eval()


def _analysis_model(args: argparse.Namespace):
    """(model, name, input_size, run config or None) for erf/equivariance: a run's trained model
    (--run) or a fresh registered MODEL; the input size is --input-size, else the run's, else the
    model's default."""
    from .models import create_model

    if args.run:
        from .data import Preprocess
        from .train import load_run

        model, run_cfg = load_run(args.run)
        pre = Preprocess.from_dict(run_cfg["data"]["preprocess"])
        name = run_cfg.get("model", {}).get("name", args.model or "model")
        size = args.input_size or (pre.channels, *pre.size)
        return model, name, tuple(size), run_cfg
    if not args.model:
        raise ValueError("give a registered MODEL name or --run DIR")
    size = args.input_size
    spatial_dims = args.spatial_dims or (len(size) - 1 if size else 2)
    model = create_model(args.model, spatial_dims=spatial_dims, in_channels=size[0] if size else None).eval()
    return model, args.model, tuple(size or model.default_cfg["input_size"]), None


def cmd_erf(args: argparse.Namespace) -> int:
    from .analysis.erf import effective_receptive_field
    from .analysis.visualize import plot_erf

    model, name, size, run_cfg = _analysis_model(args)
    if run_cfg is not None:
        seed = run_cfg.get("train", {}).get("seed")
        models = {"init": _fresh_run_model(args.run, seed), "trained": model}
    else:
        models = {"init": model}
    inputs = None
    if args.inputs == "data":
        if run_cfg is None:
            raise ValueError("--inputs data needs --run DIR (the run's data set)")
        import torch

        from .train import TrainConfig, load_configured_data
        from .tasks.classification import stacked

        data = load_configured_data(TrainConfig.from_dict(run_cfg["train"]))
        inputs = stacked(data.test)[0][:args.n].to(torch.float32)
        size = tuple(inputs.shape[1:])
    results = {k: effective_receptive_field(m, size, inputs=inputs, n_inputs=args.n, channel=args.channel)
               for k, m in models.items()}
    out = args.out or f"erf-{name}.png"
    plot_erf(results, out, title=f"effective receptive field of {name} at input {list(size)}")
    if args.json:
        print(json.dumps({"model": name, "png": str(out), **{k: r.to_dict() for k, r in results.items()}}, indent=2))
    else:
        print(f"effective receptive field of {name} at input {list(size)} "
              f"({results['init'].n_inputs} {'data' if inputs is not None else 'noise'} inputs, "
              f"centre unit {list(results['init'].output_unit)})")
        for k, r in results.items():
            print(f"  {k:>7}: {r.describe()}")
        print(f"wrote {out}")
    return 0


def cmd_equivariance(args: argparse.Namespace) -> int:
    from .analysis.equivariance import equivariance

    model, name, size, _ = _analysis_model(args)
    layers = args.layers.split(",") if args.layers else None
    report = equivariance(model, size, shift=args.shift, n_inputs=args.n, layers=layers, interior=args.interior)
    report.model = name
    print(report.to_json() if args.json else report.table())
    return 0


def _run_image(args: argparse.Namespace):
    """The run's model and config, and the input file read by the run's task as ``predict``
    reads it (an image, a .ts series, a video clip), as a batch of one."""
    from .train import load_run, run_task

    model, run_cfg = load_run(args.run)
    task = run_task(run_cfg)
    sample = task.load_input(args.image, run_cfg, invert=args.invert)
    return model, run_cfg, sample["input"].unsqueeze(0), task


def cmd_cam(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .analysis.cam import grad_cam
    from .analysis.visualize import plot_cam_overlay

    model, run_cfg, x, task = _run_image(args)
    method = "gradcam++" if args.plus else "gradcam"
    # A model that takes only some sizes (a valid-convolution U-Net) sees the input padded as
    # predict pads it; the map is cropped back to the file's pixels.
    padded, crop = task.analysis_input(model, x)
    result = grad_cam(model, padded, target=args.class_index, layer=args.layer, method=method)
    if crop is not None:
        result.cam = result.cam[crop]
    classes = run_cfg["data"].get("classes") or []
    k = int(result.classes[0])
    label = classes[k] if k < len(classes) else str(k)
    prob = float(result.logits.softmax(1)[0, k])
    out = args.out or f"cam-{Path(args.image).stem}.png"
    title = f"{'Grad-CAM++' if args.plus else 'Grad-CAM'} of class {label} (p={prob:.3f}) at {result.layer or 'features'}"
    plot_cam_overlay(x[0], result.cam[0], out, title=title)
    print(f"{args.image}: class {label} (p={prob:.3f}), layer {result.layer or 'forward_features'}; wrote {out}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .analysis.cam import cam_layer_name
    from .analysis.visualize import layer_output, plot_feature_maps, plot_filters

    model, _, x, _ = _run_image(args)
    layer = args.layer or cam_layer_name(model)
    if not layer:
        raise ValueError("the model names no cam_layer; pass --layer")
    maps = layer_output(model, x, layer)
    if maps.ndim != x.ndim:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(maps.shape)}, not feature maps (B, C, *S)")
    out = args.out or f"features-{Path(args.image).stem}.png"
    plot_feature_maps(maps[0], out, title=layer, max_maps=args.max_maps)
    print(f"{args.image}: {layer} {list(maps.shape[1:])}; wrote {out}")
    if args.filters:
        plot_filters(model, args.filters)
        print(f"wrote {args.filters}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convnet", description="Convolutional neural networks on PyTorch.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    from .data import dataset_names
    from .tasks import list_tasks
    from .train.optim import OPTIMIZERS

    t = sub.add_parser("train", help="train a model into a run directory (default: LeNet-5 on the digits)")
    t.add_argument("--model", help="registered model name (default lenet5)")
    t.add_argument("--data", help=" | ".join(dataset_names()))
    t.add_argument("--task", help=f"{' | '.join(list_tasks())} (default: the model's own task)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimiser steps (quick trials)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--workers", type=int, metavar="N",
                   help="DataLoader processes that decode streamed data (folders too big for memory)")
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", help=" | ".join(OPTIMIZERS))
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    t.add_argument("--device", help="cpu | cuda | auto")
    t.add_argument("--recipe", help="a packaged recipe (convnet recipes) or a .toml file; key=value overrides it")
    t.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation instead of one run (stratified by class)")
    t.add_argument("--init", metavar="PATH", help="start from these weights, new head: a run dir, a checkpoint file, "
                   "an http(s) URL, or pretrained[:TAG] (the model's published weights; convnet models --pretrained)")
    t.add_argument("--freeze", choices=("backbone",), help="train only the new head (feature extraction)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("overrides", nargs="*", metavar="key=value",
                   help="typed config overrides, before or after options, e.g. optim.weight_decay=0")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="validation and test metrics of a finished run")
    e.add_argument("--run", required=True)
    e.set_defaults(fn=cmd_eval)

    pr = sub.add_parser("predict", help="predictions for input files, prepared as in training (top-k classes, masks, boxes)")
    pr.add_argument("--run", required=True)
    pr.add_argument("inputs", nargs="+", metavar="INPUT")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--invert", action="store_true", help="invert gray levels (dark ink on light paper)")
    pr.add_argument("--out", metavar="DIR", help="also write each prediction here (JSON, masks, drawn boxes)")
    pr.set_defaults(fn=cmd_predict)

    r = sub.add_parser("recipes", help="list packaged training recipes, or show one's settings")
    r.add_argument("name", nargs="?", help="show this recipe's resolved settings (inherited first)")
    r.set_defaults(fn=cmd_recipes)

    m = sub.add_parser("models", help="list registered models")
    m.add_argument("pattern", nargs="?", default="*")
    m.add_argument("--task", help="only the models of this task (classify, segment, detect, classify_text, "
                                  "classify_video, generate)")
    m.add_argument("--json", action="store_true")
    m.add_argument("--markdown", action="store_true", help="a Markdown table (the README's model table)")
    m.add_argument("--pretrained", action="store_true", help="the models' published weights (tags, accuracy, hash)")
    m.set_defaults(fn=cmd_models)

    s = sub.add_parser("summary", help="per-layer shapes, parameters, MACs, receptive fields; totals and memory")
    s.add_argument("model")
    s.add_argument("--input-size", type=int_tuple, help="C,H,W (C,L for 1-D, C,D,H,W for 3-D)")
    s.add_argument("--spatial-dims", type=int, choices=(1, 2, 3))
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_summary)

    for cmd, fn, text in (("erf", cmd_erf, "effective receptive field (Luo et al. 2016): heatmap PNG and figures"),
                          ("equivariance", cmd_equivariance, "per-layer translation equivariance error, logit invariance")):
        a = sub.add_parser(cmd, help=text)
        a.add_argument("model", nargs="?", help="registered model name (or --run DIR)")
        a.add_argument("--run", help="a training run directory (erf: compares initialisation and trained)")
        a.add_argument("--input-size", type=int_tuple, help="C,H,W (C,L for 1-D, C,D,H,W for 3-D)")
        a.add_argument("--spatial-dims", type=int, choices=(1, 2, 3))
        a.add_argument("--json", action="store_true")
        a.set_defaults(fn=fn)
        if cmd == "erf":
            a.add_argument("--n", type=int, default=16, help="inputs to average over")
            a.add_argument("--inputs", choices=("noise", "data"), default="noise",
                           help="standard-normal noise, or the run's test images (with --run)")
            a.add_argument("--channel", type=int, help="one output channel (default: the sum of all)")
            a.add_argument("--out", help="PNG path (default erf-MODEL.png)")
        else:
            a.add_argument("--shift", type=int, default=1, help="input shift in pixels on every spatial axis")
            a.add_argument("--n", type=int, default=4, help="noise inputs")
            a.add_argument("--layers", help="comma-separated module names (default: every spatial layer)")
            a.add_argument("--interior", type=float, default=0.5,
                           help="central fraction of the shared units compared for cropped shifts")

    for cmd, fn, text in (("cam", cmd_cam, "Grad-CAM / Grad-CAM++ overlay PNG for an image"),
                          ("features", cmd_features, "feature maps of a layer for an image (and first-layer filters)")):
        a = sub.add_parser(cmd, help=text)
        a.add_argument("--run", required=True)
        a.add_argument("image", metavar="IMAGE")
        a.add_argument("--layer", help="module name (default: the model's cam_layer)")
        a.add_argument("--out", help="PNG path")
        a.add_argument("--invert", action="store_true", help="invert gray levels (dark ink on light paper)")
        a.set_defaults(fn=fn)
        if cmd == "cam":
            a.add_argument("--class", dest="class_index", type=int, help="class index (default: the top-1 class)")
            a.add_argument("--plus", action="store_true", help="Grad-CAM++ instead of Grad-CAM")
        else:
            a.add_argument("--max-maps", type=int, default=32)
            a.add_argument("--filters", metavar="PNG", help="also write the first convolution's filters here")
    from .deploy.cli import add_commands as add_deploy_commands
    from .search.cli import add_commands as add_search_commands
    from .serve.cli import add_commands as add_serve_commands

    add_deploy_commands(sub)
    add_search_commands(sub)
    add_serve_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # `convnet` alone: what it can do; `convnet train` is the main job
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.error(f"expected a command, got {' '.join(argv)!r}")
    if extra:
        # key=value overrides may come after options too (argparse stops collecting a
        # positional list at the first option).
        keys = [e for e in extra if "=" in e and not e.startswith("-")]
        if args.command != "train" or len(keys) != len(extra):
            parser.error(f"unrecognized arguments: {' '.join(e for e in extra if e not in keys or args.command != 'train')}")
        args.overrides = [*args.overrides, *keys]
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        # Bad input (config, data, run directory, model name): one clear line, no traceback.
        print(f"convnet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
