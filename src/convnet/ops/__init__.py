"""Tensor operations for detection that are not layers: boxes (area, IoU, GIoU, formats,
clipping), box coding, NMS, RoIAlign, anchors, matching, losses and COCO evaluation.

Pure PyTorch (NumPy for the host-side parts of NMS and evaluation), on any device, with
torchvision's names, signatures and results; boxes may have any number of dimensions where
the operation allows (``2n`` coordinates on the last axis, see :mod:`convnet.ops.boxes`).
"""
from .anchors import AnchorGenerator, DefaultBoxGenerator, ImageList
from .boxes import (
    BOX_FORMATS,
    box_area,
    box_convert,
    box_iou,
    box_ndim,
    clip_boxes_to_image,
    generalized_box_iou,
    remove_small_boxes,
)
from .coco_eval import evaluate_detections
from .coding import BoxCoder, BoxLinearCoder
from .losses import generalized_box_iou_loss, sigmoid_focal_loss
from .matching import BalancedPositiveNegativeSampler, Matcher, SSDMatcher
from .poolers import LevelMapper, MultiScaleRoIAlign, RoIAlign, convert_boxes_to_roi_format, roi_align
from .suppression import batched_nms, nms

__all__ = [
    "BOX_FORMATS",
    "AnchorGenerator", "BalancedPositiveNegativeSampler", "BoxCoder", "BoxLinearCoder", "DefaultBoxGenerator",
    "ImageList", "LevelMapper", "Matcher", "MultiScaleRoIAlign", "RoIAlign", "SSDMatcher",
    "batched_nms", "box_area", "box_convert", "box_iou", "box_ndim", "clip_boxes_to_image",
    "convert_boxes_to_roi_format", "evaluate_detections", "generalized_box_iou", "generalized_box_iou_loss", "nms",
    "remove_small_boxes", "roi_align", "sigmoid_focal_loss",
]
