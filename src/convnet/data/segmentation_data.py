"""Segmentation data: masks and volumes on disk, the bundled real images, and how they are cut.

Readers (each refuses special files unopened and names the file in every error):

- :func:`read_mask`: a label map from a PNG (or any Pillow image): palette PNGs (VOC style) give
  their palette indices, gray images their values, RGB images painted in the VOC colours their
  colour's index; 255 is "ignore" by VOC's convention (the border around each object).
- :func:`read_volume`: a NIfTI volume (``.nii``/``.nii.gz``, through nibabel, an optional
  dependency: ``pip install convnet[medical]``) or a NumPy ``.npy`` array (``allow_pickle=False``:
  a file never runs code), with its affine and voxel sizes; :func:`write_nifti` writes one.
- :class:`SegmentationFileSamples` / :class:`VolumeFileSamples`: image + mask pairs and volume +
  label pairs decoded one at a time (streamed in DataLoader workers, like image folders).

Building blocks of the bundled sets: :func:`otsu_threshold` (Otsu 1979), :func:`coin_mask`
(threshold, holes filled, small components removed), :func:`horse_scene` (a real-texture image
whose exact mask is scikit-image's horse silhouette), :func:`mni152_labels` (the MNI152 tissue
maps to 3 labels), :func:`tile_starts` and :func:`cut_tiles` (crops of a region).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..layers.factory import linear_mode
from ..weights.io import open_regular_file
from .readers import DataFormatError
from .samples import Sample, Samples, read_image
from .transforms import Preprocess

IGNORE_INDEX = 255  # VOC's "void" label (object borders, unlabelled pixels)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy")
MEDICAL_HINT = "pip install nibabel (or convnet[medical])"

__all__ = ["IGNORE_INDEX", "IMAGE_SUFFIXES", "SegmentationFileSamples", "VOLUME_SUFFIXES", "VolumeFileSamples",
           "coin_mask", "cut_tiles", "horse_scene", "mni152_labels", "normalise_volume", "otsu_threshold",
           "read_mask", "read_volume", "resize_pair", "tile_starts", "voc_palette", "volume_suffix", "write_nifti"]


# ----------------------------------------------------------------------------- masks
def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (n, 3) uint8: class i's colour interleaves i's bits, the lowest
    three into the top bit of R, G, B, the next three into the next bit, and so on (VOCdevkit's
    ``VOClabelcolormap.m``); 0 is black, 255 (void) is (224, 224, 192)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette


_VOC_LOOKUP: dict[tuple[int, int, int], int] | None = None


def _colour_index(rgb: np.ndarray, path: str) -> np.ndarray:
    """(H, W, 3) VOC colours -> (H, W) class indices; a colour outside the map is an error."""
    global _VOC_LOOKUP
    if _VOC_LOOKUP is None:
        _VOC_LOOKUP = {tuple(int(v) for v in c): i for i, c in enumerate(voc_palette())}
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    colours, inverse = np.unique(code.reshape(-1), return_inverse=True)
    index = np.empty(len(colours), dtype=np.int64)
    for k, c in enumerate(colours.tolist()):
        key = (c >> 16, (c >> 8) & 255, c & 255)
        if key not in _VOC_LOOKUP:
            raise DataFormatError(f"{path}: an RGB mask must be painted in the VOC colours; colour {key} is "
                                  "not one (save masks as palette or gray PNGs of class indices)")
        index[k] = _VOC_LOOKUP[key]
    return index[inverse].reshape(rgb.shape[:2])


def read_mask(path: str | os.PathLike, max_pixels: int = 0) -> torch.Tensor:
    """A label map (H, W) int64 from an image file.

    Palette ("P") images give their palette indices (VOC's masks: 255 is void), gray images
    ("1", "L", 16-bit "I") their values, RGB(A) images the index of their VOC colour.

    Raises:
        DataFormatError: not an image, a special file, over ``max_pixels``, or an RGB colour
            outside the VOC map (the message names the file).
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    fd = open_regular_file(path, "a mask image", DataFormatError)
    with os.fdopen(fd, "rb") as fh:
        try:
            with Image.open(fh) as img:
                w, h = img.size
                if max_pixels and w * h > max_pixels:
                    raise DataFormatError(f"{path}: mask of {w}x{h} pixels exceeds max_pixels={max_pixels}")
                img.load()
                mode = img.mode
                if mode in ("P", "L", "1") or mode.startswith("I"):
                    labels = np.array(img).astype(np.int64)
                elif mode in ("RGB", "RGBA"):
                    labels = _colour_index(np.array(img.convert("RGB")), path)
                elif mode == "LA":
                    labels = np.array(img.getchannel(0)).astype(np.int64)
                else:
                    raise DataFormatError(f"{path}: mask mode {mode!r} holds no class indices; expected a "
                                          "palette, gray or VOC-coloured PNG")
        except DataFormatError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise DataFormatError(f"{path}: expected a mask image Pillow can decode, "
                                  f"{type(e).__name__}: {e}") from e
    if labels.ndim != 2:
        raise DataFormatError(f"{path}: a mask is one channel of class indices, got an array of shape {labels.shape}")
    return torch.from_numpy(labels)


def check_labels(mask: torch.Tensor, num_classes: int, path: str, ignore_index: int | None = IGNORE_INDEX) -> None:
    """Raise a DataFormatError naming the file when a label is neither a class nor ``ignore_index``."""
    labelled = mask if ignore_index is None else mask[mask != ignore_index]
    if labelled.numel() and (int(labelled.min()) < 0 or int(labelled.max()) >= num_classes):
        bad = int(labelled.max()) if int(labelled.max()) >= num_classes else int(labelled.min())
        raise DataFormatError(f"{path}: label {bad} is outside the {num_classes} classes (0..{num_classes - 1}"
                              f"{f', or {ignore_index} for ignore' if ignore_index is not None else ''})")


# ----------------------------------------------------------------------------- volumes
def volume_suffix(path: str | os.PathLike) -> str:
    """".nii.gz", ".nii", ".npy" (or the file's last suffix)."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise ImportError(f"reading NIfTI files needs nibabel: {MEDICAL_HINT}") from None
    return nibabel


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """A volume, its 4x4 affine (voxel -> world, mm) and its voxel sizes.

    NIfTI: the data array in the file's voxel order (x, y, z), a 4th axis of length 1 dropped,
    a longer one moved first as channels; ``.npy``: (D, H, W) or (C, D, H, W), identity affine,
    1 mm voxels. Returns float32 (C?, D, H, W).

    Raises:
        DataFormatError: not a readable volume of 3 (or 4) axes (the message names the file).
        ImportError: a NIfTI file without nibabel installed.
    """
    path = os.fspath(path)
    suffix = volume_suffix(path)
    if suffix not in VOLUME_SUFFIXES:
        raise DataFormatError(f"{path}: expected a volume ({', '.join(VOLUME_SUFFIXES)}), got {suffix or 'no suffix'}")
    fd = open_regular_file(path, "a volume file", DataFormatError)
    if suffix == ".npy":
        with os.fdopen(fd, "rb") as fh:
            try:
                array = np.load(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise DataFormatError(f"{path}: expected a NumPy .npy array without pickled objects, "
                                      f"{type(e).__name__}: {e}") from e
        if not isinstance(array, np.ndarray) or array.ndim not in (3, 4) or array.dtype.kind not in "biuf":
            raise DataFormatError(f"{path}: a volume is a numeric (D, H, W) or (C, D, H, W) array, got "
                                  f"shape {getattr(array, 'shape', None)} of {getattr(array, 'dtype', None)}")
        return array.astype(np.float32), np.eye(4), (1.0, 1.0, 1.0)
    os.close(fd)  # the regular-file check is done; nibabel opens (and decompresses) by name
    nibabel = _nibabel()
    try:
        img = nibabel.load(path)
        array = np.asanyarray(img.dataobj, dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as e:  # nibabel raises ImageFileError, gzip/zlib/EOF errors on damaged files
        raise DataFormatError(f"{path}: expected a NIfTI volume nibabel can read, {type(e).__name__}: {e}") from e
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    elif array.ndim == 4:
        array = np.moveaxis(array, 3, 0)
    if array.ndim not in (3, 4):
        raise DataFormatError(f"{path}: a volume has 3 spatial axes, got data of shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataFormatError(f"{path}: the volume holds NaN or infinite values")
    return array, affine, zooms


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` (integer labels as uint8/int16) as a NIfTI file, atomically."""
    nibabel = _nibabel()
    path = Path(path)
    if array.dtype.kind in "iub":
        array = array.astype(np.uint8 if array.max(initial=0) < 256 and array.min(initial=0) >= 0 else np.int16)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{volume_suffix(path)}")
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4) if affine is None else np.asarray(affine)), str(tmp))
    os.replace(tmp, path)
    return path


def normalise_volume(array: np.ndarray | torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """Intensities to [0, 1]: divided by the ``percentile`` of the volume's positive values and
    clipped (scanner units differ between files; a bright outlier must not set the scale)."""
    x = torch.as_tensor(np.asarray(array, dtype=np.float32))
    positive = x[x > 0]
    scale = float(torch.quantile(positive[:: max(1, positive.numel() // 1_000_000)], percentile / 100)) \
        if positive.numel() else 0.0
    return (x / scale).clamp_(0.0, 1.0) if scale > 0 else torch.zeros_like(x)


def resize_pair(x: torch.Tensor, mask: torch.Tensor | None, size: Sequence[int]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(C, *S) image (multilinear, antialiased in 2-D) and (*S) mask (nearest) to ``size``."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[1:]) != size:
        x = F.interpolate(x[None].float(), size=size, mode=linear_mode(len(size)), align_corners=False,
                          antialias=len(size) == 2)[0]
    if mask is not None and tuple(mask.shape) != size:
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return x, mask


# ----------------------------------------------------------------------------- streamed pairs
class SegmentationFileSamples(Samples):
    """Image and mask files, decoded one pair at a time.

    Args:
        images, masks: paths, pairwise (same stem).
        preprocess: channels decide gray or RGB decoding; a pair is resized to ``preprocess.size``
            (image: antialiased bilinear; mask: nearest) unless ``native`` is True.
        num_classes: labels must be below it or ``ignore_index``.
        max_pixels: images with more pixels are refused before decoding (0: no cap).
        native: keep each file's own size (no resizing; batch size 1 for sizes that differ).
    """

    def __init__(self, images: Sequence[str], masks: Sequence[str], preprocess: Preprocess, num_classes: int,
                 max_pixels: int = 0, ignore_index: int | None = IGNORE_INDEX, native: bool = False):
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks = list(images), list(masks)
        self.preprocess, self.num_classes, self.max_pixels = preprocess, num_classes, max_pixels
        self.ignore_index, self.native = ignore_index, native
        self.mode = "L" if preprocess.channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Sample:
        """Sample ``index``; raises DataFormatError (naming the file) for a bad pair."""
        image_path, mask_path = self.images[index], self.masks[index]
        image, native_channels = read_image(image_path, self.mode, self.max_pixels)
        mask = read_mask(mask_path, self.max_pixels)
        if tuple(image.shape[1:]) != tuple(mask.shape):
            raise DataFormatError(f"{mask_path}: mask of {tuple(mask.shape)} does not match its image {image_path} "
                                  f"of {tuple(image.shape[1:])} (H, W)")
        check_labels(mask, self.num_classes, mask_path, self.ignore_index)
        if not self.native:
            image, mask = resize_pair(image, mask, self.preprocess.size)
        sample = {"input": _normalise(image, self.preprocess), "target": mask, "index": index, "path": image_path}
        if native_channels != self.preprocess.channels:
            sample["converted"] = True
        return sample

    def __getitem__(self, index: int) -> Sample:
        try:
            return self.load(index)
        except (DataFormatError, OSError, ValueError) as e:
            return {"error": str(e), "path": self.images[index], "index": index}


class VolumeFileSamples(Samples):
    """Volume and label files (NIfTI or .npy), decoded one pair at a time; intensities scaled by
    :func:`normalise_volume`, then the run's mean and std; resized to ``preprocess.size``
    (trilinear / nearest) unless ``native``."""

    def __init__(self, images: Sequence[str], labels: Sequence[str], preprocess: Preprocess, num_classes: int,
                 ignore_index: int | None = IGNORE_INDEX, native: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} volumes but {len(labels)} label volumes")
        self.images, self.labels = list(images), list(labels)
        self.preprocess, self.num_classes = preprocess, num_classes
        self.ignore_index, self.native = ignore_index, native

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Sample:
        image_path, label_path = self.images[index], self.labels[index]
        array, _, _ = read_volume(image_path)
        labels, _, _ = read_volume(label_path)
        if labels.ndim != 3 or (labels != np.round(labels)).any():
            raise DataFormatError(f"{label_path}: a label volume holds one integer class per voxel, got shape "
                                  f"{labels.shape}{'' if labels.ndim != 3 else ' with fractional values'}")
        x = normalise_volume(array)
        x = x[None] if x.ndim == 3 else x
        if x.shape[0] != self.preprocess.channels:
            raise DataFormatError(f"{image_path}: {x.shape[0]} channel(s), the set has {self.preprocess.channels}")
        mask = torch.from_numpy(labels.astype(np.int64))
        if tuple(x.shape[1:]) != tuple(mask.shape):
            raise DataFormatError(f"{label_path}: labels of {tuple(mask.shape)} do not match the volume {image_path} "
                                  f"of {tuple(x.shape[1:])}")
        check_labels(mask, self.num_classes, label_path, self.ignore_index)
        if not self.native:
            x, mask = resize_pair(x, mask, self.preprocess.size)
        return {"input": _normalise(x, self.preprocess), "target": mask, "index": index, "path": image_path}

    def __getitem__(self, index: int) -> Sample:
        try:
            return self.load(index)
        except (DataFormatError, OSError, ValueError) as e:
            return {"error": str(e), "path": self.images[index], "index": index}


def _normalise(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """(C, *S) in [0, 1] -> (x - mean) / std per channel, at its own size."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(shape)
    std = torch.tensor(pre.std, dtype=torch.float32).view(shape)
    return ((x.float() - mean) / std).contiguous()


# ----------------------------------------------------------------------------- the bundled sets
def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold (N. Otsu, "A Threshold Selection Method from Gray-Level Histograms", IEEE
    SMC 1979) of 8-bit values: the t maximising the between-class variance
    w0(t) w1(t) (mu0(t) - mu1(t))^2 of the classes <= t and > t. Foreground is ``values > t``."""
    hist = np.bincount(np.asarray(values, dtype=np.uint8).reshape(-1), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    w0 = np.cumsum(p)  # weight of the class <= t
    mu = np.cumsum(p * np.arange(256))  # its first moment
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return int(np.argmax(between))


def coin_mask(gray: np.ndarray, min_size: int = 64, background_window: int = 71) -> tuple[np.ndarray, int]:
    """scikit-image's coins to a foreground mask, in four steps:

    1. the uneven illumination (the photo's top is much brighter than its bottom, which sends a
       global threshold through the background) is removed by a white top-hat: the image minus
       its grey opening by a ``background_window`` square, wider than any coin (the largest is
       about 65 pixels across), which keeps only bright objects smaller than the window;
    2. Otsu's threshold of the top-hat;
    3. a 5x5 closing and hole filling (the coins' dark relief);
    4. connected components (8-connectivity) under ``min_size`` pixels removed (specks).

    Returns the mask (bool) and the number of coins found (24 in the photo)."""
    from scipy import ndimage

    gray = np.asarray(gray, dtype=np.uint8)
    tophat = np.clip(gray.astype(np.int32) - ndimage.grey_opening(gray, size=(background_window,) * 2), 0, 255)
    tophat = tophat.astype(np.uint8)
    fg = tophat > otsu_threshold(tophat)
    fg = ndimage.binary_closing(fg, structure=np.ones((5, 5), dtype=bool), border_value=0)
    fg = ndimage.binary_fill_holes(fg)
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.reshape(-1), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels], int(keep.sum())


def horse_scene(silhouette_rgba: np.ndarray, horse_texture: np.ndarray, background: np.ndarray,
                contrast: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """A real-pixel image with an exact mask: scikit-image's horse silhouette (black on white,
    anti-aliased) decides, per pixel, how much of ``horse_texture`` (a photo of bricks) and of
    ``background`` (a photo of grass) is seen. Both photos are first standardised to the same
    mean (0.5) and standard deviation (``contrast``), so the horse differs from the grass in
    texture only, not in brightness. The mask is where the silhouette covers more than half a
    pixel. Returns the image (H, W) float32 in [0, 1] and the mask (H, W) int64 (1 = horse)."""
    rgba = silhouette_rgba.astype(np.float32) / 255.0
    if rgba.ndim == 2:
        gray = rgba
    else:
        alpha = rgba[..., 3] if rgba.shape[-1] == 4 else 1.0
        gray = (rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) * alpha + (1.0 - alpha)  # on white
    cover = 1.0 - gray  # 1 inside the horse
    h, w = cover.shape

    def standardised(t: np.ndarray) -> np.ndarray:
        if t.shape[0] < h or t.shape[1] < w:
            raise ValueError(f"a texture of {t.shape} cannot fill {h}x{w}")
        t = t[:h, :w].astype(np.float32)
        return np.clip((t - t.mean()) / max(float(t.std()), 1e-6) * contrast + 0.5, 0.0, 1.0)

    image = cover * standardised(horse_texture) + (1.0 - cover) * standardised(background)
    return image.astype(np.float32), (cover > 0.5).astype(np.int64)


def mni152_labels(gm: np.ndarray | torch.Tensor, wm: np.ndarray | torch.Tensor, tissue: float = 0.5) -> torch.Tensor:
    """Three labels from the MNI152 grey- and white-matter probability maps: 0 (background and
    CSF) where the two tissue probabilities sum to less than ``tissue``, else 1 (grey matter) or
    2 (white matter), whichever is more probable."""
    gm, wm = torch.as_tensor(gm), torch.as_tensor(wm)
    labels = torch.where(wm > gm, 2, 1)
    return torch.where(gm + wm < tissue, 0, labels).long()


def tile_starts(extent: int, tile: int, stride: int, cover: bool = True) -> list[int]:
    """Starts of tiles of ``tile`` every ``stride`` along an axis of ``extent``; with ``cover`` a
    last one flush with the end (so every position is covered); [] when the tile does not fit."""
    if tile > extent:
        return []
    starts = list(range(0, extent - tile + 1, stride))
    if cover and starts[-1] != extent - tile:
        starts.append(extent - tile)
    return starts


def cut_tiles(image: torch.Tensor, mask: torch.Tensor, origin: Sequence[int], extent: Sequence[int], tile: int,
              stride: int, cover: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, ...]]]:
    """Tiles of ``tile`` per axis every ``stride`` inside the box ``origin`` + ``extent`` of a
    (C, *S) image and its (*S) mask (``cover``: see :func:`tile_starts`). Returns (N, C, *T),
    (N, *T) and each tile's corner."""
    import itertools

    axes = [[o + s for s in tile_starts(e, tile, stride, cover)] for o, e in zip(origin, extent)]
    corners = list(itertools.product(*axes))
    if not corners:
        raise ValueError(f"a tile of {tile} does not fit in a region of {tuple(extent)}; choose a smaller "
                         f"data.image_size")
    xs, ms = [], []
    for corner in corners:
        index = tuple(slice(c, c + tile) for c in corner)
        xs.append(image[(slice(None),) + index])
        ms.append(mask[index])
    return torch.stack(xs), torch.stack(ms), corners
