"""Transformer building blocks over token sequences (B, N, C), shared by ViT and CoAtNet.

Multi-head self-attention (Vaswani et al. 2017) with an optional additive bias on the logits
(CoAtNet's relative position bias), the two-layer MLP, and the pre-norm block of ViT
(Dosovitskiy et al. 2021, Eq. 2-3): x + Attn(LN(x)), then x + MLP(LN(x)). Also the N-d relative
position bias table (CoAtNet, Dai et al. 2021, Eq. 3), which is what makes attention 1/2/3-D aware.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_act
from .blocks import DropPath

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resize_grid(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize a (B, C, *S) grid to ``size`` by (multi)linear interpolation; unchanged if equal."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=_INTERP[len(size)], align_corners=False)


class Attention(nn.Module):
    """Multi-head self-attention on (B, N, dim) tokens.

    ``qkv`` projects to queries, keys and values stacked as [q; k; v] (the layout of
    ``nn.MultiheadAttention.in_proj_weight`` and timm's ``qkv``), each split into ``num_heads``
    contiguous heads of ``head_dim``; ``proj`` maps the heads' concatenation to ``out_dim``.

    Args:
        dim: input channels.
        num_heads: heads.
        head_dim: channels per head; default dim // num_heads.
        out_dim: output channels; default dim.
        qkv_bias: bias on the qkv projection.
        attn_drop, proj_drop: dropout on the attention weights and the output.
    """

    def __init__(self, dim: int, num_heads: int = 8, head_dim: int | None = None, out_dim: int | None = None,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        attn_dim = self.num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * attn_dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(attn_dim, out_dim or dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, dim); bias: (num_heads, N, N) added to the attention logits, or None."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # softmax(q k^T / sqrt(head_dim) + bias) v per head, written out rather than through
        # F.scaled_dot_product_attention: on the meta device (analysis.summary) that decomposes into
        # aten._safe_softmax, which the MAC counter does not know yet (see the lead's note).
        attn = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)  # (B, heads, N, N)
        if bias is not None:
            attn = attn + bias.to(attn.dtype)
        attn = F.dropout(attn.softmax(dim=-1), self.attn_drop, self.training)
        x = attn @ v  # (B, heads, N, head_dim)
        x = x.transpose(1, 2).reshape(b, n, -1)  # the heads side by side: (B, N, heads * head_dim)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """The transformer's position-wise feed-forward network: ``fc1``, activation, ``fc2``."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None,
                 act_layer: str | Callable[..., nn.Module] = "gelu", drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = get_act(act_layer)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))  # (B, N, hidden_dim)
        x = self.drop(x)
        x = self.fc2(x)  # (B, N, out_dim)
        return self.drop(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (ViT Eq. 2-3): x + Attn(LN(x)), then x + MLP(LN(x)).

    Children: ``norm1``, ``attn``, ``norm2``, ``mlp``, ``drop_path``. ``forward(x, bias)`` passes
    an optional attention-logit bias (num_heads, N, N) to ``attn``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, head_dim: int | None = None, qkv_bias: bool = True,
                 act_layer: str | Callable[..., nn.Module] = "gelu", norm_eps: float = 1e-6,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, head_dim, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, act_layer=act_layer, drop=drop)
        self.drop_path = DropPath(drop_path)

    def zero_init_last(self) -> None:
        """Start as the identity: both residual branches' output layers at zero."""
        for layer in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), bias))  # Eq. 2: x + MSA(LN(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))  # Eq. 3: x + MLP(LN(x))


class RelativePositionBias(nn.Module):
    """A learned bias per head and per relative offset, w_{i-j} (CoAtNet Eq. 3), in N dims.

    The table ``bias_table`` has shape (num_heads, 2*W_1-1, ..., 2*W_d-1) for a default grid
    (W_1, ..., W_d): one entry per offset along every axis, as Swin/CoAtNet's 2-D table, here
    generalised per axis to 1-D and 3-D. A different grid (g_1, ..., g_d) reads a table resized
    by (multi)linear interpolation to (2*g_i-1) per axis, as CoAtNet does when fine-tuning at a
    higher resolution.
    """

    def __init__(self, num_heads: int, grid: tuple[int, ...]):
        super().__init__()
        self.grid = tuple(grid)
        self.bias_table = nn.Parameter(torch.zeros(num_heads, *(2 * g - 1 for g in self.grid)))
        nn.init.trunc_normal_(self.bias_table, std=0.02)

    def forward(self, grid: tuple[int, ...]) -> torch.Tensor:
        """The bias (num_heads, N, N) for tokens flattened in row-major order from ``grid``."""
        table = self.bias_table
        if tuple(grid) != self.grid:
            table = resize_grid(table[None], tuple(2 * g - 1 for g in grid))[0]
        coords = torch.stack(torch.meshgrid(*(torch.arange(g, device=table.device) for g in grid),
                                            indexing="ij")).flatten(1)  # (d, N)
        rel = coords[:, :, None] - coords[:, None, :]  # (d, N, N): offset i - j along each axis
        index = tuple(r + g - 1 for r, g in zip(rel, grid))  # shifted to 0 .. 2g-2
        return table[(slice(None),) + index]  # (num_heads, N, N)

    def inflated(self, time_kernel: int) -> RelativePositionBias:
        """For models.inflate: a table of one time offset, which resizing repeats over any clip
        length, so keys repeated along time share the image's bias (the 2-D output is kept)."""
        new = RelativePositionBias(self.bias_table.shape[0], (1, *self.grid))
        with torch.no_grad():
            new.bias_table.copy_(self.bias_table[:, None])
        return new.to(self.bias_table.device, self.bias_table.dtype)

    def extra_repr(self) -> str:
        return f"num_heads={self.bias_table.shape[0]}, grid={self.grid}"
