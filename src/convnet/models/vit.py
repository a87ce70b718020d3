"""Vision Transformer: A. Dosovitskiy, L. Beyer, A. Kolesnikov, D. Weissenborn, X. Zhai,
T. Unterthiner, M. Dehghani, M. Minderer, G. Heigold, S. Gelly, J. Uszkoreit, N. Houlsby,
"An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021
(arXiv:2010.11929). The comparison point of the hybrids (CoAtNet).

Layout (§3.1, Eq. 1-4): the input is cut into non-overlapping P x P patches, each linearly
embedded (a convolution with kernel = stride = P, so the same code patches signals, images and
volumes); a learned class token is prepended and learned position embeddings added; L pre-norm
transformer blocks (multi-head self-attention and a GELU MLP, LayerNorm before each, residuals
around each); a final LayerNorm; the classifier reads the class token.

Position embeddings are sized for the default input (224 per axis: a 14^d grid for P = 16) and
are resized by (multi)linear interpolation for other grids (§3.2: "2D interpolation of the
pre-trained position embeddings"), per axis in 1-D and 3-D too.

The convnet surface: ``forward_features`` returns the final patch tokens reshaped to their grid,
(B, C, *S) with S = input // P, like every other model. The class token, which the classifier
reads, travels with that tensor as its attribute ``class_token`` (B, C); ``forward_head`` takes
it from there, so ``forward_head(forward_features(x)) == forward(x)``. A feature map that did not
come from ``forward_features`` has no class token and ``forward_head`` raises. ``cam_layer`` is
``last_block_input``: the patch tokens entering the last block as a grid, the latest spatial map
the class token still attends to (the final patch tokens do not reach the logits).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ..layers.attention import TransformerBlock, resize_grid
from ._base import ConvNetClassifier, FeatureInfo
from ._registry import register


@dataclass(frozen=True)
class ViTSpec:
    """One row of the ViT spec table (Table 1 of the paper; ViT-S of Touvron et al. / timm)."""

    patch_size: int = 16
    embed_dim: int = 768  # hidden size D
    depth: int = 12  # layers L
    num_heads: int = 12
    mlp_dim: int = 3072  # MLP size
    img_size: int = 224  # per axis: sizes the position embeddings
    qkv_bias: bool = True


class ViTHead(nn.Module):
    """Dropout and the linear classifier ``fc`` on the class token (B, C)."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class PositionEmbedding(nn.Module):
    """Learned position embeddings (Eq. 1, E_pos) as ``weight`` (1, 1 + prod(grid), C): the class
    token's, then one per patch of the default ``grid`` in row-major order. ``forward(grid)``
    resizes the patch part by (multi)linear interpolation for another grid."""

    def __init__(self, dim: int, grid: tuple[int, ...]):
        super().__init__()
        self.grid = tuple(grid)
        self.weight = nn.Parameter(torch.empty(1, 1 + prod(self.grid), dim).normal_(std=0.02))

    def forward(self, grid: tuple[int, ...]) -> torch.Tensor:
        cls_pos, patch_pos = self.weight[:, :1], self.weight[:, 1:]
        if tuple(grid) != self.grid:
            patch_pos = _to_grid(patch_pos, self.grid)  # (1, C, *default grid)
            patch_pos = resize_grid(patch_pos, grid)  # (1, C, *grid)
            patch_pos = patch_pos.flatten(2).transpose(1, 2)  # (1, N, C)
        return torch.cat([cls_pos, patch_pos], dim=1)  # (1, 1 + prod(grid), C)

    def inflated(self, time_kernel: int) -> PositionEmbedding:
        """models.inflate refuses ViT: its promise (a clip of one repeated image gives the image's
        output) cannot hold, because the class token's attention weighs T copies of every patch
        key against one class-token key."""
        raise TypeError("cannot inflate PositionEmbedding (ViT): the class token attends to every "
                        "repeated frame, so a repeated-image clip cannot give the 2-D output")

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def _prepend(first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    # (B, 1, C) and (B, N, C) -> (B, 1 + N, C): the class token first.
    return torch.cat([first, rest], dim=1)


def _to_grid(tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    # (B, N, C) -> (B, C, *grid)
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class VisionTransformer(ConvNetClassifier):
    """ViT in 1, 2 or 3 dims: ``patch_embed``, ``class_token``, ``pos_embed.weight``, ``blocks[j]``,
    ``norm``, ``head.fc``."""

    def __init__(self, spec: ViTSpec = ViTSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        dim, p = spec.embed_dim, spec.patch_size
        # Eq. 1: x_p E, one linear map per flattened patch == a conv with kernel = stride = P.
        self.patch_embed = L.conv(d, in_channels, dim, p, p, padding=0)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = PositionEmbedding(dim, (spec.img_size // p,) * d)
        self.pos_drop = nn.Dropout(drop_rate)
        # Stochastic depth grows linearly with depth (Huang et al. 2016), as timm's ViT.
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, spec.num_heads, spec.mlp_dim, qkv_bias=spec.qkv_bias, drop=drop_rate,
                             attn_drop=attn_drop_rate, drop_path=rate)
            for rate in L.drop_path_rates(spec.depth, drop_path_rate))
        self.last_block_input = nn.Identity()  # a spatial hook point for Grad-CAM
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.feature_grid = nn.Identity()  # the (B, C, *S) output of forward_features
        self.head = ViTHead(dim, num_classes, drop_rate)
        self.feature_info = [FeatureInfo(dim, p, "feature_grid")]
        self.cam_layer = "last_block_input"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, C, *S), S = input // P
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        cls = self.class_token.expand(x.shape[0], -1, -1)  # (B, 1, C)
        x = _prepend(cls, x) + self.pos_embed(grid)  # Eq. 1: (B, 1 + N, C)
        x = self.pos_drop(x)
        for j, block in enumerate(self.blocks):
            if j == len(self.blocks) - 1:
                patches = self.last_block_input(_to_grid(x[:, 1:], grid))
                x = _prepend(x[:, :1], patches.flatten(2).transpose(1, 2))
            x = block(x)  # (B, 1 + N, C)
        x = self.norm(x)
        out = self.feature_grid(_to_grid(x[:, 1:], grid))
        out.class_token = x[:, 0]  # (B, C): what forward_head classifies
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        cls = getattr(x, "class_token", None)
        if cls is None:
            raise ValueError("VisionTransformer.forward_head classifies the class token, which travels with "
                             "the output of forward_features (attribute `class_token`); got a feature map "
                             f"of shape {tuple(x.shape)} without it")
        return self.head(cls, pre_logits=pre_logits)


def prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


_PAPER = ("Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer, Heigold, "
          "Gelly, Uszkoreit, Houlsby. An Image is Worth 16x16 Words: Transformers for Image Recognition "
          "at Scale. ICLR 2021")
# Contract tests: 32 per axis, patch 8 -> a 4^d grid.
_TINY = {"patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_dim": 32, "img_size": 32}

VIT_SPECS: dict[str, dict] = {
    # ViT-S/16: the DeiT-S shape (Touvron et al. 2021) that timm registers as vit_small_patch16_224.
    "vit_s_16": dict(spec=ViTSpec(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_dim=1536),
                     reference_params=22_050_664, reference="timm.models.vision_transformer (vit_small_patch16_224)"),
    # ViT-Base/16, Table 1 of the paper.
    "vit_b_16": dict(spec=ViTSpec(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_dim=3072),
                     reference_params=86_567_656, reference="torchvision.models.vit_b_16"),
    # ViT-Large/16, Table 1 of the paper.
    "vit_l_16": dict(spec=ViTSpec(patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
                     reference_params=304_326_632, reference="torchvision.models.vit_l_16"),
}

for _name, _row in VIT_SPECS.items():
    register(_name, VisionTransformer, family="vit", paper=_PAPER, year=2021, extra={"tiny": _TINY}, **_row)
