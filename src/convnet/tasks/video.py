"""Video classification: one class per clip (C3D, the video ResNets, I3D).

A batch is ``{"input": (B, 3, T, H, W), "target": (B,)}``: clips as the data source samples
them (``video:DIR``: fixed starts, resized and centre-cropped, normalised with Kinetics' mean
and std). Loss, metrics and predictions are classification's. ``predict`` reads a video file's
centre clip with the run's clip settings (``data.clip``: frames, stride, short side, crop),
through the ``"video"`` input reader; the report shows clips by their middle frame. The image
augmentations are off: their 3-D forms would shear and scale the time axis too, which is not
what a clip augmentation is.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .base import register_task
from .classification import ClassificationTask

__all__ = ["VideoClassificationTask"]


@register_task
class VideoClassificationTask(ClassificationTask):
    """One class per clip; see the module docstring."""

    name = "classify_video"
    unit = "clip"

    def build_model(self, model_cfg: Any, data: Any) -> nn.Module:
        from ..models import create_model

        return create_model(model_cfg.name, spatial_dims=3, in_channels=data.channels, num_classes=data.num_classes,
                            **model_cfg.overrides)

    def build_augment(self, augment_cfg: Any, data: Any, spatial_dims: int) -> None:
        return None
