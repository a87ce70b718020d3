"""Faster R-CNN with a Feature Pyramid Network.

- S. Ren, K. He, R. Girshick, J. Sun, "Faster R-CNN: Towards Real-Time Object Detection with
  Region Proposal Networks", NeurIPS 2015 (arXiv:1506.01497): a Region Proposal Network (§3.1)
  slides a small network over the features and, for k anchors per position, predicts an
  objectness score and a box refinement; the best proposals after NMS are pooled into fixed-size
  features and classified, and their boxes refined per class, by the Fast R-CNN head (§3.2).
- T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017: the RPN runs on
  every pyramid level with one anchor size per level (32^2 .. 512^2 on P2 .. P6, §4.1) and each
  RoI is pooled from the level its size maps to (Eq. 1), by two 1024-wide fc layers (§4.2).

Layout and defaults of torchvision's ``fasterrcnn_resnet50_fpn`` (its state dicts load through
``weights/keymaps/detection.py`` with identical detections): a ResNet-50 with frozen batch
norms (``FrozenBatchNorm``: detection batches are too small for batch statistics), an FPN on its
four stages with a max-pool P6, a one-conv RPN head with 3 aspect ratios per level, RoIAlign
7x7 (sampling ratio 2), ``TwoMLPHead`` and ``FastRCNNPredictor``; images resized to a shorter
side of 800 (longer at most 1333) and padded to a multiple of 32. Training follows torchvision:
RPN anchors matched at IoU 0.7 / 0.3 with low-quality matches, 256 sampled per image at 1:1,
binary cross-entropy and smooth L1 (beta 1/9); 2000 proposals per image (1000 in evaluation);
512 RoIs per image at 1:3 (IoU 0.5), cross-entropy and smooth L1 on the true class's box.

``trainable_backbone_layers`` counts backbone units from the deepest (stage 4, 3, 2, 1, stem)
that train; torchvision's default for an untrained backbone is all five, which is the
registered default here (and what ``model_info`` counts: 41,755,286 trainable parameters), 3
its default with ImageNet weights. Label 0 is the background: ``num_classes`` includes it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import layers as L
from ..ops import (AnchorGenerator, BalancedPositiveNegativeSampler, BoxCoder, ImageList, Matcher, MultiScaleRoIAlign,
                   batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes)
from ._detection import (DetectionModel, DetectionTransform, Targets, channel_stats, flatten_level,
                         pyramid_backbone)
from ._registry import IMAGENET_MEAN, IMAGENET_STD, register

# -- region proposal network --------------------------------------------------------------------


class RPNHead(nn.Module):
    """A 3x3 conv (ReLU) shared by every level, then 1x1 convs to ``num_anchors`` objectness
    logits and ``4 * num_anchors`` box deltas (Ren et al. §3.1, Fig. 3)."""

    def __init__(self, spatial_dims: int, in_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        d = spatial_dims
        self.conv = nn.Sequential(*[L.ConvNormAct(d, in_channels, in_channels, 3, norm_layer=None)
                                    for _ in range(conv_depth)])
        self.cls_logits = L.conv(d, in_channels, num_anchors, 1)
        self.bbox_pred = L.conv(d, in_channels, num_anchors * 4, 1)
        for m in self.modules():
            if isinstance(m, L.CONV_TYPES):
                nn.init.normal_(m.weight, std=0.01)  # §3.1.3: "zero-mean Gaussian ... 0.01"
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = [], []
        for feature in features:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))  # (B, A, H, W)
            deltas.append(self.bbox_pred(t))  # (B, 4A, H, W)
        return logits, deltas


def concat_levels(logits: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Every level's predictions flattened and concatenated: logits (B * N, C), deltas (B * N, 4)."""
    flat_logits, flat_deltas = [], []
    for cls, box in zip(logits, deltas):
        anchors = box.shape[1] // 4
        flat_logits.append(flatten_level(cls, cls.shape[1] // anchors))
        flat_deltas.append(flatten_level(box, 4))
    return torch.cat(flat_logits, dim=1).flatten(0, -2), torch.cat(flat_deltas, dim=1).reshape(-1, 4)


class RegionProposalNetwork(nn.Module):
    """Proposals from anchors scored and refined by :class:`RPNHead`, and the RPN's losses.

    Per image and level the ``pre_nms_top_n`` best anchors by objectness are decoded, clipped,
    boxes below 1e-3 pixels dropped, NMS applied per level (IoU ``nms_thresh``) and the best
    ``post_nms_top_n`` kept (torchvision's order of operations).
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, fg_iou_thresh: float,
                 bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int], nms_thresh: float,
                 score_thresh: float = 0.0):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = dict(pre_nms_top_n)
        self._post_nms_top_n = dict(post_nms_top_n)
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def assign_targets_to_anchors(self, anchors: list[Tensor], targets: Targets) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: anchor labels (1 object, 0 background, -1 ignored) and matched boxes."""
        labels, matched_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor is background
                device = anchors_per_image.device
                matched_boxes.append(torch.zeros(anchors_per_image.shape, dtype=torch.float32, device=device))
                labels.append(torch.zeros((anchors_per_image.shape[0],), dtype=torch.float32, device=device))
                continue
            matched_idxs = self.proposal_matcher(box_iou(gt_boxes, anchors_per_image))
            matched_boxes.append(gt_boxes[matched_idxs.clamp(min=0)])
            labels_per_image = (matched_idxs >= 0).to(dtype=torch.float32)
            labels_per_image[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0.0
            labels_per_image[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(labels_per_image)
        return labels, matched_boxes

    def _top_n_idx(self, objectness: Tensor, num_anchors_per_level: list[int]) -> Tensor:
        out, offset = [], 0
        for ob in objectness.split(num_anchors_per_level, 1):
            k = min(self.pre_nms_top_n(), ob.shape[1])
            out.append(ob.topk(k, dim=1).indices + offset)
            offset += ob.shape[1]
        return torch.cat(out, dim=1)

    def filter_proposals(self, proposals: Tensor, objectness: Tensor, image_shapes: list[tuple[int, int]],
                         num_anchors_per_level: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        """The kept proposals and their objectness probabilities, per image."""
        num_images, device = proposals.shape[0], proposals.device
        objectness = objectness.detach().reshape(num_images, -1)  # no gradient through the selection
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=device)
                            for i, n in enumerate(num_anchors_per_level)]).reshape(1, -1).expand_as(objectness)
        top = self._top_n_idx(objectness, num_anchors_per_level)
        batch = torch.arange(num_images, device=device)[:, None]
        objectness, levels, proposals = objectness[batch, top], levels[batch, top], proposals[batch, top]
        probs = torch.sigmoid(objectness)
        final_boxes, final_scores = [], []
        for boxes, scores, lvl, shape in zip(proposals, probs, levels, image_shapes):
            boxes = clip_boxes_to_image(boxes, shape)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[:self.post_nms_top_n()]  # NMS per level
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    def compute_loss(self, objectness: Tensor, deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Binary cross-entropy over the sampled anchors; smooth L1 (beta 1/9) over the positive
        ones, divided by the number sampled."""
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos, dim=0))[0]
        neg = torch.where(torch.cat(neg, dim=0))[0]
        sampled = torch.cat([pos, neg], dim=0)
        objectness = objectness.flatten()
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        box_loss = F.smooth_l1_loss(deltas[pos], regression_targets[pos], beta=1 / 9, reduction="sum") / sampled.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
        return objectness_loss, box_loss

    def dense(self, images: ImageList | Tensor, features: list[Tensor]
              ) -> tuple[Tensor, Tensor, list[Tensor], list[int]]:
        """Objectness (B * N, 1), deltas (B * N, 4), the anchors and the anchors per level."""
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(images, features)
        num_anchors_per_level = [o[0].numel() for o in logits]  # A * H * W per level
        objectness, deltas = concat_levels(logits, deltas)
        return objectness, deltas, anchors, num_anchors_per_level

    def forward(self, images: ImageList, features: OrderedDict[str, Tensor], targets: Targets | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        feats = list(features.values())
        objectness, deltas, anchors, num_anchors_per_level = self.dense(images, feats)
        proposals = self.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)
        losses: dict[str, Tensor] = {}
        if self.training:
            labels, matched_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_boxes, anchors)
            loss_objectness, loss_box = self.compute_loss(objectness, deltas, labels, regression_targets)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        return boxes, losses


# -- RoI heads ----------------------------------------------------------------------------------


class TwoMLPHead(nn.Module):
    """The FPN paper's box head (§4.2): the pooled RoI flattened, two fc layers with ReLU."""

    def __init__(self, in_features: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(start_dim=1)  # (R, C, 7, 7) -> (R, C * 49)
        x = F.relu(self.fc6(x))
        return F.relu(self.fc7(x))


class FastRCNNPredictor(nn.Module):
    """Fast R-CNN's sibling outputs: ``cls_score`` over K classes (background included) and
    ``bbox_pred``, one box refinement per class (Girshick, ICCV 2015, §2.2)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def fastrcnn_loss(class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
                  regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Cross-entropy over the sampled RoIs; smooth L1 (beta 1/9) of the true class's box on the
    foreground ones, divided by the number of RoIs."""
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    n = class_logits.shape[0]
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    box_loss = F.smooth_l1_loss(box_regression[positive, labels[positive]], regression_targets[positive],
                                beta=1 / 9, reduction="sum")
    return classification_loss, box_loss / labels.numel()


class RoIHeads(nn.Module):
    """Pool every proposal (``box_roi_pool``), the box head, the predictor; sampling and the
    losses in training, per-class boxes, score threshold and NMS in evaluation."""

    def __init__(self, box_roi_pool: MultiScaleRoIAlign, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float, bg_iou_thresh: float, batch_size_per_image: int, positive_fraction: float,
                 bbox_reg_weights: tuple[float, ...], score_thresh: float, nms_thresh: float,
                 detections_per_img: int):
        super().__init__()
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def assign_targets_to_proposals(self, proposals: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]
                                    ) -> tuple[list[Tensor], list[Tensor]]:
        matched_idxs, labels = [], []
        for props, boxes, classes in zip(proposals, gt_boxes, gt_labels):
            if boxes.numel() == 0:  # background image
                matched_idxs.append(torch.zeros((props.shape[0],), dtype=torch.int64, device=props.device))
                labels.append(torch.zeros((props.shape[0],), dtype=torch.int64, device=props.device))
                continue
            matched = self.proposal_matcher(box_iou(boxes, props))
            clamped = matched.clamp(min=0)
            labels_in_image = classes[clamped].to(dtype=torch.int64)
            labels_in_image[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
            labels_in_image[matched == Matcher.BETWEEN_THRESHOLDS] = -1  # the sampler ignores -1
            matched_idxs.append(clamped)
            labels.append(labels_in_image)
        return matched_idxs, labels

    def select_training_samples(self, proposals: list[Tensor], targets: Targets
                                ) -> tuple[list[Tensor], list[Tensor], list[Tensor], tuple[Tensor, ...]]:
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        gt_labels = [t["labels"] for t in targets]
        # The ground truth joins the proposals, so every object has at least one good RoI.
        proposals = [torch.cat((p, b)) for p, b in zip(proposals, gt_boxes)]
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        pos, neg = self.fg_bg_sampler(labels)
        matched_boxes = []
        for i in range(len(proposals)):
            sampled = torch.where(pos[i] | neg[i])[0]
            proposals[i], labels[i] = proposals[i][sampled], labels[i][sampled]
            matched_idxs[i] = matched_idxs[i][sampled]
            boxes = gt_boxes[i]
            if boxes.numel() == 0:
                boxes = torch.zeros((1, 4), dtype=dtype, device=device)
            matched_boxes.append(boxes[matched_idxs[i]])
        regression_targets = self.box_coder.encode(matched_boxes, proposals)
        return proposals, matched_idxs, labels, regression_targets

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        device, num_classes = class_logits.device, class_logits.shape[-1]
        per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(per_image, 0)
        pred_scores = F.softmax(class_logits, -1).split(per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores)
            # every class of every RoI is a candidate, except the background (column 0)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[:self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    def forward(self, features: OrderedDict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]], targets: Targets | None = None
                ) -> tuple[Targets, dict[str, Tensor]]:
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_roi_pool(features, proposals, image_shapes)  # (R, C, 7, 7)
        box_features = self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        return [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, labels)], {}


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FasterRCNNSpec:
    """One Faster R-CNN variant; fields are torchvision's ``FasterRCNN`` arguments."""

    backbone: str = "resnet50"
    backbone_norm: str = "frozen_batch"
    backbone_norm_eps: float = 1e-5  # 0.0 reproduces torchvision's COCO_V1 checkpoint (overwrite_eps)
    trainable_backbone_layers: int = 5  # torchvision: 5 for an untrained backbone, 3 with ImageNet weights
    returned_stages: tuple[int, ...] = (0, 1, 2, 3)  # feature_info entries the FPN takes (C2..C5)
    fpn_channels: int = 256
    fpn_extra: str = "max_pool"  # P6 for the 512^2 anchors
    anchor_sizes: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    representation_size: int = 1024
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    bbox_reg_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)


class FasterRCNN(DetectionModel):
    """Faster R-CNN: ``transform``, ``backbone`` (FeatureExtractor), ``fpn``, ``rpn``, ``roi_heads``.

    Args:
        spec: The variant.
        spatial_dims: 2 (anchors, RoIAlign and the transform are planar).
        in_channels: Image channels.
        num_classes: Classes including the background (label 0): 91 for COCO's ids.
        backbone_overrides: ``create_model`` overrides of the backbone (a tiny one for tests).
    """

    label_offset = 1

    def __init__(self, spec: FasterRCNNSpec = FasterRCNNSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 91, backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"Faster R-CNN is planar (2-D anchors and RoIAlign), got spatial_dims={spatial_dims}")
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too: at least 2, got {num_classes}")
        self.spec = spec
        self.in_channels, self.num_classes = in_channels, num_classes
        self.backbone, self.fpn, self.feature_info = pyramid_backbone(spec, in_channels, backbone_overrides)
        c = spec.fpn_channels
        anchors = AnchorGenerator(spec.anchor_sizes, (spec.aspect_ratios,) * len(spec.anchor_sizes))
        head = RPNHead(2, c, anchors.num_anchors_per_location()[0])
        self.rpn = RegionProposalNetwork(
            anchors, head, spec.rpn_fg_iou_thresh, spec.rpn_bg_iou_thresh, spec.rpn_batch_size_per_image,
            spec.rpn_positive_fraction,
            {"training": spec.rpn_pre_nms_top_n_train, "testing": spec.rpn_pre_nms_top_n_test},
            {"training": spec.rpn_post_nms_top_n_train, "testing": spec.rpn_post_nms_top_n_test},
            spec.rpn_nms_thresh, spec.rpn_score_thresh)
        levels = [str(i) for i in range(len(spec.returned_stages))]  # the pyramid's levels, without P6
        pooler = MultiScaleRoIAlign(levels, spec.roi_output_size, spec.roi_sampling_ratio)
        self.roi_heads = RoIHeads(
            pooler, TwoMLPHead(c * spec.roi_output_size ** 2, spec.representation_size),
            FastRCNNPredictor(spec.representation_size, num_classes), spec.box_fg_iou_thresh, spec.box_bg_iou_thresh,
            spec.box_batch_size_per_image, spec.box_positive_fraction, spec.bbox_reg_weights, spec.box_score_thresh,
            spec.box_nms_thresh, spec.box_detections_per_img)
        self.transform = DetectionTransform(spec.min_size, spec.max_size, channel_stats(spec.image_mean, in_channels),
                                            channel_stats(spec.image_std, in_channels), size_divisible=32)
        self.cam_layer = self.feature_info[-1].module

    def features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """The pyramid of a normalised, padded batch: levels "0".."3" and "pool"."""
        return self.fpn(self.backbone(x))

    def dense_logits(self, x: Tensor) -> Tensor:
        """The RPN's objectness logits (B, N, 1): the class-agnostic dense part (the RoI head
        needs proposals, which depend on the data)."""
        objectness, _, _, _ = self.rpn.dense(x, list(self.features(x).values()))
        return objectness.view(x.shape[0], -1, 1)

    def forward(self, images: Tensor | list[Tensor], targets: Targets | None = None) -> Targets | dict[str, Tensor]:
        batch, targets, original_sizes = self.prepare(images, targets)
        features = self.features(batch.tensors)
        proposals, proposal_losses = self.rpn(batch, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        if self.training:
            return {**detector_losses, **proposal_losses}
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


_PAPER = ("Ren, He, Girshick, Sun. Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks. "
          "NeurIPS 2015; Lin, Dollar, Girshick, He, Hariharan, Belongie. Feature Pyramid Networks for Object "
          "Detection. CVPR 2017")
# Tests build the detectors small: a tiny ResNet, a narrow pyramid and head, small images.
_TINY = {"backbone_overrides": {"stem_width": 8, "widths": (8, 16, 16, 16), "layers": (1, 1, 1, 1)},
         "fpn_channels": 16, "representation_size": 32, "min_size": 96, "max_size": 160,
         "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100, "rpn_pre_nms_top_n_train": 200,
         "rpn_post_nms_top_n_train": 100, "box_batch_size_per_image": 64}

register("fasterrcnn_resnet50_fpn", FasterRCNN, FasterRCNNSpec(), family="fasterrcnn", paper=_PAPER, year=2015,
         task="detect", num_classes=91, input_size=800, spatial_dims=(2,), reference_params=41_755_286,
         reference="torchvision.models.detection.fasterrcnn_resnet50_fpn (weights meta num_params, 91 classes)",
         extra={"tiny": _TINY})
