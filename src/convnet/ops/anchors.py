"""Anchors and default boxes: the reference boxes dense detectors regress from.

* :class:`AnchorGenerator`: Faster R-CNN's anchors (Ren et al., NeurIPS 2015, Sec. 3.1.1),
  several sizes and aspect ratios at every cell of each feature map, as torchvision's
  ``models/detection/anchor_utils.py`` (its RPN, RetinaNet and FCOS use it).
* :class:`DefaultBoxGenerator`: SSD's default boxes (Liu et al., ECCV 2016, Sec. 2.2,
  "Choosing scales and aspect ratios for default boxes"), as torchvision's class.

Both take the batch of images (an :class:`ImageList`, or the padded batch tensor) and the
feature maps, and return one ``(A, 4)`` tensor of ``xyxy`` boxes per image, in the order
torchvision's heads flatten their outputs: feature map, then row, then column, then the
anchors of a cell.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["AnchorGenerator", "DefaultBoxGenerator", "ImageList"]


class ImageList:
    """A padded batch of images and the size of each image before padding, as torchvision's
    ``ImageList`` (detectors resize images to different sizes, then pad them into one tensor).

    Args:
        tensors: ``(B, C, H, W)`` padded batch.
        image_sizes: ``(height, width)`` of each image inside the padding.
    """

    def __init__(self, tensors: Tensor, image_sizes: list[tuple[int, int]]) -> None:
        self.tensors = tensors
        self.image_sizes = [tuple(int(v) for v in s) for s in image_sizes]

    def to(self, device: torch.device | str) -> "ImageList":
        return ImageList(self.tensors.to(device), self.image_sizes)


def _batch_shape(images: ImageList | Tensor) -> tuple[tuple[int, int], int]:
    """The padded batch's spatial size and the number of images."""
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be a (B, C, H, W) batch or an ImageList, got shape {tuple(images.shape)}")
        return tuple(images.shape[-2:]), images.shape[0]
    if hasattr(images, "tensors") and hasattr(images, "image_sizes"):  # ours or torchvision's ImageList
        return tuple(images.tensors.shape[-2:]), len(images.image_sizes)
    raise ValueError(f"images must be a (B, C, H, W) batch or an ImageList, got {type(images).__name__}")


class AnchorGenerator(nn.Module):
    """Anchors of several sizes and aspect ratios (``height / width``) at each feature-map cell.

    ``sizes[i]`` and ``aspect_ratios[i]`` belong to feature map ``i``; each cell of that map
    gets ``len(sizes[i]) * len(aspect_ratios[i])`` anchors centred on the cell's top-left
    corner in image coordinates (``stride * index``, torchvision's convention), ratios
    varying slowest. Zero-centred cell anchors are rounded to integers, as in torchvision
    (and Detectron before it).

    Args:
        sizes: Anchor sizes (square-root of the area) per feature map; a flat tuple means one
            size per map.
        aspect_ratios: Ratios per feature map; a flat tuple is shared by every map.
    """

    def __init__(self, sizes: Sequence = ((128, 256, 512),), aspect_ratios: Sequence = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes and aspect_ratios must give one entry per feature map, got {len(sizes)} and "
                             f"{len(aspect_ratios)}")
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [self.generate_anchors(s, a) for s, a in zip(sizes, aspect_ratios)]

    def generate_anchors(self, scales: Sequence[float], aspect_ratios: Sequence[float],
                         dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
        """Zero-centred ``(len(ratios) * len(scales), 4)`` anchors, rounded to integers."""
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(aspect_ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per cell of each feature map."""
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes: list[Sequence[int]], strides: list[Sequence[Tensor]],
                     cell_anchors: list[Tensor]) -> list[Tensor]:
        """Shift each map's cell anchors to every cell: ``(H_i * W_i * A_i, 4)`` per map."""
        if not len(grid_sizes) == len(strides) == len(cell_anchors):
            raise ValueError(f"got {len(grid_sizes)} feature maps for anchors configured for {len(cell_anchors)}: "
                             "sizes and aspect_ratios need one entry per feature map")
        anchors = []
        for (grid_height, grid_width), (stride_height, stride_width), base in zip(grid_sizes, strides, cell_anchors):
            device = base.device
            shifts_x = torch.arange(0, grid_width, dtype=torch.int32, device=device) * stride_width
            shifts_y = torch.arange(0, grid_height, dtype=torch.int32, device=device) * stride_height
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            # every (cell, cell anchor) pair: (cells, 1, 4) + (1, A, 4)
            anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, images: ImageList | Tensor, feature_maps: list[Tensor]) -> list[Tensor]:
        """Anchors of every image: a list of ``(sum_i H_i W_i A_i, 4)`` tensors (all equal).

        Args:
            images: The padded batch (:class:`ImageList` or ``(B, C, H, W)``); the stride of
                each map is the padded size divided by the map's size (integer division).
            feature_maps: ``(B, C_i, H_i, W_i)`` maps, one per entry of ``sizes``.
        """
        image_size, num_images = _batch_shape(images)
        grid_sizes = [tuple(fm.shape[-2:]) for fm in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [[torch.empty((), dtype=torch.int64, device=device).fill_(image_size[0] // g[0]),
                    torch.empty((), dtype=torch.int64, device=device).fill_(image_size[1] // g[1])]
                   for g in grid_sizes]
        cell_anchors = [a.to(dtype=dtype, device=device) for a in self.cell_anchors]
        per_map = self.grid_anchors(grid_sizes, strides, cell_anchors)
        # One tensor per image (not one shared object), so that a caller editing one image's
        # anchors in place does not edit the others'.
        return [torch.cat(per_map) for _ in range(num_images)]


class DefaultBoxGenerator(nn.Module):
    """SSD's default boxes: at every cell of map ``k``, a square of scale ``s_k``, a square of
    ``sqrt(s_k s_{k+1})``, and a pair (``w/h = r`` and ``1/r``) for each extra aspect ratio.

    Scales are spread linearly from ``min_ratio`` to ``max_ratio`` over the maps (SSD,
    Eq. 4), with 1.0 appended for the last map's geometric-mean square; centres are at
    ``(index + 0.5) / f_k`` where ``f_k`` is the map's size or ``image_size / steps[k]``.

    Args:
        aspect_ratios: Extra ratios per feature map (``[[2], [2, 3], ...]``).
        min_ratio: Smallest scale, as a fraction of the image.
        max_ratio: Largest scale.
        scales: Explicit scales (one per map plus one), instead of the linear spread.
        steps: Strides used for the centres (SSD300's 8, 16, 32, 64, 100, 300).
        clip: Clip the boxes' (relative) widths and heights to [0, 1] before use.
    """

    def __init__(self, aspect_ratios: list[list[int]], min_ratio: float = 0.15, max_ratio: float = 0.9,
                 scales: list[float] | None = None, steps: list[int] | None = None, clip: bool = True) -> None:
        super().__init__()
        if steps is not None and len(aspect_ratios) != len(steps):
            raise ValueError(f"aspect_ratios and steps must have the same length, got {len(aspect_ratios)} and "
                             f"{len(steps)}")
        self.aspect_ratios = aspect_ratios
        self.steps = steps
        self.clip = clip
        num_outputs = len(aspect_ratios)
        if scales is None:
            if num_outputs > 1:
                range_ratio = max_ratio - min_ratio
                self.scales = [min_ratio + range_ratio * k / (num_outputs - 1.0) for k in range(num_outputs)]
                self.scales.append(1.0)
            else:
                self.scales = [min_ratio, max_ratio]
        else:
            if len(scales) < num_outputs + 1:
                raise ValueError(f"scales must give {num_outputs + 1} values for {num_outputs} feature maps, got "
                                 f"{len(scales)}")
            self.scales = list(scales)
        self._wh_pairs = self._generate_wh_pairs(num_outputs)

    def _generate_wh_pairs(self, num_outputs: int, dtype: torch.dtype = torch.float32) -> list[Tensor]:
        wh_pairs_per_map = []
        for k in range(num_outputs):
            s_k = self.scales[k]
            s_prime_k = math.sqrt(self.scales[k] * self.scales[k + 1])
            wh_pairs = [[s_k, s_k], [s_prime_k, s_prime_k]]
            for ar in self.aspect_ratios[k]:
                sq_ar = math.sqrt(ar)
                w = self.scales[k] * sq_ar
                h = self.scales[k] / sq_ar
                wh_pairs.extend([[w, h], [h, w]])
            wh_pairs_per_map.append(torch.as_tensor(wh_pairs, dtype=dtype))
        return wh_pairs_per_map

    def num_anchors_per_location(self) -> list[int]:
        """Boxes per cell of each feature map: 2 squares plus 2 per extra ratio."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def _grid_default_boxes(self, grid_sizes: list[Sequence[int]], image_size: Sequence[int],
                            dtype: torch.dtype = torch.float32) -> Tensor:
        """``(sum_k H_k W_k B_k, 4)`` boxes as relative ``(cx, cy, w, h)``."""
        default_boxes = []
        for k, f_k in enumerate(grid_sizes):
            if self.steps is not None:
                x_f_k = image_size[1] / self.steps[k]
                y_f_k = image_size[0] / self.steps[k]
            else:
                y_f_k, x_f_k = f_k
            shifts_x = ((torch.arange(0, f_k[1]) + 0.5) / x_f_k).to(dtype=dtype)
            shifts_y = ((torch.arange(0, f_k[0]) + 0.5) / y_f_k).to(dtype=dtype)
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y) * len(self._wh_pairs[k]), dim=-1).reshape(-1, 2)
            # Clipping happens on the (cx, cy, w, h) encoding, as in torchvision.
            wh_pair = self._wh_pairs[k].clamp(min=0, max=1) if self.clip else self._wh_pairs[k]
            wh_pairs = wh_pair.repeat((f_k[0] * f_k[1]), 1)
            default_boxes.append(torch.cat((shifts, wh_pairs), dim=1))
        return torch.cat(default_boxes, dim=0)

    def forward(self, images: ImageList | Tensor, feature_maps: list[Tensor]) -> list[Tensor]:
        """Default boxes of every image in absolute ``xyxy``: a list of ``(sum_k H_k W_k B_k, 4)``.

        Args:
            images: The padded batch (:class:`ImageList` or ``(B, C, H, W)``).
            feature_maps: ``(B, C_k, H_k, W_k)`` maps, one per entry of ``aspect_ratios``.
        """
        if len(feature_maps) != len(self.aspect_ratios):
            raise ValueError(f"got {len(feature_maps)} feature maps for default boxes configured for "
                             f"{len(self.aspect_ratios)}")
        image_size, num_images = _batch_shape(images)
        grid_sizes = [tuple(fm.shape[-2:]) for fm in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        default_boxes = self._grid_default_boxes(grid_sizes, image_size, dtype=dtype).to(device)
        x_y_size = torch.tensor([image_size[1], image_size[0]], device=device)
        boxes = torch.cat([(default_boxes[:, :2] - 0.5 * default_boxes[:, 2:]) * x_y_size,
                           (default_boxes[:, :2] + 0.5 * default_boxes[:, 2:]) * x_y_size], -1)
        return [boxes.clone() for _ in range(num_images)]

    def extra_repr(self) -> str:
        return f"aspect_ratios={self.aspect_ratios}, clip={self.clip}, scales={self.scales}, steps={self.steps}"
