"""Normalisations that torch does not provide for (B, C, *S) tensors in any dimension."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    # (1, C, 1, ..., 1) so per-channel parameters broadcast over any number of spatial axes.
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a channels-first (B, C, *S) tensor (ConvNeXt)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)  # (B, *S, C): layer_norm normalises the last axis
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


class GlobalResponseNorm(nn.Module):
    """Global Response Normalization (Woo et al. 2023, ConvNeXt V2, Eq. 1-3).

    G(X) = ||X_c||_2 over space, N(G) = G_c / mean_c(G), X' = gamma * (X * N) + beta + X.
    gamma and beta start at zero, so the block starts as the identity.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, x.ndim))
        gx = torch.linalg.vector_norm(x, ord=2, dim=spatial, keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
        shape = _channel_shape(x)
        return self.gamma.view(shape) * (x * nx) + self.beta.view(shape) + x


class LocalResponseNorm(nn.LocalResponseNorm):
    """AlexNet's local response normalisation across channels (Krizhevsky et al. 2012, §3.3).

    b_i = a_i / (k + alpha * sum_{j in n neighbours} a_j^2)^beta with k=2, n=5, alpha=1e-4,
    beta=0.75. torch divides alpha by n (Caffe's convention); ``paper_alpha=True`` keeps the
    paper's meaning of alpha by passing alpha * n to torch.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 paper_alpha: bool = True):
        super().__init__(size, alpha * size if paper_alpha else alpha, beta, k)
