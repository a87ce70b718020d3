"""The run directory: one object owns its layout, its lock and its state.

    run/
      config.json        resolved training config, the model config, classes and preprocessing
      metrics.jsonl      one line per epoch
      checkpoints/       step_NNNNNNNN/ (model, optimiser, scheduler, scaler, EMA, RNG, position)
      model.safetensors  final weights
      summary.json       test figures, best validation figure, epochs, wall time, parameters, ...
      report/            figures and index.html
      failed.json        why a run that had started training stopped (removed when it finishes)
      .lock              held (flock) by the process that writes the run: its pid and host

Every file is written atomically (temporary file, fsync, rename). A run takes the lock before
writing anything; a second process on the same directory stops at once with a message naming the
holder. The lock is an advisory ``flock`` on ``.lock``, which the kernel releases when the holder
dies, so a killed run never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from ..weights import WEIGHTS_NAME, atomic_write_json, read_json


class RunError(ValueError):
    """A run directory that is missing, incomplete, in use or belongs to another configuration,
    or a run that cannot go on (non-finite losses)."""


class RunDir:
    """The files of one run. ``RunDir(path).lock()`` before writing."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINTS = "checkpoints"
    REPORT = "report"
    FAILED = "failed.json"
    LOCK = ".lock"
    TRACKERS = ("tensorboard", "mlflow")  # what logger=tensorboard|mlflow write inside the run
    # What a run writes; --overwrite removes exactly these (and nothing a user put beside them).
    OWNED = (CONFIG, METRICS, SUMMARY, CHECKPOINTS, REPORT, FAILED, WEIGHTS_NAME, *TRACKERS)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ layout
    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def failed(self) -> Path:
        return self.path / self.FAILED

    # ------------------------------------------------------------------ state
    def is_finished(self) -> bool:
        """Weights and a summary: a run that ended."""
        return self.weights.is_file() and self.summary.is_file()

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(p.name.startswith("step_") for p in self.checkpoints.iterdir())

    def holds_a_run(self) -> bool:
        return self.config.is_file() or self.is_finished() or self.has_checkpoints()

    def describe(self) -> str:
        if self.is_finished():
            return "a finished run"
        if self.failed.is_file():
            return "a failed run"
        if self.has_checkpoints():
            return "an unfinished run"
        return "a run that never took a step"

    # ------------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take the directory's lock (creating the directory); a RunError naming the holder if
        another process has it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunError(f"{self.path} is in use by another run ({holder}); wait for it to end, "
                           "or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    # ------------------------------------------------------------------ files
    def clear(self) -> None:
        """Remove what a run wrote (``--overwrite``); other files in the directory stay."""
        for name in self.OWNED:
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def remove_if_empty_start(self, created: bool) -> None:
        """A run that failed before its first step: remove what it wrote, and the directory
        itself if this run created it and nothing else is in it."""
        for name in (self.CONFIG, self.METRICS, self.CHECKPOINTS, self.REPORT):
            p = self.path / name
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
            elif p.is_file():
                p.unlink()
        self.unlock()
        lock = self.path / self.LOCK
        if created and lock.exists() and [p.name for p in self.path.iterdir()] == [self.LOCK]:
            lock.unlink()
            self.path.rmdir()

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config, config)

    def read_config(self, what: str = "run config") -> dict[str, Any]:
        return read_json(self.config, what)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary, summary)

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.summary, "run summary")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with ``rows`` (atomically)."""
        from ..weights import atomic_write_text

        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def append_metrics(self, row: dict[str, Any]) -> None:
        """One more line; a reader sees whole lines (metrics.jsonl is rewritten from the
        checkpoint's history on resume, so a torn last line cannot survive a crash)."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def mark_failed(self, error: BaseException, step: int) -> None:
        atomic_write_json(self.failed, {"error": f"{type(error).__name__}: {error}", "step": step,
                                        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "resume": f"convnet train --out {self.path} --resume (same arguments)"})

    def clear_failed(self) -> None:
        if self.failed.exists():
            self.failed.unlink()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('since', '?')}"
    except (OSError, ValueError):
        return "holder unknown"


__all__ = ["RunDir", "RunError"]
