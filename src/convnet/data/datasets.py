"""Data sets by name: the bundled digits, image folders, MNIST idx, CIFAR binary, and whatever
other modules register (``register_dataset``).

Every source becomes a :class:`DataSplits`: train/val/test splits of samples brought to the
model's input by a :class:`Preprocess` that is saved with the run. A split is held in memory
(:class:`samples.TensorSamples`, one preprocessed tensor; the fast path for small sets such as the
digits, MNIST and CIFAR) or streamed from disk (:class:`samples.ImageFileSamples`, decoded per
sample in DataLoader workers). Folders choose by size (``stream="auto"``: in memory when the
preprocessed tensors would fit in ``memory_limit_mb``), or as told.

The digits split is fixed and documented: scikit-learn's 1,797 8x8 digits, stratified by class
with ``train_test_split(random_state=0)``: 20% test (360 images), then 10% of the whole as
validation (180), and the remaining 1,257 for training.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from .readers import CIFAR10_CLASSES, DataFormatError, ImageFolder, load_cifar, load_mnist
from .samples import ImageFileSamples, Samples, SubsetSamples, as_samples, majority_channels
from .transforms import Preprocess

# A split: an (inputs, targets) pair held in memory, or Samples (in memory or streamed).
Split = Union[tuple[torch.Tensor, Any], Samples]

# LeCun et al. 1998, §III.A: input pixels are scaled so that background is -0.1 and ink is
# 1.175, which makes the mean roughly 0 and the variance roughly 1. As (x - mean) / std over
# [0, 1] images: mean = 0.1 / 1.275, std = 1 / 1.275.
LECUN_MEAN = (0.1 / 1.275,)
LECUN_STD = (1 / 1.275,)


@dataclass
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    preprocess: Preprocess
    info: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.preprocess.channels

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        return all(as_samples(s).in_memory for s in (self.train, self.val, self.test))


@dataclass(frozen=True)
class DataOptions:
    """How a data set is read, beyond its name (the ``data.*`` keys of the training config).

    Attributes:
        image_size: per-axis input size; 0 or None: the data set's default.
        val_fraction, test_fraction: stratified split fractions of the whole, where the set has
            no fixed split.
        seed: the split's random state.
        stream: "memory" (preprocess every split into tensors), "disk" (decode per sample) or
            "auto" (memory when the tensors fit in ``memory_limit_mb``).
        memory_limit_mb: see ``stream``.
        max_pixels: images with more pixels are refused before decoding (0: no cap).
        channels: 1 or 3 to force gray or RGB; 0: the majority of the files decide.
        max_bad_fraction: files that fail to decode are skipped up to this fraction of a split.
        workers: processes that decode a folder read into memory.
        preprocess: the preprocessing of pretrained weights the model starts from (resize, crop,
            their mean and std), which image folders then use instead of their own.
    """

    image_size: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    stream: str = "auto"
    memory_limit_mb: int = 2048
    max_pixels: int = 89_478_485
    channels: int = 0
    max_bad_fraction: float = 0.01
    workers: int = 0
    preprocess: Preprocess | None = None

    @classmethod
    def from_config(cls, data_cfg: Any) -> DataOptions:
        """From a training config's ``data`` section (attributes of the same names)."""
        names = {f: getattr(data_cfg, f) for f in cls.__dataclass_fields__ if hasattr(data_cfg, f)}
        names["seed"] = getattr(data_cfg, "split_seed", 0)
        names["image_size"] = getattr(data_cfg, "image_size", 0) or None
        return cls(**names)


def stratified_split(y: np.ndarray, test_fraction: float, val_fraction: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted indices of a stratified train/val/test split; both fractions are of the whole set."""
    rest, test, val = np.arange(len(y)), np.array([], dtype=int), np.array([], dtype=int)
    if test_fraction > 0:
        rest, test = train_test_split(rest, test_size=test_fraction, stratify=y, random_state=seed)
    if val_fraction > 0:
        rest, val = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction),
                                     stratify=y[rest], random_state=seed)
    return np.sort(rest), np.sort(val), np.sort(test)


def _apply(preprocess: Preprocess, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> Split:
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    parts = [preprocess(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    out = torch.cat(parts) if parts else x.new_zeros((0, preprocess.channels, *preprocess.size))
    return out.contiguous(), y.long()


def _make_splits(name: str, x: torch.Tensor, y: torch.Tensor, classes: list[str], preprocess: Preprocess,
                 test_fraction: float, val_fraction: float, seed: int, test: Split | None = None) -> DataSplits:
    """Split (x, y) stratified (or take train/val from it when the test set is given) and
    preprocess every split."""
    given_test = test is not None
    tr, va, te = stratified_split(y.numpy(), 0.0 if given_test else test_fraction, val_fraction, seed)
    if not given_test:
        test = (x[te], y[te])
    return DataSplits(name, _apply(preprocess, x[tr], y[tr]), _apply(preprocess, x[va], y[va]),
                      _apply(preprocess, *test), classes, preprocess,
                      info={"n_train": len(tr), "n_val": len(va), "n_test": len(test[1])})


def load_digits(image_size: int = 32, test_fraction: float = 0.2, val_fraction: float = 0.1,
                seed: int = 0) -> DataSplits:
    """scikit-learn's handwritten digits (UCI, 1,797 images of 8x8, 17 gray levels).

    The 8x8 images are upsampled (bilinear) to 20x20 and centred in 32x32, as LeCun et al.
    1998 centred MNIST's 20x20 digit boxes in a 32x32 input, and scaled to the paper's input
    range (background -0.1, ink 1.175)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    content = max(1, round(image_size * 20 / 32))
    pre = Preprocess(channels=1, source_size=(8, 8), size=(image_size, image_size), content=(content, content),
                     mean=LECUN_MEAN, std=LECUN_STD)
    return _make_splits("digits", x, y, [str(i) for i in range(10)], pre, test_fraction, val_fraction, seed)


def _list_folder(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Files, labels and classes of a folder of class subfolders: listed, nothing decoded."""
    folder = ImageFolder(root)
    return [p for p, _ in folder.samples], list(folder.targets), folder.classes


def _folder_preprocess(files: list[str], image_size: int, channels: int) -> Preprocess:
    c = channels or majority_channels(files)
    if c not in (1, 3):
        raise ValueError(f"data.channels must be 0 (the files' majority), 1 or 3, got {channels}")
    size = (image_size, image_size)
    return Preprocess(channels=c, source_size=size, size=size, mean=(0.5,) * c, std=(0.25,) * c)


def streams(options: DataOptions, n_files: int, bytes_per_sample: int) -> bool:
    """Whether a data set of ``n_files`` streams: ``data.stream`` "disk", or "auto" when its
    preprocessed tensors, every split together, would exceed ``memory_limit_mb``. One decision
    for all splits: deciding per split kept the validation and test splits of a big folder in
    memory (each small enough alone), so memory grew with the folder after all."""
    return options.stream == "disk" or (options.stream == "auto"
                                        and n_files * bytes_per_sample > options.memory_limit_mb * 2**20)


def _stream_or_memory(samples: ImageFileSamples, options: DataOptions, what: str, stream: bool
                      ) -> tuple[Split, dict]:
    """Keep a split streamed, or decode it into memory; files that fail to decode are dropped
    and listed, up to max_bad_fraction."""
    if stream:
        return samples, {}
    from torch.utils.data import DataLoader

    pre = samples.preprocess
    # A generator of its own: the loader's seed must not come from (and move) the global RNG
    # that initialises the model next.
    loader = DataLoader(samples, batch_size=64, num_workers=options.workers, collate_fn=list,
                        generator=torch.Generator().manual_seed(options.seed))
    # Filled in place (not a list stacked at the end, which holds every image twice at its peak).
    x = torch.empty((len(samples), pre.channels, *pre.size))
    labels, bad, converted = [], [], []
    for chunk in loader:
        for s in chunk:
            if "error" in s:
                bad.append((s["path"], s["error"]))
                continue
            x[len(labels)] = s["input"]
            labels.append(s["target"])
            if s.get("converted"):
                converted.append(s["path"])
    check_bad_files(bad, len(samples), options.max_bad_fraction, what)
    info = {"bad_files": [list(b) for b in bad], "converted_files": converted}
    return (x[:len(labels)].clone() if bad else x, torch.tensor(labels, dtype=torch.long)), info


def check_bad_files(bad: list[tuple[str, str]], total: int, max_fraction: float, what: str) -> None:
    """Raise when more than ``max_fraction`` of ``total`` files failed, naming the first ones."""
    if bad and len(bad) > max_fraction * total:
        first = "; ".join(f"{p}: {e}" for p, e in bad[:3])
        raise DataFormatError(f"{what}: {len(bad)} of {total} files cannot be read, more than "
                              f"data.max_bad_fraction={max_fraction}; first: {first}")


def load_image_folder(root: str | Path, image_size: int = 32, test_fraction: float = 0.2,
                      val_fraction: float = 0.1, seed: int = 0, options: DataOptions | None = None) -> DataSplits:
    """Images in class subfolders (any format Pillow reads), resized to image_size. If root has
    ``train/`` and ``test/`` subfolders they are used as given; otherwise a stratified split.

    Files are listed and classes found without decoding any image; the channel count is the
    majority's (from file headers) unless ``options.channels`` says; each split is streamed or
    read into memory as ``options.stream`` says."""
    options = options or DataOptions(image_size=image_size, val_fraction=val_fraction,
                                     test_fraction=test_fraction, seed=seed)
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        files, labels, classes = _list_folder(root / "train")
        test_files, test_labels, classes_t = _list_folder(root / "test")
        if classes_t != classes:
            raise DataFormatError(f"{root}: train classes {classes} differ from test classes {classes_t}")
        tr, va, _ = stratified_split(np.array(labels), 0.0, val_fraction, seed)
        te_files, te_labels = test_files, test_labels
    else:
        files, labels, classes = _list_folder(root)
        tr, va, te = stratified_split(np.array(labels), test_fraction, val_fraction, seed)
        te_files, te_labels = [files[i] for i in te], [labels[i] for i in te]
    pre = options.preprocess or _folder_preprocess(files, image_size, options.channels)

    stream = streams(options, len(tr) + len(va) + len(te_files), pre.channels * int(np.prod(pre.size)) * 4)

    def split(names: list[str], targets: list[int], what: str) -> tuple[Split, dict]:
        return _stream_or_memory(ImageFileSamples(names, targets, pre, options.max_pixels), options, what, stream)

    train, i_tr = split([files[i] for i in tr], [labels[i] for i in tr], f"{root} (train)")
    val, i_va = split([files[i] for i in va], [labels[i] for i in va], f"{root} (val)")
    test, i_te = split(te_files, te_labels, f"{root} (test)")
    info: dict[str, Any] = {"n_train": len(as_samples(train)), "n_val": len(as_samples(val)),
                            "n_test": len(as_samples(test)), "stream": not as_samples(train).in_memory}
    for key in ("bad_files", "converted_files"):
        found = i_tr.get(key, []) + i_va.get(key, []) + i_te.get(key, [])
        if found:
            info[key] = found
    return DataSplits(f"folder:{root}", train, val, test, classes, pre, info)


def load_mnist_dir(root: str | Path, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """MNIST idx files; the 28x28 images are padded to 32x32 as in LeCun et al. 1998."""
    x, y = load_mnist(root, "train")
    test = load_mnist(root, "test")
    rows = tuple(x.shape[2:])
    pre = Preprocess(channels=1, source_size=rows, size=(32, 32), content=rows, mean=LECUN_MEAN, std=LECUN_STD)
    return _make_splits("mnist", x, y, [str(i) for i in range(10)], pre, 0.0, val_fraction, seed, test)


def load_cifar_dir(root: str | Path, variant: str = "cifar10", val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """CIFAR-10/100 binary files with the usual per-channel normalisation."""
    x, y = load_cifar(root, "train", variant)
    test = load_cifar(root, "test", variant)
    classes = list(CIFAR10_CLASSES) if variant == "cifar10" else [str(i) for i in range(100)]
    pre = Preprocess(channels=3, source_size=(32, 32), size=(32, 32), mean=(0.4914, 0.4822, 0.4465),
                     std=(0.2470, 0.2435, 0.2616))
    return _make_splits(variant, x, y, classes, pre, 0.0, val_fraction, seed, test)


# ----------------------------------------------------------------------------- sources by name
@dataclass(frozen=True)
class DataSource:
    """A named data set: ``load(arg, options)`` builds its splits; ``arg`` is what follows the
    colon in ``kind:arg`` (a directory, a set's name), ``needs_arg`` says whether it must be
    given; ``task`` is the task it is labelled for."""

    kind: str
    load: Callable[[str, DataOptions], DataSplits]
    usage: str
    needs_arg: bool = False
    task: str = "classify"


DATA_SOURCES: dict[str, DataSource] = {}


def register_dataset(kind: str, load: Callable[[str, DataOptions], DataSplits], usage: str,
                     needs_arg: bool = False, task: str = "classify") -> DataSource:
    """Make ``kind`` (or ``kind:ARG``) a data set name for ``load_data`` and ``--data``."""
    if kind in DATA_SOURCES:
        raise ValueError(f"data set {kind!r} is already registered")
    DATA_SOURCES[kind] = source = DataSource(kind, load, usage, needs_arg, task)
    return source


register_dataset("digits", lambda arg, o: load_digits(o.image_size or 32, o.test_fraction, o.val_fraction, o.seed),
                 "digits")
register_dataset("mnist", lambda arg, o: load_mnist_dir(arg, o.val_fraction, o.seed), "mnist:DIR", needs_arg=True)
register_dataset("cifar10", lambda arg, o: load_cifar_dir(arg, "cifar10", o.val_fraction, o.seed), "cifar10:DIR",
                 needs_arg=True)
register_dataset("cifar100", lambda arg, o: load_cifar_dir(arg, "cifar100", o.val_fraction, o.seed), "cifar100:DIR",
                 needs_arg=True)
register_dataset("folder", lambda arg, o: load_image_folder(arg, o.image_size or 32, o.test_fraction,
                                                            o.val_fraction, o.seed, o),
                 "folder:PATH (or a directory path)", needs_arg=True)


def dataset_names() -> list[str]:
    """The accepted forms of ``--data``, for help and error text."""
    _load_sources()
    return [s.usage for s in DATA_SOURCES.values()]


def _load_sources() -> None:
    # Readers of other tasks' data sets register themselves when their module is imported.
    import importlib
    import pkgutil

    from .. import data as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("sources_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def data_source(name: str) -> DataSource | None:
    """The registered source a data set name uses (None for a plain directory)."""
    _load_sources()
    kind, _, arg = name.partition(":")
    return DATA_SOURCES.get(kind)


def load_data(name: str, image_size: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
              seed: int = 0, options: DataOptions | None = None) -> DataSplits:
    """Load a data set by name: ``digits``, ``mnist:DIR``, ``cifar10:DIR``, ``cifar100:DIR``,
    ``folder:DIR``, a plain directory of class subfolders, or any registered source
    (``dataset_names()``). ``options`` (when given) replaces the keyword arguments."""
    options = options or DataOptions(image_size=image_size, val_fraction=val_fraction, test_fraction=test_fraction,
                                     seed=seed)
    if options.stream not in ("auto", "memory", "disk"):
        raise ValueError(f"data.stream must be auto, memory or disk, got {options.stream!r}")
    _load_sources()
    kind, _, arg = name.partition(":")
    source = DATA_SOURCES.get(kind)
    if source is not None and bool(arg) == source.needs_arg:
        return source.load(arg, options)
    if source is None and Path(name).is_dir():
        return DATA_SOURCES["folder"].load(name, options)
    if source is not None:
        need = "needs" if source.needs_arg else "takes no"
        raise ValueError(f"data set {kind!r} {need} an argument after ':'; expected {source.usage}")
    close = difflib.get_close_matches(kind, DATA_SOURCES, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown data set {name!r}; expected one of: {', '.join(dataset_names())}{hint}")


def parse_classes(spec: str, classes: list[str]) -> list[int]:
    """Class indices from "0-4", "1,3,7" or "2-4,9" (indices or class names), in the data's order."""
    chosen: list[int] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        lo, dash, hi = part.partition("-")
        try:
            if dash and lo and hi:
                chosen += list(range(int(lo), int(hi) + 1))
            else:
                chosen.append(classes.index(part) if part in classes else int(part))
        except ValueError:
            raise ValueError(f"data.classes {spec!r}: cannot read {part!r}; expected indices or names "
                             f"like '0-4' or '1,3,7' (classes: {', '.join(classes)})") from None
    bad = [c for c in chosen if not 0 <= c < len(classes)]
    if bad or not chosen:
        raise ValueError(f"data.classes {spec!r}: no class {bad or spec}; the data has {len(classes)} classes")
    return sorted(set(chosen))


def _class_indices(targets: Any) -> bool:
    """Whether targets are one class index per sample."""
    if isinstance(targets, torch.Tensor):
        return targets.ndim == 1 and not targets.is_floating_point()
    return all(isinstance(t, (int, np.integer)) or (isinstance(t, torch.Tensor) and t.ndim == 0)
               for t in list(targets)[:64])


def select_classes(data: DataSplits, classes: str = "", train_per_class: int = 0, seed: int = 0) -> DataSplits:
    """A subset of a data set for transfer experiments: only ``classes`` (relabelled 0..k-1 in
    order), and at most ``train_per_class`` training images of each (chosen at random with
    ``seed``; validation and test splits stay whole)."""
    labels = [as_samples(s).targets for s in (data.train, data.val, data.test)]
    if any(t is not None and not _class_indices(t) for t in labels):
        raise ValueError(f"data.classes / data.train_per_class keep samples of some classes; the targets of "
                         f"{data.name} are not one class per sample (masks, boxes or sequences)")
    keep = parse_classes(classes, data.classes) if classes else list(range(data.num_classes))
    remap = torch.full((data.num_classes,), -1, dtype=torch.long)
    remap[keep] = torch.arange(len(keep))

    def subset(split: Split, per_class: int = 0) -> Split:
        targets = split[1] if isinstance(split, tuple) else torch.as_tensor(list(as_samples(split).targets))
        idx = torch.nonzero(remap[targets] >= 0).flatten()
        if per_class:
            g = torch.Generator().manual_seed(seed)
            picked = [idx[targets[idx] == c][torch.randperm(int((targets[idx] == c).sum()), generator=g)[:per_class]]
                      for c in keep]
            idx = torch.cat(picked).sort().values
        if isinstance(split, tuple):
            x, y = split
            return x[idx], remap[y[idx]]
        return SubsetSamples(as_samples(split), idx.tolist(), remap)

    train = subset(data.train, train_per_class)
    val, test = subset(data.val), subset(data.test)
    info = {**data.info, "n_train": len(as_samples(train)), "n_val": len(as_samples(val)), "n_test": len(as_samples(test)),
            "classes_kept": [data.classes[c] for c in keep]}
    return DataSplits(data.name, train, val, test, [data.classes[c] for c in keep], data.preprocess, info)
