"""RetinaNet: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
Detection", ICCV 2017 (arXiv:1708.02002).

A one-stage detector (§4): an FPN on ResNet stages C3..C5 plus P6 and P7, 9 anchors per
position (3 scales 2^0, 2^(1/3), 2^(2/3) x 3 aspect ratios, areas 32^2 .. 512^2 on P3 .. P7),
and two subnets shared by every level: four 3x3 convolutions of 256 channels with ReLU, then a
3x3 convolution to K x A class logits (classification) or 4 x A box deltas (regression). The
classification loss is the focal loss (Eq. 5, alpha 0.25, gamma 2) summed over all anchors and
divided by the number of anchors assigned to an object; anchors match at IoU >= 0.5, are
background below 0.4 and ignored between; the last conv's bias starts at -log((1 - pi) / pi)
with pi = 0.01 so that rare foreground does not swamp the loss early (§4.1 "Initialization").

Layout and defaults of torchvision's ``retinanet_resnet50_fpn`` (v1): P6 from P5 (the paper takes
C5), an L1 box loss, a score threshold of 0.05, the 1000 best candidates per level, NMS at 0.5,
300 detections per image. Labels need no background class: ``num_classes`` is the number of
categories (torchvision's 91 keeps COCO's ids).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import layers as L
from ..ops import AnchorGenerator, BoxCoder, Matcher, box_iou, clip_boxes_to_image, sigmoid_focal_loss
from ._detection import (DetectionModel, DetectionTransform, Targets, channel_stats, final_detections, flatten_level,
                         pyramid_backbone, top_candidates)
from ._registry import IMAGENET_MEAN, IMAGENET_STD, register


def _sum(values: list[Tensor]) -> Tensor:
    out = values[0]
    for v in values[1:]:
        out = out + v
    return out


def conv_tower(spatial_dims: int, channels: int, depth: int, norm_layer: str | None, conv_bias: bool | None = None
               ) -> nn.Sequential:
    """``depth`` 3x3 convolutions with ``norm_layer`` (or none) and ReLU: a head's shared trunk."""
    return nn.Sequential(*[L.ConvNormAct(spatial_dims, channels, channels, 3, norm_layer=norm_layer, bias=conv_bias)
                           for _ in range(depth)])


class RetinaNetClassificationHead(nn.Module):
    """The classification subnet: a conv tower and ``cls_logits`` (K x A logits per position)."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01, norm_layer: str | None = None):
        super().__init__()
        self.conv = conv_tower(spatial_dims, in_channels, num_convs, norm_layer)
        for m in self.conv.modules():
            if isinstance(m, L.CONV_TYPES):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        self.cls_logits = L.conv(spatial_dims, in_channels, num_anchors * num_classes, 3)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        # §4.1: every anchor starts as foreground with probability pi.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes, self.num_anchors = num_classes, num_anchors

    def forward(self, features: list[Tensor]) -> Tensor:
        """(B, sum H W A, K) over every level."""
        return torch.cat([flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in features], dim=1)


class RetinaNetRegressionHead(nn.Module):
    """The box subnet: a conv tower and ``bbox_reg`` (4 x A deltas per position)."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, num_convs: int = 4,
                 norm_layer: str | None = None):
        super().__init__()
        self.conv = conv_tower(spatial_dims, in_channels, num_convs, norm_layer)
        self.bbox_reg = L.conv(spatial_dims, in_channels, num_anchors * 4, 3)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)
        for m in self.conv.modules():
            if isinstance(m, L.CONV_TYPES):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        """(B, sum H W A, 4) over every level."""
        return torch.cat([flatten_level(self.bbox_reg(self.conv(f)), 4) for f in features], dim=1)


class RetinaNetHead(nn.Module):
    """Both subnets; ``compute_loss`` is the focal loss plus the L1 box loss."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01, norm_layer: str | None = None, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0):
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(spatial_dims, in_channels, num_anchors, num_classes,
                                                               num_convs, prior_probability, norm_layer)
        self.regression_head = RetinaNetRegressionHead(spatial_dims, in_channels, num_anchors, num_convs, norm_layer)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"cls_logits": self.classification_head(features), "bbox_regression": self.regression_head(features)}

    def compute_loss(self, targets: Targets, outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        cls_losses, box_losses = [], []
        for target, logits, deltas, anchors_per_image, matched in zip(
                targets, outputs["cls_logits"], outputs["bbox_regression"], anchors, matched_idxs):
            foreground = matched >= 0
            num_foreground = foreground.sum()
            gt_classes = torch.zeros_like(logits)
            gt_classes[foreground, target["labels"][matched[foreground]]] = 1.0  # one-hot of the matched object
            valid = matched != Matcher.BETWEEN_THRESHOLDS
            cls_losses.append(sigmoid_focal_loss(logits[valid], gt_classes[valid], self.focal_alpha, self.focal_gamma,
                                                 reduction="sum") / max(1, num_foreground))
            fg = torch.where(foreground)[0]
            codes = self.box_coder.encode_single(target["boxes"][matched[fg]], anchors_per_image[fg])
            box_losses.append(F.l1_loss(deltas[fg], codes, reduction="sum") / max(1, fg.numel()))
        return {"classification": _sum(cls_losses) / len(targets),
                "bbox_regression": _sum(box_losses) / max(1, len(targets))}


@dataclass(frozen=True)
class RetinaNetSpec:
    """One RetinaNet variant; fields are torchvision's ``RetinaNet`` arguments."""

    backbone: str = "resnet50"
    backbone_norm: str = "frozen_batch"
    backbone_norm_eps: float = 1e-5  # 0.0 reproduces torchvision's COCO_V1 checkpoint
    trainable_backbone_layers: int = 5
    returned_stages: tuple[int, ...] = (1, 2, 3)  # C3..C5: "P2 generates too many anchors"
    fpn_channels: int = 256
    fpn_extra: str = "p6p7"
    # §4: three scales per octave, 32^2 .. 512^2 on P3 .. P7 (torchvision truncates to ints).
    anchor_sizes: tuple[tuple[int, ...], ...] = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3)))
                                                     for x in (32, 64, 128, 256, 512))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    head_convs: int = 4
    head_norm: str | None = None
    prior_probability: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 300
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    topk_candidates: int = 1000


def split_levels(outputs: dict[str, Tensor], anchors: list[Tensor], features: list[Tensor]
                 ) -> tuple[dict[str, list[Tensor]], list[list[Tensor]]]:
    """Head outputs and anchors split back into their pyramid levels."""
    positions = [int(f.shape[-2]) * int(f.shape[-1]) for f in features]
    per_position = next(iter(outputs.values())).shape[1] // sum(positions)
    sizes = [p * per_position for p in positions]
    return ({k: list(v.split(sizes, dim=1)) for k, v in outputs.items()}, [list(a.split(sizes)) for a in anchors])


class RetinaNet(DetectionModel):
    """RetinaNet: ``transform``, ``backbone`` (FeatureExtractor), ``fpn``, ``head``.

    Args:
        spec: The variant.
        spatial_dims: 2.
        in_channels: Image channels.
        num_classes: Categories (no background class).
        backbone_overrides: ``create_model`` overrides of the backbone.
    """

    def __init__(self, spec: RetinaNetSpec = RetinaNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 91, backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"RetinaNet is planar (2-D anchors), got spatial_dims={spatial_dims}")
        self.spec = spec
        self.in_channels, self.num_classes = in_channels, num_classes
        self.backbone, self.fpn, self.feature_info = pyramid_backbone(spec, in_channels, backbone_overrides)
        self.anchor_generator = AnchorGenerator(spec.anchor_sizes, (spec.aspect_ratios,) * len(spec.anchor_sizes))
        self.head = RetinaNetHead(2, spec.fpn_channels, self.anchor_generator.num_anchors_per_location()[0],
                                  num_classes, spec.head_convs, spec.prior_probability, spec.head_norm,
                                  spec.focal_alpha, spec.focal_gamma)
        self.proposal_matcher = Matcher(spec.fg_iou_thresh, spec.bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.transform = DetectionTransform(spec.min_size, spec.max_size, channel_stats(spec.image_mean, in_channels),
                                            channel_stats(spec.image_std, in_channels), size_divisible=32)
        self.cam_layer = self.feature_info[-1].module

    def dense_logits(self, x: Tensor) -> Tensor:
        return self.head.classification_head(list(self.fpn(self.backbone(x)).values()))

    def compute_loss(self, targets: Targets, outputs: dict[str, Tensor], anchors: list[Tensor]) -> dict[str, Tensor]:
        matched_idxs = []
        for anchors_per_image, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:  # every anchor is background
                matched_idxs.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64,
                                               device=anchors_per_image.device))
                continue
            matched_idxs.append(self.proposal_matcher(box_iou(target["boxes"], anchors_per_image)))
        return self.head.compute_loss(targets, outputs, anchors, matched_idxs)

    def postprocess_detections(self, outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> Targets:
        """Per level: scores above the threshold, the best ``topk_candidates``, decoded and
        clipped; then NMS per class over all levels and the best ``detections_per_img``."""
        detections = []
        for index, shape in enumerate(image_shapes):
            boxes_all, scores_all, labels_all = [], [], []
            for deltas, logits, level_anchors in zip(outputs["bbox_regression"], outputs["cls_logits"],
                                                     anchors[index]):
                deltas, logits = deltas[index], logits[index]
                num_classes = logits.shape[-1]
                scores, candidates = top_candidates(torch.sigmoid(logits).flatten(), self.spec.score_thresh,
                                                    self.spec.topk_candidates)
                anchor_idxs = torch.div(candidates, num_classes, rounding_mode="floor")
                boxes = self.box_coder.decode_single(deltas[anchor_idxs], level_anchors[anchor_idxs])
                boxes_all.append(clip_boxes_to_image(boxes, shape))
                scores_all.append(scores)
                labels_all.append(candidates % num_classes)
            detections.append(final_detections(boxes_all, scores_all, labels_all, self.spec.nms_thresh,
                                               self.spec.detections_per_img))
        return detections

    def forward(self, images: Tensor | list[Tensor], targets: Targets | None = None) -> Targets | dict[str, Tensor]:
        batch, targets, original_sizes = self.prepare(images, targets)
        features = list(self.fpn(self.backbone(batch.tensors)).values())
        outputs = self.head(features)
        anchors = self.anchor_generator(batch, features)
        if self.training:
            return self.compute_loss(targets, outputs, anchors)
        split_outputs, split_anchors = split_levels(outputs, anchors, features)
        detections = self.postprocess_detections(split_outputs, split_anchors, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


_PAPER = "Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017"
_TINY = {"backbone_overrides": {"stem_width": 8, "widths": (8, 16, 16, 16), "layers": (1, 1, 1, 1)},
         "fpn_channels": 16, "head_convs": 1, "min_size": 96, "max_size": 160, "topk_candidates": 100}

register("retinanet_resnet50_fpn", RetinaNet, RetinaNetSpec(), family="retinanet", paper=_PAPER, year=2017,
         task="detect", num_classes=91, input_size=800, spatial_dims=(2,), reference_params=34_014_999,
         reference="torchvision.models.detection.retinanet_resnet50_fpn (weights meta num_params, 91 classes)",
         extra={"tiny": _TINY})
