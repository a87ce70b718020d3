"""CoAtNet: Z. Dai, H. Liu, Q. V. Le, M. Tan, "CoAtNet: Marrying Convolution and Attention for All
Data Sizes", NeurIPS 2021 (arXiv:2106.04803).

Layout C-C-T-T (§3.2, Table 3): a stem S0 of two 3x3 convolutions (the first strided, 1/2),
two convolutional stages S1, S2 of MBConv blocks (expansion 4, squeeze-excitation 0.25, §4 and
Table 3 "MBConv, E=4, R=4"), then two transformer stages S3, S4 with relative attention, each
stage halving the resolution (1/4 ... 1/32), global average pooling and a linear classifier.

Relative attention (Eq. 3): softmax over j of (x_i . x_j + w_{i-j}): a learned scalar per head
and per relative offset, i.e. a (2H-1) x (2W-1) table per head for an H x W map. It is generalised
per axis here: (2L-1) in 1-D, (2D-1)(2H-1)(2W-1) in 3-D (layers.attention.RelativePositionBias).
The table is sized for the map at the default input (224: 14 at S3, 7 at S4) and resized by
(multi)linear interpolation for other sizes, as the paper does when fine-tuning at 384/512.
Attention heads have 32 channels (Table 3 caption: "head size 32"); the FFN expands by 4 (GELU).

Downsampling (§3.2, Eq. 5): the first transformer block of a stage is
x <- Proj(Pool(x)) + Attention(Pool(Norm(x))), with 3x3/2 max pooling and a 1x1 projection,
then x <- x + FFN(Norm(x)); the other blocks are pre-norm x <- x + Attention(Norm(x)) etc.
The MBConv stages use the shared ``layers.InvertedResidual`` (EfficientNet's MBConv: BN after each
conv, stride in the depthwise conv, residual only where the shape is kept; expansion 4 of the
block's output width and SE width 1/4 of it, as timm's paper-layout CoAtNets), where the paper
writes its MBConv pre-norm with a Pool + 1x1 shortcut on a stage's first block. The head is
pool, LayerNorm, a tanh pre-logits layer and the classifier (``CoAtNetHead``).

Parameter counts (3 channels, 1000 classes, 224): 25,011,572 / 42,199,952 / 74,733,448 /
166,890,232 for CoAtNet-0..3 (tests pin them and check them against the paper's Table 4: 25M /
42M / 75M / 168M; CoAtNet-3 is 0.7% under, as is timm's paper-layout ``coatnet_3_224``,
166,966,264). timm's paper-layout ``coatnet_N_224`` (25,036,820 / 42,225,776 / 74,684,744 /
166,966,264) differ from ours only in the MBConv details above and 2x2 average pooling in the
downsampling blocks (parameter-free); timm's ``coatnet_N_rw_224`` (e.g. 27,435,562 for N = 0)
are Ross Wightman's own variants, not this layout. No key map: the MBConv layouts differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ..layers.attention import Attention, Mlp, RelativePositionBias
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage, init_he
from ._registry import register


@dataclass(frozen=True)
class CoAtNetSpec:
    """One row of Table 3: widths and depths of S0..S4 (S0's depth counts its convs)."""

    channels: tuple[int, ...] = (64, 96, 192, 384, 768)
    depths: tuple[int, ...] = (2, 2, 3, 5, 2)
    block_types: tuple[str, ...] = ("C", "C", "T", "T")  # for S1..S4: MBConv or Transformer
    expand_ratio: float = 4.0  # MBConv expansion E
    se_ratio: float = 0.25  # squeeze-excitation width / block input width
    mlp_ratio: float = 4.0  # FFN expansion
    head_dim: int = 32
    img_size: int = 224  # per axis: sizes the relative position tables
    act_layer: str = "gelu"
    pre_logits: bool = True  # LayerNorm + tanh pre-logits layer before the classifier (see CoAtNetHead)


class RelAttentionBlock(nn.Module):
    """CoAtNet's transformer block with relative attention on a (B, C, *S) map.

    Children: ``pool`` and ``shortcut`` (a 3x3/2 max pool and a 1x1 projection in a downsampling
    block, identities otherwise), ``norm1``, ``attn``, ``rel_pos``, ``norm2``, ``mlp``, ``drop_path``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int, grid: tuple[int, ...],
                 head_dim: int = 32, mlp_ratio: float = 4.0, act_layer: str = "gelu", drop_path: float = 0.0):
        super().__init__()
        d = spatial_dims
        self.pool = L.max_pool(d, 3, 2, 1) if stride > 1 else nn.Identity()
        self.shortcut = (L.conv(d, in_channels, out_channels, 1) if stride > 1 or in_channels != out_channels
                         else nn.Identity())
        num_heads = max(1, out_channels // head_dim)
        self.norm1 = nn.LayerNorm(in_channels, eps=1e-6)
        self.attn = Attention(in_channels, num_heads, head_dim, out_dim=out_channels)
        self.rel_pos = RelativePositionBias(num_heads, grid)
        self.norm2 = nn.LayerNorm(out_channels, eps=1e-6)
        self.mlp = Mlp(out_channels, int(out_channels * mlp_ratio), act_layer=act_layer)
        self.drop_path = L.DropPath(drop_path)

    def zero_init_last(self) -> None:
        """Start as the shortcut: both branches' output layers at zero."""
        for layer in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Eq. 5: x <- Proj(Pool(x)) + Attention(Pool(Norm(x))), then x <- x + FFN(Norm(x)).
        shortcut = self.shortcut(self.pool(x))  # Proj(Pool(x)): (B, C_out, *S')
        b, c, *grid = shortcut.shape
        y = self.norm1(x.movedim(1, -1)).movedim(-1, 1)  # LayerNorm over the channels: (B, C_in, *S)
        y = self.pool(y)  # (B, C_in, *S')
        tokens = y.flatten(2).transpose(1, 2)  # (B, N, C_in)
        attn = self.attn(tokens, self.rel_pos(tuple(grid)))  # relative attention (Eq. 3): (B, N, C_out)
        x = shortcut.flatten(2).transpose(1, 2) + self.drop_path(attn)  # (B, N, C_out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(b, c, *grid)  # (B, C_out, *S')


class CoAtNetHead(nn.Module):
    """Global average pool, LayerNorm, a tanh pre-logits layer (``pre_logits``) of the same width,
    dropout and the classifier ``fc``: the head of timm's paper-layout CoAtNets (the pre-logits
    layer of ViT's pre-training head, Dosovitskiy et al. 2021 §3.1), with which the counts round
    to the paper's Table 4."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.pool = L.GlobalPool("avg", flatten=True)
        self.norm = nn.LayerNorm(in_features, eps=1e-6)
        self.pre_logits = nn.Sequential(nn.Linear(in_features, in_features), nn.Tanh())
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)  # (B, C, *S) -> (B, C)
        x = self.norm(x)
        x = self.pre_logits(x)  # linear + tanh, the same width
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class CoAtNet(ConvNetClassifier):
    """CoAtNet in 1, 2 or 3 dims: ``stem`` (S0), ``stages[i].blocks[j]`` (S1..S4), ``head``."""

    def __init__(self, spec: CoAtNetSpec = CoAtNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        act = spec.act_layer
        c0 = spec.channels[0]
        # S0: two (or depths[0]) 3x3 convs, the first with stride 2 (Table 3, "Conv 3x3, stride 2").
        self.stem = nn.Sequential()
        for j in range(spec.depths[0]):
            self.stem.add_module(f"conv{j + 1}", L.ConvNormAct(d, in_channels if j == 0 else c0, c0, 3, 2 if j == 0 else 1,
                                                               act_layer=act))
        self.feature_info = [FeatureInfo(c0, 2, "stem")]
        channels, reduction = c0, 2
        # Stochastic depth grows linearly with depth (Huang et al. 2016) over S1..S4's blocks.
        drop_path_rates = iter(L.drop_path_rates(sum(spec.depths[1:]), drop_path_rate))
        self.stages = nn.ModuleList()
        for i, (kind, width, depth) in enumerate(zip(spec.block_types, spec.channels[1:], spec.depths[1:])):
            reduction *= 2
            grid = (max(1, spec.img_size // reduction),) * d
            blocks: list[nn.Module] = []
            for j in range(depth):
                stride = 2 if j == 0 else 1
                dp = next(drop_path_rates)
                if kind == "C":
                    blocks.append(L.InvertedResidual(
                        d, channels, width, 3, stride, expanded_channels=round(width * spec.expand_ratio),
                        se_channels=max(1, int(width * spec.se_ratio)), se_act=act, act_layer=act, drop_path=dp))
                elif kind == "T":
                    blocks.append(RelAttentionBlock(d, channels, width, stride, grid, spec.head_dim, spec.mlp_ratio,
                                                    act, dp))
                else:
                    raise ValueError(f"block_types entries must be 'C' (MBConv) or 'T' (transformer), got {kind!r}")
                channels = width
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.head = CoAtNetHead(channels, num_classes, drop_rate) if spec.pre_logits else \
            ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        init_he(self)


_PAPER = ("Dai, Liu, Le, Tan. CoAtNet: Marrying Convolution and Attention for All Data Sizes. "
          "NeurIPS 2021")
_REF = ("no exact published count: Dai et al. 2021 Table 4 gives {}M (rounded), which ours matches within 1%; "
        "the exact figure is our own count of the Table 3 layout (timm's coatnet_N_224 differs slightly)")
# Contract tests: 64 per axis (at 32, S4 is one token, whose relative bias gets no gradient);
# one block per stage, 8-channel heads.
_TINY = {"channels": (8, 8, 16, 16, 32), "depths": (2, 1, 1, 1, 1), "head_dim": 8, "img_size": 32}

# Table 3: widths and depths of S0..S4; params: the exact count of this layout (ours), paper_m:
# Table 4's rounded figure in millions.
COATNET_SPECS: dict[str, dict] = {
    "coatnet_0": dict(spec=CoAtNetSpec(channels=(64, 96, 192, 384, 768), depths=(2, 2, 3, 5, 2)),  # CoAtNet-0
                      params=25_011_572, paper_m=25),
    "coatnet_1": dict(spec=CoAtNetSpec(channels=(64, 96, 192, 384, 768), depths=(2, 2, 6, 14, 2)),  # CoAtNet-1
                      params=42_199_952, paper_m=42),
    # CoAtNet-2: S4's width is printed as 1026 in Table 3 (heads: 1026 // 32 = 32).
    "coatnet_2": dict(spec=CoAtNetSpec(channels=(128, 128, 256, 512, 1026), depths=(2, 2, 6, 14, 2)),
                      params=74_733_448, paper_m=75),
    "coatnet_3": dict(spec=CoAtNetSpec(channels=(192, 192, 384, 768, 1536), depths=(2, 2, 6, 14, 2)),  # CoAtNet-3
                      params=166_890_232, paper_m=168),
}

for _name, _row in COATNET_SPECS.items():
    register(_name, CoAtNet, _row["spec"], family="coatnet", paper=_PAPER, year=2021, reference_params=None,
             reference=_REF.format(_row["paper_m"]),
             extra={"tiny": _TINY, "test_input": 64, "paper_params_m": _row["paper_m"]})
