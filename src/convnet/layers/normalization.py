"""Normalisations by name (the ``NORMS`` registry behind :func:`norm`), and the ones torch does
not provide for (B, C, *S) tensors in any dimension.

A normalisation is registered once, with the factory that builds it, and every ``norm_layer=``
argument of the package accepts its name; the error for an unknown name lists the registry.
Adding one is one decorated function (the open factories of MONAI's ``layers/factories.py``)::

    @register_norm("my_norm")
    def _my_norm(spatial_dims: int, channels: int, **kwargs) -> nn.Module:
        return MyNorm(channels, **kwargs)
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .factory import pick

NormLayer = str | Callable[..., nn.Module] | None
# A factory builds the layer for (spatial_dims, channels, **options of the norm).
NormFactory = Callable[..., nn.Module]
NORMS: dict[str, NormFactory] = {}


def register_norm(name: str) -> Callable[[NormFactory], NormFactory]:
    """Decorator: make ``fn(spatial_dims, channels, **kwargs)`` the normalisation ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    def add(fn: NormFactory) -> NormFactory:
        if name in NORMS:
            raise ValueError(f"norm {name!r} is already registered ({NORMS[name].__qualname__})")
        NORMS[name] = fn
        return fn
    return add


def norm(name: NormLayer, spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    """A normalisation layer over (B, C, *S) by name (a key of ``NORMS``) or callable.

    A callable is called as ``fn(channels, **kwargs)``; None and ``"none"`` give the identity.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
    """
    if name is None:
        return nn.Identity()
    if callable(name):
        return name(channels, **kwargs)
    try:
        factory = NORMS[name]
    except KeyError:
        raise ValueError(f"unknown norm_layer {name!r}; choose from {', '.join(NORMS)}, "
                         "or pass a callable") from None
    return factory(spatial_dims, channels, **kwargs)


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


class FrozenBatchNorm(nn.Module):
    """Batch normalisation with fixed statistics and affine parameters, in any dimension:
    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias per channel.

    torchvision's ``FrozenBatchNorm2d`` semantics (``torchvision.ops.misc``), the norm of
    detection backbones, whose batches are too small for batch statistics: ``weight``, ``bias``,
    ``running_mean`` and ``running_var`` are buffers (nothing trains, no statistics update in
    either mode), eps is 1e-5, and a batch norm's state dict loads into it (its
    ``num_batches_tracked`` is dropped).
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # A trained BatchNorm's counter has no meaning once its statistics are frozen.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = _channel_shape(x)
        # One scale and one shift per channel, folded before touching the (large) input.
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(shape) + shift.view(shape)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


# -- the registry ------------------------------------------------------------------------------

@register_norm("batch")
def _batch(spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    return pick(spatial_dims, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))(channels, **kwargs)


@register_norm("frozen_batch")
def _frozen_batch(spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    return FrozenBatchNorm(channels, **kwargs)


@register_norm("layer")
def _layer(spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    # Over the channels at each position, as ConvNeXt.
    return ChannelLayerNorm(channels, **kwargs)


@register_norm("group")
def _group(spatial_dims: int, channels: int, num_groups: int = 32, **kwargs: Any) -> nn.Module:
    # num_groups, or the largest divisor of C below it: gcd(num_groups, C).
    return nn.GroupNorm(math.gcd(num_groups, channels), channels, **kwargs)


@register_norm("instance")
def _instance(spatial_dims: int, channels: int, affine: bool = True, **kwargs: Any) -> nn.Module:
    cls = pick(spatial_dims, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d))
    return cls(channels, affine=affine, **kwargs)


@register_norm("local_response")
def _local_response(spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    # AlexNet's k=2, n=5, alpha=1e-4, beta=0.75 by default; across channels, any dimension.
    return LocalResponseNorm(**kwargs)


@register_norm("grn")
def _grn(spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    return GlobalResponseNorm(channels, **kwargs)


@register_norm("none")
def _none(spatial_dims: int, channels: int, **kwargs: Any) -> nn.Module:
    return nn.Identity()
