"""YOLO (v1): J. Redmon, S. Divvala, R. Girshick, A. Farhadi, "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016 (arXiv:1506.02640).

One network reads the whole 448x448 image and predicts an S x S grid (S = 7) of cells; each
cell predicts B = 2 boxes (x, y, w, h, confidence) and C = 20 class probabilities conditioned on
an object, a 7 x 7 x 30 tensor (§2). x, y are the box centre's offset inside its cell, w, h the
box's size relative to the image; confidence is Pr(object) x IoU(pred, truth). At test time a
box's class score is the class probability times the confidence (Eq. 1).

Architecture (§2.1, Fig. 3): 24 convolutional layers, "inspired by GoogLeNet": a 7x7/2 conv of
64 and a 2x2/2 max pool; a 3x3 conv of 192 and a pool; 1x1 128, 3x3 256, 1x1 256, 3x3 512 and a
pool; four (1x1 256, 3x3 512), 1x1 512, 3x3 1024 and a pool; two (1x1 512, 3x3 1024), 3x3
1024, 3x3/2 1024; two 3x3 1024; then a fully connected layer of 4096 and the output layer of
S x S x (5B + C). Leaky ReLU (slope 0.1) everywhere but the linear output layer (§2.2);
dropout 0.5 after the first fully connected layer.

Loss (§2.2, Eq. 3), sum-squared error: lambda_coord = 5 on the coordinates of the predictor
"responsible" for an object (of a cell's B predictors, the one whose current prediction has the
highest IoU with the object), with square roots of w and h so that an error on a large box
counts less than on a small one; the responsible predictor's confidence regresses to its IoU
with the object, every other predictor's to 0 with lambda_noobj = 0.5; class probabilities
regress to the one-hot class only in cells that hold an object's centre.

What the paper leaves open, and what is chosen here:

* Padding: "same" (the maps halve exactly, 448 -> 7), as in the authors' Darknet configuration.
* The output layout: the paper only says 7 x 7 x 30; here each cell's 30 values are the B boxes
  (x, y, sqrt w, sqrt h, confidence), then the C class probabilities. The network predicts
  sqrt(w), sqrt(h) directly (Darknet's ``sqrt=1``), so the loss's square roots apply to the targets
  only, and all outputs are linear (no sigmoid or softmax: the paper's "linear activation").
* Two objects whose centres fall in one cell: the cell takes the first (YOLO can only predict
  one there, a limitation the paper states in §2.4).
* Normalisation of the loss: summed over the cells and boxes of an image, averaged over the batch.
* The pretraining head (§2.2: "the first 20 convolutional layers followed by a average-pooling
  layer and a fully connected layer", on ImageNet at 224x224) is not built here: this model is
  the detection network; ``features`` (the 20 pretrained layers) and ``head`` keep the
  split so that a classifier can be put on ``features`` for pretraining.
* Inference: class scores above ``score_thresh`` and per-class NMS (IoU 0.5); the paper fixes
  neither value (a low threshold suits mAP).
* No batch normalisation (YOLOv2 added it); convolutions have biases.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import torch
from torch import Tensor, nn

from .. import layers as L
from ..ops import batched_nms, box_iou, clip_boxes_to_image
from ._base import FeatureInfo
from ._detection import DetectionModel, DetectionTransform, Targets, channel_stats
from ._registry import register

# Fig. 3, in order: ("conv", kernel, filters, stride) or ("pool",). The first 20 convolutions
# are the pretrained part (§2.2); the last four are added for detection.
DARKNET_LAYERS: tuple[tuple, ...] = (
    ("conv", 7, 64, 2), ("pool",),
    ("conv", 3, 192, 1), ("pool",),
    ("conv", 1, 128, 1), ("conv", 3, 256, 1), ("conv", 1, 256, 1), ("conv", 3, 512, 1), ("pool",),
    *(("conv", 1, 256, 1), ("conv", 3, 512, 1)) * 4, ("conv", 1, 512, 1), ("conv", 3, 1024, 1), ("pool",),
    *(("conv", 1, 512, 1), ("conv", 3, 1024, 1)) * 2,
)
DETECTION_LAYERS: tuple[tuple, ...] = (("conv", 3, 1024, 1), ("conv", 3, 1024, 2), ("conv", 3, 1024, 1),
                                       ("conv", 3, 1024, 1))


@dataclass(frozen=True)
class YOLOv1Spec:
    """YOLO's configuration: grid, boxes per cell, widths and loss weights."""

    grid_size: int = 7  # S; the input is 64 S (448 for S = 7): the network downsamples by 64
    boxes_per_cell: int = 2  # B
    width_mult: float = 1.0  # scales every convolution's filters (1: the paper's)
    fc_width: int = 4096
    drop_rate: float = 0.5
    leaky_slope: float = 0.1
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    score_thresh: float = 0.01
    nms_thresh: float = 0.5
    detections_per_img: int = 100


def _leaky(slope: float):
    return lambda: nn.LeakyReLU(slope, inplace=True)


def _darknet(layers: tuple[tuple, ...], in_channels: int, spec: YOLOv1Spec) -> tuple[nn.Sequential, int]:
    seq, channels, n_conv = OrderedDict(), in_channels, 0
    for i, layer in enumerate(layers):
        if layer[0] == "pool":
            seq[f"pool{i}"] = L.max_pool(2, 2, 2)
            continue
        _, k, filters, stride = layer
        out = max(1, round(filters * spec.width_mult))
        seq[f"conv{i}"] = L.ConvNormAct(2, channels, out, k, stride, norm_layer=None,
                                        act_layer=_leaky(spec.leaky_slope))
        channels, n_conv = out, n_conv + 1
    return nn.Sequential(seq), channels


class YOLOv1Head(nn.Module):
    """The four detection convolutions, the 4096 fully connected layer (leaky ReLU, dropout)
    and the linear S x S x (5B + C) output."""

    def __init__(self, in_channels: int, spec: YOLOv1Spec, num_classes: int):
        super().__init__()
        self.convs, channels = _darknet(DETECTION_LAYERS, in_channels, spec)
        s = spec.grid_size
        self.fc = nn.Linear(channels * s * s, spec.fc_width)
        self.act = nn.LeakyReLU(spec.leaky_slope, inplace=True)
        self.drop = nn.Dropout(spec.drop_rate)
        self.out = nn.Linear(spec.fc_width, s * s * (5 * spec.boxes_per_cell + num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x).flatten(1)  # (B, 1024, S, S) -> (B, 1024 S^2)
        return self.out(self.drop(self.act(self.fc(x))))


class YOLOv1(DetectionModel):
    """YOLOv1: ``transform`` (resize to 64 S), ``features`` (the 20 pretrained convolutions),
    ``head``. ``num_classes`` is C (20 for VOC)."""

    def __init__(self, spec: YOLOv1Spec = YOLOv1Spec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 20):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"YOLOv1 is planar (a 2-D grid of cells), got spatial_dims={spatial_dims}")
        self.spec = spec
        self.in_channels, self.num_classes = in_channels, num_classes
        self.features, channels = _darknet(DARKNET_LAYERS, in_channels, spec)
        self.head = YOLOv1Head(channels, spec, num_classes)
        self.input_size = 64 * spec.grid_size
        self.transform = DetectionTransform(self.input_size, self.input_size, channel_stats((0.0,), in_channels),
                                            channel_stats((1.0,), in_channels), size_divisible=1,
                                            fixed_size=(self.input_size, self.input_size))
        self.feature_info = [FeatureInfo(channels, 32, "features")]
        self.cam_layer = "features"
        for m in self.modules():  # Darknet's scaled-uniform convolutions are He's in spirit; zero biases
            if isinstance(m, L.CONV_TYPES):
                nn.init.kaiming_normal_(m.weight, a=spec.leaky_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def grid(self, x: Tensor) -> Tensor:
        """(B, S, S, 5B + C) predictions of a normalised (B, C, 64 S, 64 S) batch."""
        s, per_cell = self.spec.grid_size, 5 * self.spec.boxes_per_cell + self.num_classes
        return self.head(self.features(x)).view(x.shape[0], s, s, per_cell)

    def decode(self, grid: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
        """Boxes (B, S, S, nb, 4) in ``xyxy`` pixels of a ``size`` x ``size`` input, confidences
        (B, S, S, nb) and class probabilities (B, S, S, C)."""
        s, nb = self.spec.grid_size, self.spec.boxes_per_cell
        boxes = grid[..., :5 * nb].reshape(*grid.shape[:3], nb, 5)
        cells = torch.arange(s, device=grid.device, dtype=grid.dtype)
        cx = (boxes[..., 0] + cells.view(1, 1, s, 1)) / s  # x runs along the columns
        cy = (boxes[..., 1] + cells.view(1, s, 1, 1)) / s
        w, h = boxes[..., 2] ** 2, boxes[..., 3] ** 2  # the network predicts sqrt(w), sqrt(h)
        xyxy = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1) * size
        return xyxy, boxes[..., 4], grid[..., 5 * nb:]

    def dense_logits(self, x: Tensor) -> Tensor:
        """Class scores (B, S S nb, C): conditional class probability x confidence (Eq. 1)."""
        _, conf, probs = self.decode(self.grid(x), x.shape[-1])
        return (conf.unsqueeze(-1) * probs.unsqueeze(-2)).flatten(1, 3)

    def loss(self, grid: Tensor, targets: Targets, size: int) -> dict[str, Tensor]:
        """Eq. 3, split into its terms (each summed per image, averaged over the batch)."""
        spec, s, nb = self.spec, self.spec.grid_size, self.spec.boxes_per_cell
        boxes, conf, probs = self.decode(grid, size)
        n = grid.shape[0]
        coord = grid.new_zeros(())
        obj = grid.new_zeros(())
        cls = grid.new_zeros(())
        responsible = torch.zeros(conf.shape, dtype=torch.bool, device=grid.device)
        conf_target = torch.zeros_like(conf)
        for b, target in enumerate(targets):
            taken: set[tuple[int, int]] = set()
            for box, label in zip(target["boxes"], target["labels"]):
                cx, cy = (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size
                col, row = min(int(cx * s), s - 1), min(int(cy * s), s - 1)
                if (row, col) in taken:  # one object per cell (§2.4)
                    continue
                taken.add((row, col))
                ious = box_iou(boxes[b, row, col].detach(), box[None]).squeeze(1)  # (nb,)
                j = int(torch.nan_to_num(ious, nan=0.0).argmax())  # the responsible predictor
                pred = grid[b, row, col, 5 * j:5 * j + 4]
                w, h = (box[2] - box[0]) / size, (box[3] - box[1]) / size
                truth = torch.stack((cx * s - col, cy * s - row, w.sqrt(), h.sqrt()))
                coord = coord + ((pred - truth) ** 2).sum()
                responsible[b, row, col, j] = True
                conf_target[b, row, col, j] = torch.nan_to_num(ious[j], nan=0.0)  # rescore: IoU target
                one_hot = torch.zeros(self.num_classes, dtype=grid.dtype, device=grid.device)
                one_hot[label] = 1.0
                cls = cls + ((probs[b, row, col] - one_hot) ** 2).sum()
        obj = ((conf - conf_target)[responsible] ** 2).sum()
        noobj = ((conf[~responsible]) ** 2).sum()
        return {"coord": spec.lambda_coord * coord / n, "object": obj / n, "no_object": spec.lambda_noobj * noobj / n,
                "class": cls / n}

    def forward(self, images: Tensor | list[Tensor], targets: Targets | None = None) -> Targets | dict[str, Tensor]:
        batch, targets, original_sizes = self.prepare(images, targets)
        grid = self.grid(batch.tensors)
        size = self.input_size
        if self.training:
            return self.loss(grid, targets, size)
        boxes, conf, probs = self.decode(grid, size)
        detections = []
        for i in range(grid.shape[0]):
            scores = conf[i].unsqueeze(-1) * probs[i].unsqueeze(-2)  # (S, S, nb, C): Eq. 1
            candidates = boxes[i].unsqueeze(-2).expand(*scores.shape, 4).reshape(-1, 4)
            scores = scores.reshape(-1)
            labels = torch.arange(self.num_classes, device=grid.device).repeat(scores.numel() // self.num_classes)
            keep = torch.where(scores > self.spec.score_thresh)[0]
            b, sc, lab = clip_boxes_to_image(candidates[keep], (size, size)), scores[keep], labels[keep]
            valid = torch.where((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))[0]
            b, sc, lab = b[valid], sc[valid], lab[valid]
            keep = batched_nms(b, sc, lab, self.spec.nms_thresh)[:self.spec.detections_per_img]
            detections.append({"boxes": b[keep], "scores": sc[keep], "labels": lab[keep]})
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


_PAPER = "Redmon, Divvala, Girshick, Farhadi. You Only Look Once: Unified, Real-Time Object Detection. CVPR 2016"

# The count is derived layer by layer in tests/test_detectors.py from Fig. 3 (no reference
# implementation ships this layout in PyTorch).
register("yolov1", YOLOv1, YOLOv1Spec(), family="yolov1", paper=_PAPER, year=2016, task="detect", num_classes=20,
         input_size=448, fixed_input_size=True, spatial_dims=(2,), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
         reference_params=271_703_550,
         reference="Redmon et al. 2016 Fig. 3 (24 convolutions, fc 4096, 7x7x30 output), counted by hand in "
                   "tests/test_detectors.py",
         extra={"tiny": {"grid_size": 2, "width_mult": 1 / 32, "fc_width": 16}})
