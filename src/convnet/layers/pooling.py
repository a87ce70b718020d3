"""Pooling layers beyond torch's: global pooling in any dimension, LeNet's subsampling."""
from __future__ import annotations

import torch
from torch import nn

from .factory import avg_pool, ntuple


class GlobalPool(nn.Module):
    """Average or max over every spatial axis: (B, C, *S) -> (B, C, 1, ...) or (B, C)."""

    def __init__(self, pool_type: str = "avg", flatten: bool = True):
        super().__init__()
        if pool_type not in ("avg", "max"):
            raise ValueError(f"pool_type must be 'avg' or 'max', got {pool_type!r}")
        self.pool_type = pool_type
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, x.ndim))
        keep = not self.flatten
        return x.mean(spatial, keepdim=keep) if self.pool_type == "avg" else x.amax(spatial, keepdim=keep)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type}, flatten={self.flatten}"


class TrainableSubsampling(nn.Module):
    """LeNet-5's S-layers (LeCun et al. 1998, §II.B): the sum over each non-overlapping window,
    times a trainable coefficient, plus a trainable bias, per feature map (2 parameters each).
    The squashing function is applied by the caller."""

    def __init__(self, spatial_dims: int, channels: int, kernel_size: int = 2):
        super().__init__()
        self.window = avg_pool(spatial_dims, kernel_size)
        self.area = 1
        for k in ntuple(kernel_size, spatial_dims):
            self.area *= k
        # Starting as the average keeps the scale of the input; LeNet re-initialises it.
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / self.area))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.window(x) * self.area * self.weight.view(shape) + self.bias.view(shape)
