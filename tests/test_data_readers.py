"""Tests for convnet.data.readers.

Every fixture file is written here with numpy / Pillow / struct / gzip, never
with the package itself, so a bug in a reader cannot hide behind the same bug
in a writer.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data.readers import (
    CIFAR10_CLASSES,
    DataFormatError,
    ImageFolder,
    load_cifar,
    load_image,
    load_mnist,
    read_idx,
)

# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------


def gradient(height: int, width: int, channels: int) -> np.ndarray:
    """Deterministic uint8 (H, W, C) image where every pixel is distinct enough."""
    rows, cols, chans = np.meshgrid(
        np.arange(height), np.arange(width), np.arange(channels), indexing="ij"
    )
    return ((rows * 37 + cols * 11 + chans * 71) % 256).astype(np.uint8)


def save(array: np.ndarray, path: Path, mode: str | None = None, **kwargs) -> Path:
    Image.fromarray(array, mode=mode).save(path, **kwargs)
    return path


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    """Writes ``array`` as IDX: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(dtype[type_code]).tobytes()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def cifar_pixels(count: int, first: int = 0) -> np.ndarray:
    """(count, 3, 32, 32) uint8: R = 10 + record number, G = row, B = column.

    The distinct planes pin down the plane order, the row-major layout and the
    record boundaries.
    """
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    images = np.empty((count, 3, 32, 32), dtype=np.uint8)
    images[:, 0] = (10 + first + np.arange(count))[:, None, None]
    images[:, 1] = rows
    images[:, 2] = cols
    return images


def write_cifar(path: Path, labels: np.ndarray, images: np.ndarray) -> Path:
    """``labels`` is (N, 1) for CIFAR-10 or (N, 2) [coarse, fine] for CIFAR-100."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = np.concatenate([labels.astype(np.uint8), images.reshape(len(images), -1)], axis=1)
    path.write_bytes(records.tobytes())
    return path


# --------------------------------------------------------------------------
# load_image
# --------------------------------------------------------------------------


def test_grayscale_png_odd_size_exact(tmp_path):
    pixels = gradient(7, 5, 1)[:, :, 0]
    image = load_image(save(pixels, tmp_path / "g.png"))
    assert image.dtype == torch.float32
    assert image.shape == (1, 7, 5)
    torch.testing.assert_close(image[0], torch.from_numpy(pixels).float() / 255)


def test_rgb_png_and_bmp_exact(tmp_path):
    pixels = gradient(9, 3, 3)
    for name in ("c.png", "c.bmp"):
        image = load_image(save(pixels, tmp_path / name))
        assert image.shape == (3, 9, 3)
        torch.testing.assert_close(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)


def test_mode_conversions(tmp_path):
    rgb = gradient(3, 5, 3)
    gray = load_image(save(rgb, tmp_path / "c.png"), mode="L")
    luma = (rgb.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])
    assert gray.shape == (1, 3, 5)
    torch.testing.assert_close(gray[0], torch.from_numpy(luma).float())

    single = gradient(3, 5, 1)[:, :, 0]
    expanded = load_image(save(single, tmp_path / "g.png"), mode="RGB")
    assert expanded.shape == (3, 3, 5)
    for channel in expanded:
        torch.testing.assert_close(channel, torch.from_numpy(single).float() / 255)

    with pytest.raises(ValueError, match="mode"):
        load_image(tmp_path / "g.png", mode="RGBA")


def test_jpeg_is_close(tmp_path):
    flat = np.full((11, 13, 3), (200, 100, 50), dtype=np.uint8)
    image = load_image(save(flat, tmp_path / "c.jpg", quality=95))
    assert image.shape == (3, 11, 13)
    expected = torch.tensor([200, 100, 50]).float().view(3, 1, 1) / 255
    assert (image - expected).abs().max() < 0.03


def test_rgba_composited_over_black(tmp_path):
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[..., :3] = (255, 128, 0)
    pixels[..., 3] = [[255, 128, 0], [0, 64, 255]]
    image = load_image(save(pixels, tmp_path / "a.png"))
    assert image.shape == (3, 2, 3)
    alpha = torch.from_numpy(pixels[..., 3]).float() / 255
    torch.testing.assert_close(image[0], alpha)
    torch.testing.assert_close(image[1], alpha * 128 / 255)
    torch.testing.assert_close(image[2], torch.zeros(2, 3))


def test_gif_palette_with_transparency(tmp_path):
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 12)
    indices = np.array([[0, 1, 2], [3, 1, 0]], dtype=np.uint8)
    gif = Image.fromarray(indices, mode="P")
    gif.putpalette(palette)
    gif.save(tmp_path / "p.gif", transparency=1)  # index 1 (red) is transparent

    image = load_image(tmp_path / "p.gif")
    assert image.shape == (3, 2, 3)
    expected = torch.tensor(
        [[[0, 0, 0], [0, 0, 0], [0, 255, 0]], [[10, 20, 30], [0, 0, 0], [0, 0, 0]]]
    ).float().permute(2, 0, 1) / 255
    torch.testing.assert_close(image, expected)


def test_16bit_png_scaled_not_clipped(tmp_path):
    pixels = np.array([[0, 255, 32768, 65535]], dtype=np.uint16)
    path = save(pixels, tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode == "I;16"
    image = load_image(path)
    assert image.shape == (1, 1, 4)
    torch.testing.assert_close(image[0, 0], torch.tensor([0, 255, 32768, 65535]) / 65535.0)
    assert image[0, 0, 3] == 1.0
    assert abs(image[0, 0, 2].item() - 0.5) < 1e-4


def test_bilevel_float_and_cmyk_images(tmp_path):
    bits = np.array([[True, False, True]])
    image = load_image(save(bits, tmp_path / "b.png"))
    torch.testing.assert_close(image, torch.tensor([[[1.0, 0.0, 1.0]]]))

    floats = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    image = load_image(save(floats, tmp_path / "f.tif", mode="F"))
    torch.testing.assert_close(image, torch.tensor([[[0.0, 0.25, 1.0]]]))

    # CMYK (0,0,0,0) is white and (255,0,0,0) is cyan.
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0]]], dtype=np.uint8)
    image = load_image(save(cmyk, tmp_path / "k.tif", mode="CMYK"))
    torch.testing.assert_close(image[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(image[:, 0, 1], torch.tensor([0.0, 1.0, 1.0]))


def test_load_image_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(missing)

    text = tmp_path / "x.png"
    text.write_text("not an image at all")
    with pytest.raises(DataFormatError) as info:
        load_image(text)
    assert str(text) in str(info.value)

    # Incompressible noise makes the pixel data most of the file, so cutting
    # it in half truncates the image data rather than the header.
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = save(noise, tmp_path / "full.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataFormatError) as info:
        load_image(cut)
    assert str(cut) in str(info.value)


# --------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------


def test_image_folder(tmp_path):
    root = tmp_path / "data"
    for folder in ("cat/nested", "dog", "fish", ".cache"):
        (root / folder).mkdir(parents=True)
    levels = {"cat/b.png": 10, "cat/nested/a.png": 20, "dog/c.png": 30, "fish/d.BMP": 40}
    for name, level in levels.items():
        save(np.full((3, 2), level, dtype=np.uint8), root / name)
    # Everything below must be ignored.
    save(np.zeros((3, 2), dtype=np.uint8), root / "dog" / ".hidden.png")
    save(np.zeros((3, 2), dtype=np.uint8), root / ".cache" / "e.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "README.txt").write_text("not a class")

    dataset = ImageFolder(root, transform=lambda t: t * 2)
    assert dataset.classes == ["cat", "dog", "fish"]
    assert dataset.class_to_idx == {"cat": 0, "dog": 1, "fish": 2}
    assert len(dataset) == 4
    assert dataset.targets == [0, 0, 1, 2]
    assert [Path(p).relative_to(root).as_posix() for p, _ in dataset.samples] == [
        "cat/b.png", "cat/nested/a.png", "dog/c.png", "fish/d.BMP",
    ]

    image, label = dataset[1]
    assert label == 0 and isinstance(label, int)
    assert image.shape == (1, 3, 2)
    torch.testing.assert_close(image, torch.full((1, 3, 2), 2 * 20 / 255))

    rgb = ImageFolder(root, mode="RGB")
    image, label = rgb[3]
    assert label == 2 and image.shape == (3, 3, 2)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolder(tmp_path / "missing")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError) as info:
        ImageFolder(empty)
    assert str(empty) in str(info.value) and ".png" in str(info.value)

    no_images = tmp_path / "no_images"
    (no_images / "cat").mkdir(parents=True)
    (no_images / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataFormatError) as info:
        ImageFolder(no_images)
    assert str(no_images) in str(info.value) and ".jpg" in str(info.value)


# --------------------------------------------------------------------------
# IDX / MNIST
# --------------------------------------------------------------------------

MNIST_IMAGES = gradient(5, 4, 3).transpose(2, 0, 1).copy()  # 3 images of 5x4 (rows != cols)
MNIST_LABELS = np.array([7, 0, 9], dtype=np.uint8)


@pytest.mark.parametrize(
    "images_name, labels_name",
    [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("train-images.idx3-ubyte", "train-labels.idx1-ubyte"),
    ],
)
def test_mnist_round_trip(tmp_path, images_name, labels_name):
    write_idx(tmp_path / images_name, MNIST_IMAGES)
    write_idx(tmp_path / labels_name, MNIST_LABELS)
    images, labels = load_mnist(tmp_path, "train")
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 5, 4)
    assert labels.dtype == torch.int64
    assert torch.equal(images[:, 0], torch.from_numpy(MNIST_IMAGES))
    assert labels.tolist() == [7, 0, 9]


def test_mnist_test_split_and_missing_files(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", MNIST_IMAGES[:1])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", MNIST_LABELS[:1])
    images, labels = load_mnist(tmp_path, split="test")
    assert images.shape == (1, 1, 5, 4) and labels.tolist() == [7]

    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, split="train")


def test_read_idx_other_dtypes_big_endian(tmp_path):
    shorts = np.array([[-2, 300], [1, -32768]], dtype=np.int16)
    result = read_idx(write_idx(tmp_path / "s.idx", shorts, 0x0B))
    assert result.dtype == torch.int16 and result.tolist() == shorts.tolist()

    floats = np.array([0.5, -1.25, 3e7], dtype=np.float32)
    result = read_idx(write_idx(tmp_path / "f.idx.gz", floats, 0x0D))
    assert result.dtype == torch.float32 and result.tolist() == floats.tolist()


def test_idx_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x00\x00\x00\x00" + bytes(16))
    with pytest.raises(DataFormatError, match="0x00000000") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)

    full = write_idx(tmp_path / "full", MNIST_IMAGES).read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(full[:-1])
    with pytest.raises(DataFormatError) as info:
        read_idx(cut)
    message = str(info.value)
    assert str(cut) in message and str(len(full)) in message and str(len(full) - 1) in message

    # A valid IDX file of the wrong kind: labels where images belong.
    write_idx(tmp_path / "train-images-idx3-ubyte", MNIST_LABELS)
    write_idx(tmp_path / "train-labels-idx1-ubyte", MNIST_LABELS)
    with pytest.raises(DataFormatError, match="0x00000801.*0x00000803"):
        load_mnist(tmp_path)


def test_mnist_count_mismatch_and_label_range(tmp_path):
    images_path = write_idx(tmp_path / "train-images-idx3-ubyte", MNIST_IMAGES)
    labels_path = write_idx(tmp_path / "train-labels-idx1-ubyte", MNIST_LABELS[:2])
    with pytest.raises(DataFormatError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert str(images_path) in message and str(labels_path) in message
    assert "3 images" in message and "2 labels" in message

    write_idx(labels_path, np.array([1, 10, 2], dtype=np.uint8))
    with pytest.raises(DataFormatError, match="index 1"):
        load_mnist(tmp_path)


# --------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------


@pytest.mark.parametrize("subfolder", ["", "cifar-10-batches-bin"])
def test_cifar10_layout(tmp_path, subfolder):
    folder = tmp_path / subfolder
    for batch in range(5):
        labels = np.array([[batch], [9 - batch]])
        pixels = cifar_pixels(2, first=2 * batch)
        write_cifar(folder / f"data_batch_{batch + 1}.bin", labels, pixels)
    write_cifar(folder / "test_batch.bin", np.array([[3], [4], [5]]), cifar_pixels(3, first=50))

    images, labels = load_cifar(tmp_path)
    assert images.dtype == torch.uint8 and images.shape == (10, 3, 32, 32)
    assert labels.dtype == torch.int64
    assert labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    assert images[:, 0, 5, 7].tolist() == list(range(10, 20))  # red: record number
    assert torch.equal(images[:, 1], torch.arange(32).view(1, 32, 1).expand(10, 32, 32).byte())
    assert torch.equal(images[:, 2], torch.arange(32).view(1, 1, 32).expand(10, 32, 32).byte())

    images, labels = load_cifar(tmp_path, split="test")
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [3, 4, 5]
    assert images[:, 0, 0, 0].tolist() == [60, 61, 62]
    assert images[2, 1, 31, 0] == 31 and images[2, 2, 0, 31] == 31


def test_cifar100_fine_and_coarse(tmp_path):
    labels = np.array([[19, 99], [0, 42], [7, 0]])
    write_cifar(tmp_path / "cifar-100-binary" / "train.bin", labels, cifar_pixels(3))

    images, fine = load_cifar(tmp_path, variant="cifar100")
    _, coarse = load_cifar(tmp_path, variant="cifar100", label="coarse")
    assert fine.tolist() == [99, 42, 0]
    assert coarse.tolist() == [19, 0, 7]
    assert images.shape == (3, 3, 32, 32)
    assert images[:, 0, 0, 0].tolist() == [10, 11, 12]
    assert images[1, 1, 20, 3] == 20 and images[1, 2, 20, 3] == 3


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_batch.bin"):
        load_cifar(tmp_path, split="test")

    bad_size = tmp_path / "test_batch.bin"
    bad_size.write_bytes(bytes(2 * 3073 + 5))
    with pytest.raises(DataFormatError) as info:
        load_cifar(tmp_path, split="test")
    message = str(info.value)
    assert str(bad_size) in message and "3073" in message and str(2 * 3073 + 5) in message

    bad_label = write_cifar(bad_size, np.array([[1], [10], [2]]), cifar_pixels(3))
    with pytest.raises(DataFormatError, match="record 1") as info:
        load_cifar(tmp_path, split="test")
    assert str(bad_label) in str(info.value)

    write_cifar(tmp_path / "test.bin", np.array([[3, 5], [4, 100]]), cifar_pixels(2))
    with pytest.raises(DataFormatError, match="record 1"):
        load_cifar(tmp_path, split="test", variant="cifar100")

    for batch in (1, 2, 4, 5):  # data_batch_3.bin is missing
        write_cifar(tmp_path / f"data_batch_{batch}.bin", np.array([[0]]), cifar_pixels(1))
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        load_cifar(tmp_path)


def test_cifar10_class_names():
    assert len(CIFAR10_CLASSES) == 10
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[9] == "truck"
