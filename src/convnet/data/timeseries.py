"""Time series in the UCR/UEA ``.ts`` format, z-normalisation, and the sets shipped with aeon.

The format (sktime/aeon, the UEA & UCR archive's distribution since 2018): ``#`` comment
lines, a header of ``@tag value`` lines, then ``@data`` and one case per line::

    @problemName GunPoint
    @timeStamps false
    @missing false
    @univariate true
    @equalLength true
    @seriesLength 150
    @classLabel true 1 2
    @data
    -0.64,-0.64,...,-0.63:1

A case is its dimensions separated by ``:`` (one for a univariate set, ``@dimensions`` for a
multivariate one), each a comma-separated list of values (``?`` or ``NaN`` for a missing one),
then, when ``@classLabel true``, the class label as the last ``:`` field. Tags are read case-
insensitively; ``@dimension`` is accepted for ``@dimensions``; unknown tags are kept in
``meta``. Time-stamped series (``@timeStamps true``, values written as ``(t,v)``) are refused
with a clear error: none of the archive's classification sets uses them.

Variable-length sets (``@equalLength false``, e.g. JapaneseVowels) are padded to the longest
case with zeros, and :class:`TimeSeriesData` keeps each case's ``lengths`` (and a ``mask``);
indexing a case returns it unpadded. Inside a case a dimension shorter than the case is padded
with NaN (missing values). Every malformed file raises :class:`~convnet.data.DataFormatError`
naming the file and the line.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Union

import torch

from .readers import DataFormatError

__all__ = ["AEON_SETS", "TimeSeriesData", "aeon_data_dir", "load_aeon", "read_ts", "znormalize"]

PathLike = Union[str, os.PathLike[str]]

# The classification sets inside the aeon wheel (aeon/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts)
# with their fixed splits: (train cases, test cases, channels, length or None if variable, classes).
AEON_SETS: dict[str, tuple[int, int, int, int | None, int]] = {
    "GunPoint": (50, 150, 1, 150, 2),
    "ItalyPowerDemand": (67, 1029, 1, 24, 2),
    "ArrowHead": (36, 175, 1, 251, 3),
    "OSULeaf": (200, 242, 1, 427, 6),
    "BasicMotions": (40, 40, 6, 100, 4),
    "JapaneseVowels": (270, 370, 12, None, 9),
}

_BOOL_TAGS = ("timestamps", "missing", "univariate", "equallength")


@dataclass
class TimeSeriesData:
    """A split of a time-series classification set.

    Attributes:
        series: (N, C, L) float32, padded with zeros after each case's length; NaN where a value
            is missing.
        lengths: (N,) int64, each case's length before padding.
        labels: (N,) int64 class indices into ``classes``, or None for an unlabelled file.
        classes: the class labels in the header's order (``@classLabel true 1 2``).
        meta: the header's tags (lower-case keys), e.g. ``meta["problemname"]``.
        path: the file read.
    """

    series: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor | None
    classes: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def mask(self) -> torch.Tensor:
        """(N, L) bool: True inside each case's length."""
        return torch.arange(self.series.shape[-1]) < self.lengths[:, None]

    @property
    def num_channels(self) -> int:
        return self.series.shape[1]

    def __len__(self) -> int:
        return self.series.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"input": (C, length) float32 (unpadded), "target": class index, "length": int}``."""
        n = int(self.lengths[index])
        sample: dict[str, Any] = {"input": self.series[index, :, :n], "length": n}
        if self.labels is not None:
            sample["target"] = int(self.labels[index])
        return sample

    def znormalized(self) -> TimeSeriesData:
        """A copy with every case and channel z-normalised (see :func:`znormalize`)."""
        return TimeSeriesData(znormalize(self.series, self.lengths), self.lengths.clone(),
                              None if self.labels is None else self.labels.clone(), self.classes,
                              dict(self.meta), self.path)


def znormalize(series: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Per case and channel: subtract the mean and divide by the standard deviation.

    Statistics use only observed values (inside ``lengths``, not NaN); the population standard
    deviation is used, as the UCR archive does; a constant channel becomes 0 (not NaN). Missing
    values and padding are set to 0 afterwards, i.e. to the channel's mean.

    Args:
        series: (N, C, L) or (C, L).
        lengths: (N,) valid lengths for padded cases; None when every case is full length.

    Returns:
        A float32 tensor of the input's shape.
    """
    x = series.float()
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
        lengths = None if lengths is None else torch.as_tensor(lengths).reshape(1)
    if x.ndim != 3:
        raise ValueError(f"znormalize expects (N, C, L) or (C, L), got shape {tuple(series.shape)}")
    valid = ~torch.isnan(x)
    if lengths is not None:
        valid &= (torch.arange(x.shape[-1]) < torch.as_tensor(lengths)[:, None])[:, None, :]
    count = valid.sum(-1, keepdim=True).clamp_min(1)
    values = torch.where(valid, x, torch.zeros(()))
    mean = values.sum(-1, keepdim=True) / count
    var = (torch.where(valid, x - mean, torch.zeros(())) ** 2).sum(-1, keepdim=True) / count
    std = var.sqrt()
    out = torch.where(std > eps, (values - mean) / std.clamp_min(eps), torch.zeros(()))
    out = torch.where(valid, out, torch.zeros(()))
    return out[0] if squeeze else out


def _parse_bool(path: Path, lineno: int, tag: str, value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise DataFormatError(f"{path}:{lineno}: @{tag} must be true or false, got {value.strip()!r}")
    return v == "true"


def _parse_int(path: Path, lineno: int, tag: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = -1
    if n < 1:
        raise DataFormatError(f"{path}:{lineno}: @{tag} must be a positive integer, got {value.strip()!r}")
    return n


def _read_header(path: Path, lines: list[str]) -> tuple[dict[str, Any], tuple[str, ...] | None, int]:
    """The header's tags, the class labels (None without ``@classLabel true``) and the index of
    the first data line."""
    meta: dict[str, Any] = {}
    classes: tuple[str, ...] | None = None
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise DataFormatError(f"{path}:{i + 1}: expected a @tag line or @data before the data, got {line[:40]!r}")
        name, _, value = line[1:].partition(" ")
        tag = name.lower()
        if tag == "data":
            return meta, classes, i + 1
        if tag in _BOOL_TAGS:
            meta[tag] = _parse_bool(path, i + 1, name, value)
        elif tag in ("dimensions", "dimension", "serieslength"):
            meta["dimensions" if tag.startswith("dimension") else tag] = _parse_int(path, i + 1, name, value)
        elif tag == "classlabel":
            parts = value.split()
            if not parts:
                raise DataFormatError(f"{path}:{i + 1}: @classLabel needs true (and the labels) or false")
            if _parse_bool(path, i + 1, name, parts[0]):
                if len(parts) < 2:
                    raise DataFormatError(f"{path}:{i + 1}: @classLabel true lists no class labels")
                if len(set(parts[1:])) != len(parts) - 1:
                    raise DataFormatError(f"{path}:{i + 1}: @classLabel lists a label twice: {parts[1:]}")
                classes = tuple(parts[1:])
            meta[tag] = classes is not None
        else:
            meta[tag] = value.strip()
    raise DataFormatError(f"{path}: no @data line: expected a header ending in @data, then one case per line")


def _parse_values(path: Path, lineno: int, text: str, dim: int) -> list[float]:
    text = text.strip()
    if not text:
        raise DataFormatError(f"{path}:{lineno}: dimension {dim} of the case is empty")
    out = []
    for v in text.split(","):
        v = v.strip()
        if v == "?" or v.lower() == "nan":
            out.append(math.nan)
            continue
        try:
            out.append(float(v))
        except ValueError:
            raise DataFormatError(f"{path}:{lineno}: dimension {dim}: expected a number or '?', got {v[:30]!r}") from None
    return out


def read_ts(path: PathLike) -> TimeSeriesData:
    """Read one ``.ts`` file (see the module docstring for the format and the checks).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: the header or a case does not follow the format (file and line named).
    """
    path = Path(path)
    with open(path, encoding="utf-8", errors="strict") as fh:
        try:
            lines = fh.read().splitlines()
        except UnicodeDecodeError as e:
            raise DataFormatError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    meta, classes, start = _read_header(path, lines)
    if meta.get("timestamps"):
        raise DataFormatError(f"{path}: @timeStamps true is not supported (values written as (t,v) pairs); "
                              "expected @timeStamps false")
    expected_dims = 1 if meta.get("univariate") else meta.get("dimensions")
    if meta.get("univariate") and meta.get("dimensions", 1) != 1:
        raise DataFormatError(f"{path}: @univariate true contradicts @dimensions {meta['dimensions']}")
    equal_length = meta.get("equallength")
    series_length = meta.get("serieslength")

    cases: list[list[list[float]]] = []
    labels: list[int] = []
    for i in range(start, len(lines)):
        line, lineno = lines[i].strip(), i + 1
        if not line or line.startswith("#"):
            continue
        if "(" in line:
            raise DataFormatError(f"{path}:{lineno}: time-stamped values '(t,v)' are not supported")
        fields = line.split(":")
        if classes is not None:
            if len(fields) < 2:
                raise DataFormatError(f"{path}:{lineno}: expected the case's values then ':label', found no label")
            label = fields.pop().strip()
            if label not in classes:
                raise DataFormatError(f"{path}:{lineno}: class label {label!r} is not one of @classLabel {list(classes)}")
            labels.append(classes.index(label))
        if expected_dims is None:
            expected_dims = len(fields)  # neither @univariate nor @dimensions: the first case decides
        if len(fields) != expected_dims:
            raise DataFormatError(f"{path}:{lineno}: expected {expected_dims} dimension(s) separated by ':', "
                                  f"got {len(fields)}")
        dims = [_parse_values(path, lineno, f, d) for d, f in enumerate(fields)]
        if equal_length and len({len(d) for d in dims}) > 1:
            raise DataFormatError(f"{path}:{lineno}: @equalLength true but the dimensions have lengths "
                                  f"{[len(d) for d in dims]}")
        if series_length is not None and equal_length is not False and len(dims[0]) != series_length:
            raise DataFormatError(f"{path}:{lineno}: expected @seriesLength {series_length} values, got {len(dims[0])}")
        if equal_length and cases and len(dims[0]) != len(cases[0][0]):
            raise DataFormatError(f"{path}:{lineno}: @equalLength true but this case has {len(dims[0])} values "
                                  f"and the first has {len(cases[0][0])}")
        cases.append(dims)
    if not cases:
        raise DataFormatError(f"{path}: no cases after @data")

    lengths = torch.tensor([max(len(d) for d in case) for case in cases], dtype=torch.int64)
    longest = int(lengths.max())
    series = torch.zeros(len(cases), expected_dims, longest, dtype=torch.float32)
    for n, case in enumerate(cases):
        for c, values in enumerate(case):
            series[n, c, :len(values)] = torch.tensor(values, dtype=torch.float32)
            # A dimension shorter than its case: the rest of the case is missing there.
            series[n, c, len(values):int(lengths[n])] = math.nan
    return TimeSeriesData(series, lengths, torch.tensor(labels, dtype=torch.int64) if classes is not None else None,
                          classes or (), meta, str(path))


def aeon_data_dir() -> Path:
    """The folder of the data sets inside the installed aeon wheel (read as files; aeon itself
    is never imported).

    Raises:
        FileNotFoundError: aeon is not installed (``pip install --no-deps aeon``).
    """
    try:
        root = Path(metadata.distribution("aeon").locate_file("aeon/datasets/data"))
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("the aeon package is not installed; its data files are read from the wheel "
                                "(pip install --no-deps aeon)") from None
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: aeon is installed but has no datasets/data folder")
    return root


def load_aeon(name: str, split: str = "train", root: PathLike | None = None) -> TimeSeriesData:
    """One split of a UCR/UEA set: ``<root>/<name>/<name>_{TRAIN,TEST}.ts``.

    Args:
        name: the set's name, e.g. ``"GunPoint"`` (any set laid out this way under ``root``;
            ``AEON_SETS`` lists those the aeon wheel ships).
        split: ``"train"`` or ``"test"`` (the archive's fixed split).
        root: the folder of the sets; None reads the copy inside the aeon wheel.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    base = Path(root) if root is not None else aeon_data_dir()
    path = base / name / f"{name}_{split.upper()}.ts"
    if not path.is_file():
        known = sorted(p.name for p in base.iterdir() if (p / f"{p.name}_TRAIN.ts").is_file()) if base.is_dir() else []
        raise FileNotFoundError(f"{path}: no such file; sets under {base}: {', '.join(known) or 'none'}")
    return read_ts(path)
