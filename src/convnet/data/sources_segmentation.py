"""Segmentation data sets by name (``--data``): real images and a real brain volume that ship
inside packages (nothing is downloaded), and readers for folders of images + masks and of NIfTI
volumes + labels. Every one registers with ``task="segment"``; a sample's target is a label map
of its input's spatial size (int64; 255 = ignore).

The bundled sets are cut into crops with a documented spatial split, so that the test crops show
parts of the scene no training crop contains:

- ``horse``: scikit-image's ``horse.png`` (328x400 silhouette) is the exact mask of a real-pixel
  image composed from two of scikit-image's photos, bricks inside the horse and grass around it,
  both standardised to the same mean and contrast (:func:`segmentation_data.horse_scene`): the
  horse is found by texture, not brightness. Classes: background, horse.
- ``coins``: scikit-image's ``coins.png`` (303x384 gray photo of 24 Greek coins); the mask is
  Otsu's threshold of the photo with its uneven illumination removed (a white top-hat), closed,
  holes filled and components under 64 pixels removed (:func:`segmentation_data.coin_mask`: 24
  coins). Classes: background, coin.

  Both are split the same way: the **left half** of the image gives the training crops
  (``data.image_size`` square, default 64, every quarter crop: overlapping); the **right half**
  is cut into disjoint crops laid on a checkerboard, the black squares for **test** and the white
  ones for **validation**.
- ``mni152``: nilearn's MNI152 2009c symmetric template (197x233x189 at 1 mm): the T1 volume is
  the input (scaled to [0, 1] by its 99.5th percentile); the grey- and white-matter probability
  maps (stored as 0..255, scaled back to probabilities) give 3 labels, background/CSF where they
  sum to less than 0.5, else the more probable tissue (:func:`segmentation_data.mni152_labels`).
  Volume and maps are averaged over 3x3x3 blocks first (3 mm voxels: 65x77x63, about 64^3),
  then labelled. Split by **axial slabs** (the last axis, inferior to superior): the middle
  ``data.image_size`` slices (default 16; z from 23 to 38 at the default) are held out,
  cut into disjoint cubes on a checkerboard (test / validation), cubes without tissue dropped;
  cubes (every half cube) of the slabs below and above train, those with under 1% tissue dropped.
  Needs nibabel and nilearn (``pip install --no-deps nilearn``); the volumes are read directly from
  nilearn's package folder.
- ``segfolder:DIR``: ``DIR/images/*`` and ``DIR/masks/<same stem>.png`` (palette, gray or VOC
  coloured; 255 = ignore), or ``DIR/train/...`` and ``DIR/test/...`` with that layout; class
  names from ``DIR/classes.txt`` (one per line), else ``0 .. max label``. Images without a mask
  are left out (VOC's JPEGImages holds many). Resized to ``data.image_size`` square (image
  bilinear, mask nearest) or, when it is 0, kept at their size (which must then be one size).
  Streamed from disk when large, as image folders are.
- ``nifti:DIR``: ``DIR/images/*.nii.gz`` (or ``.nii``, ``.npy``) and ``DIR/labels/<same name>``;
  same splits, classes and sizes as ``segfolder``.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import DataOptions, DataSplits, Split, check_bad_files, register_dataset, streams
from .readers import DataFormatError
from .samples import Samples, TensorSamples, majority_channels
from .segmentation_data import (IGNORE_INDEX, IMAGE_SUFFIXES, VOLUME_SUFFIXES, SegmentationFileSamples,
                                VolumeFileSamples, coin_mask, cut_tiles, horse_scene, mni152_labels, normalise_volume,
                                read_mask, read_volume, volume_suffix)
from .transforms import Preprocess

MEAN, STD = 0.5, 0.25  # inputs in [0, 1] -> (x - 0.5) / 0.25, as image folders
MNI_FILES = {k: f"nilearn/datasets/data/mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}


def package_file(distribution: str, relative: str, hint: str) -> Path:
    """A data file inside an installed package, read without importing the package."""
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{relative} ships with the {distribution} package, which is not installed; "
                                f"{hint}") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {distribution}; {hint}")
    return path


def _skimage(name: str) -> np.ndarray:
    from PIL import Image

    path = package_file("scikit-image", f"skimage/data/{name}", "pip install scikit-image")
    with Image.open(path) as img:
        return np.array(img)


def _preprocess(channels: int, size: Sequence[int]) -> Preprocess:
    size = tuple(int(s) for s in size)
    return Preprocess(channels=channels, source_size=size, size=size, mean=(MEAN,) * channels, std=(STD,) * channels)


def _seg_info(kind: str, scale: str, **more: Any) -> dict[str, Any]:
    """What ``convnet predict`` needs to prepare a new file as this set's inputs (saved with the run)."""
    return {"kind": kind, "scale": scale, **more}


def _checkerboard(corners: list[tuple[int, ...]], tile: int) -> tuple[list[int], list[int]]:
    """Indices of tiles on the black (test) and white (validation) squares of a checkerboard."""
    origin = [min(c[i] for c in corners) for i in range(len(corners[0]))]
    parity = [sum((c - o) // tile for c, o in zip(corner, origin)) % 2 for corner in corners]
    return [i for i, p in enumerate(parity) if p == 0], [i for i, p in enumerate(parity) if p == 1]


def split_halves(name: str, image: torch.Tensor, mask: torch.Tensor, classes: list[str], tile: int,
                 info: dict[str, Any]) -> DataSplits:
    """The bundled 2-D sets' split (module docstring): training crops from the left half every
    ``tile // 4``, disjoint crops of the right half alternately test and validation."""
    h, w = mask.shape
    half = w // 2
    if tile > min(h, half, w - half):
        raise ValueError(f"{name}: data.image_size={tile} does not fit in a half of the {h}x{w} image; "
                         f"at most {min(h, half, w - half)}")
    x = (image - MEAN) / STD
    train_x, train_y, _ = cut_tiles(x, mask, (0, 0), (h, half), tile, max(1, tile // 4))
    held_x, held_y, corners = cut_tiles(x, mask, (0, half), (h, w - half), tile, tile, cover=False)
    test, val = _checkerboard(corners, tile)
    info = {"n_train": len(train_x), "n_val": len(val), "n_test": len(test), **info,
            "split": f"train: crops of the left half x < {half} every {max(1, tile // 4)} px; test / val: disjoint "
                     f"crops of the right half on a checkerboard"}
    return DataSplits(name, (train_x, train_y), (held_x[val], held_y[val]), (held_x[test], held_y[test]),
                      classes, _preprocess(image.shape[0], (tile, tile)), info)


def load_horse(options: DataOptions) -> DataSplits:
    """scikit-image's horse silhouette as the mask of a bricks-on-grass image (module docstring)."""
    image, mask = horse_scene(_skimage("horse.png"), _skimage("brick.png"), _skimage("grass.png"))
    return split_halves("horse", torch.from_numpy(image)[None], torch.from_numpy(mask), ["background", "horse"],
                        options.image_size or 64,
                        {"segmentation": _seg_info("image", "native"),
                         "source": "skimage horse.png (mask), brick.png (horse), grass.png (background)"})


def load_coins(options: DataOptions) -> DataSplits:
    """scikit-image's coins with Otsu masks (module docstring)."""
    gray = _skimage("coins.png")
    mask, found = coin_mask(gray)
    image = torch.from_numpy(gray.astype(np.float32) / 255.0)[None]
    return split_halves("coins", image, torch.from_numpy(mask.astype(np.int64)), ["background", "coin"],
                        options.image_size or 64,
                        {"segmentation": _seg_info("image", "native"), "coins_found": found,
                         "source": "skimage coins.png; mask: white top-hat (71 px), Otsu threshold, 5x5 "
                                   "closing, holes filled, components < 64 px removed"})


def load_mni152(options: DataOptions) -> DataSplits:
    """nilearn's MNI152 template in 3 tissue labels, split by axial slabs (module docstring)."""
    hint = "pip install nibabel; pip install --no-deps nilearn"
    volumes = {k: read_volume(package_file("nilearn", f, hint))[0] for k, f in MNI_FILES.items()}
    t1 = normalise_volume(volumes["t1"])
    # nilearn's "converted" files store the probabilities as 0..255 (uint8 range): back to 0..1.
    gm, wm = (torch.from_numpy(volumes[k]) / max(float(volumes[k].max()), 1e-6) for k in ("gm", "wm"))
    stack = torch.stack([t1, gm, wm])
    crop = tuple(s - s % 3 for s in stack.shape[1:])
    stack = F.avg_pool3d(stack[:, :crop[0], :crop[1], :crop[2]][None], 3)[0]  # 3 mm voxels
    image, mask = stack[:1], mni152_labels(stack[1], stack[2])
    cube = options.image_size or 16
    depth = mask.shape[2]
    lo = (depth - cube) // 2
    if lo < cube:
        raise ValueError(f"mni152: data.image_size={cube} leaves slabs of {lo} slices beside the held-out one; "
                         f"at most {depth // 3}")
    x = (image - MEAN) / STD
    size = mask.shape[:2]
    parts = [cut_tiles(x, mask, (0, 0, z0), (*size, z1 - z0), cube, cube // 2)
             for z0, z1 in ((0, lo), (lo + cube, depth))]
    train_x, train_y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    keep = (train_y > 0).flatten(1).float().mean(1) >= 0.01
    train_x, train_y = train_x[keep], train_y[keep]
    held_x, held_y, corners = cut_tiles(x, mask, (0, 0, lo), (*size, cube), cube, cube, cover=False)
    tissue = (held_y > 0).flatten(1).any(1)
    corners = [c for c, t in zip(corners, tissue.tolist()) if t]
    held_x, held_y = held_x[tissue], held_y[tissue]
    test, val = _checkerboard(corners, cube)
    info = {"n_train": len(train_x), "n_val": len(val), "n_test": len(test),
            "segmentation": _seg_info("volume", "native", voxel_size=[3.0, 3.0, 3.0]),
            "source": "nilearn MNI152 2009c sym: T1, GM and WM maps averaged to 3 mm",
            "split": f"held out: axial slices {lo}..{lo + cube - 1} (of {depth}), disjoint cubes on a checkerboard "
                     "(test / val); train: cubes of the slabs below and above"}
    return DataSplits("mni152", (train_x, train_y), (held_x[val], held_y[val]), (held_x[test], held_y[test]),
                      ["background", "grey matter", "white matter"], _preprocess(1, (cube,) * 3), info)


# ----------------------------------------------------------------------------- folders
def _stem(path: Path) -> str:
    name = path.name
    return name[:-len(volume_suffix(name))] if volume_suffix(name) in VOLUME_SUFFIXES else path.stem


def _pairs(root: Path, inputs: str, targets: str, suffixes: Sequence[str]) -> tuple[list[str], list[str], int]:
    """(input files, target files, inputs without a target) of ``root/inputs`` and ``root/targets``
    paired by stem; a target without its input is an error naming it."""
    folders = [root / inputs, root / targets]
    for folder in folders:
        if not folder.is_dir():
            raise DataFormatError(f"{root}: expected the folders {inputs}/ and {targets}/ (matching file names); "
                                  f"{folder} is missing")

    def listing(folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith(".") and volume_suffix(p) in suffixes:
                found.setdefault(_stem(p), p)
        return found

    images, masks = listing(folders[0]), listing(folders[1])
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataFormatError(f"{masks[orphans[0]]}: no input in {folders[0]} has the stem {orphans[0]!r}")
    stems = sorted(masks)
    if not stems:
        raise DataFormatError(f"{folders[1]}: no {targets} files ({', '.join(suffixes)})")
    return [str(images[s]) for s in stems], [str(masks[s]) for s in stems], len(images) - len(stems)


def _classes(root: Path, targets: list[str], read: Callable[[str], torch.Tensor]) -> list[str]:
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        if not names:
            raise DataFormatError(f"{listed}: no class names (one per line)")
        return names
    top = 0
    for path in targets:  # every mask read once: name the classes in classes.txt to skip this
        labels = read(path)
        labels = labels[labels != IGNORE_INDEX]
        if labels.numel():
            top = max(top, int(labels.max()))
    return [str(i) for i in range(max(top + 1, 2))]


def _random_split(n: int, options: DataOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(options.seed).permutation(n)
    n_test = int(round(n * options.test_fraction))
    n_val = int(round(n * options.val_fraction))
    return np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]), np.sort(order[:n_test])


def _materialise(samples: Samples, options: DataOptions, what: str, stream: bool) -> tuple[Split, dict]:
    """A split kept streamed, or decoded into memory (``stream``: the data set's one decision,
    :func:`convnet.data.datasets.streams`); bad pairs are dropped up to max_bad_fraction."""
    if stream:
        return samples, {}
    from torch.utils.data import DataLoader

    loader = DataLoader(samples, batch_size=16, num_workers=options.workers, collate_fn=list,
                        generator=torch.Generator().manual_seed(options.seed))
    xs, ys, bad = [], [], []
    for chunk in loader:
        for s in chunk:
            if "error" in s:
                bad.append((s["path"], s["error"]))
            else:
                xs.append(s["input"])
                ys.append(s["target"])
    check_bad_files(bad, len(samples), options.max_bad_fraction, what)
    if not xs:
        return samples, {"bad_files": [list(b) for b in bad]}
    if any(x.shape != xs[0].shape for x in xs):
        return samples, {"bad_files": [list(b) for b in bad]}  # native sizes that differ: stream them
    return TensorSamples(torch.stack(xs), torch.stack(ys)), {"bad_files": [list(b) for b in bad]}


def _folder_splits(root: Path, inputs: str, targets: str, suffixes: Sequence[str], options: DataOptions,
                   volume: bool) -> DataSplits:
    layout = [root / "train", root / "test"]
    if all((p / inputs).is_dir() for p in layout):
        tr_in, tr_t, skipped = _pairs(layout[0], inputs, targets, suffixes)
        te_in, te_t, skipped_t = _pairs(layout[1], inputs, targets, suffixes)
        skipped += skipped_t
        frac = dataclasses.replace(options, test_fraction=0.0)
        tr, va, _ = _random_split(len(tr_in), frac)
        groups = ([tr_in[i] for i in tr], [tr_t[i] for i in tr]), ([tr_in[i] for i in va], [tr_t[i] for i in va]), \
            (te_in, te_t)
    else:
        files, labels, skipped = _pairs(root, inputs, targets, suffixes)
        tr, va, te = _random_split(len(files), options)
        groups = tuple(([files[i] for i in idx], [labels[i] for i in idx]) for idx in (tr, va, te))
    all_targets = [t for g in groups for t in g[1]]
    all_inputs = [i for g in groups for i in g[0]]
    if volume:
        classes = _classes(root, all_targets, lambda p: torch.from_numpy(read_volume(p)[0].astype(np.int64)))
        first, _, _ = read_volume(all_inputs[0])
        channels, native_size = (1 if first.ndim == 3 else first.shape[0]), first.shape[-3:]
    else:
        classes = _classes(root, all_targets, lambda p: read_mask(p, options.max_pixels))
        channels = options.channels or majority_channels(all_inputs)
        native_size = read_mask(all_targets[0], options.max_pixels).shape
    dims = 3 if volume else 2
    native = not options.image_size
    size = tuple(native_size) if native else (options.image_size,) * dims
    pre = _preprocess(channels, size)
    splits, info = [], {}
    # Image float32 channels and an int64 mask per pixel, every split together.
    stream = streams(options, len(all_inputs), int(np.prod(size)) * (4 * channels + 8))
    for (ins, tgts), part in zip(groups, ("train", "val", "test")):
        if volume:
            samples: Samples = VolumeFileSamples(ins, tgts, pre, len(classes), native=native)
        else:
            samples = SegmentationFileSamples(ins, tgts, pre, len(classes), options.max_pixels, native=native)
        split, more = _materialise(samples, options, f"{root} ({part})", stream)
        splits.append(split)
        info[f"n_{part}"] = len(ins)
        if more.get("bad_files"):
            info.setdefault("bad_files", []).extend(more["bad_files"])
    info["stream"] = not isinstance(splits[0], TensorSamples)
    info["segmentation"] = _seg_info("volume" if volume else "image", "native" if native else "resize")
    if skipped:
        info["inputs_without_labels"] = skipped
    kind = "nifti" if volume else "segfolder"
    return DataSplits(f"{kind}:{root}", *splits, classes, pre, info)


def load_segfolder(root: str | os.PathLike, options: DataOptions) -> DataSplits:
    """Image + mask folders (module docstring)."""
    return _folder_splits(Path(root), "images", "masks", IMAGE_SUFFIXES, options, volume=False)


def load_nifti_folder(root: str | os.PathLike, options: DataOptions) -> DataSplits:
    """NIfTI (or .npy) volume + label folders (module docstring)."""
    return _folder_splits(Path(root), "images", "labels", VOLUME_SUFFIXES, options, volume=True)


register_dataset("horse", lambda arg, o: load_horse(o), "horse", task="segment")
register_dataset("coins", lambda arg, o: load_coins(o), "coins", task="segment")
register_dataset("mni152", lambda arg, o: load_mni152(o), "mni152", task="segment")
register_dataset("segfolder", load_segfolder, "segfolder:DIR (images/ + masks/)", needs_arg=True, task="segment")
register_dataset("nifti", load_nifti_folder, "nifti:DIR (images/ + labels/)", needs_arg=True, task="segment")
