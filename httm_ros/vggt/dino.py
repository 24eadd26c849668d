"""DINOv2-style ViT with register tokens, used by VGGT as its patch embedding.

Only the final-normalised patch tokens are returned (cls and register tokens are dropped).
Module names match ``aggregator.patch_embed.*`` of the official checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VGGTConfig
from .layers import Block

DINO_NORM_EPS = 1e-6
DINO_LAYERSCALE_INIT = 1.0


class PatchProjection(nn.Module):
    """Non-overlapping patch convolution: [N, 3, H, W] -> [N, h*w, C]."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoBackbone(nn.Module):
    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        dim, side = cfg.embed_dim, cfg.img_size // cfg.patch_size
        self.patch_size = cfg.patch_size
        self.num_register_tokens = cfg.num_register_tokens
        self.patch_embed = PatchProjection(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + side * side, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused at inference; kept for the checkpoint
        self.blocks = nn.ModuleList(
            Block(dim, cfg.dino_num_heads, cfg.dino_mlp_ratio, DINO_LAYERSCALE_INIT, norm_eps=DINO_NORM_EPS)
            for _ in range(cfg.dino_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=DINO_NORM_EPS)
        if not self.pos_embed.is_meta:
            for p in (self.pos_embed, self.cls_token, self.register_tokens):
                nn.init.trunc_normal_(p, std=0.02)

    def position_embedding(self, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """Learned positions resized to an h x w patch grid: [1, 1 + h*w, C].

        The stored table is square; it is used as is for a square grid of the stored size,
        otherwise resized with antialiased bicubic interpolation (in fp32).
        """
        table = self.pos_embed
        side = int(round((table.shape[1] - 1) ** 0.5))
        if h == w == side:
            return table
        table = table.float()
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)      # [1, C, side, side]
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)                    # [1, h*w, C]
        return torch.cat((table[:, :1], grid), dim=1).to(dtype)

    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, H, W] (normalised) -> patch tokens [N, h*w, C]."""
        n, _, height, width = images.shape
        h, w = height // self.patch_size, width // self.patch_size
        x = self.patch_embed(images)                                             # [N, h*w, C]
        x = torch.cat((self.cls_token.expand(n, -1, -1), x), dim=1)
        x = x + self.position_embedding(h, w, x.dtype)
        x = torch.cat((x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]
