"""The neocognitron on scikit-learn's digits: features learned without labels, labels only for
the readouts. Prints one JSON object.

    python benchmarks/neocognitron_digits.py [--threads 2] [--seed 0] [--baseline]

Fields: prototype_acc and probe_acc (test split, 360 images), val_* (validation split, 180),
seconds (unsupervised learning + readout fitting, wall time), unsupervised_seconds, planes per
S-layer, and with --baseline the same two readouts on the raw pixels (what the learned
features must beat to be worth anything).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from convnet import create_model
from convnet.data.datasets import load_digits
from convnet.models.neocognitron import ReadoutHead, spherical_kmeans


def raw_pixel_baseline(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                       per_class: int, weight_decay: float, steps: int) -> dict[str, float]:
    """The neocognitron's two readouts fitted to flattened pixels instead of its top C-layer."""
    (x, y), (xt, yt) = train, test
    f, g = x.flatten(1), xt.flatten(1)
    head = ReadoutHead(1, f.shape[1], 1, 10, per_class)
    head.feature_mean.copy_(f.mean(0))
    head.feature_std.copy_(f.std(0).clamp_min(1e-3 * float(f.std(0).max())))
    z = head.standardise(f)
    unit = F.normalize(z, dim=1)
    for c in range(10):
        head.prototypes[c] = spherical_kmeans(unit[y == c], per_class)
    fc = head.fc
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.zero_()
    opt = torch.optim.LBFGS(fc.parameters(), lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(fc(z), y) + 0.5 * weight_decay * fc.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return {"prototype_acc": float((head.prototype_logits(g).argmax(1) == yt).float().mean()),
                "probe_acc": float((fc(head.standardise(g)).argmax(1) == yt).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also fit the readouts to raw pixels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits()
    model = create_model("neocognitron")
    start = time.perf_counter()
    stats = model.fit_unsupervised(data.train[0], torch.Generator().manual_seed(args.seed))
    readout = model.fit_readout(*data.train)
    seconds = time.perf_counter() - start
    test = model.evaluate_readouts(*data.test)
    val = model.evaluate_readouts(*data.val)
    out = {"prototype_acc": round(test["prototype_acc"], 4), "probe_acc": round(test["probe_acc"], 4),
           "val_prototype_acc": round(val["prototype_acc"], 4), "val_probe_acc": round(val["probe_acc"], 4),
           "seconds": round(seconds, 2), "unsupervised_seconds": round(stats["seconds"], 2),
           "planes": stats["planes"], "max_planes": list(model.spec.planes), "features": readout["features"],
           "threads": args.threads, "seed": args.seed}
    if args.baseline:
        spec = model.spec
        base = raw_pixel_baseline(data.train, data.test, spec.prototypes_per_class, spec.probe_weight_decay,
                                  spec.probe_steps)
        out["raw_pixels"] = {k: round(v, 4) for k, v in base.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
