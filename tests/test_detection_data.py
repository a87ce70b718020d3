"""Detection data: box-aware augmentation checked by the properties that define it, the
generated scene set (exact boxes, a fixed split) and the COCO / VOC data sources."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data import load_data
from convnet.data.detection_augment import (DetectionAugment, DetectionAugmentConfig, filter_boxes, mosaic,
                                            photometric, random_crop, random_hflip, random_scale)
from convnet.data.detection_formats import read_coco_detection


@pytest.fixture(autouse=True)
def _one_thread():
    # Small tensors: one thread avoids the cost of waking a pool on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _indicator_batch(boxes_per_image, size=(60, 80)):
    """Images whose channel k is 1 inside object k's box (integer boxes) and 0 elsewhere, plus
    two ramp channels (x / W, y / H) that tell where each output pixel came from."""
    h, w = size
    k = max(len(b) for b in boxes_per_image)
    images, targets = [], []
    for boxes in boxes_per_image:
        img = torch.zeros(k + 2, h, w)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            img[i, y1:y2, x1:x2] = 1.0
        img[k] = torch.arange(w).float().add(0.5).div(w).expand(h, w)
        img[k + 1] = torch.arange(h).float().add(0.5).div(h)[:, None].expand(h, w)
        images.append(img)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.arange(len(boxes)), "area": torch.tensor(
                            [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes], dtype=torch.float32)})
    return torch.stack(images), targets


def _tight_box(mask):
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1]


BOXES = [[(5, 5, 25, 30), (40, 10, 75, 50), (0, 40, 15, 60)], [(30, 20, 50, 40), (60, 0, 80, 20)]]


def test_hflip_box_is_the_flipped_objects_box():
    images, targets = _indicator_batch(BOXES)
    g = torch.Generator().manual_seed(0)
    out, out_t = random_hflip(images, targets, p=1.0, g=g)
    assert torch.equal(out, images.flip(-1))
    for img, target in zip(out, out_t):
        for k, box in enumerate(target["boxes"].tolist()):
            assert box == _tight_box(img[k] > 0.5)  # exact: a flip moves whole pixels
    same, same_t = random_hflip(images, targets, p=0.0, g=g)
    assert torch.equal(same, images) and all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(same_t, targets))


def _check_geometry(images, targets, out, out_t, min_visibility, tol=1.5):
    """Kept boxes lie inside the image and follow their object (the indicator's tight box);
    dropped objects are the ones that kept too little of their area, kept ones enough."""
    k = images.shape[1] - 2
    h, w = out.shape[-2:]
    for img_in, t_in, img, t in zip(images, targets, out, out_t):
        b = t["boxes"]
        assert ((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)).all()
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
        assert len(t["labels"]) == len(b) == len(t["area"])
        # scale of the transform from the ramps: the source span of the output's width and height
        sx = w / (w * (img[k, :, -1] - img[k, :, 0]).mean().item() * w / (w - 1))
        sy = h / (h * (img[k + 1, -1, :] - img[k + 1, 0, :]).mean().item() * h / (h - 1))
        kept = {int(label): box for label, box in zip(t["labels"].tolist(), b.tolist())}
        for j in range(len(t_in["labels"])):
            visible = img[j] > 0.5
            full = t_in["area"][j].item() * sx * sy
            fraction = visible.sum().item() / full
            if j in kept:
                assert fraction >= min_visibility - 0.1
                box = _tight_box(visible)
                assert max(abs(u - v) for u, v in zip(box, kept[j])) <= tol, (box, kept[j])
            else:
                assert fraction <= min_visibility + 0.1, (j, fraction)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_crop_clips_and_drops_mostly_cropped_boxes(seed):
    images, targets = _indicator_batch(BOXES)
    g = torch.Generator().manual_seed(seed)
    out, out_t = random_crop(images, targets, 0.3, g, min_visibility=0.4)
    assert out.shape == images.shape
    _check_geometry(images, targets, out, out_t, 0.4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_scale_keeps_boxes_on_their_objects(seed):
    images, targets = _indicator_batch(BOXES)
    g = torch.Generator().manual_seed(seed)
    out, out_t = random_scale(images, targets, (0.6, 1.6), g, min_visibility=0.4, fill=0.0)
    assert out.shape == images.shape
    # ramps are not defined on padding, so only the box-follows-object property is checked
    for img, t in zip(out, out_t):
        for label, box in zip(t["labels"].tolist(), t["boxes"].tolist()):
            assert max(abs(u - v) for u, v in zip(_tight_box(img[label] > 0.5), box)) <= 1.5


def test_filter_boxes_drops_by_visible_fraction_and_size():
    target = {"boxes": torch.zeros(4, 4), "labels": torch.arange(4), "area": torch.ones(4)}
    boxes = torch.tensor([[-5.0, 0, 5, 10], [-7, 0, 3, 10], [10, 10, 11, 20], [90, 90, 110, 110]])
    out = filter_boxes(target, boxes, torch.tensor([100.0, 100, 10, 400]), (100, 100), 0.4, 2.0)
    # 50% visible kept (clipped to x1 = 0); 30% dropped; a 1-pixel-wide box dropped; 25% dropped
    assert out["labels"].tolist() == [0]
    assert out["boxes"].tolist() == [[0.0, 0.0, 5.0, 10.0]]
    assert out["area"].tolist() == [0.5]


def test_mosaic_takes_objects_of_four_images():
    images, targets = _indicator_batch([[(10, 10, 30, 30)]] * 4, size=(40, 40))
    for i, t in enumerate(targets):
        t["labels"] = torch.tensor([i])
    g = torch.Generator().manual_seed(0)
    out, out_t = mosaic(images, targets, 1.0, g, min_visibility=0.25)
    assert out.shape == images.shape
    for img, t in zip(out, out_t):
        assert len(t["boxes"]) >= 1
        b = t["boxes"]
        assert ((b >= 0) & (b <= 40)).all()
        # each kept box covers a region of indicator pixels (of whichever image it came from)
        ind = img[0] > 0.5
        for box in b.round().long().tolist():
            assert ind[box[1]:box[3], box[0]:box[2]].float().mean() > 0.9


def test_photometric_changes_colours_not_boxes_and_stays_in_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    y = photometric(x, 0.4, 0.4, 0.4, 0.1, g)
    assert y.shape == x.shape and (y >= 0).all() and (y <= 1).all() and not torch.equal(x, y)
    aug = DetectionAugment(DetectionAugmentConfig(hflip=0.0, brightness=0.4))
    batch = {"input": x, "target": [{"boxes": torch.tensor([[1.0, 1, 5, 5]]), "labels": torch.tensor([0])}] * 3}
    out = aug(batch, torch.Generator().manual_seed(1))
    assert all(torch.equal(t["boxes"], batch["target"][0]["boxes"]) for t in out["target"])


def test_augment_draws_only_from_its_generator_and_takes_lists():
    images, targets = _indicator_batch(BOXES)
    aug = DetectionAugment(DetectionAugmentConfig(hflip=0.5, scale=(0.8, 1.2), crop_min_area=0.5, brightness=0.2,
                                                  mosaic=0.5))
    assert aug.enabled and not DetectionAugment(DetectionAugmentConfig(hflip=0.0)).enabled
    batch = {"input": images, "target": targets}
    torch.manual_seed(0)
    a = aug(batch, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global RNG plays no part
    b = aug(batch, torch.Generator().manual_seed(7))
    assert torch.equal(a["input"], b["input"])
    assert all(torch.equal(u["boxes"], v["boxes"]) for u, v in zip(a["target"], b["target"]))
    listed = aug({"input": list(images), "target": targets}, torch.Generator().manual_seed(7))
    again = aug({"input": list(images), "target": targets}, torch.Generator().manual_seed(7))
    assert isinstance(listed["input"], list) and len(listed["input"]) == len(images)
    assert all(torch.equal(u, v) for u, v in zip(listed["input"], again["input"]))
    # the geometry draws the same numbers for a list as for a stacked batch (colour comes last)
    assert all(torch.equal(u["boxes"], v["boxes"]) for u, v in zip(listed["target"], a["target"]))


def test_from_augment_config_maps_the_training_keys():
    from convnet.data import AugmentConfig

    cfg = DetectionAugmentConfig.from_augment(AugmentConfig(hflip=0.5, scale=0.2, color_jitter=0.3, hue=0.05,
                                                            resized_crop=0.4), mosaic=0.5)
    assert cfg.hflip == 0.5 and cfg.scale == pytest.approx((0.8, 1.2)) and cfg.brightness == 0.3
    assert cfg.crop_min_area == 0.4 and cfg.hue == 0.05 and cfg.mosaic == 0.5


# ---------------------------------------------------------------------------- scene set

def test_scene_boxes_are_tight_around_visible_glyph_pixels():
    from convnet.data.scenes import SceneConfig, load_backgrounds, load_glyphs, make_scene

    cfg = SceneConfig(size=96, max_glyph=40, max_objects=8)
    backgrounds, glyphs = load_backgrounds(), load_glyphs(0)
    seen = 0
    for i in range(6):
        image, objects, owner = make_scene(cfg, backgrounds, glyphs["train"], np.random.default_rng([0, 0, i]),
                                           return_owner=True)
        assert image.shape == (96, 96, 3) and image.min() >= 0 and image.max() <= 1
        for obj in objects:
            rows, cols = np.nonzero(owner == obj["instance"])
            x, y, w, h = obj["bbox"]
            assert [x, y, x + w, y + h] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert obj["area"] == len(rows) and 0 <= obj["label"] <= 9
            seen += 1
    assert seen > 6


def test_scene_set_split_is_fixed_and_coco_readable(tmp_path):
    from convnet.data.scenes import load_glyphs, scene_set_exists, write_scene_set

    a = write_scene_set(tmp_path / "a", n_train=3, n_val=2, size=96, seed=5)
    b = write_scene_set(tmp_path / "b", n_train=5, n_val=1, size=96, seed=5)
    assert scene_set_exists(a) and scene_set_exists(b)
    for i in range(3):  # image i does not depend on the split's length
        assert np.array_equal(np.asarray(Image.open(a / f"images/train_{i:05d}.png")),
                              np.asarray(Image.open(b / f"images/train_{i:05d}.png")))
    ann = read_coco_detection(a / "train.json")
    assert ann.classes == [str(d) for d in range(10)] and len(ann.images) == 3
    assert all(len(t["boxes"]) >= 1 for t in ann.targets)
    glyphs = load_glyphs(5)  # validation glyphs are other writers' digits
    assert len(glyphs["train"][0]) + len(glyphs["val"][0]) == 1797
    provenance = json.loads((a / "scenes.json").read_text())
    assert provenance["seed"] == 5 and provenance["config"]["size"] == 96


def test_coco_folder_source_loads_in_memory(tmp_path):
    from convnet.data.scenes import write_scene_set

    write_scene_set(tmp_path, n_train=4, n_val=2, size=96, seed=0)
    data = load_data(f"coco:{tmp_path}")
    assert data.classes == [str(d) for d in range(10)] and data.channels == 3
    assert data.train.in_memory and tuple(data.train.inputs.shape) == (4, 3, 96, 96)
    assert data.preprocess.size == (96, 96) and data.preprocess.mean == (0.0, 0.0, 0.0)
    sample = data.train[0]
    assert set(sample["target"]) >= {"boxes", "labels"} and sample["path"].endswith("train_00000.png")
    assert len(data.test) == len(data.val) == 2  # no test.json: the validation split


def test_coco_file_with_image_dir_splits_and_resizes(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "box"}]}
    for i in range(10):
        Image.fromarray(np.full((30 + i, 40, 3), 100, np.uint8)).save(images / f"{i}.png")
        coco["images"].append({"id": i, "file_name": f"{i}.png", "width": 40, "height": 30 + i})
        coco["annotations"].append({"id": i, "image_id": i, "category_id": 7, "bbox": [4, 3, 20, 10]})
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    data = load_data(f"coco:{tmp_path / 'ann.json'},{images}", val_fraction=0.2, test_fraction=0.2)
    assert (data.info["n_train"], data.info["n_val"], data.info["n_test"]) == (6, 2, 2)
    assert not data.train.in_memory  # different sizes stream
    from convnet.data import DataOptions

    resized = load_data(f"coco:{tmp_path / 'ann.json'},{images}", options=DataOptions(image_size=20))
    s = resized.train[0]
    assert tuple(s["input"].shape) == (3, 20, 20) and resized.info["image_resize"] == 20
    h = 30 + int(s["path"].split("/")[-1].split(".")[0])
    assert s["target"]["boxes"][0].tolist() == pytest.approx([2.0, 3 * 20 / h, 12.0, 13 * 20 / h])


def test_voc_source_reads_annotations_and_image_sets(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = f"{name}.jpg"
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = "dog"
        box = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (2, 3, 10, 12)):
            ET.SubElement(box, tag).text = str(v)
        ET.ElementTree(root).write(tmp_path / "Annotations" / f"{name}.xml")
    (tmp_path / "ImageSets/Main/train.txt").write_text("a\nb\n")
    (tmp_path / "ImageSets/Main/val.txt").write_text("c\n")
    data = load_data(f"voc:{tmp_path}")
    assert (data.info["n_train"], data.info["n_val"]) == (2, 1) and len(data.classes) == 20
    target = data.val[0]["target"]
    assert target["boxes"].tolist() == [[1.0, 2.0, 10.0, 12.0]] and target["labels"].tolist() == [11]  # dog
