"""What segmentation leaves for people to look at: mask files, overlays, montages and the report's
figures.

- 2-D: the mask as a palette PNG (each pixel its class index, shown in the PASCAL VOC colours, so
  the file is both a label map and a picture) and an overlay PNG (the input with every class but
  the background tinted in its colour).
- 3-D: the mask as NIfTI with the input's affine (so it lies on the scan in any viewer; ``.npy``
  when nibabel is absent), and a PNG montage of evenly spaced slices along the last axis (the
  axial one for a NIfTI file in RAS order) with the overlay.
- Report: test crops (images, true and predicted masks side by side; volumes by their middle
  slice) and the per-class IoU as a bar chart.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.segmentation_data import voc_palette

PALETTE = voc_palette()


def output_stem(path: str | None, index: int = 0) -> str:
    """A file name without its suffixes (``brain.nii.gz`` -> ``brain``)."""
    if not path:
        return f"sample_{index}"
    name = Path(str(path)).name
    for suffix in (".nii.gz", ".nii", ".npy"):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return Path(name).stem


def class_fractions(mask: torch.Tensor, classes: Sequence[str], num_classes: int) -> dict[str, float]:
    """The share of positions predicted as each class."""
    counts = torch.bincount(mask.reshape(-1).long(), minlength=num_classes).double()
    total = max(float(counts.sum()), 1.0)
    names = list(classes) + [str(i) for i in range(len(classes), num_classes)]
    return {names[k]: float(counts[k]) / total for k in range(num_classes)}


def _gray_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8 (RGB as it is, otherwise the channel mean)."""
    a = image.transpose(1, 2, 0) if image.shape[0] == 3 else np.repeat(image.mean(0)[..., None], 3, axis=2)
    return (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(C, H, W) image in [0, 1] and (H, W) mask -> (H, W, 3) uint8: every class but 0 tinted in
    its VOC colour."""
    rgb = _gray_rgb(image).astype(np.float32)
    colours = PALETTE[np.clip(mask, 0, 255)].astype(np.float32)
    tint = (mask > 0)[..., None]
    out = np.where(tint, (1 - alpha) * rgb + alpha * colours, rgb)
    return out.round().astype(np.uint8)


def montage(volume: np.ndarray, mask: np.ndarray, slices: int = 12, columns: int = 4) -> np.ndarray:
    """(C, D, H, W) volume in [0, 1] and (D, H, W) mask -> one RGB image of ``slices`` overlays
    along the last axis, evenly spaced over its middle 80%."""
    depth = volume.shape[-1]
    lo, hi = int(depth * 0.1), max(int(depth * 0.9), int(depth * 0.1) + 1)
    picks = np.unique(np.linspace(lo, hi - 1, min(slices, hi - lo)).round().astype(int))
    tiles = [np.rot90(overlay(volume[..., z], mask[..., z])) for z in picks]  # rot90: the usual radiological view
    rows = math.ceil(len(tiles) / columns)
    h, w = tiles[0].shape[:2]
    sheet = np.zeros((rows * h, min(columns, len(tiles)) * w, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return sheet


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """A palette PNG of class indices (< 256) in the VOC colours."""
    from PIL import Image

    if mask.max(initial=0) > 255:
        raise ValueError(f"a palette PNG holds class indices below 256, got {int(mask.max())}")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(PALETTE.reshape(-1).tolist())
    return _png_bytes(img)


def write_prediction_files(prediction: dict[str, Any], sample: dict[str, Any], out_dir: Path) -> list[Path]:
    """The files ``convnet predict --out`` writes for one input (module docstring)."""
    from PIL import Image

    from ..weights.io import atomic_write_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(sample.get("path"), sample.get("index", 0))
    mask = prediction["mask"].cpu().numpy().astype(np.int64)
    image = sample.get("image")
    image = image.cpu().float().numpy() if image is not None else None
    written = []
    if mask.ndim == 2:
        written.append(atomic_write_bytes(out_dir / f"{stem}_mask.png", mask_png(mask)))
        if image is not None:
            written.append(atomic_write_bytes(out_dir / f"{stem}_overlay.png",
                                              _png_bytes(Image.fromarray(overlay(image, mask)))))
        return written
    if mask.ndim != 3:
        raise ValueError(f"a {mask.ndim}-D mask has no image form; 2-D and 3-D masks are written")
    try:
        from ..data.segmentation_data import write_nifti

        affine = np.asarray(sample["affine"]) if sample.get("affine") is not None else None
        written.append(write_nifti(out_dir / f"{stem}_mask.nii.gz", mask, affine))
    except ImportError:  # no nibabel: the labels as an array (np.load(allow_pickle=False) reads it)
        buffer = io.BytesIO()
        np.save(buffer, mask.astype(np.uint8), allow_pickle=False)
        written.append(atomic_write_bytes(out_dir / f"{stem}_mask.npy", buffer.getvalue()))
    if image is not None:
        written.append(atomic_write_bytes(out_dir / f"{stem}_montage.png",
                                          _png_bytes(Image.fromarray(montage(image, mask)))))
    return written


# ----------------------------------------------------------------------------- report figures
def examples_figure(examples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], classes: Sequence[str],
                    spatial_dims: int) -> Any:
    """One row per test crop: the image, the true mask, the predicted mask (volumes: a middle slice)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from .figures import minmax

    k = len(classes)
    cmap = ListedColormap(PALETTE[:max(k, 2)] / 255.0)
    fig = Figure(figsize=(6.0, 2.0 * len(examples) + 0.4))
    axes = fig.subplots(len(examples), 3, squeeze=False)
    for row, (image, target, pred) in zip(axes, examples):
        a = image.float().numpy()
        shown = minmax(a.transpose(1, 2, 0)) if a.shape[0] == 3 else minmax(a.mean(0))
        row[0].imshow(shown, cmap=None if a.shape[0] == 3 else "gray")
        t = target.numpy().astype(float)
        t[t >= k] = np.nan  # ignored positions stay blank
        row[1].imshow(t, cmap=cmap, vmin=-0.5, vmax=max(k, 2) - 0.5, interpolation="nearest")
        row[2].imshow(pred.numpy(), cmap=cmap, vmin=-0.5, vmax=max(k, 2) - 0.5, interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    where = " (middle slice)" if spatial_dims == 3 else ""
    for ax, title in zip(axes[0], (f"input{where}", "true mask", "predicted")):
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def iou_figure(iou: Sequence[float | None], dice: Sequence[float | None], classes: Sequence[str]) -> Any:
    """Per-class IoU and Dice as bars (a class absent from labels and predictions has none)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.7 * len(classes) + 2), 3.0))
    ax = fig.subplots()
    x = np.arange(len(classes))
    ax.bar(x - 0.2, [v if v is not None else 0 for v in iou], 0.4, label="IoU")
    ax.bar(x + 0.2, [v if v is not None else 0 for v in dice], 0.4, label="Dice")
    many = len(classes) > 4
    ax.set_xticks(x, list(classes), rotation=30 if many else 0, ha="right" if many else "center")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("per class on the test split", fontsize=9)
    fig.tight_layout()
    return fig
