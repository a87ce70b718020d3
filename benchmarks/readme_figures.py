"""The README's analysis figures, made by the commands the README shows.

Trains the default job (LeNet-5 on the digits), writes one of the digits as a PNG, then runs
`convnet erf`, `convnet cam` and `convnet features` on that run, writing docs/images/*.png and
printing the ERF figures as JSON.

    python benchmarks/readme_figures.py [--out docs/images]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits as sk_digits

from convnet.cli import main as convnet


def run(*args: str) -> str:
    """`convnet ARGS`, its stdout returned; a non-zero exit stops the script."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = convnet(list(args))
    if code != 0:
        raise SystemExit(f"convnet {' '.join(args)} exited with {code}")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "lenet5"
        run("train", "--out", str(run_dir), "--no-progress", "report=false")
        # A digit as a file, as a user would have one: scikit-learn's 8x8 scan (17 levels), shown large.
        raw = sk_digits().images[-1]
        image = Image.fromarray((raw * (255 / 16)).astype(np.uint8)).resize((64, 64), Image.NEAREST)
        digit = out / "digit.png"
        image.save(digit)
        erf = json.loads(run("erf", "--run", str(run_dir), "--inputs", "data", "--out", str(out / "erf.png"), "--json"))
        run("cam", "--run", str(run_dir), str(digit), "--out", str(out / "cam.png"))
        run("features", "--run", str(run_dir), str(digit), "--out", str(out / "features.png"))
    print(json.dumps({"erf": erf, "images": sorted(p.name for p in out.glob("*.png"))}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
