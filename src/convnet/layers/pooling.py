"""Pooling by name (the ``POOLS`` registry behind :func:`pool`), the N-d pool factories, and
pools beyond torch's: global pooling in any dimension, LeNet's subsampling, TensorFlow's "same"
pooling.

A pool is registered once with the factory that builds it; :func:`pool` and its error text read
the registry. A factory takes ``(spatial_dims, kernel_size, stride, padding, ceil_mode,
channels)`` and ignores what it does not use::

    @register_pool("my_pool")
    def _my_pool(spatial_dims, kernel_size, stride, padding, ceil_mode, channels) -> nn.Module:
        return MyPool(spatial_dims, kernel_size)
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .factory import IntOrSeq, ntuple, pick, same_padding

PoolFactory = Callable[..., nn.Module]
POOLS: dict[str, PoolFactory] = {}


def register_pool(name: str) -> Callable[[PoolFactory], PoolFactory]:
    """Decorator: make ``fn(spatial_dims, kernel_size, stride, padding, ceil_mode, channels)``
    the pool ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    def add(fn: PoolFactory) -> PoolFactory:
        if name in POOLS:
            raise ValueError(f"pool {name!r} is already registered ({POOLS[name].__qualname__})")
        POOLS[name] = fn
        return fn
    return add


def pool(name: str, spatial_dims: int, kernel_size: IntOrSeq = 2, stride: IntOrSeq | None = None,
         padding: IntOrSeq = 0, ceil_mode: bool = False, channels: int | None = None) -> nn.Module:
    """A pooling layer by name (a key of ``POOLS``): ``max``, ``avg``, ``subsample`` (LeNet's
    trainable one, needs ``channels``), ``global_avg``, ``global_max``.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
    """
    try:
        factory = POOLS[name]
    except KeyError:
        raise ValueError(f"unknown pool {name!r}; choose from {', '.join(POOLS)}") from None
    return factory(spatial_dims, kernel_size, stride, padding, ceil_mode, channels)


def max_pool(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,
             padding: IntOrSeq = 0, ceil_mode: bool = False) -> nn.Module:
    cls = pick(spatial_dims, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d))
    return cls(kernel_size, stride, padding, ceil_mode=ceil_mode)


def avg_pool(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,
             padding: IntOrSeq = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> nn.Module:
    cls = pick(spatial_dims, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
    return cls(kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_avg_pool(spatial_dims: int, output_size: IntOrSeq) -> nn.Module:
    cls = pick(spatial_dims, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d))
    return cls(output_size)


def adaptive_max_pool(spatial_dims: int, output_size: IntOrSeq) -> nn.Module:
    cls = pick(spatial_dims, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))
    return cls(output_size)


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


class SamePool(nn.Module):
    """Max or average pooling with TensorFlow's "same" rule: out = ceil(in / stride), the far
    side taking the odd pixel; at stride 1 and kernel 3 this is the usual 3x3/1 pad-1 pooling.

    The padding is explicit (computed at call time from the wrapped pool's kernel and stride)
    because torch's 3-D average pool refuses inputs smaller than its kernel whatever the
    padding, which Inception's late stages reach in 3-D; reading the pool at call time also
    keeps it right after inflation (layers.inflation), where the pool's time extent is 1.

    Args:
        count_include_pad: for "avg", whether padded zeros count in the mean (Caffe's and
            torch's default) or only the real inputs do (TensorFlow's "SAME" average, timm's
            ``count_include_pad=False``).
    """

    def __init__(self, pool_type: str, spatial_dims: int, kernel_size: int = 3, stride: int = 1,
                 count_include_pad: bool = True):
        super().__init__()
        if pool_type not in ("max", "avg"):
            raise ValueError(f"SamePool pool_type must be 'max' or 'avg', got {pool_type!r}")
        self.pool = pool(pool_type, spatial_dims, kernel_size, stride)
        self.fill = float("-inf") if pool_type == "max" else 0.0
        self.real_only = pool_type == "avg" and not count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.ndim - 2
        pads = same_padding(x.shape[2:], ntuple(self.pool.kernel_size, d), ntuple(self.pool.stride, d))
        out = self.pool(F.pad(x, pads, value=self.fill))
        if self.real_only:  # divide by the share of real inputs in each window
            out = out / self.pool(F.pad(torch.ones_like(x[:1, :1]), pads))
        return out


# -- the registry ------------------------------------------------------------------------------

@register_pool("max")
def _max(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None, padding: IntOrSeq,
         ceil_mode: bool, channels: int | None) -> nn.Module:
    return max_pool(spatial_dims, kernel_size, stride, padding, ceil_mode)


@register_pool("avg")
def _avg(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None, padding: IntOrSeq,
         ceil_mode: bool, channels: int | None) -> nn.Module:
    return avg_pool(spatial_dims, kernel_size, stride, padding, ceil_mode)


@register_pool("subsample")
def _subsample(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None, padding: IntOrSeq,
               ceil_mode: bool, channels: int | None) -> nn.Module:
    if channels is None:  # a coefficient and a bias per map
        raise ValueError("pool('subsample') needs channels")
    return TrainableSubsampling(spatial_dims, channels, kernel_size)


@register_pool("global_avg")
def _global_avg(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None, padding: IntOrSeq,
                ceil_mode: bool, channels: int | None) -> nn.Module:
    return GlobalPool("avg", flatten=False)


@register_pool("global_max")
def _global_max(spatial_dims: int, kernel_size: IntOrSeq, stride: IntOrSeq | None, padding: IntOrSeq,
                ceil_mode: bool, channels: int | None) -> nn.Module:
    return GlobalPool("max", flatten=False)
