"""Data sets as in-memory splits: the bundled digits, image folders, MNIST idx, CIFAR binary.

Every source becomes a :class:`DataSplits`: train/val/test tensors already brought to the
model's input by a :class:`Preprocess` that is saved with the run. The data sets convnet is
trained on here are small (the largest, CIFAR, is 150 MB as bytes), so keeping them in memory
and slicing batches is much faster than per-sample loading.

The digits split is fixed and documented: scikit-learn's 1,797 8x8 digits, stratified by class
with ``train_test_split(random_state=0)``: 20% test (360 images), then 10% of the whole as
validation (180), and the remaining 1,257 for training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from .readers import CIFAR10_CLASSES, DataFormatError, ImageFolder, load_cifar, load_mnist
from .transforms import Preprocess

Split = tuple[torch.Tensor, torch.Tensor]

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


def _folder_tensors(root: Path, image_size: int, mode: str | None) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
    import torch.nn.functional as F

    folder = ImageFolder(root, mode=mode)
    images = [F.interpolate(folder[i][0].unsqueeze(0), size=(image_size, image_size), mode="bilinear",
                            antialias=True, align_corners=False)[0] for i in range(len(folder))]
    # A folder mixing gray and colour images (mode=None keeps each as it is) becomes RGB.
    channels = max(im.shape[0] for im in images)
    images = [im.expand(channels, *im.shape[1:]) for im in images]
    return torch.stack(images).clamp_(0, 1), torch.tensor(folder.targets), folder.classes, channels


def load_image_folder(root: str | Path, image_size: int = 32, test_fraction: float = 0.2,
                      val_fraction: float = 0.1, seed: int = 0, mode: str | None = None) -> DataSplits:
    """Images in class subfolders (any format Pillow reads), resized to image_size. If root has
    ``train/`` and ``test/`` subfolders they are used as given; otherwise a stratified split."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, classes, c = _folder_tensors(root / "train", image_size, mode)
        xt, yt, classes_t, _ = _folder_tensors(root / "test", image_size, "RGB" if c == 3 else "L")
        if classes_t != classes:
            raise DataFormatError(f"{root}: train classes {classes} differ from test classes {classes_t}")
        test = (xt, yt)
    else:
        x, y, classes, c = _folder_tensors(root, image_size, mode)
        test = None
    pre = Preprocess(channels=c, source_size=(image_size, image_size), size=(image_size, image_size),
                     mean=(0.5,) * c, std=(0.25,) * c)
    return _make_splits(f"folder:{root}", x, y, classes, pre, test_fraction, val_fraction, seed, test)


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


DATASETS = ("digits", "folder:PATH (or a directory path)", "mnist:DIR", "cifar10:DIR", "cifar100:DIR")


def load_data(name: str, image_size: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
              seed: int = 0) -> DataSplits:
    """Load a data set by name: ``digits``, ``mnist:DIR``, ``cifar10:DIR``, ``cifar100:DIR``,
    ``folder:DIR`` or a plain directory of class subfolders."""
    kind, _, arg = name.partition(":")
    if kind == "digits" and not arg:
        return load_digits(image_size or 32, test_fraction, val_fraction, seed)
    if kind == "mnist" and arg:
        return load_mnist_dir(arg, val_fraction, seed)
    if kind in ("cifar10", "cifar100") and arg:
        return load_cifar_dir(arg, kind, val_fraction, seed)
    if kind == "folder" and arg:
        return load_image_folder(arg, image_size or 32, test_fraction, val_fraction, seed)
    if Path(name).is_dir():
        return load_image_folder(name, image_size or 32, test_fraction, val_fraction, seed)
    raise ValueError(f"unknown data set {name!r}; expected one of: {', '.join(DATASETS)}")


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


def select_classes(data: DataSplits, classes: str = "", train_per_class: int = 0, seed: int = 0) -> DataSplits:
    """A subset of a data set for transfer experiments: only ``classes`` (relabelled 0..k-1 in
    order), and at most ``train_per_class`` training images of each (chosen at random with
    ``seed``; validation and test splits stay whole)."""
    keep = parse_classes(classes, data.classes) if classes else list(range(data.num_classes))
    remap = torch.full((data.num_classes,), -1, dtype=torch.long)
    remap[keep] = torch.arange(len(keep))

    def subset(split: Split, per_class: int = 0) -> Split:
        x, y = split
        idx = torch.nonzero(remap[y] >= 0).flatten()
        if per_class:
            g = torch.Generator().manual_seed(seed)
            picked = [idx[y[idx] == c][torch.randperm(int((y[idx] == c).sum()), generator=g)[:per_class]]
                      for c in keep]
            idx = torch.cat(picked).sort().values
        return x[idx], remap[y[idx]]

    train = subset(data.train, train_per_class)
    val, test = subset(data.val), subset(data.test)
    info = {**data.info, "n_train": len(train[1]), "n_val": len(val[1]), "n_test": len(test[1]),
            "classes_kept": [data.classes[c] for c in keep]}
    return DataSplits(data.name, train, val, test, [data.classes[c] for c in keep], data.preprocess, info)
