"""2-D layers turned into their 3-D counterparts, as I3D inflates image networks for video.

J. Carreira, A. Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics
Dataset", CVPR 2017, §2.4: each k x k kernel becomes t x k x k by repeating it t times along the
new (time) axis and dividing by t, so that a "boring" video (one image repeated) gives the image
network's response at every frame. For that to hold at the first and last frames as well, an
inflated convolution pads time by replicating the edge frame instead of with zeros; pools get a
time extent of 1, so time keeps its length through the network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .factory import SameConv


class InflatedConv(nn.Conv3d):
    """A Conv3d whose time axis is padded by replicating the edge frames (``time_pad`` on each
    side); height and width are padded as the 2-D convolution it came from."""

    def __init__(self, *args, time_pad: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_pad = time_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            # F.pad lists the last axis first: (W, W, H, H, T, T).
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", time_pad={self.time_pad} (replicate)"


def _spatial_padding(m: nn.Conv2d) -> tuple[int, int]:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0)
        total = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation)]
        if any(t % 2 for t in total):
            raise TypeError(f"cannot inflate {m}: padding='same' with an even kernel is asymmetric")
        return (total[0] // 2, total[1] // 2)
    return tuple(m.padding)  # type: ignore[return-value]


def _inflate_conv(m: nn.Conv2d, time_kernel: int) -> InflatedConv:
    if m.padding_mode != "zeros":
        raise TypeError(f"cannot inflate {m}: padding_mode={m.padding_mode!r} (only zeros)")
    # A 1x1 convolution mixes channels only; I3D keeps it 1 in time too.
    t = time_kernel if max(m.kernel_size) > 1 else 1
    new = InflatedConv(m.in_channels, m.out_channels, (t, *m.kernel_size), (1, *m.stride),
                       (0, *_spatial_padding(m)), (1, *m.dilation), m.groups, m.bias is not None,
                       time_pad=(t - 1) // 2, device=m.weight.device, dtype=m.weight.dtype)
    with torch.no_grad():
        # (O, I, kh, kw) -> (O, I, t, kh, kw), repeated and divided by t: same sum over a constant clip.
        new.weight.copy_(m.weight.unsqueeze(2).expand(-1, -1, t, -1, -1) / t)
        if m.bias is not None:
            new.bias.copy_(m.bias)
    new.train(m.training)
    return new


def _copy_norm(m: nn.Module, cls: type[nn.Module]) -> nn.Module:
    new = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
              device=_device_of(m), dtype=_dtype_of(m))
    new.load_state_dict(m.state_dict())
    new.train(m.training)
    return new


def _device_of(m: nn.Module) -> torch.device | None:
    t = next(iter(m.state_dict().values()), None)
    return None if t is None else t.device


def _dtype_of(m: nn.Module) -> torch.dtype | None:
    t = next((v for v in m.state_dict().values() if v.is_floating_point()), None)
    return None if t is None else t.dtype


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # type: ignore[return-value]


def inflate_module(m: nn.Module, time_kernel: int) -> nn.Module | None:
    """The 3-D counterpart of one 2-D layer, or None for a layer that works in any dimension
    (activations, linear layers, containers, global pooling). A layer may provide its own
    counterpart through an ``inflated(time_kernel)`` method.

    Raises:
        TypeError: a layer with 2-D structure this function does not know how to inflate.
    """
    if time_kernel < 1 or time_kernel % 2 == 0:
        raise ValueError(f"time_kernel must be odd and >= 1 (symmetric time padding), got {time_kernel}")
    if hasattr(m, "inflated"):  # a layer of ours that knows its own 3-D counterpart
        return m.inflated(time_kernel)
    if isinstance(m, nn.Conv2d):
        return _inflate_conv(m, time_kernel)
    if isinstance(m, nn.BatchNorm2d):
        return _copy_norm(m, nn.BatchNorm3d)
    if isinstance(m, nn.InstanceNorm2d):
        return _copy_norm(m, nn.InstanceNorm3d)
    if isinstance(m, nn.MaxPool2d):
        return nn.MaxPool3d((1, *_pair(m.kernel_size)), (1, *_pair(m.stride)), (0, *_pair(m.padding)),
                            (1, *_pair(m.dilation)), m.return_indices, m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return nn.AvgPool3d((1, *_pair(m.kernel_size)), (1, *_pair(m.stride)), (0, *_pair(m.padding)),
                            m.ceil_mode, m.count_include_pad, m.divisor_override)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d((1, *_pair(m.output_size)))
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d((1, *_pair(m.output_size)))
    if isinstance(m, nn.Dropout2d):
        return nn.Dropout3d(m.p, m.inplace)
    if isinstance(m, SameConv):
        return None  # its convolution is inflated as a child; SameConv leaves time to it
    # A leaf we do not know that has 2-D structure (a "*2d" class, or one of ours built for a
    # fixed spatial_dims such as LeNet's connection table) cannot be inflated silently.
    is_leaf = next(m.children(), None) is None
    if is_leaf and (type(m).__name__.endswith("2d") or hasattr(m, "spatial_dims")):
        raise TypeError(f"cannot inflate {type(m).__name__}: no 3-D counterpart is known")
    return None
