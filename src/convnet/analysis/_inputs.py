"""What the gradient-based analyses (ERF, equivariance) probe a model with."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def probe_setup(model: nn.Module, input_size: Sequence[int] | None, inputs: torch.Tensor | None,
                caller: str) -> tuple[torch.device, torch.dtype, tuple[int, ...]]:
    """The model's device and floating dtype, and the per-sample input size (C, *S): from the
    real ``inputs`` if given, else ``input_size``, else ``model.default_cfg["input_size"]``."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if inputs is not None:
        input_size = tuple(inputs.shape[1:])
    elif input_size is None:
        input_size = tuple(getattr(model, "default_cfg", {}).get("input_size") or ())
        if not input_size:
            raise ValueError(f"{caller} needs input_size=(C, *S) for a model without default_cfg['input_size']")
    return device, dtype, tuple(int(v) for v in input_size)
