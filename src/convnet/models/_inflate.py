"""Inflate a 2-D network and its weights into a 3-D one (I3D; see layers/inflation.py)."""
from __future__ import annotations

import copy

from torch import nn

from .. import layers as L


def inflate(model: nn.Module, time_kernel: int = 3) -> nn.Module:
    """The 3-D network of a 2-D ``model``, with its weights inflated as I3D does.

    Every k x k convolution becomes ``time_kernel`` x k x k with its kernel repeated along time
    and divided by ``time_kernel`` (1x1 convolutions stay 1 in time); norms keep their
    statistics; pools act per frame. Time keeps its length, so ``feature_info`` reductions
    describe height and width. On a clip of one image repeated in time the result equals the
    2-D network's on that image (frame edges are padded by replication to keep this exact).

    Args:
        model: a 2-D model (``spatial_dims=2``); it is not changed.
        time_kernel: odd temporal extent of every inflated spatial kernel.

    Raises:
        ValueError: the model is not 2-D, or time_kernel is even.
        TypeError: the model holds a 2-D layer with no known 3-D counterpart (the message names it).
    """
    if getattr(model, "spatial_dims", 2) != 2:
        raise ValueError(f"inflate expects a 2-D model, got spatial_dims={model.spatial_dims}")
    model = copy.deepcopy(model)
    _replace(model, time_kernel)
    for m in model.modules():
        if isinstance(getattr(m, "spatial_dims", None), int):
            m.spatial_dims = 3
    if getattr(model, "fixed_input_size", None) is not None:
        model.fixed_input_axes = 2  # height and width stay fixed; time is free
    cfg = dict(getattr(model, "default_cfg", {}) or {})
    if "input_size" in cfg:
        c, size = cfg["input_size"][0], cfg["input_size"][-1]
        cfg["input_size"] = (c, size, size, size)
        model.default_cfg = cfg
    config = getattr(model, "model_config", None)
    if config is not None:
        model.model_config = {**config, "inflate": {"time_kernel": time_kernel}}
    return model


def _replace(module: nn.Module, time_kernel: int) -> None:
    for name, child in list(module.named_children()):
        new = L.inflate_module(child, time_kernel)
        if new is None:
            _replace(child, time_kernel)
        else:
            setattr(module, name, new)
