"""The surface every convnet detector shares, and the image transform of torchvision's detectors.

A detector takes a batch of images, either a ``(B, C, H, W)`` tensor or a list of ``(C, H, W)``
tensors of any sizes, with pixel values in [0, 1] (each detector normalises inside, as
torchvision's do). Its output depends on the mode, as in torchvision:

* training: ``model(images, targets)`` with one target dict per image (``boxes`` ``(N, 4)``
  float, absolute ``xyxy`` pixels with ``x1 < x2`` and ``y1 < y2``; ``labels`` ``(N,)`` int64)
  returns a dict of named loss tensors (their sum is what to minimise);
* evaluation: ``model(images)`` returns one dict per image with ``boxes`` (absolute ``xyxy`` in
  the input image's own coordinates), ``scores`` and ``labels``.

``label_offset`` says how a data set's classes 0..K-1 become the model's labels: 1 for models
whose label 0 means background (Faster R-CNN's softmax over K + 1 classes, SSD's), 0 for the
rest (sigmoid heads: RetinaNet, FCOS, YOLO). ``num_classes`` counts the background where there is
one, as torchvision's ``num_classes=91`` does.

``analysis_forward(x)`` runs the network's dense part (backbone, neck and heads: everything but
the data-dependent box selection) on a normalised batch at its own size and reduces the heads'
class logits to one score per image and class, ``(B, K)``: the evidence of the class's strongest
detection. :func:`convnet.summary` and :func:`convnet.analysis.cam.grad_cam` call it for models
that have it (shapes, parameters, MACs of the dense part; Grad-CAM of a class's best detection).

:class:`DetectionTransform` is torchvision's ``GeneralizedRCNNTransform``, operation for
operation: normalise each image, resize it so that its shorter side becomes ``min_size`` unless
its longer side would exceed ``max_size`` (bilinear, ``recompute_scale_factor``), pad the batch
to a multiple of ``size_divisible``, and map the detections back to the input's coordinates.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import ImageList, batched_nms
from ._base import FeatureInfo

Targets = list[dict[str, Tensor]]


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """``xyxy`` boxes of an image of ``original_size`` (H, W) scaled to ``new_size`` (H, W),
    the ratios in float32 as torchvision computes them."""
    ratio_h, ratio_w = (torch.tensor(int(s), dtype=torch.float32, device=boxes.device)
                        / torch.tensor(int(o), dtype=torch.float32, device=boxes.device)
                        for s, o in zip(new_size, original_size))
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


class DetectionTransform(nn.Module):
    """Normalise, resize and batch images (and scale their targets' boxes) for a detector.

    Args:
        min_size: The shorter side after resizing; a tuple draws one per image in training
            (multi-scale training) and uses the last in evaluation.
        max_size: The longer side's limit.
        image_mean: Per-channel mean of the [0, 1] input.
        image_std: Per-channel standard deviation.
        size_divisible: The padded batch's sides are multiples of this (32: the deepest FPN stride).
        fixed_size: Resize every image to this (H, W) instead (SSD: 300 x 300).
        resize: False keeps the images' sizes (the YOLOs, trained at the data's size).
    """

    def __init__(self, min_size: int | Sequence[int], max_size: int, image_mean: Sequence[float],
                 image_std: Sequence[float], size_divisible: int = 32, fixed_size: Sequence[int] | None = None,
                 resize: bool = True) -> None:
        super().__init__()
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (int(min_size),)
        self.max_size = int(max_size)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.size_divisible = int(size_divisible)
        self.fixed_size = tuple(int(v) for v in fixed_size) if fixed_size is not None else None
        self.resize_images = resize

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per channel."""
        if not image.is_floating_point():
            raise ValueError(f"detector input must be a floating-point image in [0, 1], got dtype {image.dtype}")
        shape = (-1,) + (1,) * (image.ndim - 1)
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device).view(shape)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device).view(shape)
        return (image - mean) / std

    def _pick_min_size(self) -> int:
        if not self.training:
            return self.min_size[-1]
        # torchvision draws with torch.empty(1).uniform_ from the global RNG for every training
        # image, also with one size; drawing the same keeps training runs comparable with it.
        index = int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())
        return self.min_size[index]

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """One normalised (C, H, W) image resized, its target's boxes scaled alike."""
        if not self.resize_images:
            return image, target
        h, w = image.shape[-2:]
        size = self._pick_min_size()
        if self.fixed_size is not None:
            out = F.interpolate(image[None], size=[self.fixed_size[1], self.fixed_size[0]], mode="bilinear",
                                align_corners=False)[0]
        else:
            scale = min(size / min(h, w), self.max_size / max(h, w))
            out = F.interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                                align_corners=False)[0]
        if target is None:
            return out, target
        target = dict(target)
        target["boxes"] = resize_boxes(target["boxes"], (h, w), out.shape[-2:])
        return out, target

    def batch_images(self, images: list[Tensor]) -> Tensor:
        """Images of different sizes padded (bottom and right, with zeros) into one batch whose
        sides are multiples of ``size_divisible``."""
        channels = max(int(img.shape[0]) for img in images)
        stride = float(self.size_divisible)
        height = int(math.ceil(max(int(img.shape[1]) for img in images) / stride) * stride)
        width = int(math.ceil(max(int(img.shape[2]) for img in images) / stride) * stride)
        batch = images[0].new_full((len(images), channels, height, width), 0)
        for i, img in enumerate(images):
            batch[i, :img.shape[0], :img.shape[1], :img.shape[2]].copy_(img)
        return batch

    def forward(self, images: list[Tensor], targets: Targets | None = None) -> tuple[ImageList, Targets | None]:
        """Normalise, resize and pad; returns the padded batch with each image's size, and the
        targets with their boxes in the resized images' coordinates (copies: the caller's are kept)."""
        out_images, out_targets = [], [] if targets is not None else None
        for i, image in enumerate(images):
            if image.dim() != 3:
                raise ValueError(f"images[{i}] must be (C, H, W), got shape {tuple(image.shape)}")
            image, target = self.resize(self.normalize(image), targets[i] if targets is not None else None)
            out_images.append(image)
            if out_targets is not None:
                out_targets.append(target)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in out_images]
        return ImageList(self.batch_images(out_images), sizes), out_targets

    def postprocess(self, result: Targets, image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> Targets:
        """Detections' boxes from the resized images back to the input images' coordinates."""
        if self.training or not self.resize_images:
            return result
        for pred, size, original in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], size, original)
        return result

    def extra_repr(self) -> str:
        if not self.resize_images:
            return f"mean={self.image_mean}, std={self.image_std}, no resize, pad to {self.size_divisible}"
        size = f"fixed {self.fixed_size}" if self.fixed_size else f"min {self.min_size}, max {self.max_size}"
        return f"mean={self.image_mean}, std={self.image_std}, resize {size}, pad to {self.size_divisible}"


def channel_stats(values: Sequence[float], in_channels: int) -> tuple[float, ...]:
    """A per-channel statistic for ``in_channels`` channels: as given for 3, the first repeated otherwise."""
    values = tuple(values)
    return values if len(values) == in_channels else (values[0],) * in_channels


class DetectionModel(nn.Module):
    """Base class: input and target checks, the forward contract, the analysis entry point.

    Subclasses set ``spatial_dims``, ``in_channels``, ``num_classes``, ``feature_info`` (their
    backbone's stages), ``cam_layer`` and implement ``forward`` and :meth:`dense_logits`.
    """

    spatial_dims: int = 2
    in_channels: int
    num_classes: int
    label_offset: ClassVar[int] = 0  # 1 where label 0 is background (see the module docstring)
    feature_info: list[FeatureInfo]
    cam_layer: str | None = None
    default_cfg: dict[str, Any] = {}

    def _name(self) -> str:
        return self.default_cfg.get("name", type(self).__name__)

    def image_list(self, images: Tensor | Sequence[Tensor]) -> list[Tensor]:
        """The images as a list of (C, H, W) tensors, checked: channels, dtype, non-empty."""
        if isinstance(images, Tensor):
            if images.dim() != 4:
                raise ValueError(f"{self._name()} takes a (B, C, H, W) batch or a list of (C, H, W) images, got a "
                                 f"tensor of shape {tuple(images.shape)}")
            images = list(images.unbind(0))
        images = list(images)
        if not images:
            raise ValueError(f"{self._name()} got no images")
        for i, img in enumerate(images):
            if not isinstance(img, Tensor) or img.dim() != 3:
                shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
                raise ValueError(f"{self._name()}: images[{i}] must be a (C, H, W) tensor, got {shape}")
            if img.shape[0] != self.in_channels:
                raise ValueError(f"{self._name()} expects {self.in_channels} input channel(s), got images[{i}] of "
                                 f"shape {tuple(img.shape)}")
            if not img.is_floating_point():
                raise ValueError(f"{self._name()}: images[{i}] must be floating point in [0, 1], got {img.dtype}")
            if min(img.shape[1:]) < 1:
                raise ValueError(f"{self._name()}: images[{i}] is empty, shape {tuple(img.shape)}")
        return images

    def prepare(self, images: Tensor | Sequence[Tensor], targets: Targets | None
                ) -> tuple[ImageList, Targets | None, list[tuple[int, int]]]:
        """The start of every detector's forward: the images checked, the targets checked (in
        training), both resized, normalised and batched by ``self.transform``; returns the
        batch, the transformed targets (None in eval mode) and each image's original size."""
        images = self.image_list(images)
        if self.training:
            targets = self.check_targets(targets, len(images))
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets if self.training else None)
        return batch, targets, original_sizes

    def check_targets(self, targets: Targets | None, num_images: int) -> Targets:
        """Training targets, checked: one dict per image, float (N, 4) boxes with positive
        sides, int64 (N,) labels within the model's classes."""
        if targets is None:
            raise ValueError(f"{self._name()} in training mode needs targets (one dict of boxes and labels per "
                             "image); call model.eval() to predict")
        if len(targets) != num_images:
            raise ValueError(f"{self._name()}: {num_images} images but {len(targets)} targets")
        low, high = self.label_offset, self.num_classes - 1
        for i, t in enumerate(targets):
            if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
                raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
            boxes, labels = t["boxes"], t["labels"]
            if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"targets[{i}]['boxes'] must be an (N, 4) tensor, got "
                                 f"{tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}")
            if not boxes.is_floating_point():
                raise ValueError(f"targets[{i}]['boxes'] must be floating point, got {boxes.dtype}")
            if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != boxes.shape[:1]:
                raise ValueError(f"targets[{i}]['labels'] must be an int64 tensor of shape ({boxes.shape[0]},), got "
                                 f"{labels.dtype if isinstance(labels, Tensor) else type(labels).__name__} "
                                 f"{tuple(labels.shape) if isinstance(labels, Tensor) else ''}")
            if labels.numel() and (int(labels.min()) < low or int(labels.max()) > high):
                raise ValueError(f"targets[{i}]['labels'] must lie in {low}..{high} for {self._name()} "
                                 f"(num_classes={self.num_classes}, label_offset={self.label_offset}), got "
                                 f"{int(labels.min())}..{int(labels.max())}")
            degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
            if degenerate.any():
                j = int(torch.where(degenerate)[0][0])
                raise ValueError(f"targets[{i}]['boxes'][{j}] = {[round(v, 3) for v in boxes[j].tolist()]} has no "
                                 "area: every box needs x1 < x2 and y1 < y2")
        return targets

    # -- analysis ----------------------------------------------------------------------------------

    def dense_logits(self, x: Tensor) -> Tensor:
        """``(B, N, K)`` class logits of every anchor or position for a normalised, padded
        batch (the heads before any selection). Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its dense class logits")

    def analysis_forward(self, x: Tensor) -> Tensor:
        """``(B, K)``: each class's highest logit over all anchors or positions of the images
        ``x`` ((B, C, H, W) in [0, 1], normalised and padded here but not resized). What
        :func:`convnet.summary` runs and :func:`convnet.analysis.cam.grad_cam` explains."""
        transform = self.transform
        x = transform.normalize(x.transpose(0, 1)).transpose(0, 1)
        divisor = transform.size_divisible
        pad = [0, (-x.shape[-1]) % divisor, 0, (-x.shape[-2]) % divisor]
        if any(pad):
            x = F.pad(x, pad)
        return self.dense_logits(x).amax(dim=1)


def freeze_units(units: Sequence[Sequence[nn.Module]], trainable: int, what: str) -> None:
    """Freeze the parameters of all but the last ``trainable`` of ``units`` (torchvision's
    ``trainable_backbone_layers``: 0 freezes the whole backbone, ``len(units)`` none of it)."""
    if not 0 <= trainable <= len(units):
        raise ValueError(f"trainable_backbone_layers must be in 0..{len(units)} for {what}, got {trainable}")
    for unit in units[:len(units) - trainable]:
        for module in unit:
            for p in module.parameters():
                p.requires_grad_(False)


def set_frozen_norm_eps(module: nn.Module, eps: float) -> None:
    """Set the eps of every frozen batch norm in ``module`` (torchvision loads its COCO_V1 R-CNN
    and RetinaNet checkpoints with eps 0: ``overwrite_eps(model, 0.0)``)."""
    from ..layers import FrozenBatchNorm

    for m in module.modules():
        if isinstance(m, FrozenBatchNorm):
            m.eps = eps


def backbone_with_units(name: str, in_channels: int, norm_layer: str, overrides: dict[str, Any] | None,
                        trainable_layers: int, norm_eps: float | None = None) -> tuple[nn.Module, list[FeatureInfo]]:
    """A registered classifier as a detection trunk: built with ``norm_layer``, its stem and
    stages as the units ``trainable_layers`` counts from the deepest (torchvision's
    ``layer4 .. layer1, conv1`` for a ResNet)."""
    from ._registry import create_model, get_entry

    if get_entry(name).task != "classify":
        raise ValueError(f"backbone {name!r} is a {get_entry(name).task} model; choose a classifier "
                         "(convnet.list_models(task='classify'))")
    trunk = create_model(name, spatial_dims=2, in_channels=in_channels, norm_layer=norm_layer, **(overrides or {}))
    if norm_eps is not None:
        set_frozen_norm_eps(trunk, norm_eps)
    units = [[trunk.stem]] if hasattr(trunk, "stem") else []
    units += [[trunk.get_submodule(f.module)] for f in trunk.feature_info]
    freeze_units(units, trainable_layers, name)
    return trunk, list(trunk.feature_info)


def pyramid_backbone(spec: Any, in_channels: int, overrides: dict[str, Any] | None
                     ) -> tuple[nn.Module, nn.Module, list[FeatureInfo]]:
    """The backbone and FPN of the torchvision-layout detectors from their spec's fields
    (``backbone``, ``backbone_norm``, ``backbone_norm_eps``, ``trainable_backbone_layers``,
    ``returned_stages``, ``fpn_channels``, ``fpn_extra``): a FeatureExtractor over the chosen
    stages, the pyramid on them, and the extractor's ``feature_info`` named from the detector."""
    from ._features import FeatureExtractor
    from ._fpn import FeaturePyramidNetwork, extra_block

    trunk, info = backbone_with_units(spec.backbone, in_channels, spec.backbone_norm, overrides,
                                      spec.trainable_backbone_layers, spec.backbone_norm_eps)
    try:
        taps = [info[i] for i in spec.returned_stages]
    except IndexError:
        raise ValueError(f"returned_stages {spec.returned_stages} name stages {spec.backbone} lacks (it has "
                         f"{len(info)})") from None
    extractor = FeatureExtractor(trunk, feature_info=taps)
    c = spec.fpn_channels
    fpn = FeaturePyramidNetwork(2, [f.channels for f in taps], c, extra_block(spec.fpn_extra, 2, c, c))
    feature_info = [FeatureInfo(f.channels, f.reduction, f"backbone.{f.module}") for f in extractor.feature_info]
    return extractor, fpn, feature_info


def flatten_level(x: Tensor, columns: int) -> Tensor:
    """(B, A * columns, H, W) -> (B, H * W * A, columns): positions, then anchors, as the anchors are ordered."""
    n, _, h, w = x.shape
    return x.view(n, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, columns)


def top_candidates(scores: Tensor, threshold: float, topk: int) -> tuple[Tensor, Tensor]:
    """One level's or one class's best candidates, as torchvision's one-stage detectors choose
    them: the scores above ``threshold``, at most ``topk`` of them, best first. Returns those
    scores and their indices into ``scores`` (flat)."""
    keep = scores > threshold
    candidates = torch.where(keep)[0]
    kept, order = scores[keep].topk(min(topk, candidates.size(0)))
    return kept, candidates[order]


def final_detections(boxes: Sequence[Tensor], scores: Sequence[Tensor], labels: Sequence[Tensor],
                     nms_thresh: float, detections_per_img: int) -> dict[str, Tensor]:
    """One image's detections from its per-level (or per-class) candidates: class-wise NMS, then
    the ``detections_per_img`` best."""
    boxes_c, scores_c, labels_c = torch.cat(list(boxes)), torch.cat(list(scores)), torch.cat(list(labels))
    keep = batched_nms(boxes_c, scores_c, labels_c, nms_thresh)[:detections_per_img]
    return {"boxes": boxes_c[keep], "scores": scores_c[keep], "labels": labels_c[keep]}


def tiny_backbone(name: str) -> dict[str, Any]:
    """The backbone overrides of a registered classifier's ``tiny`` size (for tests)."""
    from ._registry import get_entry

    return dict(get_entry(name).extra.get("tiny", {}))
