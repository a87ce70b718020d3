"""A modern anchor-free YOLO: CSP backbone, PAN neck, decoupled head, SimOTA assignment.

Written from the papers under convnet's MIT licence; each piece follows one of them:

* **Backbone** (CSPDarknet): C.-Y. Wang, H.-Y. M. Liao, Y.-H. Wu, P.-Y. Chen, J.-W. Hsieh,
  I.-H. Yeh, "CSPNet: A New Backbone that can Enhance Learning Capability of CNN", CVPR
  Workshops 2020: each stage is a strided 3x3 convolution and a cross-stage-partial block that
  splits the channels into two 1x1 branches, runs residual bottlenecks (1x1, 3x3) on one, and
  fuses the concatenation with a 1x1 convolution (§3.1: half the gradient paths skip the dense
  part). A. Bochkovskiy, C.-Y. Wang, H.-Y. M. Liao, "YOLOv4", arXiv:2004.10934, 2020: SPP (He et
  al. 2015) with 5, 9, 13 max pools on the deepest stage, stride-1 and concatenated (§3.4). The
  stem here is one 3x3/2 convolution.
* **Neck** (PAN): S. Liu, L. Qi, H. Qin, J. Shi, J. Jia, "Path Aggregation Network for Instance
  Segmentation", CVPR 2018: an FPN top-down path (1x1 lateral, nearest upsampling,
  concatenation, a CSP block), then a bottom-up path (3x3/2 convolution, concatenation with the
  top-down map, a CSP block), giving P3, P4, P5 at strides 8, 16, 32 (YOLOv4 §3.4, PANet with
  concatenation instead of addition).
* **Head and training**: Z. Ge, S. Liu, F. Wang, Z. Li, J. Sun, "YOLOX: Exceeding YOLO Series in
  2021", arXiv:2107.08430: anchor-free (one prediction per position, §2.1 "Anchor-free": the
  box centre as an offset from the cell and its size as log(size / stride)), a decoupled head
  per level (Fig. 2: a 1x1 convolution to the head width, then separate classification and
  regression branches of two 3x3 convolutions each, with the objectness beside the box), BCE for
  objectness and classes, an IoU-type loss for the boxes (here GIoU, Rezatofighi et al. CVPR
  2019), weighted 5 : 1 : 1 (box : objectness : class, the YOLOX release), and **SimOTA** label
  assignment (§2.1 "SimOTA"): for each object, the candidates are the positions inside its box
  or within 2.5 strides of its centre; the cost of a (object, prediction) pair is the
  classification BCE plus 3 x (-log IoU); each object takes its k cheapest candidates with k the
  sum of its 10 best IoUs (at least 1, OTA's "dynamic k"); a prediction claimed twice stays with
  the cheaper object. The classification target of a positive is its IoU with its object.
  Biases of the objectness and class outputs start at the 1% prior of RetinaNet (§4.1).

Widths and depths scale with two multipliers (the "n" and "s" sizes of YOLOv5 and YOLOX: 0.25
and 0.50 width, 0.33 depth) on base widths 64, 128, 256, 512, 1024 and depths 3, 9, 9, 3;
SiLU activations (Elfwing et al. 2018) and BatchNorm (eps 1e-3, momentum 0.03) throughout.

Spatial dims: 2 only (planar boxes and NMS). The model takes images whose sides are any size
(padded to a multiple of 32 inside) in [0, 1]; it does not resize (train and predict at the
data's size). ``dense_outputs`` is the network before box selection, the part that exports to
ONNX with dynamic batch and size: (B, N, 4 + 1 + K) decoded ``xyxy`` boxes, objectness and
class probabilities.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import layers as L
from ..ops import batched_nms, box_iou, clip_boxes_to_image, generalized_box_iou_loss
from ._base import FeatureInfo
from ._detection import DetectionModel, DetectionTransform, Targets, channel_stats
from ._registry import register


@dataclass(frozen=True)
class YOLOSpec:
    """One size of the modern YOLO."""

    width_mult: float = 0.25  # n: 0.25, s: 0.50
    depth_mult: float = 0.33  # n and s: 0.33
    base_widths: tuple[int, ...] = (64, 128, 256, 512, 1024)  # stem, then the four stages
    base_depths: tuple[int, ...] = (3, 9, 9, 3)  # bottlenecks per stage's CSP block
    head_width: int = 256  # scaled by width_mult
    spp_kernels: tuple[int, ...] = (5, 9, 13)
    act_layer: str = "silu"
    norm_eps: float = 1e-3
    norm_momentum: float = 0.03
    prior_probability: float = 0.01
    center_radius: float = 2.5  # SimOTA's candidate region, in strides
    dynamic_k_candidates: int = 10
    iou_cost_weight: float = 3.0
    box_loss_weight: float = 5.0
    score_thresh: float = 0.001
    nms_thresh: float = 0.65
    topk_candidates: int = 1000
    detections_per_img: int = 100
    max_log_size: float = 10.0  # log(size / stride) is clamped here before exp (no overflow early on)


def _width(spec: YOLOSpec, channels: int) -> int:
    return max(8, int(round(channels * spec.width_mult)))


def _depth(spec: YOLOSpec, depth: int) -> int:
    return max(1, int(round(depth * spec.depth_mult)))


class Bottleneck(nn.Module):
    """1x1 then 3x3 convolution, added to the input when ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool, conv):
        super().__init__()
        self.conv1 = conv(channels, channels, 1)
        self.conv2 = conv(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.shortcut else out


class CSPBlock(nn.Module):
    """Cross-stage partial block: ``conv1`` -> ``blocks`` and ``conv2`` (the partial path),
    concatenated and fused by ``conv3``; each branch has half the output's channels."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, shortcut: bool, conv):
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = conv(in_channels, hidden, 1)
        self.conv2 = conv(in_channels, hidden, 1)
        self.blocks = nn.Sequential(*[Bottleneck(hidden, shortcut, conv) for _ in range(depth)])
        self.conv3 = conv(2 * hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        dense = self.blocks(self.conv1(x))
        partial = self.conv2(x)
        return self.conv3(torch.cat((dense, partial), dim=1))  # (B, 2 hidden, H, W) -> (B, out, H, W)


class SPP(nn.Module):
    """Spatial pyramid pooling at stride 1 (YOLOv4 §3.4): a 1x1 reduction to half, max pools of
    several sizes, concatenation, a 1x1 back to ``channels``."""

    def __init__(self, channels: int, kernels: tuple[int, ...], conv):
        super().__init__()
        hidden = channels // 2
        self.conv1 = conv(channels, hidden, 1)
        self.pools = nn.ModuleList([L.max_pool(2, k, 1, k // 2) for k in kernels])
        self.conv2 = conv(hidden * (len(kernels) + 1), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class CSPDarknet(nn.Module):
    """``stem`` and four ``stages`` (strided conv + CSP block; SPP before the last block)."""

    def __init__(self, in_channels: int, spec: YOLOSpec, conv):
        super().__init__()
        widths = [_width(spec, w) for w in spec.base_widths]
        self.stem = conv(in_channels, widths[0], 3, 2)
        self.stages = nn.ModuleList()
        self.feature_info = []
        channels, reduction = widths[0], 2
        for i, (w, d) in enumerate(zip(widths[1:], spec.base_depths)):
            last = i == len(spec.base_depths) - 1
            parts = [conv(channels, w, 3, 2)]
            if last:
                parts.append(SPP(w, spec.spp_kernels, conv))
            # The deepest block has no shortcut (YOLOX's dark5), the others do.
            parts.append(CSPBlock(w, w, _depth(spec, d), shortcut=not last, conv=conv))
            self.stages.append(nn.Sequential(*parts))
            channels, reduction = w, reduction * 2
            self.feature_info.append(FeatureInfo(w, reduction, f"backbone.stages.{i}"))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out[1:]  # C3, C4, C5 (strides 8, 16, 32)


class PAN(nn.Module):
    """Top-down then bottom-up aggregation of C3, C4, C5 into P3, P4, P5 (same channels)."""

    def __init__(self, channels: list[int], depth: int, conv):
        super().__init__()
        c3, c4, c5 = channels
        self.lateral5 = conv(c5, c4, 1)
        self.top_down4 = CSPBlock(2 * c4, c4, depth, shortcut=False, conv=conv)
        self.lateral4 = conv(c4, c3, 1)
        self.top_down3 = CSPBlock(2 * c3, c3, depth, shortcut=False, conv=conv)
        self.down3 = conv(c3, c3, 3, 2)
        self.bottom_up4 = CSPBlock(2 * c3, c4, depth, shortcut=False, conv=conv)
        self.down4 = conv(c4, c4, 3, 2)
        self.bottom_up5 = CSPBlock(2 * c4, c5, depth, shortcut=False, conv=conv)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        c3, c4, c5 = features
        lat5 = self.lateral5(c5)  # (B, c4, H/32, W/32)
        td4 = self.top_down4(torch.cat((F.interpolate(lat5, size=c4.shape[2:], mode="nearest"), c4), dim=1))
        lat4 = self.lateral4(td4)  # (B, c3, H/16, W/16)
        p3 = self.top_down3(torch.cat((F.interpolate(lat4, size=c3.shape[2:], mode="nearest"), c3), dim=1))
        p4 = self.bottom_up4(torch.cat((self.down3(p3), lat4), dim=1))
        p5 = self.bottom_up5(torch.cat((self.down4(p4), lat5), dim=1))
        return [p3, p4, p5]


class DecoupledHead(nn.Module):
    """Per level: ``stems[i]`` (1x1 to the head width), ``cls_convs[i]`` -> ``cls_preds[i]``
    (K logits) and ``reg_convs[i]`` -> ``reg_preds[i]`` (4) and ``obj_preds[i]`` (1)."""

    def __init__(self, channels: list[int], width: int, num_classes: int, prior: float, conv):
        super().__init__()
        self.stems = nn.ModuleList([conv(c, width, 1) for c in channels])
        self.cls_convs = nn.ModuleList([nn.Sequential(conv(width, width, 3), conv(width, width, 3)) for _ in channels])
        self.reg_convs = nn.ModuleList([nn.Sequential(conv(width, width, 3), conv(width, width, 3)) for _ in channels])
        self.cls_preds = nn.ModuleList([L.conv(2, width, num_classes, 1) for _ in channels])
        self.reg_preds = nn.ModuleList([L.conv(2, width, 4, 1) for _ in channels])
        self.obj_preds = nn.ModuleList([L.conv(2, width, 1, 1) for _ in channels])
        bias = -math.log((1 - prior) / prior)  # RetinaNet's prior: few positives at the start
        for pred in (*self.cls_preds, *self.obj_preds):
            nn.init.constant_(pred.bias, bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Per level (B, 4 + 1 + K, H, W): box (dx, dy, log w, log h), objectness, classes."""
        out = []
        for i, x in enumerate(features):
            x = self.stems[i](x)
            cls = self.cls_preds[i](self.cls_convs[i](x))
            reg_features = self.reg_convs[i](x)
            out.append(torch.cat((self.reg_preds[i](reg_features), self.obj_preds[i](reg_features), cls), dim=1))
        return out


class YOLO(DetectionModel):
    """The modern YOLO: ``transform`` (normalise, pad to 32), ``backbone``, ``neck``, ``head``.

    Args:
        spec: The size.
        spatial_dims: 2.
        in_channels: Image channels.
        num_classes: Categories (no background class).
    """

    strides = (8, 16, 32)

    def __init__(self, spec: YOLOSpec = YOLOSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 80):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"the YOLO is planar (2-D boxes and NMS), got spatial_dims={spatial_dims}")
        self.spec = spec
        self.in_channels, self.num_classes = in_channels, num_classes
        norm = functools.partial(L.norm, "batch", 2, eps=spec.norm_eps, momentum=spec.norm_momentum)

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
            return L.ConvNormAct(2, cin, cout, k, stride, norm_layer=norm, act_layer=spec.act_layer)

        self.backbone = CSPDarknet(in_channels, spec, conv)
        self.feature_info = list(self.backbone.feature_info)
        levels = [f.channels for f in self.feature_info[1:]]
        self.neck = PAN(levels, _depth(spec, spec.base_depths[0]), conv)
        self.head = DecoupledHead(levels, _width(spec, spec.head_width), num_classes, spec.prior_probability, conv)
        self.transform = DetectionTransform(0, 0, channel_stats((0.0,), in_channels),
                                            channel_stats((1.0,), in_channels), size_divisible=max(self.strides),
                                            resize=False)
        self.cam_layer = self.feature_info[-1].module

    # -- dense predictions ---------------------------------------------------------------------------

    def raw_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For a normalised, padded batch: the head's outputs flattened over the levels
        (B, N, 4 + 1 + K), each position's cell (N, 2: column, row) and stride (N,)."""
        levels = self.head(self.neck(self.backbone(x)))
        flat, grids, strides = [], [], []
        for out, stride in zip(levels, self.strides):
            b, c, h, w = out.shape
            flat.append(out.flatten(2).transpose(1, 2))  # (B, H W, C), row-major positions
            rows, cols = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                                        indexing="ij")
            grids.append(torch.stack((cols, rows), dim=-1).reshape(-1, 2))
            strides.append(torch.full((h * w,), stride, device=x.device, dtype=torch.float32))
        return torch.cat(flat, dim=1), torch.cat(grids).to(x.dtype), torch.cat(strides).to(x.dtype)

    def decode(self, raw: Tensor, grid: Tensor, stride: Tensor) -> Tensor:
        """``xyxy`` boxes (B, N, 4): centre (cell + offset) x stride, size exp(log size) x stride."""
        centre = (raw[..., :2] + grid) * stride[:, None]
        size = torch.exp(raw[..., 2:4].clamp(max=self.spec.max_log_size)) * stride[:, None]
        return torch.cat((centre - size / 2, centre + size / 2), dim=-1)

    def dense_outputs(self, x: Tensor) -> Tensor:
        """(B, N, 4 + 1 + K): decoded boxes, objectness and class probabilities of every
        position, before any selection, for images (B, C, H, W) in [0, 1] with H and W
        multiples of 32 (what exports to ONNX with dynamic batch and size)."""
        x = self.transform.normalize(x.transpose(0, 1)).transpose(0, 1)
        raw, grid, stride = self.raw_outputs(x)
        return torch.cat((self.decode(raw, grid, stride), torch.sigmoid(raw[..., 4:])), dim=-1)

    def dense_logits(self, x: Tensor) -> Tensor:
        raw, _, _ = self.raw_outputs(x)
        return raw[..., 5:]

    # -- training --------------------------------------------------------------------------------------

    @torch.no_grad()
    def assign(self, boxes: Tensor, logits: Tensor, centres: Tensor, stride: Tensor, target: dict[str, Tensor]
               ) -> tuple[Tensor, Tensor, Tensor]:
        """SimOTA for one image: the positive positions (N,) bool, each positive's object index,
        and its IoU with that object (the class target's weight)."""
        spec = self.spec
        gt_boxes, gt_labels = target["boxes"], target["labels"]
        n, m = boxes.shape[0], gt_boxes.shape[0]
        positive = torch.zeros(n, dtype=torch.bool, device=boxes.device)
        if m == 0:
            return positive, positive.new_zeros(0, dtype=torch.long), boxes.new_zeros(0)
        cx, cy = centres[:, 0], centres[:, 1]
        in_box = ((cx[None] > gt_boxes[:, 0:1]) & (cx[None] < gt_boxes[:, 2:3])
                  & (cy[None] > gt_boxes[:, 1:2]) & (cy[None] < gt_boxes[:, 3:4]))  # (M, N)
        gt_cx, gt_cy = (gt_boxes[:, 0:1] + gt_boxes[:, 2:3]) / 2, (gt_boxes[:, 1:2] + gt_boxes[:, 3:4]) / 2
        radius = spec.center_radius * stride[None]
        in_centre = ((cx[None] - gt_cx).abs() < radius) & ((cy[None] - gt_cy).abs() < radius)
        candidate = (in_box | in_centre).any(dim=0)  # (N,)
        idx = torch.where(candidate)[0]
        if idx.numel() == 0:
            return positive, positive.new_zeros(0, dtype=torch.long), boxes.new_zeros(0)
        ious = torch.nan_to_num(box_iou(gt_boxes, boxes[idx]), nan=0.0)  # (M, Nc)
        iou_cost = -torch.log(ious + 1e-8)
        probs = torch.sqrt(torch.sigmoid(logits[idx, 1:]) * torch.sigmoid(logits[idx, :1]))  # (Nc, K)
        one_hot = F.one_hot(gt_labels, self.num_classes).to(probs.dtype)  # (M, K)
        cls_cost = F.binary_cross_entropy(probs[None].expand(m, -1, -1).clamp(1e-6, 1 - 1e-6),
                                          one_hot[:, None].expand(-1, idx.numel(), -1), reduction="none").sum(-1)
        outside = ~(in_box[:, idx] & in_centre[:, idx])
        cost = cls_cost + spec.iou_cost_weight * iou_cost + 1e5 * outside  # (M, Nc)
        k = torch.topk(ious, min(spec.dynamic_k_candidates, idx.numel()), dim=1).values.sum(1).int().clamp(min=1)
        matching = torch.zeros_like(cost, dtype=torch.bool)
        for g in range(m):  # each object's k cheapest candidates
            matching[g, torch.topk(cost[g], int(k[g]), largest=False).indices] = True
        claimed = matching.sum(0) > 1
        if claimed.any():  # a prediction claimed twice stays with the cheaper object
            cheapest = cost[:, claimed].argmin(0)
            matching[:, claimed] = False
            matching[cheapest, torch.where(claimed)[0]] = True
        fg = matching.any(0)
        matched_gt = matching[:, fg].float().argmax(0)
        positive[idx[fg]] = True
        return positive, matched_gt, ious[matched_gt, torch.where(fg)[0]]

    def loss(self, raw: Tensor, grid: Tensor, stride: Tensor, targets: Targets) -> dict[str, Tensor]:
        boxes = self.decode(raw, grid, stride)
        centres = (grid + 0.5) * stride[:, None]
        obj_targets, cls_logits, cls_targets, box_preds, box_targets = [], [], [], [], []
        for b, target in enumerate(targets):
            positive, matched, ious = self.assign(boxes[b].detach(), raw[b, :, 4:].detach(), centres, stride, target)
            obj_targets.append(positive.to(raw.dtype))
            if positive.any():
                cls_logits.append(raw[b, positive, 5:])
                cls_targets.append(F.one_hot(target["labels"][matched], self.num_classes).to(raw.dtype) * ious[:, None])
                box_preds.append(boxes[b, positive])
                box_targets.append(target["boxes"][matched])
        num_fg = max(1.0, float(sum(t.sum() for t in obj_targets)))
        obj_loss = F.binary_cross_entropy_with_logits(raw[..., 4], torch.stack(obj_targets), reduction="sum") / num_fg
        if box_preds:
            box_loss = generalized_box_iou_loss(torch.cat(box_preds), torch.cat(box_targets), reduction="sum") / num_fg
            cls_loss = F.binary_cross_entropy_with_logits(torch.cat(cls_logits), torch.cat(cls_targets),
                                                          reduction="sum") / num_fg
        else:  # no object in the batch: only the objectness learns (zero losses keep the graph)
            box_loss = cls_loss = raw[..., :4].sum() * 0.0
        return {"box": self.spec.box_loss_weight * box_loss, "objectness": obj_loss, "classification": cls_loss}

    # -- the model -------------------------------------------------------------------------------------

    def postprocess(self, raw: Tensor, grid: Tensor, stride: Tensor, image_sizes: list[tuple[int, int]]) -> Targets:
        """Each position's best class, score = objectness x class probability, the best
        ``topk_candidates`` above ``score_thresh``, per-class NMS, ``detections_per_img``."""
        spec = self.spec
        boxes = self.decode(raw, grid, stride)
        scores_all = torch.sigmoid(raw[..., 4:5]) * torch.sigmoid(raw[..., 5:])
        detections = []
        for b, size in enumerate(image_sizes):
            scores, labels = scores_all[b].max(dim=1)
            keep = torch.where(scores > spec.score_thresh)[0]
            scores, order = scores[keep].topk(min(spec.topk_candidates, keep.numel()))
            keep = keep[order]
            kept_boxes = clip_boxes_to_image(boxes[b, keep], size)
            kept_labels = labels[keep]
            valid = torch.where((kept_boxes[:, 2] > kept_boxes[:, 0]) & (kept_boxes[:, 3] > kept_boxes[:, 1]))[0]
            kept_boxes, scores, kept_labels = kept_boxes[valid], scores[valid], kept_labels[valid]
            final = batched_nms(kept_boxes, scores, kept_labels, spec.nms_thresh)[:spec.detections_per_img]
            detections.append({"boxes": kept_boxes[final], "scores": scores[final], "labels": kept_labels[final]})
        return detections

    def forward(self, images: Tensor | list[Tensor], targets: Targets | None = None) -> Targets | dict[str, Tensor]:
        images = self.image_list(images)
        if self.training:
            targets = self.check_targets(targets, len(images))
        batch, _ = self.transform(images)  # no resize: the targets' boxes stay as they are
        raw, grid, stride = self.raw_outputs(batch.tensors)
        if self.training:
            return self.loss(raw, grid, stride, targets)
        return self.postprocess(raw, grid, stride, batch.image_sizes)


class DenseOutputs(nn.Module):
    """A detector's ``dense_outputs`` as a module's forward: what to export (ONNX, torch.export)
    and serve where the box selection runs elsewhere. Shares the detector's weights."""

    def __init__(self, detector: YOLO):
        super().__init__()
        self.detector = detector
        self.spatial_dims, self.in_channels = detector.spatial_dims, detector.in_channels
        self.default_cfg = dict(getattr(detector, "default_cfg", {}))
        self.model_config = getattr(detector, "model_config", None)

    def forward(self, x: Tensor) -> Tensor:
        return self.detector.dense_outputs(x)


_PAPER = ("Ge, Liu, Wang, Li, Sun. YOLOX: Exceeding YOLO Series in 2021. arXiv:2107.08430; Wang et al. CSPNet. "
          "CVPRW 2020; Liu et al. PANet. CVPR 2018")
_REFERENCE = ("counted by formula from the layer description in tests/test_detectors.py (this layout is convnet's: "
              "no reference library ships it)")

# name: (spec, reference_params); YOLOX-S with its Focus stem (12 input channels) counts 2,592 more: 8.97M,
# the 9.0M of Ge et al. Table 3
YOLO_SPECS: dict[str, tuple[YOLOSpec, int]] = {
    "yolo_n": (YOLOSpec(width_mult=0.25, depth_mult=0.33), 2_255_759),  # nano: 1/4 width, 1/3 depth
    "yolo_s": (YOLOSpec(width_mult=0.50, depth_mult=0.33), 8_965_663),  # small: 1/2 width, 1/3 depth
}

for _name, (_spec, _params) in YOLO_SPECS.items():
    register(_name, YOLO, _spec, family="yolo", paper=_PAPER, year=2021, task="detect", num_classes=80,
             input_size=640, spatial_dims=(2,), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
             reference_params=_params, reference=_REFERENCE,
             extra={"tiny": {"width_mult": 0.0625, "depth_mult": 0.33}})
