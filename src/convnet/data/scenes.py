"""A real-data detection set that ships with the installed packages: handwritten digits pasted
onto real photographs and textures, with exact boxes, written as COCO JSON.

Glyphs: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels; UCI's optical
recognition set), each upscaled bilinearly to a random size and thresholded into a mask; the
mask's pixels take a colour that contrasts with the background under them, shaded by the
digit's ink. Optionally scikit-image's ``horse.png`` silhouette (a ready mask) as an 11th class.
Backgrounds: scikit-image's ``brick``, ``grass``, ``gravel`` textures and ``chelsea``,
``astronaut``, ``camera``, ``coffee`` photographs, scikit-learn's ``china.jpg`` and
``flower.jpg``, each cropped at a random place and scale and resized to the image size. Every
file is read from the installed package (``importlib.metadata``), nothing is downloaded, and
scikit-image is not imported (only its data files are read).

Boxes are exact: each object's box is the tight box of its *visible* mask pixels (pixel (r, c)
covers [c, c + 1) x [r, r + 1), so a mask spanning columns 3..7 gives x1 = 3, x2 = 8), after
later objects have been pasted over it; an object left with less than half of its pixels
visible is removed from the image and the annotations. ``area`` is the visible pixel count.

The split is fixed by the seed: the digits are split 80 / 20 (stratified) into train and val
writers, so validation glyphs are digits the training set never shows; every image draws from
its own generator seeded by (seed, split, index), so image i is the same whatever the split's
length. :func:`write_scene_set` writes ``images/{train,val}_NNNNN.png``, ``train.json``,
``val.json`` (COCO instances: categories ``"0"`` .. ``"9"`` with ids 1 .. 10) and ``scenes.json``
(the parameters, for provenance).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
from PIL import Image

from ..weights.io import atomic_write_text

__all__ = ["BACKGROUNDS", "SceneConfig", "load_backgrounds", "load_glyphs", "make_scene", "scene_set_exists",
           "write_scene_set"]

# (package, file inside it) of every background.
BACKGROUNDS: tuple[tuple[str, str], ...] = (
    ("scikit-image", "skimage/data/brick.png"),
    ("scikit-image", "skimage/data/grass.png"),
    ("scikit-image", "skimage/data/gravel.png"),
    ("scikit-image", "skimage/data/chelsea.png"),
    ("scikit-image", "skimage/data/astronaut.png"),
    ("scikit-image", "skimage/data/camera.png"),
    ("scikit-image", "skimage/data/coffee.png"),
    ("scikit-learn", "sklearn/datasets/images/china.jpg"),
    ("scikit-learn", "sklearn/datasets/images/flower.jpg"),
)
HORSE = ("scikit-image", "skimage/data/horse.png")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn."""

    size: int = 160  # square images of this side
    min_objects: int = 1
    max_objects: int = 6
    min_glyph: int = 14  # the pasted glyph's side, pixels (before aspect jitter)
    max_glyph: int = 56
    aspect_jitter: float = 1.25  # width / height of a glyph in [1 / a, a]
    threshold: float = 0.35  # ink level (0..1) above which an upscaled digit pixel is part of the mask
    max_overlap: float = 0.3  # a new object may cover at most this IoU with an earlier one's box
    min_visible: float = 0.5  # objects keeping less of their mask are removed
    horse: bool = False  # add scikit-image's horse silhouette as class "horse"
    backgrounds: tuple[tuple[str, str], ...] = field(default=BACKGROUNDS)


def _locate(package: str, file: str) -> Path:
    try:
        path = Path(distribution(package).locate_file(file))
    except PackageNotFoundError:
        raise FileNotFoundError(f"the scene set reads {file} from the {package} package, which is not installed; "
                                f"install it (pip install {package})") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed {package} package")
    return path


def load_backgrounds(sources: Sequence[tuple[str, str]] = BACKGROUNDS) -> list[np.ndarray]:
    """The background images as (H, W, 3) float32 arrays in [0, 1]."""
    out = []
    for package, file in sources:
        with Image.open(_locate(package, file)) as img:
            out.append(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
    return out


def load_glyphs(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits as (N, 8, 8) ink in [0, 1] and (N,) labels, split into ``train``
    and ``val`` writers (80 / 20, stratified by digit, seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    ink = digits.images.astype(np.float32) / 16.0
    tr, va = train_test_split(np.arange(len(ink)), test_size=0.2, stratify=digits.target, random_state=seed)
    tr, va = np.sort(tr), np.sort(va)
    return {"train": (ink[tr], digits.target[tr]), "val": (ink[va], digits.target[va])}


def _horse_mask() -> np.ndarray:
    with Image.open(_locate(*HORSE)) as img:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    # The silhouette is the dark, opaque part of the image.
    return ((rgba[..., :3].mean(-1) < 0.5) & (rgba[..., 3] > 0.5)).astype(np.float32)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float (H, W) or (H, W, 3) array resized bilinearly to ``size`` (H, W)."""
    def one(plane: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))  # mode "F"
        return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR))

    if array.ndim == 2:
        return one(array)
    return np.stack([one(array[..., c]) for c in range(array.shape[-1])], axis=-1)


def _background(backgrounds: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    src = backgrounds[int(rng.integers(len(backgrounds)))]
    h, w = src.shape[:2]
    side = int(rng.integers(min(size, h, w), min(h, w) + 1))  # a crop of random scale
    top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = src[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(_resize(np.ascontiguousarray(crop), (size, size)), 0.0, 1.0)


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def make_scene(cfg: SceneConfig, backgrounds: list[np.ndarray], glyphs: tuple[np.ndarray, np.ndarray],
               rng: np.random.Generator, horse: np.ndarray | None = None, return_owner: bool = False) -> tuple:
    """One scene: an (S, S, 3) float image in [0, 1] and its objects ``{"bbox": [x, y, w, h],
    "label", "area", "instance"}`` (label 10 is the horse); with ``return_owner`` also the (S, S)
    map of which instance each pixel shows (-1: background)."""
    size = cfg.size
    image = _background(backgrounds, size, rng)
    owner = np.full((size, size), -1, dtype=np.int32)  # which object each pixel shows
    ink_glyphs, labels = glyphs
    placed: list[tuple[int, tuple[int, int, int, int], int]] = []  # (label, box, mask pixels)
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        for _attempt in range(50):
            use_horse = horse is not None and rng.random() < 1 / 11
            side = int(rng.integers(cfg.min_glyph, cfg.max_glyph + 1))
            aspect = float(np.exp(rng.uniform(-np.log(cfg.aspect_jitter), np.log(cfg.aspect_jitter))))
            gh, gw = max(4, round(side / np.sqrt(aspect))), max(4, round(side * np.sqrt(aspect)))
            if gh > size or gw > size:
                continue
            if use_horse:
                ink, label = _resize(horse, (gh, gw)), 10
            else:
                k = int(rng.integers(len(ink_glyphs)))
                ink, label = _resize(ink_glyphs[k], (gh, gw)), int(labels[k])
            mask = ink > cfg.threshold
            if mask.sum() < 8:
                continue
            top, left = int(rng.integers(size - gh + 1)), int(rng.integers(size - gw + 1))
            rows, cols = np.nonzero(mask)
            box = (left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1)
            if any(_box_iou(box, b) > cfg.max_overlap for _, b, _ in placed):
                continue
            region = image[top:top + gh, left:left + gw]
            under = region[mask].mean(0)
            colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
            if np.abs(colour - under).mean() < 0.35:  # contrast with what lies beneath
                colour = np.where(under > 0.5, colour * 0.35, 0.65 + colour * 0.35).astype(np.float32)
            shade = (0.75 + 0.25 * np.clip(ink, 0, 1))[..., None]  # the pen's pressure as shading
            region[mask] = np.clip(colour[None, None] * shade, 0, 1)[mask]
            owner[top:top + gh, left:left + gw][mask] = len(placed)
            placed.append((label, box, int(mask.sum())))
            break
    objects = []
    for i, (label, _, pixels) in enumerate(placed):
        rows, cols = np.nonzero(owner == i)
        if len(rows) < cfg.min_visible * pixels:
            continue  # mostly covered by later objects: not a fair target
        x1, y1, x2, y2 = int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1
        objects.append({"bbox": [x1, y1, x2 - x1, y2 - y1], "label": label, "area": int(len(rows)), "instance": i})
    if return_owner:
        return image, objects, owner
    return image, objects


def _categories(cfg: SceneConfig) -> list[dict]:
    names = [str(d) for d in range(10)] + (["horse"] if cfg.horse else [])
    return [{"id": i + 1, "name": n, "supercategory": "glyph"} for i, n in enumerate(names)]


def scene_set_exists(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete scene set (its annotations and provenance)."""
    d = Path(directory)
    return all((d / f).is_file() for f in ("train.json", "val.json", "scenes.json"))


def write_scene_set(directory: str | os.PathLike, n_train: int = 800, n_val: int = 200, size: int = 160,
                    seed: int = 0, cfg: SceneConfig | None = None) -> Path:
    """Generate the scene set into ``directory`` (created): images and COCO JSON per split.

    Args:
        directory: Where to write.
        n_train: Training images.
        n_val: Validation images.
        size: Image side in pixels (overrides ``cfg.size``).
        seed: Fixes the glyph split and every image.
        cfg: How scenes are drawn (default :class:`SceneConfig`).

    Returns:
        ``directory``. ``scenes.json`` is written last, so a directory that has it is complete.
    """
    cfg = SceneConfig(**{**asdict(cfg or SceneConfig()), "size": int(size)})
    if cfg.size < cfg.max_glyph:
        raise ValueError(f"size {cfg.size} is too small for glyphs of {cfg.min_glyph}..{cfg.max_glyph} pixels")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got {n_train} and {n_val}")
    out = Path(directory)
    (out / "images").mkdir(parents=True, exist_ok=True)
    backgrounds = load_backgrounds(cfg.backgrounds)
    glyphs = load_glyphs(seed)
    horse = _horse_mask() if cfg.horse else None
    categories = _categories(cfg)
    for split_id, (split, count) in enumerate((("train", n_train), ("val", n_val))):
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, split_id, i])
            image, objects = make_scene(cfg, backgrounds, glyphs[split], rng, horse)
            name = f"{split}_{i:05d}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(out / "images" / name)
            images.append({"id": i + 1, "file_name": f"images/{name}", "width": cfg.size, "height": cfg.size})
            for obj in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": obj["label"] + 1,
                                    "bbox": obj["bbox"], "area": obj["area"], "iscrowd": 0})
        coco = {"info": {"description": f"convnet scene set ({split})", "seed": seed}, "images": images,
                "annotations": annotations, "categories": categories}
        atomic_write_text(out / f"{split}.json", json.dumps(coco))
    provenance = {"n_train": n_train, "n_val": n_val, "seed": seed, "config": asdict(cfg),
                  "glyphs": "sklearn.datasets.load_digits (80/20 stratified writer split)"}
    atomic_write_text(out / "scenes.json", json.dumps(provenance, indent=2))
    return out
