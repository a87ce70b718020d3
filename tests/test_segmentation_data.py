"""Segmentation data: mask and volume readers on files the tests write (palette, gray and VOC-colour
PNGs, NIfTI, .npy, broken files), the folder sources (in memory and streamed), and the bundled
real sets (horse, coins, MNI152) with their spatial splits."""
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data import DataFormatError, load_data
from convnet.data.datasets import DataOptions
from convnet.data.samples import TensorSamples, as_samples
from convnet.data.segmentation_data import (SegmentationFileSamples, coin_mask, horse_scene, mni152_labels,
                                           normalise_volume, otsu_threshold, read_mask, read_volume, tile_starts,
                                           voc_palette, write_nifti)

HAS_NIBABEL = importlib.util.find_spec("nibabel") is not None
needs_nibabel = pytest.mark.skipif(not HAS_NIBABEL, reason="nibabel (optional extra 'medical') is not installed")


def palette_png(path, labels):
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    img.save(path)
    return path


def make_segfolder(root, n=10, size=(20, 24), classes=3, seed=0, layout="flat"):
    """Gray images with bright squares of class 1 and discs of class 2, palette masks with a
    void (255) border around each object, as VOC draws them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size[0], :size[1]]
    for sub in (["train", "test"] if layout == "split" else [""]):
        (root / sub / "images").mkdir(parents=True, exist_ok=True)
        (root / sub / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            labels = np.zeros(size, dtype=np.int64)
            cy, cx = rng.integers(6, size[0] - 6), rng.integers(6, size[1] - 6)
            if i % 2:
                labels[(abs(yy - cy) < 4) & (abs(xx - cx) < 4)] = 1
            else:
                labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = 2 if classes > 2 else 1
            border = (labels == 0) & (np.pad(labels, 1, mode="edge")[:-2, 1:-1] > 0)
            mask = labels.copy()
            mask[border] = 255
            image = np.clip(labels * 90 + rng.normal(30, 10, size), 0, 255).astype(np.uint8)
            Image.fromarray(image, mode="L").save(root / sub / "images" / f"im{i:02d}.png")
            palette_png(root / sub / "masks" / f"im{i:02d}.png", mask)
    return root


# ----------------------------------------------------------------------------- masks
def test_voc_palette_matches_the_devkit_colours():
    p = voc_palette()
    assert p[0].tolist() == [0, 0, 0] and p[1].tolist() == [128, 0, 0] and p[2].tolist() == [0, 128, 0]
    assert p[15].tolist() == [192, 128, 128] and p[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in p.tolist()}) == 256  # one colour per index: RGB masks invert


def test_read_mask_palette_gray_and_voc_colour(tmp_path):
    labels = np.array([[0, 1, 2, 255], [15, 0, 1, 255]])
    palette = read_mask(palette_png(tmp_path / "p.png", labels))
    assert palette.dtype == torch.int64 and palette.tolist() == labels.tolist()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(tmp_path / "g.png")
    assert read_mask(tmp_path / "g.png").tolist() == labels.tolist()
    Image.fromarray(voc_palette()[labels]).save(tmp_path / "rgb.png")  # painted in the VOC colours
    assert read_mask(tmp_path / "rgb.png").tolist() == labels.tolist()


def test_read_mask_refuses_bad_files_naming_them(tmp_path):
    odd = np.zeros((4, 4, 3), dtype=np.uint8)
    odd[0, 0] = (1, 2, 3)  # not a VOC colour
    Image.fromarray(odd).save(tmp_path / "odd.png")
    with pytest.raises(DataFormatError, match=r"odd\.png.*\(1, 2, 3\)"):
        read_mask(tmp_path / "odd.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataFormatError, match=r"junk\.png"):
        read_mask(tmp_path / "junk.png")
    with pytest.raises(DataFormatError, match="a mask image"):
        read_mask(tmp_path)  # a directory is refused unopened


def test_segfolder_in_memory_and_streamed_agree(tmp_path):
    root = make_segfolder(tmp_path / "seg", n=10)
    (root / "classes.txt").write_text("background\nsquare\ndisc\n")
    memory = load_data(f"segfolder:{root}", options=DataOptions(stream="memory", val_fraction=0.2, test_fraction=0.2))
    disk = load_data(f"segfolder:{root}", options=DataOptions(stream="disk", val_fraction=0.2, test_fraction=0.2))
    assert memory.classes == ["background", "square", "disc"] and memory.channels == 1
    assert memory.info["n_train"] == 6 and memory.info["n_val"] == 2 and memory.info["n_test"] == 2
    assert memory.info["segmentation"] == {"kind": "image", "scale": "native"}
    x, y = as_samples(memory.train).inputs, as_samples(memory.train).targets
    assert x.shape == (6, 1, 20, 24) and y.shape == (6, 20, 24) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) == {0, 1, 2, 255}
    streamed = as_samples(disk.train)
    assert isinstance(streamed, SegmentationFileSamples) and not streamed.in_memory
    for i in range(len(streamed)):
        s = streamed[i]
        assert torch.equal(s["input"], x[i]) and torch.equal(s["target"], y[i])
    # Resized to data.image_size: the image bilinear, the mask nearest (labels stay labels).
    small = load_data(f"segfolder:{root}", options=DataOptions(stream="memory", image_size=16, val_fraction=0.2,
                                                               test_fraction=0.2))
    ys = as_samples(small.train).targets
    assert ys.shape[1:] == (16, 16) and set(torch.unique(ys).tolist()) <= {0, 1, 2, 255}
    assert small.info["segmentation"]["scale"] == "resize"


def test_segfolder_train_test_layout_and_classes_from_the_masks(tmp_path):
    root = make_segfolder(tmp_path / "seg", n=6, classes=2, layout="split")
    data = load_data(f"segfolder:{root}", options=DataOptions(val_fraction=0.0))
    assert data.classes == ["0", "1"]  # no classes.txt: 0 .. the largest label (255 is void)
    assert data.info["n_train"] == 6 and data.info["n_test"] == 6 and data.info["n_val"] == 0


def test_segfolder_errors_name_the_file(tmp_path):
    root = make_segfolder(tmp_path / "seg", n=4)
    (root / "classes.txt").write_text("background\nsquare\ndisc\n")
    palette_png(root / "masks" / "stray.png", np.zeros((20, 24)))
    with pytest.raises(DataFormatError, match=r"stray\.png.*no input"):
        load_data(f"segfolder:{root}")
    (root / "masks" / "stray.png").unlink()
    palette_png(root / "masks" / "im01.png", np.full((20, 24), 7))  # label 7 of 3 classes
    with pytest.raises(DataFormatError, match=r"im01\.png.*label 7"):
        load_data(f"segfolder:{root}", options=DataOptions(stream="memory", max_bad_fraction=0.0))
    palette_png(root / "masks" / "im01.png", np.zeros((10, 10)))  # the wrong size
    pre = load_data(f"segfolder:{root}", options=DataOptions(stream="disk", max_bad_fraction=1.0)).preprocess
    samples = SegmentationFileSamples([str(root / "images" / "im01.png")], [str(root / "masks" / "im01.png")], pre, 3,
                                      native=True)
    assert "does not match" in samples[0]["error"] and "im01.png" in samples[0]["error"]
    with pytest.raises(DataFormatError, match=r"masks"):
        load_data(f"segfolder:{tmp_path / 'nothing'}")


# ----------------------------------------------------------------------------- volumes
@needs_nibabel
def test_nifti_round_trip_and_folder(tmp_path):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = (-10, 5, 7)
    rng = np.random.default_rng(0)
    (tmp_path / "vol" / "images").mkdir(parents=True)
    (tmp_path / "vol" / "labels").mkdir()
    for i in range(5):
        labels = np.zeros((12, 10, 8), dtype=np.uint8)
        labels[3:9, 2:8, 2 + i % 3:6 + i % 3] = 1
        labels[5:7, 4:6, 3:5] = 2
        image = (labels * 40.0 + rng.normal(20, 5, labels.shape)).astype(np.float32)
        write_nifti(tmp_path / "vol" / "images" / f"case{i}.nii.gz", image, affine)
        write_nifti(tmp_path / "vol" / "labels" / f"case{i}.nii.gz", labels, affine)
    array, got_affine, zooms = read_volume(tmp_path / "vol" / "labels" / "case0.nii.gz")
    assert array.shape == (12, 10, 8) and np.allclose(got_affine, affine) and zooms == (2.0, 2.0, 3.0)
    data = load_data(f"nifti:{tmp_path / 'vol'}", options=DataOptions(val_fraction=0.2, test_fraction=0.2))
    x, y = as_samples(data.train).inputs, as_samples(data.train).targets
    assert data.classes == ["0", "1", "2"] and x.shape == (3, 1, 12, 10, 8) and y.shape == (3, 12, 10, 8)
    assert data.info["segmentation"]["kind"] == "volume"


@needs_nibabel
def test_broken_volumes_are_refused_naming_the_file(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 not a gzip stream")
    with pytest.raises(DataFormatError, match=r"bad\.nii\.gz"):
        read_volume(tmp_path / "bad.nii.gz")
    (tmp_path / "short.nii").write_bytes(b"\x00" * 40)
    with pytest.raises(DataFormatError, match=r"short\.nii"):
        read_volume(tmp_path / "short.nii")


def test_npy_volumes_never_unpickle(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((4, 5, 6), dtype=np.int16))
    array, affine, zooms = read_volume(tmp_path / "ok.npy")
    assert array.shape == (4, 5, 6) and array.dtype == np.float32 and np.array_equal(affine, np.eye(4))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"objects\.npy"):
        read_volume(tmp_path / "objects.npy")
    np.save(tmp_path / "flat.npy", np.ones((4, 5)))
    with pytest.raises(DataFormatError, match=r"flat\.npy.*\(D, H, W\)"):
        read_volume(tmp_path / "flat.npy")
    (tmp_path / "vol.txt").write_text("1 2 3")
    with pytest.raises(DataFormatError, match=r"vol\.txt"):
        read_volume(tmp_path / "vol.txt")


def test_normalise_volume_uses_a_robust_maximum():
    x = np.linspace(0, 100, 1000).astype(np.float32).reshape(10, 10, 10)
    x[0, 0, 0] = 1e6  # one hot voxel must not set the scale
    y = normalise_volume(x)
    assert float(y.max()) == 1.0 and 0.4 < float(y[5, 0, 0]) < 0.6


# ----------------------------------------------------------------------------- building blocks
def test_otsu_equals_scikit_image():
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(0)
    for values in (np.concatenate([rng.normal(60, 10, 500), rng.normal(170, 20, 800)]), rng.uniform(0, 255, 999)):
        values = np.clip(values, 0, 255).astype(np.uint8)
        assert otsu_threshold(values) == int(filters.threshold_otsu(values, nbins=256))


def test_tiles_cover_or_stay_disjoint():
    assert tile_starts(10, 4, 4) == [0, 4, 6] and tile_starts(10, 4, 4, cover=False) == [0, 4]
    assert tile_starts(3, 4, 1) == []


def test_mni152_labels_threshold_then_argmax():
    gm = torch.tensor([0.1, 0.3, 0.6, 0.2])
    wm = torch.tensor([0.1, 0.1, 0.3, 0.7])
    assert mni152_labels(gm, wm).tolist() == [0, 0, 1, 2]


def test_horse_scene_mask_is_the_silhouette_and_brightness_gives_nothing_away():
    sil = np.full((40, 50, 4), 255, dtype=np.uint8)
    sil[10:30, 15:35, :3] = 0  # a black "horse"
    rng = np.random.default_rng(0)
    image, mask = horse_scene(sil, rng.uniform(0, 80, (60, 60)), rng.uniform(100, 255, (60, 60)))
    assert mask.sum() == 400 and mask[10:30, 15:35].all()
    assert abs(image[mask == 1].mean() - image[mask == 0].mean()) < 0.02  # same mean after standardising


# ----------------------------------------------------------------------------- the bundled sets
def test_horse_split_holds_out_the_right_half():
    pytest.importorskip("skimage")
    data = load_data("horse", options=DataOptions(image_size=48))
    tr, va, te = (as_samples(s) for s in (data.train, data.val, data.test))
    assert isinstance(tr, TensorSamples) and tr.inputs.shape[1:] == (1, 48, 48)
    assert data.classes == ["background", "horse"] and data.channels == 1
    assert len(te) > 0 and len(va) > 0
    # Every held-out crop differs from every training crop (disjoint halves of the scene).
    train_flat = tr.inputs.flatten(1)
    for held in (va, te):
        for x in held.inputs.flatten(1):
            assert not (train_flat == x).all(1).any()
    for split in (tr, te):  # both classes in both halves
        assert set(torch.unique(split.targets).tolist()) == {0, 1}


def test_coins_masks_find_the_24_coins():
    pytest.importorskip("skimage")
    from convnet.data.sources_segmentation import _skimage

    mask, found = coin_mask(_skimage("coins.png"))
    assert found == 24 and 0.25 < mask.mean() < 0.4
    data = load_data("coins")
    assert data.info["coins_found"] == 24 and as_samples(data.train).inputs.shape[1:] == (1, 64, 64)


@pytest.mark.slow
def test_mni152_slab_split():
    pytest.importorskip("nibabel")
    if importlib.util.find_spec("nilearn") is None:
        pytest.skip("nilearn (a data-only test dependency, installed by make test) is not installed")
    data = load_data("mni152")
    tr, te = as_samples(data.train), as_samples(data.test)
    assert tr.inputs.shape[1:] == (1, 16, 16, 16) and data.num_classes == 3
    assert set(torch.unique(te.targets).tolist()) == {0, 1, 2}
    fractions = torch.bincount(tr.targets.flatten(), minlength=3).double() / tr.targets.numel()
    assert (fractions > 0.03).all()  # grey and white matter both present in training
    assert "held out: axial slices 23..38" in data.info["split"]


@pytest.mark.slow
def test_segfolder_streams_through_the_trainer(tmp_path):
    """A streamed folder (decoded per sample) trains and evaluates as the in-memory one does."""
    from convnet.train import TrainConfig, Trainer, parse_overrides

    root = make_segfolder(tmp_path / "seg", n=10, size=(24, 24))
    (root / "classes.txt").write_text("background\nsquare\ndisc\n")
    summaries = []
    for stream in ("disk", "memory"):
        cfg = parse_overrides(TrainConfig(), [f"out={tmp_path / stream}", f"data.name=segfolder:{root}",
                                              f"data.stream={stream}", "model.name=unet",
                                              "model.overrides.padding=same",
                                              "model.overrides.widths=[4,8]", "data.batch_size=4", "epochs=1",
                                              "report=false", "device=cpu", "threads=2", "data.val_fraction=0.2",
                                              "data.test_fraction=0.2"])
        summaries.append(Trainer(cfg, progress=False).fit())
    assert summaries[0]["steps"] == summaries[1]["steps"] == 2
    assert summaries[0]["test_miou"] == pytest.approx(summaries[1]["test_miou"])
