"""Atomic files: a reader never sees half a checkpoint, whatever kills the writer.

Write to a temporary file in the same directory, flush and fsync it, rename it over the
target (atomic on POSIX), then fsync the directory so the rename itself survives a crash. The
file gets the mode any other new file of the process would (0666 less the umask): ``mkstemp``
creates it 0600, which would make some of a run's files private and others not.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, without changing it where the kernel shows it.

    Linux (4.7 and later) shows it in ``/proc/self/status``. Elsewhere the only way to read it
    is to set it and set it back; between the two calls another thread creating a file would
    get the temporary value, so that value is 0o077 (owner only: the safe side), and the pair
    runs under a lock against our own callers.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file now: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def fsync_dir(directory: str | os.PathLike) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not open directories; the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp's 0600 -> what the umask gives every other file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def open_regular_file(path: str | os.PathLike, what: str, error: type[ValueError] = ValueError) -> int:
    """An O_RDONLY descriptor of ``path``, refusing anything but a regular file *before*
    opening it (a FIFO would block the open forever; a device may act on being opened) and
    again after (the path could have been swapped in between; O_NONBLOCK keeps that open
    from blocking).

    Args:
        path: the file.
        what: what the caller expects, for the message ("an image file").
        error: the ValueError subclass to raise (a reader's own, e.g. DataFormatError).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: (``error``) a directory, FIFO, socket or device.
    """
    mode = os.stat(path).st_mode  # FileNotFoundError names the path
    _require_regular(mode, path, what, error)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _require_regular(os.fstat(fd).st_mode, path, what, error)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_kind(mode: int) -> str:
    """A person's word for what ``st_mode`` describes."""
    for test, word in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def _require_regular(mode: int, path: str | os.PathLike, what: str, error: type[ValueError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{os.fspath(path)}: is a {file_kind(mode)}, expected {what} (a regular file); not read")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON with an error that names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid {what}: {e}") from None
