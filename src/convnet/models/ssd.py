"""SSD and SSDlite: single-shot detectors with default boxes on several feature maps.

- SSD: W. Liu, D. Anguelov, D. Erhan, C. Szegedy, S. Reed, C.-Y. Fu, A. C. Berg, "SSD: Single Shot
  MultiBox Detector", ECCV 2016 (arXiv:1512.02325). A VGG-16 truncated after conv5_3 whose pool5
  becomes 3x3/1 and whose fc6/fc7 become a dilated 3x3 convolution (rate 6) and a 1x1 convolution
  (§3 "Base network", after DeepLab-LargeFOV), conv4_3 L2-normalised and rescaled by a learned
  per-channel factor initialised to 20 (§3.1, after ParseNet), and four extra blocks (1x1 then
  3x3) for maps of 10, 5, 3 and 1 at 300x300 input (Fig. 2). Every map predicts, per default box,
  class scores with a softmax over K + 1 classes (background = 0) and box offsets (3x3 convs).
  Training (§2.2): default boxes match ground truth at IoU >= 0.5 and each object its best box;
  smooth L1 on the positives' offsets and softmax cross-entropy with hard negative mining at
  3 negatives per positive, both divided by the number of positives (Eq. 1).
- SSDlite: M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted
  Residuals and Linear Bottlenecks", CVPR 2018, §6.2: SSD with every 3x3 prediction convolution
  replaced by a depthwise separable one; on MobileNetV3-Large as A. Howard et al., "Searching for
  MobileNetV3", ICCV 2019, §6.2: the first map taps the expansion layer of the stride-16 block
  that starts the last stage ("C4"), the second the final 1x1 conv ("C5"), and the last stage's
  channels are halved ("reduced tail").

Layouts and defaults of torchvision's ``ssd300_vgg16`` (scales 0.07 .. 1.05, steps 8 .. 300,
input normalised by the VGG's Caffe mean and x255) and ``ssdlite320_mobilenet_v3_large``
(BatchNorm eps 1e-3, momentum 0.03 throughout, min/max ratio 0.2 / 0.95, 320x320 input in
[-1, 1], extra blocks of 1x1 / depthwise 3x3/2 / 1x1 with ReLU6). Both resize every image to the
fixed input size and map the boxes back to the image's own size.
"""
from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import layers as L
from ..ops import BoxCoder, DefaultBoxGenerator, SSDMatcher, box_iou, clip_boxes_to_image
from ._base import FeatureInfo
from ._detection import (DetectionModel, DetectionTransform, Targets, channel_stats, final_detections, flatten_level,
                         freeze_units, top_candidates)
from ._features import FeatureExtractor
from ._registry import register


class ScoringHead(nn.ModuleList):
    """One prediction module per feature map; their outputs flattened to (B, sum H W A, columns)."""

    def __init__(self, modules: list[nn.Module], columns: int):
        super().__init__(modules)
        self.columns = columns

    def forward(self, features: list[Tensor]) -> Tensor:
        return torch.cat([flatten_level(module(f), self.columns) for module, f in zip(self, features)], dim=1)


def _init(modules: nn.Module, kind: str) -> None:
    # SSD: Xavier-uniform convolutions (torchvision's choice); SSDlite: N(0, 0.03) (its TF reference).
    for m in modules.modules():
        if isinstance(m, L.CONV_TYPES):
            if kind == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, mean=0.0, std=0.03)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)


class SSDHead(nn.Module):
    """3x3 convolutions per feature map: ``classification_head`` (K x A) and ``regression_head`` (4 x A)."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int):
        super().__init__()
        self.classification_head = ScoringHead(
            [L.conv(2, c, num_classes * a, 3) for c, a in zip(in_channels, num_anchors)], num_classes)
        self.regression_head = ScoringHead([L.conv(2, c, 4 * a, 3) for c, a in zip(in_channels, num_anchors)], 4)
        _init(self, "xavier")

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"bbox_regression": self.regression_head(features), "cls_logits": self.classification_head(features)}


def _separable(in_channels: int, out_channels: int, norm: Any) -> nn.Sequential:
    """SSDlite's prediction block: depthwise 3x3 (norm, ReLU6), then a 1x1 convolution."""
    return nn.Sequential(OrderedDict(
        depthwise=L.ConvNormAct(2, in_channels, in_channels, 3, groups=in_channels, norm_layer=norm,
                                act_layer="relu6"),
        pointwise=L.conv(2, in_channels, out_channels, 1)))


class SSDLiteHead(nn.Module):
    """Depthwise separable prediction blocks per feature map."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int, norm: Any):
        super().__init__()
        self.classification_head = ScoringHead(
            [_separable(c, num_classes * a, norm) for c, a in zip(in_channels, num_anchors)], num_classes)
        self.regression_head = ScoringHead([_separable(c, 4 * a, norm) for c, a in zip(in_channels, num_anchors)], 4)
        _init(self, "normal")

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"bbox_regression": self.regression_head(features), "cls_logits": self.classification_head(features)}


# -- backbones ----------------------------------------------------------------------------------


class SSDVGGBackbone(nn.Module):
    """VGG-16 for SSD300: ``conv4`` (stages 1-4 up to conv4_3, pool3 with ceil mode so that 75
    becomes 38), the L2 norm with ``scale_weight``, then ``extra``: [pool4, conv5_x, the fc
    block] and four (1x1, 3x3) blocks. Outputs six maps (38, 19, 10, 5, 3, 1 at 300x300)."""

    def __init__(self, in_channels: int = 3, trainable_layers: int = 5, backbone_overrides: dict | None = None):
        super().__init__()
        from ._registry import create_model

        # The classifier's fc layers are never used: built at width 1 instead of 4096 x 25,088.
        vgg = create_model("vgg16", spatial_dims=2, in_channels=in_channels,
                           **{"fc_width": 1, "pool_size": 1, **(backbone_overrides or {})})
        freeze_units([[s] for s in vgg.stages], trainable_layers, "vgg16")
        vgg.stages[2].pool.ceil_mode = True  # SSD's Caffe model rounds 75 / 2 up
        stage3 = vgg.stages[3]
        widths = [info.channels for info in vgg.feature_info]
        c4, c5 = widths[3], widths[4]
        conv4_3 = nn.Sequential(OrderedDict((n, m) for n, m in stage3.named_children() if n != "pool"))
        self.conv4 = nn.Sequential(vgg.stages[0], vgg.stages[1], vgg.stages[2], conv4_3)
        self.scale_weight = nn.Parameter(torch.ones(c4) * 20)  # §3.1: initial scale 20

        def width(w: int) -> int:  # the paper's widths, scaled with a narrower VGG (tests)
            return max(8, w * c5 // 512)

        fc = nn.Sequential(OrderedDict(
            pool=L.max_pool(2, 3, 1, 1),  # pool5 as 3x3/1: the map stays at 19
            fc6=L.ConvNormAct(2, c5, width(1024), 3, padding=6, dilation=6, norm_layer=None),  # atrous fc6
            fc7=L.ConvNormAct(2, width(1024), width(1024), 1, norm_layer=None)))
        conv5 = nn.Sequential(OrderedDict((n, m) for n, m in vgg.stages[4].named_children() if n != "pool"))
        first = nn.Sequential(OrderedDict(pool4=stage3.pool, conv5=conv5, fc=fc))
        # (in, mid, out, stride, padding) of conv8_2 .. conv11_2 (Fig. 2)
        extras = [(width(1024), width(256), width(512), 2, 1), (width(512), width(128), width(256), 2, 1),
                  (width(256), width(128), width(256), 1, 0), (width(256), width(128), width(256), 1, 0)]
        blocks = [nn.Sequential(OrderedDict(
            conv0=L.ConvNormAct(2, cin, mid, 1, norm_layer=None),
            conv1=L.ConvNormAct(2, mid, out, 3, stride, padding, norm_layer=None))) for cin, mid, out, stride, padding
            in extras]
        _init(nn.ModuleList(blocks), "xavier")
        _init(fc, "xavier")
        self.extra = nn.ModuleList([first, *blocks])
        self.out_channels = [c4, width(1024), width(512), width(256), width(256), width(256)]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv4(x)  # conv4_3: (B, 512, 38, 38) at 300
        out = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]  # L2 norm per position, learned scale
        for block in self.extra:
            x = block(x)
            out.append(x)
        return out


def _extra_block(in_channels: int, out_channels: int, norm: Any) -> nn.Sequential:
    """SSDlite's extra layer: 1x1 to half, depthwise 3x3/2, 1x1 to ``out_channels``; ReLU6 each."""
    mid = out_channels // 2
    return nn.Sequential(
        L.ConvNormAct(2, in_channels, mid, 1, norm_layer=norm, act_layer="relu6"),
        L.ConvNormAct(2, mid, mid, 3, 2, groups=mid, norm_layer=norm, act_layer="relu6"),
        L.ConvNormAct(2, mid, out_channels, 1, norm_layer=norm, act_layer="relu6"))


class SSDLiteMobileNetBackbone(nn.Module):
    """MobileNetV3-Large with a reduced tail: ``body`` taps the expansion of the stride-16 block
    that opens the last stage (C4) and the final 1x1 conv (C5), then four ``extra`` blocks."""

    def __init__(self, in_channels: int, norm: Any, trainable_layers: int = 6, width_mult: float = 1.0,
                 backbone_overrides: dict | None = None):
        super().__init__()
        from .mobilenet import V3_LARGE, MobileNet

        rows = list(V3_LARGE.rows)
        # The reduced tail (torchvision's reduced_tail=True): the last stage's widths halved.
        rows[-3:] = [dataclasses.replace(r, out_channels=r.out_channels // 2,
                                         expanded_channels=r.expanded_channels // (1 if i == 0 else 2))
                     for i, r in enumerate(rows[-3:])]
        spec = dataclasses.replace(V3_LARGE, rows=tuple(rows), final_width=V3_LARGE.final_width // 2,
                                   norm_momentum=0.03, **(backbone_overrides or {}))
        trunk = MobileNet(spec, spatial_dims=2, in_channels=in_channels)
        _init(trunk, "normal")
        # torchvision's units: the stem with the first stage, each later stage, the final conv.
        units = [[trunk.stem, trunk.stages[0]], *[[s] for s in trunk.stages[1:]], [trunk.final_conv]]
        freeze_units(units, trainable_layers, "mobilenet_v3_large")
        c4 = trunk.stages[-1].blocks[0]
        # The expansion runs before the block's stride: C4 is at the previous stage's reduction.
        taps = [FeatureInfo(c4.expand.conv.out_channels, trunk.feature_info[-2].reduction,
                            f"stages.{len(trunk.stages) - 1}.blocks.0.expand"), trunk.feature_info[-1]]
        self.body = FeatureExtractor(trunk, feature_info=taps)
        depth = lambda d: max(16, int(d * width_mult))  # noqa: E731
        c5 = taps[1].channels
        self.extra = nn.ModuleList([_extra_block(c5, depth(512), norm), _extra_block(depth(512), depth(256), norm),
                                    _extra_block(depth(256), depth(256), norm),
                                    _extra_block(depth(256), depth(128), norm)])
        _init(self.extra, "normal")
        self.out_channels = [taps[0].channels, c5, depth(512), depth(256), depth(256), depth(128)]

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.body(x)  # C4 expansion (B, 672, 20, 20) and C5 (B, 480, 10, 10) at 320
        x = out[-1]
        for block in self.extra:
            x = block(x)
            out.append(x)
        return out


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSDSpec:
    """One SSD variant; fields are torchvision's ``SSD`` arguments and its builders' choices."""

    backbone: str = "vgg16"  # "vgg16" (SSD300) or "mobilenet_v3_large" (SSDlite)
    size: tuple[int, int] = (300, 300)
    trainable_backbone_layers: int = 5  # torchvision: all for an untrained backbone
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    scales: tuple[float, ...] | None = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
    steps: tuple[int, ...] | None = (8, 16, 32, 64, 100, 300)
    min_ratio: float = 0.15
    max_ratio: float = 0.9
    image_mean: tuple[float, ...] = (0.48235, 0.45882, 0.40784)  # the VGG's Caffe mean
    image_std: tuple[float, ...] = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)  # undo the [0, 1] scaling
    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    detections_per_img: int = 200
    iou_thresh: float = 0.5
    topk_candidates: int = 400
    positive_fraction: float = 0.25  # 3 negatives per positive
    lite: bool = False  # SSDlite's separable heads on a MobileNetV3
    width_mult: float = 1.0  # SSDlite's extra blocks


class SSD(DetectionModel):
    """SSD / SSDlite: ``transform`` (fixed size), ``backbone``, ``anchor_generator``, ``head``.

    Args:
        spec: The variant.
        spatial_dims: 2.
        in_channels: Image channels.
        num_classes: Classes including the background (label 0).
        backbone_overrides: Overrides of the backbone's spec (a tiny one for tests).
    """

    label_offset = 1

    def __init__(self, spec: SSDSpec = SSDSpec(), spatial_dims: int = 2, in_channels: int = 3, num_classes: int = 91,
                 backbone_overrides: dict[str, Any] | None = None):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"SSD is planar (2-D default boxes), got spatial_dims={spatial_dims}")
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too: at least 2, got {num_classes}")
        self.spec = spec
        self.in_channels, self.num_classes = in_channels, num_classes
        self.anchor_generator = DefaultBoxGenerator(
            [list(r) for r in spec.aspect_ratios], spec.min_ratio, spec.max_ratio,
            scales=list(spec.scales) if spec.scales is not None else None,
            steps=list(spec.steps) if spec.steps is not None else None)
        num_anchors = self.anchor_generator.num_anchors_per_location()
        if spec.lite:
            norm = functools.partial(L.norm, "batch", 2, eps=0.001, momentum=0.03)
            self.backbone = SSDLiteMobileNetBackbone(in_channels, norm, spec.trainable_backbone_layers,
                                                     spec.width_mult, backbone_overrides)
            self.head = SSDLiteHead(self.backbone.out_channels, num_anchors, num_classes, norm)
            info = self.backbone.body.feature_info
            self.feature_info = [FeatureInfo(f.channels, f.reduction, f"backbone.body.{f.module}") for f in info]
        else:
            if spec.backbone != "vgg16":
                raise ValueError(f"SSD300's backbone is vgg16 (set lite=True for mobilenet_v3_large), got "
                                 f"{spec.backbone!r}")
            self.backbone = SSDVGGBackbone(in_channels, spec.trainable_backbone_layers, backbone_overrides)
            self.head = SSDHead(self.backbone.out_channels, num_anchors, num_classes)
            self.feature_info = [FeatureInfo(self.backbone.out_channels[0], 8, "backbone.conv4"),
                                 FeatureInfo(self.backbone.out_channels[1], 16, "backbone.extra.0")]
        if len(self.backbone.out_channels) != len(spec.aspect_ratios):
            raise ValueError(f"the backbone gives {len(self.backbone.out_channels)} maps but aspect_ratios names "
                             f"{len(spec.aspect_ratios)}")
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.proposal_matcher = SSDMatcher(spec.iou_thresh)
        self.neg_to_pos_ratio = (1.0 - spec.positive_fraction) / spec.positive_fraction
        self.transform = DetectionTransform(min(spec.size), max(spec.size), channel_stats(spec.image_mean, in_channels),
                                            channel_stats(spec.image_std, in_channels), size_divisible=1,
                                            fixed_size=spec.size)
        self.cam_layer = self.feature_info[-1].module

    def dense_logits(self, x: Tensor) -> Tensor:
        return self.head.classification_head(self.backbone(x))[..., 1:]  # the background column is no class

    def compute_loss(self, targets: Targets, outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        deltas, cls_logits = outputs["bbox_regression"], outputs["cls_logits"]
        num_foreground = 0
        box_losses, cls_targets = [], []
        for target, deltas_i, logits_i, anchors_i, matched in zip(targets, deltas, cls_logits, anchors, matched_idxs):
            fg = torch.where(matched >= 0)[0]
            fg_matched = matched[fg]
            num_foreground += fg_matched.numel()
            codes = self.box_coder.encode_single(target["boxes"][fg_matched], anchors_i[fg])
            box_losses.append(F.smooth_l1_loss(deltas_i[fg], codes, reduction="sum"))
            classes = torch.zeros((logits_i.size(0),), dtype=target["labels"].dtype, device=target["labels"].device)
            classes[fg] = target["labels"][fg_matched]
            cls_targets.append(classes)
        box_loss = torch.stack(box_losses)
        cls_targets = torch.stack(cls_targets)
        num_classes = cls_logits.size(-1)
        cls_loss = F.cross_entropy(cls_logits.view(-1, num_classes), cls_targets.view(-1),
                                   reduction="none").view(cls_targets.size())
        # Hard negative mining (§2.2): the negatives of highest loss, 3 per positive per image.
        foreground = cls_targets > 0
        num_negative = self.neg_to_pos_ratio * foreground.sum(1, keepdim=True)
        negative_loss = cls_loss.clone()
        negative_loss[foreground] = -float("inf")  # positives never count as negatives
        _, order = negative_loss.sort(1, descending=True)
        background = order.sort(1)[1] < num_negative  # rank of each anchor below the quota
        n = max(1, num_foreground)
        return {"bbox_regression": box_loss.sum() / n,
                "classification": (cls_loss[foreground].sum() + cls_loss[background].sum()) / n}

    def postprocess_detections(self, outputs: dict[str, Tensor], anchors: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> Targets:
        """Per class (background excluded): scores above the threshold, the best
        ``topk_candidates``; then NMS per class and the best ``detections_per_img``."""
        scores_all = F.softmax(outputs["cls_logits"], dim=-1)
        num_classes, device = scores_all.size(-1), scores_all.device
        detections = []
        for deltas, scores, anchors_i, shape in zip(outputs["bbox_regression"], scores_all, anchors, image_shapes):
            boxes = clip_boxes_to_image(self.box_coder.decode_single(deltas, anchors_i), shape)
            image_boxes, image_scores, image_labels = [], [], []
            for label in range(1, num_classes):
                score, idxs = top_candidates(scores[:, label], self.spec.score_thresh, self.spec.topk_candidates)
                image_boxes.append(boxes[idxs])
                image_scores.append(score)
                image_labels.append(torch.full_like(score, fill_value=label, dtype=torch.int64, device=device))
            detections.append(final_detections(image_boxes, image_scores, image_labels, self.spec.nms_thresh,
                                               self.spec.detections_per_img))
        return detections

    def forward(self, images: Tensor | list[Tensor], targets: Targets | None = None) -> Targets | dict[str, Tensor]:
        batch, targets, original_sizes = self.prepare(images, targets)
        features = self.backbone(batch.tensors)
        outputs = self.head(features)
        anchors = self.anchor_generator(batch, features)
        if self.training:
            matched_idxs = []
            for anchors_i, target in zip(anchors, targets):
                if target["boxes"].numel() == 0:
                    matched_idxs.append(torch.full((anchors_i.size(0),), -1, dtype=torch.int64,
                                                   device=anchors_i.device))
                else:
                    matched_idxs.append(self.proposal_matcher(box_iou(target["boxes"], anchors_i)))
            return self.compute_loss(targets, outputs, anchors, matched_idxs)
        detections = self.postprocess_detections(outputs, anchors, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


_SSD = "Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg. SSD: Single Shot MultiBox Detector. ECCV 2016"
_LITE = ("Sandler, Howard, Zhu, Zhmoginov, Chen. MobileNetV2: Inverted Residuals and Linear Bottlenecks. CVPR 2018; "
         "Howard et al. Searching for MobileNetV3. ICCV 2019")
SSDLITE = SSDSpec(backbone="mobilenet_v3_large", size=(320, 320), trainable_backbone_layers=6,
                  aspect_ratios=((2, 3),) * 6, scales=None, steps=None, min_ratio=0.2, max_ratio=0.95,
                  image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), score_thresh=0.001, nms_thresh=0.55,
                  detections_per_img=300, topk_candidates=300, lite=True)

register("ssd300_vgg16", SSD, SSDSpec(), family="ssd", paper=_SSD, year=2016, task="detect", num_classes=91,
         input_size=300, spatial_dims=(2,), reference_params=35_641_826,
         reference="torchvision.models.detection.ssd300_vgg16 (weights meta num_params, 91 classes)",
         extra={"tiny": {"backbone_overrides": {"widths": (8, 8, 16, 16, 16)},  # the extras need 300 (1x1 last map)
                         "topk_candidates": 50}})
register("ssdlite320_mobilenet_v3_large", SSD, SSDLITE, family="ssdlite", paper=_LITE, year=2019, task="detect",
         num_classes=91, input_size=320, spatial_dims=(2,), reference_params=3_440_060,
         reference="torchvision.models.detection.ssdlite320_mobilenet_v3_large (weights meta num_params, 91 "
                   "classes, weights_backbone=None: reduced tail)",
         extra={"tiny": {"backbone_overrides": {"width_mult": 0.25, "max_blocks_per_stage": 1}, "width_mult": 0.125,
                         "size": (96, 96), "topk_candidates": 50}})
