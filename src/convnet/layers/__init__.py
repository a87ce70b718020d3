"""N-d building blocks. The only package that picks Conv1d/2d/3d and friends by spatial_dims."""
from .activations import ACTIVATIONS, ScaledTanh, get_act
from .attention import Attention, Mlp, RelativePositionBias, TransformerBlock, resize_grid
from .blocks import ConvNormAct, DropBlock, DropPath, SqueezeExcite, drop_path
from .factory import (
    SPATIAL_DIMS,
    SameConv,
    act,
    adaptive_avg_pool,
    adaptive_max_pool,
    avg_pool,
    check_dims,
    conv,
    conv_class,
    conv_transpose,
    dropout,
    linear_mode,
    max_pool,
    memory_format,
    norm,
    ntuple,
    pool,
)
from .inflation import InflatedConv, inflate_module
from .mbconv import DepthwiseSeparable, InvertedResidual, LayerScale, make_divisible
from .normalization import ChannelLayerNorm, GlobalResponseNorm, LocalResponseNorm
from .pooling import GlobalPool, SamePool, TrainableSubsampling
from .special import ConnectionTableConv, EuclideanRBF

__all__ = [
    "ACTIVATIONS", "Attention", "Mlp", "RelativePositionBias", "TransformerBlock", "resize_grid", "SPATIAL_DIMS", "ChannelLayerNorm", "ConnectionTableConv", "EuclideanRBF", "ConvNormAct", "DropBlock", "DropPath",
    "DepthwiseSeparable", "GlobalPool", "InvertedResidual", "LayerScale", "make_divisible", "GlobalResponseNorm", "InflatedConv", "inflate_module", "LocalResponseNorm", "SameConv", "SamePool", "ScaledTanh",
    "SqueezeExcite", "TrainableSubsampling", "act", "adaptive_avg_pool", "adaptive_max_pool",
    "avg_pool", "check_dims", "conv", "conv_class", "conv_transpose", "drop_path", "dropout",
    "get_act", "linear_mode", "max_pool", "memory_format", "norm", "ntuple", "pool",
]
