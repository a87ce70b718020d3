"""`convnet train` run in-process by the benchmark scripts, exactly as a user types it."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from convnet.cli import main as convnet


def convnet_train(out: Path, *flags: str, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """``convnet train FLAGS --out OUT --no-progress OVERRIDES`` and the run's summary.json.

    Its printout goes to stderr (the scripts' stdout carries only their JSON); key=value overrides
    come last, as argparse takes positionals in one run. A non-zero exit stops the script."""
    args = ["train", *flags, "--out", str(out), "--no-progress", *overrides]
    with contextlib.redirect_stdout(sys.stderr):
        code = convnet(args)
    if code != 0:
        raise SystemExit(f"convnet {' '.join(args)} exited with {code}")
    return json.loads((Path(out) / "summary.json").read_text())
