"""The ``convnet search`` subcommand; :func:`add_commands` adds it to the main parser
(src/convnet/cli.py). A thin main(args) over :func:`convnet.search.run_search`."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EXAMPLES = """examples:
  convnet search --space darts --algo darts --data digits --budget 10m
  convnet search --algo darts --order 2 --budget 200            # second order, 200 steps
  convnet search --algo evolution --space mobilenet --constraint 'macs<=2e6' --budget 30m
  convnet search --algo random --budget 10m --seed 1            # the baseline at the same budget
  convnet search --algo compound --budget 15m                   # EfficientNet's alpha, beta, gamma grid
  convnet search --algo random --budget 10m --out searches/a --resume   # after a kill: the same arguments
  convnet train --model darts_cell model.overrides.genotype=searches/a/genotype.json   # retrain the result
"""

# option -> (settings section, key): only options given on the command line are recorded.
_ALGO_FLAGS = {"order": "order", "population": "population", "sample": "sample", "darts_batch_size": "batch_size",
               "grid_step": "grid_step", "max_coefficient": "max_coefficient", "phi": "phi"}
_SPACE_FLAGS = {"init_channels": "init_channels", "layers": "layers"}
_EVAL_FLAGS = {"candidate_epochs": "epochs", "candidate_batch_size": "batch_size", "candidate_lr": "lr"}


def cmd_search(args: argparse.Namespace) -> int:
    from . import SearchSettings, run_search

    settings = SearchSettings(
        algo=args.algo, space=args.space, data=args.data, image_size=args.image_size or 0, budget=args.budget,
        constraint=args.constraint or "", seed=args.seed, device=args.device, threads=args.threads or 0,
        space_options={k: getattr(args, f) for f, k in _SPACE_FLAGS.items() if getattr(args, f) is not None},
        algo_options={k: getattr(args, f) for f, k in _ALGO_FLAGS.items() if getattr(args, f) is not None},
        eval={k: getattr(args, f) for f, k in _EVAL_FLAGS.items() if getattr(args, f) is not None})
    out = args.out
    if out is None:
        if args.resume:
            raise ValueError("--resume needs --out DIR, the search directory to continue")
        data = args.data.split(":")[0].replace("/", "_")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = str(Path("searches") / "-".join(filter(None, (args.algo, args.space, data, stamp))))
    summary = run_search(settings, out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    cost = summary["cost"]
    score = summary["score"]
    print(f"{summary['algo']} search: {summary['steps']} steps, {summary['candidates_scored']} scored, "
          f"{summary['candidates_rejected']} rejected by the constraint, {summary['wall_s']:.0f} s")
    print(f"found: {summary['architecture']}")
    print(f"score {score:.4f} (search-val accuracy), {cost['macs']:,} MACs, {cost['params']:,} parameters"
          if score is not None else f"{cost['macs']:,} MACs, {cost['params']:,} parameters")
    print(f"retrain: {summary['retrain']}")
    print(f"search directory: {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``search`` to the ``convnet`` parser."""
    from . import ALGORITHMS, SPACES

    s = sub.add_parser("search", help="architecture search: DARTS, regularized evolution, random, compound scaling",
                       description="Search an architecture into a resumable directory (history, genotype, report).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--algo", default="darts", choices=list(ALGORITHMS), help="search algorithm (default darts)")
    s.add_argument("--space", choices=list(SPACES),
                   help="search space (default darts; compound scales a fixed EfficientNet base and takes none)")
    s.add_argument("--data", default="digits",
                   help="data set (its training split is halved: search-train / search-val)")
    s.add_argument("--budget", default="10m", help="steps (200) or time (90s, 10m, 1h); default 10m")
    s.add_argument("--constraint", help="cost bounds, e.g. 'macs<=5e6' or 'params<=1e5,flops<=2e7' (quoted)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="search directory (default searches/<algo>-<space>-<data>-<time>)")
    s.add_argument("--resume", action="store_true", help="continue the search in --out from its newest checkpoint")
    s.add_argument("--overwrite", action="store_true", help="replace a search already in --out")
    s.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    s.add_argument("--image-size", type=int, help="input size per axis (default: the data set's)")
    s.add_argument("--threads", type=int, help="torch threads (default torch's; 1 is fastest on a busy CPU)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print summary.json")
    g = s.add_argument_group("algorithm options")
    g.add_argument("--order", type=int, choices=(1, 2), help="DARTS: first or second order (default 1)")
    g.add_argument("--darts-batch-size", type=int, help="DARTS: batch of both halves (default 64)")
    g.add_argument("--population", type=int, help="evolution: population size P (default 10)")
    g.add_argument("--sample", type=int, help="evolution: tournament size S (default 3)")
    g.add_argument("--grid-step", type=float, help="compound: grid step of alpha, beta, gamma (default 0.1)")
    g.add_argument("--max-coefficient", type=float, help="compound: largest coefficient on the grid (default 1.5)")
    g.add_argument("--phi", type=float, help="compound: the coefficient searched at (default 1)")
    g = s.add_argument_group("space and candidate training")
    g.add_argument("--init-channels", type=int, help="darts space: C of the first cells (default 8)")
    g.add_argument("--layers", type=int, help="darts space: cells (default 5)")
    g.add_argument("--candidate-epochs", type=int, help="epochs of a candidate's training (default 4)")
    g.add_argument("--candidate-batch-size", type=int, help="batch of a candidate's training (default 64)")
    g.add_argument("--candidate-lr", type=float, help="learning rate of a candidate's training (default 0.05)")
    s.set_defaults(fn=cmd_search)


__all__ = ["add_commands", "cmd_search"]
