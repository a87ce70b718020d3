"""FCOS: Z. Tian, C. Shen, H. Chen, T. He, "FCOS: Fully Convolutional One-Stage Object
Detection", ICCV 2019 (arXiv:1904.01355), with the improvements of its journal version
("FCOS: A Simple and Strong Anchor-free Object Detector", TPAMI 2022, arXiv:2006.09214).

Anchor-free (§3.1): every feature-map position whose centre falls in a ground-truth box
regresses the distances (l, t, r, b) to the box's sides (Eq. 1, here in units of the level's
stride), classifies with a sigmoid per class, and predicts a "center-ness" (Eq. 3,
sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))) that down-weights boxes from positions
far from the object's centre at test time (score = sqrt(class probability * center-ness)).
Each level P3..P7 takes the objects whose largest distance lies in its range (§3.2: 0, 64, 128,
256, 512, inf: 4 and 8 strides per level); ambiguous positions take the smallest box. Losses:
focal loss, GIoU loss on the decoded boxes (the journal version's, for the paper's IoU loss),
BCE for center-ness, each divided by the number of positive positions.

Layout of torchvision's ``fcos_resnet50_fpn``: the journal version's choices (center sampling
within 1.5 strides of the object's centre, center-ness on the regression branch, GroupNorm(32)
in the heads' four 3x3 convolutions, GIoU loss), anchors of one stride-sized box per position
so that the anchor centre is the FCOS location, score threshold 0.2, NMS at 0.6.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import layers as L
from ..ops import (AnchorGenerator, BoxLinearCoder, clip_boxes_to_image, generalized_box_iou_loss,
                   sigmoid_focal_loss)
from ._detection import (DetectionModel, DetectionTransform, Targets, channel_stats, final_detections, flatten_level,
                         pyramid_backbone, top_candidates)
from ._registry import IMAGENET_MEAN, IMAGENET_STD, register
from .retinanet import conv_tower, split_levels


def _init_normal(modules: list[nn.Module]) -> None:
    for module in modules:
        for m in module.modules():
            if isinstance(m, L.CONV_TYPES):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)


class FCOSClassificationHead(nn.Module):
    """Four 3x3 conv + GroupNorm + ReLU, then K logits per position (prior 0.01, as RetinaNet)."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01, norm_layer: str = "group"):
        super().__init__()
        self.num_classes = num_classes
        self.conv = conv_tower(spatial_dims, in_channels, num_convs, norm_layer, conv_bias=True)
        _init_normal([self.conv])
        self.cls_logits = L.conv(spatial_dims, in_channels, num_anchors * num_classes, 3)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))

    def forward(self, features: list[Tensor]) -> Tensor:
        return torch.cat([flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in features], dim=1)


class FCOSRegressionHead(nn.Module):
    """Four 3x3 conv + GroupNorm + ReLU, then the distances (``bbox_reg``, through a ReLU: they
    are non-negative) and the center-ness logit (``bbox_ctrness``)."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, num_convs: int = 4,
                 norm_layer: str = "group"):
        super().__init__()
        self.conv = conv_tower(spatial_dims, in_channels, num_convs, norm_layer, conv_bias=True)
        self.bbox_reg = L.conv(spatial_dims, in_channels, num_anchors * 4, 3)
        self.bbox_ctrness = L.conv(spatial_dims, in_channels, num_anchors, 3)
        _init_normal([self.bbox_reg, self.bbox_ctrness, self.conv])

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        boxes, ctrness = [], []
        for f in features:
            t = self.conv(f)
            boxes.append(flatten_level(F.relu(self.bbox_reg(t)), 4))
            ctrness.append(flatten_level(self.bbox_ctrness(t), 1))
        return torch.cat(boxes, dim=1), torch.cat(ctrness, dim=1)


class FCOSHead(nn.Module):
    """Both branches and the three losses."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01, norm_layer: str = "group"):
        super().__init__()
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(spatial_dims, in_channels, num_anchors, num_classes,
                                                          num_convs, prior_probability, norm_layer)
        self.regression_head = FCOSRegressionHead(spatial_dims, in_channels, num_anchors, num_convs, norm_layer)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        boxes, ctrness = self.regression_head(features)
        return {"cls_logits": self.classification_head(features), "bbox_regression": boxes, "bbox_ctrness": ctrness}

    def compute_loss(self, targets: Targets, outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        cls_logits, box_codes, ctrness = outputs["cls_logits"], outputs["bbox_regression"], outputs["bbox_ctrness"]
        gt_classes, gt_boxes = [], []
        for target, matched in zip(targets, matched_idxs):
            if len(target["labels"]) == 0:
                classes = target["labels"].new_zeros((len(matched),))
                boxes = target["boxes"].new_zeros((len(matched), 4))
            else:
                classes = target["labels"][matched.clip(min=0)]
                boxes = target["boxes"][matched.clip(min=0)]
            classes[matched < 0] = -1  # background
            gt_classes.append(classes)
            gt_boxes.append(boxes)
        gt_boxes, gt_classes, anchors = torch.stack(gt_boxes), torch.stack(gt_classes), torch.stack(anchors)
        foreground = gt_classes >= 0
        num_foreground = foreground.sum().item()
        one_hot = torch.zeros_like(cls_logits)
        one_hot[foreground, gt_classes[foreground]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, one_hot, reduction="sum")
        pred_boxes = self.box_coder.decode(box_codes, anchors)
        loss_box = generalized_box_iou_loss(pred_boxes[foreground], gt_boxes[foreground], reduction="sum")
        # Center-ness targets (Eq. 3) from the true distances of each position.
        codes = self.box_coder.encode(anchors, gt_boxes)
        if len(codes) == 0:
            ctr_targets = codes.new_zeros(codes.size()[:-1])
        else:
            left_right, top_bottom = codes[:, :, [0, 2]], codes[:, :, [1, 3]]
            ctr_targets = torch.sqrt((left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                                     * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]))
        loss_ctr = F.binary_cross_entropy_with_logits(ctrness.squeeze(dim=2)[foreground], ctr_targets[foreground],
                                                      reduction="sum")
        n = max(1, num_foreground)
        return {"classification": loss_cls / n, "bbox_regression": loss_box / n, "bbox_ctrness": loss_ctr / n}


@dataclass(frozen=True)
class FCOSSpec:
    """One FCOS variant; fields are torchvision's ``FCOS`` arguments."""

    backbone: str = "resnet50"
    backbone_norm: str = "frozen_batch"
    backbone_norm_eps: float = 1e-5
    trainable_backbone_layers: int = 5
    returned_stages: tuple[int, ...] = (1, 2, 3)  # C3..C5, then P6, P7
    fpn_channels: int = 256
    fpn_extra: str = "p6p7"
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)  # one stride-sized anchor per position and level
    center_sampling_radius: float = 1.5  # in strides (journal version, §2.3)
    head_convs: int = 4
    head_norm: str = "group"  # GroupNorm with 32 groups
    prior_probability: float = 0.01
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    score_thresh: float = 0.2
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    topk_candidates: int = 1000


class FCOS(DetectionModel):
    """FCOS: ``transform``, ``backbone`` (FeatureExtractor), ``fpn``, ``head``."""

    def __init__(self, spec: FCOSSpec = FCOSSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 91, backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"FCOS is built planar here (torchvision's layout), got spatial_dims={spatial_dims}")
        self.spec = spec
        self.in_channels, self.num_classes = in_channels, num_classes
        self.backbone, self.fpn, self.feature_info = pyramid_backbone(spec, in_channels, backbone_overrides)
        self.anchor_generator = AnchorGenerator(tuple((s,) for s in spec.strides), ((1.0,),) * len(spec.strides))
        self.head = FCOSHead(2, spec.fpn_channels, 1, num_classes, spec.head_convs, spec.prior_probability,
                             spec.head_norm)
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.transform = DetectionTransform(spec.min_size, spec.max_size, channel_stats(spec.image_mean, in_channels),
                                            channel_stats(spec.image_std, in_channels), size_divisible=32)
        self.cam_layer = self.feature_info[-1].module

    def dense_logits(self, x: Tensor) -> Tensor:
        return self.head.classification_head(list(self.fpn(self.backbone(x)).values()))

    def match(self, anchors: Tensor, boxes: Tensor, num_anchors_per_level: list[int]) -> Tensor:
        """Each position's object (-1: none): inside the box and within ``center_sampling_radius``
        strides of its centre, its largest distance in the level's range, the smallest box first."""
        centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        sizes = anchors[:, 2] - anchors[:, 0]  # the level's stride
        pairwise = (anchor_centers[:, None, :] - centers[None, :, :]).abs_().max(dim=2).values \
            < self.spec.center_sampling_radius * sizes[:, None]
        x, y = anchor_centers.unsqueeze(dim=2).unbind(dim=1)  # (N, 1)
        x0, y0, x1, y1 = boxes.unsqueeze(dim=0).unbind(dim=2)  # (1, M)
        distances = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # (N, M, 4)
        pairwise &= distances.min(dim=2).values > 0
        lower, upper = sizes * 4, sizes * 8  # §3.2's ranges: (4, 8] strides per level
        lower[:num_anchors_per_level[0]] = 0
        upper[-num_anchors_per_level[-1]:] = float("inf")
        largest = distances.max(dim=2).values
        pairwise &= (largest > lower[:, None]) & (largest < upper[:, None])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        weight = pairwise.to(torch.float32) * (1e8 - areas[None, :])  # the smallest matching box wins
        best, matched = weight.max(dim=1)
        matched[best < 1e-5] = -1
        return matched

    def compute_loss(self, targets: Targets, outputs: dict[str, Tensor], anchors: list[Tensor],
                     num_anchors_per_level: list[int]) -> dict[str, Tensor]:
        matched_idxs = []
        for anchors_per_image, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64,
                                               device=anchors_per_image.device))
            else:
                matched_idxs.append(self.match(anchors_per_image, target["boxes"], num_anchors_per_level))
        return self.head.compute_loss(targets, outputs, anchors, matched_idxs)

    def postprocess_detections(self, outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> Targets:
        detections = []
        for index, shape in enumerate(image_shapes):
            boxes_all, scores_all, labels_all = [], [], []
            for codes, logits, ctrness, level_anchors in zip(outputs["bbox_regression"], outputs["cls_logits"],
                                                             outputs["bbox_ctrness"], anchors[index]):
                codes, logits, ctrness = codes[index], logits[index], ctrness[index]
                num_classes = logits.shape[-1]
                # the journal version's score: sqrt(class probability x center-ness)
                scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctrness)).flatten()
                scores, candidates = top_candidates(scores, self.spec.score_thresh, self.spec.topk_candidates)
                anchor_idxs = torch.div(candidates, num_classes, rounding_mode="floor")
                boxes = self.box_coder.decode(codes[anchor_idxs], level_anchors[anchor_idxs])
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
        num_anchors_per_level = [int(f.shape[-2]) * int(f.shape[-1]) for f in features]
        if self.training:
            return self.compute_loss(targets, outputs, anchors, num_anchors_per_level)
        split_outputs, split_anchors = split_levels(outputs, anchors, features)
        detections = self.postprocess_detections(split_outputs, split_anchors, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


_PAPER = "Tian, Shen, Chen, He. FCOS: Fully Convolutional One-Stage Object Detection. ICCV 2019"
_TINY = {"backbone_overrides": {"stem_width": 8, "widths": (8, 16, 16, 16), "layers": (1, 1, 1, 1)},
         "fpn_channels": 16, "head_convs": 1, "min_size": 96, "max_size": 160, "topk_candidates": 100}

register("fcos_resnet50_fpn", FCOS, FCOSSpec(), family="fcos", paper=_PAPER, year=2019, task="detect",
         num_classes=91, input_size=800, spatial_dims=(2,), reference_params=32_269_600,
         reference="torchvision.models.detection.fcos_resnet50_fpn (weights meta num_params, 91 classes)",
         extra={"tiny": _TINY})
