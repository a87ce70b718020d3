"""Loaders for on-disk image datasets, written without torchvision.

Supported sources:

* Single images in any format and mode Pillow can decode (:func:`load_image`),
  and folders of them laid out one subfolder per class (:class:`ImageFolder`).
* MNIST-style IDX files, plain or gzipped (:func:`read_idx`, :func:`load_mnist`).
* The *binary* distributions of CIFAR-10 and CIFAR-100 (:func:`load_cifar`).

CIFAR is also distributed as a "python version" made of pickled dicts. This
module deliberately never reads it: unpickling executes arbitrary code from the
file, so a tampered download could run code on the training machine. The
binary version carries the same data as plain bytes.

Every malformed input raises :class:`DataFormatError` (a ``ValueError``) whose
message names the offending file, what was expected and what was found.
Missing files raise ``FileNotFoundError``.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..weights.io import file_kind, open_regular_file

__all__ = [
    "CIFAR10_CLASSES",
    "DEFAULT_MAX_PIXELS",
    "DataFormatError",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "load_cifar",
    "load_image",
    "load_mnist",
    "read_idx",
]

PathLike = Union[str, os.PathLike[str]]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


class DataFormatError(ValueError):
    """A data file exists but its contents are not what the reader expects."""


# Pillow's default Image.MAX_IMAGE_PIXELS, int(1024 * 1024 * 1024 // 4 // 3): the size at
# which Pillow itself starts to warn of a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485


# --------------------------------------------------------------------------
# Single images
# --------------------------------------------------------------------------

# Single-band modes. With ``mode=None`` these stay one channel so that a
# folder mixing e.g. 1-bit, 8-bit and 16-bit grayscale images collates.
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})

# ITU-R 601-2 luma weights, the same ones Pillow uses for RGB -> L.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def load_image(
    path: PathLike,
    mode: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    target_size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Decodes an image file into a float tensor.

    Any format and mode Pillow reads is accepted. Images with transparency
    (alpha channel, premultiplied alpha, or a palette with a transparent
    entry) are composited over black. 16-bit integer images are divided by
    65535 rather than clipped to 8 bits. For multi-frame files (animated GIF,
    multi-page TIFF) only the first frame is read.

    Nothing is decoded before two checks: the path must be a regular file (a
    FIFO would block the read forever, a device may act on being opened, a
    directory is a mistake), and the size the header declares must be within
    ``max_pixels`` (a 12 KB PNG can declare 10000 x 10000 pixels and cost
    gigabytes to decode).

    Args:
        path: Image file to read.
        mode: ``"L"`` for one channel, ``"RGB"`` for three, or ``None`` to keep
            grayscale images (1-bit, 8/16/32-bit integer, float, with or
            without alpha) as one channel and convert everything else to RGB.
        max_pixels: Largest width x height decoded; larger images are refused
            from their header alone. The default is Pillow's own decompression
            bomb limit; ``None`` or 0 removes the cap. This check replaces
            Pillow's (which only warns at its limit and raises at twice it): a
            cap above Pillow's lifts Pillow's check while the header is read.
        target_size: The size the caller will resize to, ``(height, width)``
            or one int for both. A JPEG at least twice as large on both axes is
            then decoded at 1/2, 1/4 or 1/8 scale (the largest that stays at or
            above ``target_size``; Pillow's ``draft``), which costs a fraction
            of a full decode. Other formats decode at full size.

    Returns:
        A float32 tensor of shape ``(C, H, W)`` with values in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: ``path`` is a directory, FIFO, socket or device; the
            image is larger than ``max_pixels``; or the file is not an image
            Pillow can decode, or it is truncated or corrupt.
        ValueError: ``mode``, ``max_pixels`` or ``target_size`` is invalid.
    """
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"mode must be None, 'L' or 'RGB', got {mode!r}")
    cap = _pixel_cap(max_pixels)
    draft_size = _draft_size(target_size)
    path = os.fspath(path)
    # Opening the file ourselves keeps OS errors (missing file, permissions)
    # apart from decode errors: Pillow reports both as OSError.
    fd = open_regular_file(path, "an image file", DataFormatError)
    with os.fdopen(fd, "rb") as fh:
        try:
            with _open_header(fh) as img:
                width, height = img.size
                if cap is not None and width * height > cap:
                    raise _TooLarge(
                        f"{path}: image of {width}x{height} = {width * height} pixels exceeds the cap of "
                        f"{cap} pixels (max_pixels); refused before decoding"
                    )
                if draft_size is not None and img.format == "JPEG":
                    img.draft(None, (draft_size[1], draft_size[0]))  # Pillow sizes are (width, height)
                # Image.open only parses the header; load() decodes the
                # pixels, which is where truncation and corruption surface.
                img.load()
                array = _to_unit_array(img)
        except _TooLarge:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                IndexError, TypeError, KeyError, MemoryError, Image.DecompressionBombError) as exc:
            if isinstance(exc, UnidentifiedImageError):
                # Pillow's own message would show the file object's repr.
                reason = "Pillow cannot identify the image format"
            else:
                reason = f"decoding failed: {type(exc).__name__}: {exc}"
            raise DataFormatError(
                f"{path}: expected an image file Pillow can decode, {reason}"
            ) from exc

    array = _match_channels(array, mode)
    # (H, W, C) -> (C, H, W); the copy makes the tensor own contiguous memory.
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class _TooLarge(DataFormatError):
    """Above the pixel cap: raised as is, not re-described as a decoding failure."""


# Pillow's decompression-bomb limit is a module global; it is lifted only while a header
# is read under our own cap, one reader at a time.
_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_header(fh) -> Image.Image:
    """``Image.open`` (header only). Our cap decides, not Pillow's global limit: its warning
    (above the limit) is silenced, and its error (above twice the limit, raised before the
    caller can see the size) makes us read the header again with Pillow's check lifted."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fh)
    except Image.DecompressionBombError:
        fh.seek(0)
        with _PILLOW_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(fh)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _pixel_cap(max_pixels: int | None) -> int | None:
    if max_pixels is None or max_pixels == 0:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise ValueError(f"max_pixels must be a positive int, or None or 0 for no cap, got {max_pixels!r}")
    return max_pixels


def _draft_size(target_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if target_size is None:
        return None
    size = (target_size, target_size) if isinstance(target_size, int) else tuple(target_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"target_size must be a positive int or (height, width), got {target_size!r}")
    return size


def _to_unit_array(img: Image.Image) -> np.ndarray:
    """Converts a decoded image to float32 ``(H, W, C)`` in ``[0, 1]``.

    ``C`` is 1 for grayscale sources and 3 for colour ones; alpha has already
    been composited over black.
    """
    mode = img.mode
    if mode in ("P", "PA", "RGBa"):
        # Palette transparency lives in img.info and is only honoured by a
        # conversion to RGBA; premultiplied RGBa is undone the same way.
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in _GRAYSCALE_MODES and mode not in ("RGB", "RGBA"):
        # CMYK, YCbCr, LAB, HSV, RGBX, ...: let Pillow map them to RGB.
        img = img.convert("RGB")

    raw = np.asarray(img)
    if raw.ndim == 2:
        raw = raw[:, :, None]

    if raw.dtype == np.uint8:
        array = raw.astype(np.float32) / 255.0
    elif raw.dtype.kind == "u" and raw.dtype.itemsize == 2:  # I;16 family
        array = raw.astype(np.float32) / 65535.0
    elif raw.dtype.kind == "i":  # mode "I"
        array = _scale_int32(raw)
    else:  # mode "F"
        array = _scale_float(raw.astype(np.float32))

    if array.shape[2] in (2, 4):
        # Compositing over black is a multiplication by alpha.
        array = array[:, :, :-1] * array[:, :, -1:]
    return array


def _scale_int32(raw: np.ndarray) -> np.ndarray:
    """Scales a mode ``"I"`` array to ``[0, 1]``.

    Pillow stores 16-bit PNG/TIFF/PGM data in mode ``"I"`` in some cases, so
    values that fit 16 bits are read as 16-bit. Anything else has no standard
    range and is min-max normalised.
    """
    if raw.size and raw.min() >= 0 and raw.max() <= 65535:
        return raw.astype(np.float32) / 65535.0
    return _min_max(raw.astype(np.float64)).astype(np.float32)


def _scale_float(raw: np.ndarray) -> np.ndarray:
    """Scales a mode ``"F"`` array to ``[0, 1]``.

    Float images carry no declared range. Those already in ``[0, 1]`` are
    kept; non-negative ones that fit 8 or 16 bits (e.g. ``L`` or ``I;16``
    data converted to ``F``) are divided by that range; the rest are min-max
    normalised. NaNs become 0.
    """
    raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
    if raw.size == 0 or raw.min() < 0:
        return _min_max(raw)
    peak = raw.max()
    for full_scale in (1.0, 255.0, 65535.0):
        if peak <= full_scale:
            return raw / np.float32(full_scale)
    return _min_max(raw)


def _min_max(raw: np.ndarray) -> np.ndarray:
    low, high = (raw.min(), raw.max()) if raw.size else (0, 0)
    if high == low:
        # A constant image has no contrast to stretch; map it to black.
        return np.zeros_like(raw, dtype=np.float32)
    return ((raw - low) / (high - low)).astype(np.float32)


def _match_channels(array: np.ndarray, mode: str | None) -> np.ndarray:
    channels = array.shape[2]
    if mode == "L" and channels == 3:
        return np.tensordot(array, _LUMA_WEIGHTS, axes=([2], [0]))[:, :, None].astype(np.float32)
    if mode == "RGB" and channels == 1:
        return np.repeat(array, 3, axis=2)
    return array


# --------------------------------------------------------------------------
# Folder-per-class datasets
# --------------------------------------------------------------------------


class ImageFolder(Dataset):
    """Images stored one subfolder per class, like ``root/cat/001.png``.

    Class names are the sorted names of the non-hidden subfolders of ``root``
    and map to indices ``0..len(classes)-1``. Each class folder is searched
    recursively; hidden files and folders (names starting with ``.``) and
    files whose extension is not in ``extensions`` (case-insensitive) are
    ignored. Entries with an image extension that are not regular files
    (FIFOs, sockets, devices, broken links) are skipped without being opened
    and listed in ``skipped``. Samples are sorted by path so the order is the
    same on every machine. Construction only lists files; nothing is decoded
    until an item is read.

    Attributes:
        root: The dataset root folder.
        classes: Sorted class names.
        class_to_idx: Class name -> label index.
        samples: ``(path, label)`` pairs.
        targets: Label of each sample, in ``samples`` order.
        skipped: ``(path, what it is)`` of every special file passed over,
            e.g. ``("root/cat/x.png", "FIFO")``.
        max_pixels: The pixel cap items are read with (see :func:`load_image`).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is not a folder.
        DataFormatError: ``root`` has no class subfolders, or a class
            subfolder holds no image files.
    """

    def __init__(
        self,
        root: PathLike,
        mode: str | None = None,
        transform: Callable[[torch.Tensor], object] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if mode not in (None, "L", "RGB"):
            raise ValueError(f"mode must be None, 'L' or 'RGB', got {mode!r}")
        self.root = Path(root)
        self.mode = mode
        self.transform = transform
        self.max_pixels = _pixel_cap(max_pixels)
        self.skipped: list[tuple[str, str]] = []
        # Accept "png" as well as ".png" and compare case-insensitively,
        # since cameras and Windows tools commonly write ".JPG".
        self.extensions = tuple(
            (ext if ext.startswith(".") else "." + ext).lower() for ext in extensions
        )

        if not self.root.exists():
            raise FileNotFoundError(f"{self.root}: dataset root folder does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root}: dataset root is not a folder")

        self.classes: list[str] = sorted(
            entry.name for entry in os.scandir(self.root)
            if entry.is_dir() and not entry.name.startswith(".")
        )
        if not self.classes:
            raise DataFormatError(
                f"{self.root}: expected one subfolder per class holding images with "
                f"extensions {self.extensions}, found no subfolders"
            )
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}

        self.samples: list[tuple[str, int]] = []
        empty_classes = []
        for name in self.classes:
            files = self._find_images(self.root / name)
            if not files:
                empty_classes.append(name)
            self.samples.extend((path, self.class_to_idx[name]) for path in files)

        if not self.samples:
            raise DataFormatError(
                f"{self.root}: expected image files with extensions {self.extensions} "
                f"in the class subfolders {self.classes}, found none"
            )
        if empty_classes:
            # An empty class is usually a stray folder or a failed copy; training
            # on it would silently reserve a label that never occurs.
            raise DataFormatError(
                f"{self.root}: expected image files with extensions {self.extensions} "
                f"in every class subfolder, found none in {empty_classes}"
            )
        self.targets: list[int] = [label for _, label in self.samples]

    def _find_images(self, folder: Path) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):
            # Pruning in place stops os.walk descending into hidden folders.
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith(".") or os.path.splitext(filename)[1].lower() not in self.extensions:
                    continue
                path = os.path.join(dirpath, filename)
                # os.walk lists every non-folder: a FIFO would block the reader
                # forever, so its kind is checked (one stat, nothing opened).
                try:
                    mode = os.stat(path).st_mode
                except OSError:
                    self.skipped.append((path, "broken link"))
                    continue
                if stat.S_ISREG(mode):
                    found.append(path)
                else:
                    self.skipped.append((path, file_kind(mode)))
        # os.walk order depends on the file system; sorting makes it portable.
        return sorted(found)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        path, label = self.samples[index]
        image = load_image(path, self.mode, self.max_pixels)
        if self.transform is not None:
            return self.transform(image), label
        return image, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, "
            f"classes={len(self.classes)}, samples={len(self.samples)})"
        )


# --------------------------------------------------------------------------
# IDX / MNIST
# --------------------------------------------------------------------------

# IDX type code -> big-endian numpy dtype of the stored data.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MNIST_IMAGES_MAGIC = 0x00000803  # uint8, 3 dims
_MNIST_LABELS_MAGIC = 0x00000801  # uint8, 1 dim


def read_idx(path: PathLike) -> torch.Tensor:
    """Reads an IDX file (the format MNIST is distributed in).

    The header is two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8,
    ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the
    number of dimensions, then one big-endian int32 per dimension. Big-endian
    data follows. Paths ending in ``.gz`` are decompressed transparently.

    Args:
        path: The IDX file.

    Returns:
        A tensor with the stored shape and the matching torch dtype, in
        native byte order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: Bad magic number, truncated header, a data length
            that differs from the header's, or a corrupt gzip stream.
    """
    array, _ = _read_idx_array(Path(path))
    return torch.from_numpy(array)


def _read_idx_array(path: Path) -> tuple[np.ndarray, int]:
    """Returns the decoded array and the file's magic number."""
    data = _read_maybe_gzipped(path)
    where = f"{path} (after decompression)" if path.name.endswith(".gz") else str(path)

    if len(data) < 4:
        raise DataFormatError(
            f"{where}: expected an IDX header of at least 4 bytes, found {len(data)} bytes"
        )
    (magic,) = struct.unpack(">I", data[:4])
    type_code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or type_code not in _IDX_DTYPES:
        codes = "/".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DataFormatError(
            f"{where}: not an IDX file: magic number 0x{magic:08X}, expected two zero "
            f"bytes, a type code in {codes} and a dimension count"
        )

    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFormatError(
            f"{where}: truncated IDX header: {ndim} dimensions need {header_size} bytes, "
            f"found {len(data)} bytes"
        )
    shape = struct.unpack(f">{ndim}i", data[4:header_size])
    if any(size < 0 for size in shape):
        raise DataFormatError(f"{where}: corrupt IDX header: negative dimension in {shape}")

    dtype = _IDX_DTYPES[type_code]
    count = int(np.prod(shape, dtype=np.int64))
    expected = header_size + count * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(
            f"{where}: IDX header declares shape {tuple(shape)} of {dtype.name}, "
            f"expected {expected} bytes, found {len(data)} bytes"
        )

    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    # astype to native order also copies out of the read-only bytes buffer,
    # which torch.from_numpy would otherwise warn about.
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape), magic


def _read_maybe_gzipped(path: Path) -> bytes:
    if not path.name.endswith(".gz"):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataFormatError(
            f"{path}: expected a gzip-compressed file, decompression failed: {exc}"
        ) from exc


def load_mnist(root: PathLike, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Loads MNIST (or a drop-in like Fashion-MNIST) from its IDX files.

    Looks in ``root`` for ``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte`` (``t10k-...`` for the test split), optionally
    ending in ``.gz``, also under the dotted names ``train-images.idx3-ubyte``
    and ``train-labels.idx1-ubyte`` some mirrors use. Uncompressed files are
    preferred when both exist.

    Args:
        root: Folder holding the IDX files.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images, labels)``: uint8 images of shape ``(N, 1, rows, cols)``
        (rows and cols as in the file, 28x28 for MNIST) and int64 labels of
        shape ``(N,)``.

    Raises:
        FileNotFoundError: No candidate file for images or labels exists.
        DataFormatError: A file is not a uint8 IDX file of the right rank, the
            image and label counts differ, or a label is outside 0..9.
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    prefix = prefixes[split]

    images_path = _find_first(root, _mnist_names(prefix, "images", 3))
    labels_path = _find_first(root, _mnist_names(prefix, "labels", 1))

    images, images_magic = _read_idx_array(images_path)
    if images_magic != _MNIST_IMAGES_MAGIC:
        raise DataFormatError(
            f"{images_path}: not an MNIST idx file: magic number 0x{images_magic:08X}, "
            f"expected 0x{_MNIST_IMAGES_MAGIC:08X} (images: uint8, 3 dimensions)"
        )
    labels, labels_magic = _read_idx_array(labels_path)
    if labels_magic != _MNIST_LABELS_MAGIC:
        raise DataFormatError(
            f"{labels_path}: not an MNIST idx file: magic number 0x{labels_magic:08X}, "
            f"expected 0x{_MNIST_LABELS_MAGIC:08X} (labels: uint8, 1 dimension)"
        )

    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; expected the same count"
        )
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataFormatError(
            f"{labels_path}: expected labels in 0..9, found {bad.size} outside it, "
            f"first at index {bad[0]}: {labels[bad[0]]}"
        )

    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _mnist_names(prefix: str, kind: str, ndim: int) -> list[str]:
    stems = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return stems + [stem + ".gz" for stem in stems]


def _find_first(root: Path, names: Sequence[str]) -> Path:
    candidates = [root / name for name in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "none of these files exist: " + ", ".join(str(c) for c in candidates)
    )


# --------------------------------------------------------------------------
# CIFAR (binary version only, see the module docstring)
# --------------------------------------------------------------------------

_CIFAR_PIXELS = 3 * 32 * 32


def load_cifar(
    root: PathLike,
    split: str = "train",
    variant: str = "cifar10",
    label: str = "fine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loads the binary version of CIFAR-10 or CIFAR-100.

    CIFAR-10 reads ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train) or
    ``test_batch.bin`` (test); each record is 1 label byte then 3072 pixel
    bytes (the 32x32 red plane, then green, then blue, each row-major).
    CIFAR-100 reads ``train.bin`` or ``test.bin``; each record is 1 coarse
    label byte, 1 fine label byte, then the same 3072 pixel bytes. Files are
    looked for in ``root`` and then in the folder the official archive
    extracts to (``cifar-10-batches-bin`` / ``cifar-100-binary``).

    Args:
        root: Folder holding the ``.bin`` files or the extracted archive folder.
        split: ``"train"`` or ``"test"``.
        variant: ``"cifar10"`` or ``"cifar100"``.
        label: For CIFAR-100, ``"fine"`` (100 classes) or ``"coarse"`` (20
            superclasses). CIFAR-10 has only one label, accepted as ``"fine"``.

    Returns:
        ``(images, labels)``: uint8 images of shape ``(N, 3, 32, 32)`` and
        int64 labels of shape ``(N,)``, in file order.

    Raises:
        FileNotFoundError: A required file is missing; the message lists every
            path looked at.
        DataFormatError: A file's size is not a multiple of the record size, a
            file is empty, or a label byte is out of range.
        ValueError: An argument is not one of the values listed above.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if variant == "cifar10":
        if label != "fine":
            raise ValueError(f"CIFAR-10 has one label kind, label must be 'fine', got {label!r}")
        subfolder = "cifar-10-batches-bin"
        if split == "train":
            names = [f"data_batch_{i}.bin" for i in range(1, 6)]
        else:
            names = ["test_batch.bin"]
        # (column in the record, number of classes) for each label byte.
        label_bytes = [(0, 10)]
        label_column = 0
    elif variant == "cifar100":
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
        subfolder = "cifar-100-binary"
        names = [f"{split}.bin"]
        label_bytes = [(0, 20), (1, 100)]
        label_column = 1 if label == "fine" else 0
    else:
        raise ValueError(f"variant must be 'cifar10' or 'cifar100', got {variant!r}")

    root = Path(root)
    paths = _find_cifar_files(root, subfolder, names)
    record_size = len(label_bytes) + _CIFAR_PIXELS

    all_images, all_labels = [], []
    for path in paths:
        records = _read_records(path, record_size)
        for column, num_classes in label_bytes:
            bad = np.flatnonzero(records[:, column] >= num_classes)
            if bad.size:
                raise DataFormatError(
                    f"{path}: expected label byte {column} of each record in "
                    f"0..{num_classes - 1}, found {records[bad[0], column]} in record "
                    f"{bad[0]} ({bad.size} records out of range)"
                )
        all_labels.append(records[:, label_column].astype(np.int64))
        # The pixel bytes are already plane-major (R, G, B), row-major within
        # a plane, so a reshape gives (N, 3, 32, 32) without any transpose.
        all_images.append(records[:, len(label_bytes):].reshape(-1, 3, 32, 32))

    images = np.concatenate(all_images)
    labels = np.concatenate(all_labels)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _find_cifar_files(root: Path, subfolder: str, names: Sequence[str]) -> list[Path]:
    folders = [root, root / subfolder]
    found, missing = [], []
    for name in names:
        candidates = [folder / name for folder in folders]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            missing.extend(candidates)
        else:
            found.append(match)
    if missing:
        raise FileNotFoundError(
            "missing CIFAR binary files; looked for: " + ", ".join(str(m) for m in missing)
        )
    return found


def _read_records(path: Path, record_size: int) -> np.ndarray:
    size = path.stat().st_size
    if size == 0 or size % record_size:
        raise DataFormatError(
            f"{path}: expected a non-empty whole number of {record_size}-byte records, "
            f"found a file of {size} bytes"
        )
    return np.fromfile(path, dtype=np.uint8).reshape(-1, record_size)
