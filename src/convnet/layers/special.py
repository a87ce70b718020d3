"""Layers of LeNet-5 that modern nets dropped: sparse connection tables and the RBF output."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .factory import check_dims, ntuple

_CONV_FN = (F.conv1d, F.conv2d, F.conv3d)


class ConnectionTableConv(nn.Module):
    """A convolution in which output map o sees only the input maps listed in ``table[o]``.

    LeNet-5's C3 (LeCun et al. 1998, Table I) breaks symmetry and saves parameters this way.
    Only the listed connections are parameters (a masked dense kernel would count the absent
    ones as parameters too), scattered into a dense kernel for the convolution.
    """

    def __init__(self, spatial_dims: int, in_channels: int, table: Sequence[Sequence[int]],
                 kernel_size: int | Sequence[int] = 5):
        super().__init__()
        self.spatial_dims = check_dims(spatial_dims)
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = ntuple(kernel_size, spatial_dims, "kernel_size")
        pairs = [(o, i) for o, inputs in enumerate(table) for i in inputs]
        bad = [i for _, i in pairs if not 0 <= i < in_channels]
        if bad:
            raise ValueError(f"connection table refers to input maps {bad}, only {in_channels} exist")
        self.register_buffer("out_index", torch.tensor([o for o, _ in pairs]), persistent=False)
        self.register_buffer("in_index", torch.tensor([i for _, i in pairs]), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(self.out_channels))
        fan_in = torch.zeros(self.out_channels).index_add_(0, self.out_index, torch.ones(len(pairs)))
        self.register_buffer("fan_in", fan_in * self.weight[0].numel(), persistent=False)
        nn.init.uniform_(self.weight, -0.1, 0.1)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in, *kernel) kernel with zeros where the table has no connection."""
        w = self.weight.new_zeros(self.out_channels, self.in_channels, *self.kernel_size)
        return w.index_put((self.out_index, self.in_index), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _CONV_FN[self.spatial_dims - 1](x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"connections={self.weight.shape[0]}")


class EuclideanRBF(nn.Module):
    """LeNet-5's output layer (§II.B, Eq. 7): y_i = sum_j (x_j - w_ij)^2 with fixed w.

    Returns the penalties y (B, K): small means "looks like the prototype of class i". The
    prototypes are a buffer, not parameters: the paper fixes them by hand to +-1.
    """

    def __init__(self, prototypes: torch.Tensor):
        super().__init__()
        self.register_buffer("prototypes", prototypes.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2, as one matmul instead of a (B, K, F) tensor.
        w = self.prototypes
        return (x * x).sum(1, keepdim=True) - 2 * x @ w.t() + (w * w).sum(1)

    def extra_repr(self) -> str:
        k, f = self.prototypes.shape
        return f"in_features={f}, classes={k} (fixed)"
