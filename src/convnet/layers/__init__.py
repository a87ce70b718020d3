"""N-d building blocks. The only package that picks Conv1d/2d/3d and friends by spatial_dims."""
from .activations import ACTIVATIONS, ScaledTanh, get_act
from .attention import Attention, Mlp, RelativePositionBias, TransformerBlock, resize_grid
from .blocks import ConvNormAct, DropBlock, DropPath, SqueezeExcite, drop_path, drop_path_rates, resnet_stem
from .factory import (
    CONV_TYPES,
    SPATIAL_DIMS,
    SameConv,
    act,
    check_dims,
    conv,
    conv_class,
    conv_transpose,
    dropout,
    linear_mode,
    memory_format,
    ntuple,
    same_padding,
)
from .inflation import InflatedConv, inflate_module
from .mbconv import DepthwiseSeparable, InvertedResidual, LayerScale, make_divisible
from .normalization import (
    NORMS,
    ChannelLayerNorm,
    FrozenBatchNorm,
    GlobalResponseNorm,
    LocalResponseNorm,
    norm,
    register_norm,
)
from .pooling import (
    POOLS,
    GlobalPool,
    SamePool,
    TrainableSubsampling,
    adaptive_avg_pool,
    adaptive_max_pool,
    avg_pool,
    max_pool,
    pool,
    register_pool,
)
from .special import ConnectionTableConv, EuclideanRBF

__all__ = [
    "ACTIVATIONS", "CONV_TYPES", "NORMS", "POOLS", "SPATIAL_DIMS",
    "Attention", "ChannelLayerNorm", "ConnectionTableConv", "ConvNormAct", "DepthwiseSeparable", "DropBlock",
    "DropPath", "EuclideanRBF", "FrozenBatchNorm", "GlobalPool", "GlobalResponseNorm", "InflatedConv",
    "InvertedResidual", "LayerScale", "LocalResponseNorm", "Mlp", "RelativePositionBias", "SameConv", "SamePool",
    "ScaledTanh", "SqueezeExcite", "TrainableSubsampling", "TransformerBlock",
    "act", "adaptive_avg_pool", "adaptive_max_pool", "avg_pool", "check_dims", "conv", "conv_class",
    "conv_transpose", "drop_path", "drop_path_rates", "dropout", "get_act", "inflate_module", "linear_mode",
    "make_divisible", "max_pool", "memory_format", "norm", "ntuple", "pool", "register_norm", "register_pool",
    "resize_grid", "resnet_stem", "same_padding",
]
