"""Hostile and odd files given to the image readers: decompression bombs are refused from their
header, large JPEGs decode at reduced size, and special files are never opened."""
from __future__ import annotations

import os
import socket
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from convnet.data import DataFormatError, ImageFolder, load_image
from convnet.data.readers import DEFAULT_MAX_PIXELS
from guards import run_with_timeout


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_palette_png(path, width: int, height: int) -> None:
    """A valid 8-bit paletted PNG of width x height black pixels, compressed row by row (a
    10000 x 10000 one is about 100 KB and never exists uncompressed here)."""
    comp = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then palette index 0
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", bytes(3))
                     + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    write_palette_png(path, 10_000, 10_000)
    assert path.stat().st_size < 200_000
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any pixel decoding fail the test, and count the attempts."""
    calls = []

    def refuse(self, *a, **k):
        calls.append(self.size)
        raise AssertionError(f"pixels decoded for an image of {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)
    return calls


# --- the pixel cap --------------------------------------------------------------------------

def test_a_decompression_bomb_is_refused_from_its_header(bomb, no_decoding):
    with pytest.raises(DataFormatError, match=r"bomb\.png: image of 10000x10000 = 100000000 pixels exceeds "
                                              r"the cap of 89478485 pixels \(max_pixels\); refused before decoding"):
        load_image(bomb, "RGB")
    assert no_decoding == []
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_the_cap_is_configurable(tmp_path, no_decoding, bomb):
    path = tmp_path / "small.png"
    write_palette_png(path, 100, 60)  # not by Pillow: its save() would decode, and decoding fails here
    with pytest.raises(DataFormatError, match=r"100x60 = 6000 pixels exceeds the cap of 5999"):
        load_image(path, max_pixels=5999)
    assert no_decoding == []
    # At the cap, or with the cap removed, the image is decoded (here: the stub is reached).
    for cap in (6000, None, 0):
        with pytest.raises(AssertionError, match="pixels decoded"):
            load_image(path, max_pixels=cap)
    with pytest.raises(AssertionError, match=r"pixels decoded for an image of \(10000, 10000\)"):
        load_image(bomb, max_pixels=None)
    with pytest.raises(ValueError, match="max_pixels must be a positive int"):
        load_image(path, max_pixels=-1)


def test_above_pillows_own_error_limit_our_cap_still_decides(tmp_path, no_decoding):
    """Pillow raises by itself at twice its limit, before the size can be read: our message
    still names the size and the cap, and a higher cap given on purpose is honoured."""
    path = tmp_path / "huge.png"
    write_palette_png(path, 20_000, 10_000)  # 2e8 pixels > 2 x 89478485
    with pytest.raises(DataFormatError, match=r"20000x10000 = 200000000 pixels exceeds the cap of 89478485"):
        load_image(path)
    with pytest.raises(AssertionError, match=r"pixels decoded for an image of \(20000, 10000\)"):
        load_image(path, max_pixels=300_000_000)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # Pillow's global limit is restored


def test_image_folder_reads_with_the_cap(tmp_path, bomb, no_decoding):
    (tmp_path / "a").mkdir()
    os.symlink(bomb, tmp_path / "a" / "bomb.png")
    folder = ImageFolder(tmp_path)  # listing only: nothing decoded
    assert no_decoding == [] and len(folder) == 1
    with pytest.raises(DataFormatError, match="exceeds the cap"):
        folder[0]


# --- JPEG draft mode ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("jpeg") / "big.jpg"
    Image.effect_noise((2000, 1600), 40).convert("RGB").save(path, quality=80)
    return path


@pytest.mark.parametrize("target,low", [(200, (200, 200)), ((200, 300), (200, 300)), ((700, 900), (700, 900))])
def test_a_large_jpeg_decodes_at_reduced_size(big_jpeg, target, low):
    image = load_image(big_jpeg, "RGB", target_size=target)
    _, h, w = image.shape
    assert h >= low[0] and w >= low[1], (h, w)
    assert h <= 1600 // 2 and w <= 2000 // 2, (h, w)  # at least halved


def test_draft_only_for_jpeg_and_only_when_asked(big_jpeg, tmp_path):
    assert load_image(big_jpeg, "RGB").shape == (3, 1600, 2000)
    assert load_image(big_jpeg, "RGB", target_size=1000).shape == (3, 1600, 2000)  # not twice as large
    png = tmp_path / "big.png"
    Image.new("L", (800, 800)).save(png)
    assert load_image(png, target_size=100).shape == (1, 800, 800)
    with pytest.raises(ValueError, match="target_size must be a positive int or"):
        load_image(png, target_size=(0, 5))


# --- special files --------------------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataFormatError, match=r"pipe\.png: is a FIFO, expected an image file \(a regular file\); "
                                              r"not read"):
        run_with_timeout(lambda: load_image(fifo))


def test_a_device_and_a_directory_are_refused(tmp_path):
    with pytest.raises(DataFormatError, match=r"/dev/null: is a character device"):
        run_with_timeout(lambda: load_image("/dev/null"))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(DataFormatError, match=r"d\.png: is a directory, expected an image file") as info:
        load_image(tmp_path / "d.png")
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "absent.png")


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s.png"
    if len(str(path)) > 100:  # AF_UNIX paths are limited to ~108 bytes
        pytest.skip(f"temporary path too long for a socket: {path}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(DataFormatError, match=r"s\.png: is a socket"):
            run_with_timeout(lambda: load_image(path))


def test_image_folder_skips_special_files_and_hidden_ones(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (4, 4), 200).save(tmp_path / cls / "ok.png")
    os.mkfifo(tmp_path / "a" / "fifo.png")
    os.symlink("/dev/null", tmp_path / "b" / "null.png")
    os.symlink(tmp_path / "absent.png", tmp_path / "b" / "broken.png")
    Image.new("L", (4, 4)).save(tmp_path / "a" / ".hidden.png")

    folder = run_with_timeout(lambda: ImageFolder(tmp_path))
    assert [os.path.basename(p) for p, _ in folder.samples] == ["ok.png", "ok.png"]
    assert sorted((os.path.basename(p), kind) for p, kind in folder.skipped) == [
        ("broken.png", "broken link"), ("fifo.png", "FIFO"), ("null.png", "character device")]
    images = run_with_timeout(lambda: [folder[i][0] for i in range(len(folder))])
    assert all(img.shape == (1, 4, 4) for img in images)
