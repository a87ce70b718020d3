"""RoIAlign (He et al., Mask R-CNN, ICCV 2017, Sec. 3) and its multi-scale form for FPNs.

:func:`roi_align` has torchvision's signature and semantics: each region is split into
``output_size`` bins; each bin averages bilinear samples taken on a regular grid of
``sampling_ratio`` x ``sampling_ratio`` points (or, with ``sampling_ratio <= 0``,
``ceil(roi_size / output_size)`` points per axis, per region). ``aligned=True`` shifts the
box by half a pixel so that a box edge at pixel centre 0.5 samples pixel 0 exactly
(detectron2's convention); ``aligned=False`` keeps the legacy behaviour, which also stretches
regions smaller than one pixel to one pixel.

Samples more than one pixel outside the feature map (``y < -1`` or ``y > H``, likewise ``x``)
contribute zero, and samples in ``[-1, 0)`` or past the last pixel read the border pixel,
as in torchvision's compiled CPU and CUDA kernels. torchvision's pure-Python fallback
(``torchvision.ops.roi_align._roi_align``) clamps those far samples to the border instead of
zeroing them; the two agree whenever every sample lies in ``[-1, H] x [-1, W]``, which holds
for boxes clipped to the image (as detectors clip their proposals).

How it is computed. The sample grid of a region is a Cartesian product of row and column
positions, so each of the four bilinear corners is one gather of a (rows x columns) block of
channel vectors from the feature map laid out channels-last. Regions are processed in groups
of equal grid size (one group when ``sampling_ratio > 0``) and in chunks that bound the
gathered block's memory. Gradients flow to the features (through the gathers); like
torchvision's op, none flow to the boxes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .boxes import box_area

__all__ = ["LevelMapper", "MultiScaleRoIAlign", "RoIAlign", "roi_align"]

# Elements of the gathered (regions x rows x columns x channels) block processed at once.
_CHUNK_ELEMENTS = 1 << 23


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"output_size must be an int or (height, width), got {size}")
    return size


def convert_boxes_to_roi_format(boxes: list[Tensor]) -> Tensor:
    """Per-image ``(L_i, 4)`` boxes to one ``(sum L_i, 5)`` tensor with the image index first."""
    ids = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(ids, dim=0), torch.cat(list(boxes), dim=0)], dim=1)


def _rois(boxes: Tensor | Sequence[Tensor]) -> Tensor:
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must be (L, 4) xyxy boxes, got shape {tuple(b.shape)}")
        if not boxes:
            raise ValueError("boxes is an empty list: give one (L, 4) tensor per image")
        return convert_boxes_to_roi_format(list(boxes))
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be (K, 5) rows of (batch index, x1, y1, x2, y2), got shape "
                             f"{tuple(boxes.shape)}")
        return boxes
    raise ValueError(f"boxes must be a (K, 5) tensor or a list of (L, 4) tensors, got {type(boxes).__name__}")


def _axis_samples(coord: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis: (low index, high index, low weight, high weight).

    Mirrors the kernels' ``bilinear_interpolate``: out-of-range samples weigh zero, negative
    ones read index 0, and those at or past the last index read the last index.
    """
    valid = ((coord >= -1.0) & (coord <= size)).to(coord.dtype)
    coord = coord.clamp(min=0)
    low = coord.long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)
    frac = coord - low.to(coord.dtype)
    return low, high, (1.0 - frac) * valid, frac * valid


def _align_fixed_grid(flat: Tensor, height: int, width: int, batch: Tensor, start_h: Tensor, start_w: Tensor,
                      bin_h: Tensor, bin_w: Tensor, pooled: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """RoIAlign for regions that share one sampling grid; returns ``(K, C, PH, PW)``."""
    (ph, pw), (gh, gw) = pooled, grid
    k, channels = batch.shape[0], flat.shape[1]
    dtype, device = start_h.dtype, start_h.device
    # Sample positions, in the kernels' order of operations: start + p * bin + (i + .5) * bin / g.
    p_h = torch.arange(ph, device=device, dtype=dtype)[None, :, None]
    p_w = torch.arange(pw, device=device, dtype=dtype)[None, :, None]
    i_h = torch.arange(gh, device=device, dtype=dtype)[None, None, :] + 0.5
    i_w = torch.arange(gw, device=device, dtype=dtype)[None, None, :] + 0.5
    ys = (start_h[:, None, None] + p_h * bin_h[:, None, None] + i_h * bin_h[:, None, None] / gh).reshape(k, -1)
    xs = (start_w[:, None, None] + p_w * bin_w[:, None, None] + i_w * bin_w[:, None, None] / gw).reshape(k, -1)
    y_taps = _axis_samples(ys, height)  # each (K, PH * gh)
    x_taps = _axis_samples(xs, width)   # each (K, PW * gw)
    base = batch * (height * width)
    rows, cols = ys.shape[1], xs.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, rows * cols * channels))
    outputs = []
    for c in range(0, k, chunk):
        sl = slice(c, c + chunk)
        kc = base[sl].shape[0]
        acc = None
        for y_index, y_weight in ((y_taps[0], y_taps[2]), (y_taps[1], y_taps[3])):
            for x_index, x_weight in ((x_taps[0], x_taps[2]), (x_taps[1], x_taps[3])):
                index = base[sl, None, None] + y_index[sl, :, None] * width + x_index[sl, None, :]
                values = flat.index_select(0, index.reshape(-1)).view(kc, rows, cols, channels)
                weight = y_weight[sl, :, None] * x_weight[sl, None, :]
                term = weight[..., None] * values
                acc = term if acc is None else acc + term
        # (K, PH, gh, PW, gw, C) -> average over each bin's samples -> (K, C, PH, PW)
        pooled_sum = acc.view(kc, ph, gh, pw, gw, channels).sum(dim=(2, 4))
        outputs.append((pooled_sum / (gh * gw)).permute(0, 3, 1, 2))
    return torch.cat(outputs, dim=0)


def roi_align(input: Tensor, boxes: Tensor | list[Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """Region-of-interest align with average pooling, as ``torchvision.ops.roi_align``.

    Args:
        input: ``(N, C, H, W)`` feature maps.
        boxes: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)``, or a list of ``N`` tensors
            ``(L_i, 4)`` of ``xyxy`` boxes, one per image, in image coordinates.
        output_size: Bins per region, ``int`` or ``(height, width)``.
        spatial_scale: Factor from box coordinates to feature-map coordinates (1/16 for a
            stride-16 map).
        sampling_ratio: Samples per bin and axis; ``<= 0`` picks ``ceil(roi_size / bins)``
            per region.
        aligned: Shift boxes by -0.5 pixel (pixel-centre alignment, detectron2's convention).

    Returns:
        ``(K, C, output_height, output_width)`` pooled features, in ``input``'s dtype.
    """
    if input.dim() != 4:
        raise ValueError(f"input must be (N, C, H, W) feature maps, got shape {tuple(input.shape)}")
    rois = _rois(boxes)
    pooled = _pair(output_size)
    n, channels, height, width = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, channels) + pooled)
    # Coordinates (and sums) in at least float32 whatever the features' dtype; no gradient to the boxes.
    coord_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    rois = rois.detach().to(device=input.device, dtype=coord_dtype)
    batch = rois[:, 0].long()
    if batch.numel() and (int(batch.min()) < 0 or int(batch.max()) >= n):
        raise ValueError(f"boxes name batch indices {int(batch.min())}..{int(batch.max())}, but input has "
                         f"{n} images")
    offset = 0.5 if aligned else 0.0
    start_w = rois[:, 1] * spatial_scale - offset
    start_h = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_w
    roi_h = rois[:, 4] * spatial_scale - offset - start_h
    if not aligned:  # the legacy version stretches regions to at least one pixel
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled[0], roi_w / pooled[1]
    # Channels-last rows, so that each gather reads contiguous channel vectors; half-precision
    # features are pooled in float32 (torchvision's autocast rule for this op).
    flat = input.permute(0, 2, 3, 1).reshape(n * height * width, channels).to(coord_dtype)
    if sampling_ratio > 0:
        return _align_fixed_grid(flat, height, width, batch, start_h, start_w, bin_h, bin_w, pooled,
                                 (sampling_ratio, sampling_ratio)).to(input.dtype)
    grids = torch.stack((torch.ceil(roi_h / pooled[0]), torch.ceil(roi_w / pooled[1])), dim=1).long()
    unique, inverse = torch.unique(grids.cpu(), dim=0, return_inverse=True)
    output = input.new_zeros((rois.shape[0], channels) + pooled)
    inverse = inverse.to(input.device)
    for g, (gh, gw) in enumerate(unique.tolist()):
        if gh <= 0 or gw <= 0:  # empty regions (aligned=True, zero size): no samples, output 0
            continue
        idx = torch.where(inverse == g)[0]
        part = _align_fixed_grid(flat, height, width, batch[idx], start_h[idx], start_w[idx], bin_h[idx],
                                 bin_w[idx], pooled, (gh, gw))
        output = output.index_copy(0, idx, part.to(input.dtype))
    return output


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float, sampling_ratio: int,
                 aligned: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class LevelMapper:
    """Pyramid level of each box by the FPN heuristic (Lin et al., CVPR 2017, Eq. 1):
    ``k = floor(k0 + log2(sqrt(w h) / 224))``, clamped to the available levels.

    Args:
        k_min: Finest level available (2 for P2).
        k_max: Coarsest level available.
        canonical_scale: Box size mapped to ``canonical_level`` (224, the ImageNet size).
        canonical_level: ``k0`` (4: a 224 box goes to the stride-16 map, as in ResNet C4 heads).
        eps: Added before ``floor`` so that exact powers of two do not fall a level by rounding.
    """

    def __init__(self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4,
                 eps: float = 1e-6) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def __call__(self, boxlists: list[Tensor]) -> Tensor:
        """Level index (0 for ``k_min``) of every box of ``boxlists``, concatenated."""
        s = torch.sqrt(torch.cat([box_area(b) for b in boxlists]))
        target = torch.floor(self.lvl0 + torch.log2(s / self.s0) + torch.tensor(self.eps, dtype=s.dtype))
        target = torch.clamp(target, min=self.k_min, max=self.k_max)
        return (target.to(torch.int64) - self.k_min).to(torch.int64)


def _infer_scale(feature: Tensor, original_size: Sequence[int]) -> float:
    # The scale is assumed to be 2 ** -k; torchvision rounds log2 in float32 and reads the
    # height's estimate, and so does this.
    approx = float(feature.shape[-2]) / float(original_size[0])
    return 2 ** float(torch.tensor(approx).log2().round())


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over a feature pyramid: each box is pooled from the level the FPN heuristic
    picks for its size (:class:`LevelMapper`), as ``torchvision.ops.MultiScaleRoIAlign``.

    The scale of each level is inferred on every call from the feature map's height against
    the largest image height, rounded to a power of two (torchvision infers it once and
    caches it; the results are the same while the backbone's strides stay fixed).

    Args:
        featmap_names: Keys of the feature dict to pool from, finest first.
        output_size: Bins per region, ``int`` or ``(height, width)``.
        sampling_ratio: As for :func:`roi_align`.
        canonical_scale: :class:`LevelMapper`'s ``canonical_scale``.
        canonical_level: :class:`LevelMapper`'s ``canonical_level``.
    """

    def __init__(self, featmap_names: list[str], output_size: int | Sequence[int], sampling_ratio: int, *,
                 canonical_scale: int = 224, canonical_level: int = 4) -> None:
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = _pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def setup_scales(self, features: list[Tensor], image_shapes: list[tuple[int, int]]
                     ) -> tuple[list[float], LevelMapper]:
        """Scale of each level and the level mapper, from the features and the image sizes."""
        if not image_shapes:
            raise ValueError("image_shapes is empty: give the (height, width) of every image")
        largest = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        scales = [_infer_scale(f, largest) for f in features]
        lvl_min = -torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item()
        lvl_max = -torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item()
        mapper = LevelMapper(int(lvl_min), int(lvl_max), canonical_scale=self.canonical_scale,
                             canonical_level=self.canonical_level)
        return scales, mapper

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pool ``boxes`` (per image, ``xyxy`` in image coordinates) from the levels of ``x``.

        Args:
            x: Feature maps by name (levels with the same channels); the names in
                ``featmap_names`` are used, in ``x``'s order.
            boxes: ``(L_i, 4)`` boxes per image.
            image_shapes: ``(height, width)`` of each image before the backbone.

        Returns:
            ``(sum L_i, C, output_height, output_width)``.
        """
        features = [v for k, v in x.items() if k in self.featmap_names]
        if not features:
            raise ValueError(f"none of featmap_names {self.featmap_names} is in the features {list(x)}")
        scales, mapper = self.setup_scales(features, image_shapes)
        rois = convert_boxes_to_roi_format(list(boxes))
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, spatial_scale=scales[0],
                             sampling_ratio=self.sampling_ratio)
        levels = mapper(boxes)
        first = features[0]
        result = first.new_zeros((rois.shape[0], first.shape[1]) + self.output_size)
        for level, (feature, scale) in enumerate(zip(features, scales)):
            idx = torch.where(levels == level)[0]
            pooled = roi_align(feature, rois[idx], self.output_size, spatial_scale=scale,
                               sampling_ratio=self.sampling_ratio)
            result = result.index_copy(0, idx, pooled.to(result.dtype))
        return result

    def extra_repr(self) -> str:
        return (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}")
