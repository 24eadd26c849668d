"""Transformer building blocks shared by the DINO backbone, the aggregator and the camera head.

Parameter names (``qkv``, ``q_norm``, ``k_norm``, ``proj``, ``norm1``, ``ls1``, ``mlp.fc1`` ...)
follow the official VGGT state dict so that its checkpoint loads unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TokenLayout:
    """How the tokens of one attention call are laid out.

    The sequence is ``frames`` consecutive frames of ``tokens_per_frame`` tokens each;
    inside a frame, ``patch_start`` special tokens (camera + registers) come first, then the
    ``grid = (h, w)`` patch tokens in row-major order. Frame attention sees ``frames=1``.
    """

    frames: int
    tokens_per_frame: int
    patch_start: int
    grid: Tuple[int, int]

    def __post_init__(self) -> None:
        h, w = self.grid
        if self.tokens_per_frame != self.patch_start + h * w:
            raise ValueError(
                f"TokenLayout: tokens_per_frame={self.tokens_per_frame} != patch_start "
                f"{self.patch_start} + {h}*{w}"
            )

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def patches_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]


# ----------------------------------------------------------------------------- RoPE


class RotaryEmbedding2D(nn.Module):
    """2D rotary embedding: first half of the head dim turns with the row, second with the column.

    Within each half the rotation is "rotate-half" style: channel j pairs with j + half/2,
    angle = position * base^(-2i/half) for pair i. No parameters.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)

    def _tables(self, half: int, max_pos: int, device, dtype) -> Tuple[Tensor, Tensor]:
        # cos/sin tables [max_pos, half]; angles in fp32, then cast (as the reference does)
        exps = torch.arange(0, half, 2, device=device).float() / half
        inv_freq = 1.0 / (self.base ** exps)                                   # [half/2]
        angles = torch.outer(torch.arange(max_pos, device=device, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1).to(dtype)                 # [max_pos, half]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    def _rotate_1d(self, x: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # x [B, H, N, half]; pos [B, N] int -> cos/sin gathered to [B, 1, N, half]
        c = F.embedding(pos, cos)[:, None]
        s = F.embedding(pos, sin)[:, None]
        return x * c + self._rotate_half(x) * s

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x [B, heads, N, D], pos [B, N, 2] (row, col) integers -> [B, heads, N, D]."""
        half = x.shape[-1] // 2
        max_pos = int(pos.max()) + 1
        cos, sin = self._tables(half, max_pos, x.device, x.dtype)
        rows, cols = x.chunk(2, dim=-1)
        rows = self._rotate_1d(rows, pos[..., 0], cos, sin)
        cols = self._rotate_1d(cols, pos[..., 1], cos, sin)
        return torch.cat((rows, cols), dim=-1)


def grid_positions(h: int, w: int, patch_start: int, device=None) -> Tensor:
    """RoPE positions of one frame: [patch_start + h*w, 2] (row, col).

    Special tokens sit at (0, 0); patch (r, c) sits at (r + 1, c + 1).
    """
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    patches = torch.stack((rows, cols), dim=-1) + 1
    special = torch.zeros(patch_start, 2, dtype=patches.dtype, device=device)
    return torch.cat((special, patches), dim=0)


# ------------------------------------------------------------------------ attention

AttentionCore = Callable[[Tensor, Tensor, Tensor, Optional[TokenLayout]], Tensor]


class Attention(nn.Module):
    """Multi-head self-attention with optional qk LayerNorm and 2D RoPE.

    ``self.core`` is a hook: None means dense ``F.scaled_dot_product_attention``; otherwise
    ``core(q, k, v, layout)`` is called with q, k, v ``[B, heads, N, head_dim]`` (after qk-norm
    and RoPE, all in v's dtype) and must return ``[B, heads, N, head_dim]``.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False,
                 rope: Optional[RotaryEmbedding2D] = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=True)
        self.rope = rope
        self.core: Optional[AttentionCore] = None

    def forward(self, x: Tensor, pos: Optional[Tensor] = None,
                layout: Optional[TokenLayout] = None) -> Tensor:
        b, n, c = x.shape                                                  # x [B, N, C]
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                     # each [B, h, N, d]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        q, k = q.to(v.dtype), k.to(v.dtype)
        if self.core is None:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = self.core(q, k, v, layout)                                 # [B, h, N, d]
        o = o.transpose(1, 2).reshape(b, n, c)
        return self.proj(o)                                                # [B, N, C]


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int, out_dim: Optional[int] = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layerscale_init: float,
                 norm_eps: float = 1e-5, qk_norm: bool = False,
                 rope: Optional[RotaryEmbedding2D] = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(self, x: Tensor, pos: Optional[Tensor] = None,
                layout: Optional[TokenLayout] = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos, layout=layout))
        return x + self.ls2(self.mlp(self.norm2(x)))
