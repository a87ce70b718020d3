"""Activations by name, including LeNet-5's scaled hyperbolic tangent."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class ScaledTanh(nn.Module):
    """LeNet-5's squashing function f(a) = A tanh(S a) with A = 1.7159, S = 2/3.

    LeCun et al. 1998, Appendix A: with these constants f(1) = 1 and f(-1) = -1, the second
    derivative is largest at +-1, and the targets of the RBF output layer (+-1) sit there.
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0):
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "scaled_tanh": ScaledTanh,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "hard_swish": nn.Hardswish,
    "hard_sigmoid": nn.Hardsigmoid,
}

# Activations that accept inplace=True; it saves memory in deep nets.
_INPLACE = {"relu", "relu6", "leaky_relu", "elu", "silu", "swish", "hard_swish", "hard_sigmoid"}


def get_act(name: str | Callable[..., nn.Module] | None, inplace: bool = False, **kwargs) -> nn.Module:
    """An activation module from a name in ``ACTIVATIONS``, a callable, or None (identity)."""
    if name is None:
        return nn.Identity()
    if callable(name):
        return name(**kwargs)
    try:
        cls = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(sorted(ACTIVATIONS))}") from None
    if inplace and name in _INPLACE:
        kwargs["inplace"] = True
    return cls(**kwargs)
