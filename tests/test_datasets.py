"""Data sets as splits: the documented digits split, the paper's preprocessing, other formats."""
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data import load_data, random_affine


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = load_data("digits"), load_data("digits")
    assert a.info == {"n_train": 1257, "n_val": 180, "n_test": 360}
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.train[1], b.train[1])
    # Stratified: every class has its share (about 36 of each digit in the test split).
    counts = torch.bincount(a.test[1], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    # Disjoint: no test image appears among the training images.
    train = {t.numpy().tobytes() for t in a.train[0]}
    assert sum(t.numpy().tobytes() in train for t in a.test[0]) <= 2  # the digits hold a few exact duplicates


def test_digits_preprocessing_follows_lecun_1998():
    d = load_data("digits")
    x = d.train[0]
    assert x.shape[1:] == (1, 32, 32)
    # Background -0.1, ink at most 1.175 (paper §III.A), digit inside the central 20x20 box.
    assert x.min().item() == pytest.approx(-0.1, abs=1e-6)
    assert x.max().item() == pytest.approx(1.175, abs=1e-6)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[6:26, 6:26] = False
    assert torch.allclose(x[:, 0][:, border], torch.tensor(-0.1))


def test_image_folder_data_set(tmp_path):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(10):
            arr = np.full((12 + i, 9, 3), 40 + 150 * c, np.uint8) + rng.integers(0, 20, (12 + i, 9, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    d = load_data(f"folder:{tmp_path}", image_size=16)
    assert d.classes == ["cat", "dog"] and d.channels == 3
    assert d.train[0].shape[1:] == (3, 16, 16)
    assert d.info["n_train"] + d.info["n_val"] + d.info["n_test"] == 20
    # Class 1 is brighter than class 0 after normalisation too.
    x, y = d.train
    assert x[y == 1].mean() > x[y == 0].mean()


def test_mnist_and_cifar_data_sets(tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for split, n in (("train", 20), ("t10k", 10)):
        imgs = np.arange(n * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(n, 28, 28)
        (mnist / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + imgs.tobytes())
        (mnist / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
    d = load_data(f"mnist:{mnist}", val_fraction=0.0)
    assert d.info == {"n_train": 20, "n_val": 0, "n_test": 10}
    assert d.train[0].shape[1:] == (1, 32, 32)  # 28x28 centred in 32x32, as the paper
    assert torch.allclose(d.train[0][:, :, :2], torch.tensor(-0.1))

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for name, n in [(f"data_batch_{i}.bin", 2) for i in range(1, 6)] + [("test_batch.bin", 3)]:
        records = b"".join(bytes([r % 10]) + bytes([r * 20] * 3072) for r in range(n))
        (cifar / name).write_bytes(records)
    c = load_data(f"cifar10:{cifar}", val_fraction=0.0)
    assert c.channels == 3 and c.info["n_train"] == 10 and c.info["n_test"] == 3 and c.classes[0] == "airplane"


def test_unknown_data_set_is_named():
    with pytest.raises(ValueError, match=r"unknown data set 'imagenet'; expected one of: digits"):
        load_data("imagenet")


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_random_affine_every_dim(spatial_dims):
    x = torch.rand(4, 2, *([12] * spatial_dims))
    assert torch.allclose(random_affine(x), x, atol=1e-6)  # no distortion: identity
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = random_affine(x, max_shift=2, scale=0.1, shear=0.2, rotate=10, generator=g1)
    b = random_affine(x, max_shift=2, scale=0.1, shear=0.2, rotate=10, generator=g2)
    assert a.shape == x.shape and torch.equal(a, b)  # deterministic under a seed
    assert not torch.allclose(a, x)


def test_random_affine_translation_moves_content():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    out = random_affine(x, max_shift=3, generator=torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    mass = out[:, 0].sum((1, 2))
    cx = (out[:, 0] * xs).sum((1, 2)) / mass
    assert ((cx - 8).abs() <= 3 + 1e-4).all() and (cx - 8).abs().max() > 1  # moved, within the bound
