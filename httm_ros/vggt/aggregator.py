"""Alternating-attention aggregator: per-frame and global (all frames) blocks, interleaved."""

from __future__ import annotations

from typing import Dict, Iterable, Optional

import torch
from torch import Tensor, nn

from .config import VGGTConfig
from .dino import DinoBackbone
from .layers import Block, RotaryEmbedding2D, TokenLayout, grid_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def first_and_rest(tokens: Tensor, batch: int, frames: int, has_first: bool = True) -> Tensor:
    """Per-frame special tokens: [1, 2, X, C] -> [batch*frames, X, C].

    Entry 0 goes to the first frame of each sequence, entry 1 to every other frame (to all of
    them when ``has_first`` is False: a shard of the sequence that does not start at frame 0).
    """
    if not has_first:
        return tokens[:, 1:].expand(batch, frames, *tokens.shape[2:]).reshape(batch * frames, *tokens.shape[2:])
    first = tokens[:, :1].expand(batch, 1, *tokens.shape[2:])
    rest = tokens[:, 1:].expand(batch, frames - 1, *tokens.shape[2:])
    return torch.cat((first, rest), dim=1).reshape(batch * frames, *tokens.shape[2:])


class Aggregator(nn.Module):
    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_start = cfg.patch_start
        self.patch_embed = DinoBackbone(cfg)
        self.rope = RotaryEmbedding2D(cfg.rope_frequency)

        def make_block() -> Block:
            return Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.layerscale_init,
                         qk_norm=True, rope=self.rope)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, cfg.embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, cfg.embed_dim))
        if not self.camera_token.is_meta:
            nn.init.normal_(self.camera_token, std=1e-6)
            nn.init.normal_(self.register_token, std=1e-6)

    def default_keep(self) -> tuple:
        return tuple(sorted(set(self.cfg.dpt_layers) | {self.cfg.depth - 1}))

    def _embed(self, images: Tensor, has_first: bool = True) -> Tensor:
        """images [B, S, 3, H, W] in [0, 1] -> tokens [B*S, P, C]."""
        b, s, c, height, width = images.shape
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        images = (images - mean) / std
        patches = self.patch_embed(images.reshape(b * s, c, height, width))      # [B*S, h*w, C]
        camera = first_and_rest(self.camera_token, b, s, has_first)               # [B*S, 1, C]
        registers = first_and_rest(self.register_token, b, s, has_first)          # [B*S, R, C]
        return torch.cat((camera, registers, patches), dim=1)

    def forward(self, images: Tensor, keep_layers: Optional[Iterable[int]] = None,
                frame_offset: int = 0, total_frames: Optional[int] = None) -> Dict[int, Tensor]:
        """images [B, S, 3, H, W] in [0, 1] -> {block index: [B, S, P, 2C]} for ``keep_layers``.

        Output i is cat(frame-block-i output, global-block-i output). ``keep_layers`` defaults to
        the DPT layers and the last block; negative indices count from the end.
        ``frame_offset``/``total_frames``: the images are frames [offset, offset + S) of a longer
        sequence (a sharded forward, ``httm_ros.distributed``; its global attention hook sees
        the other frames); the defaults are the whole sequence.
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [B, S, 3, H, W], got {tuple(images.shape)}")
        b, s, _, height, width = images.shape
        p = self.cfg.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
        keep = self._resolve_keep(keep_layers)
        grid = (height // p, width // p)
        tokens = self._embed(images, has_first=frame_offset == 0)                 # [B*S, P, C]
        n_tok, dim = tokens.shape[1], tokens.shape[2]
        frame_layout = TokenLayout(1, n_tok, self.patch_start, grid)
        global_layout = TokenLayout(s, n_tok, self.patch_start, grid, frame_offset, total_frames)
        pos = grid_positions(*grid, self.patch_start, device=images.device)       # [P, 2]
        frame_pos = pos.expand(b * s, -1, -1)                                     # [B*S, P, 2]
        global_pos = pos.repeat(s, 1).expand(b, -1, -1)                           # [B, S*P, 2]
        self.rope.position_bound = max(grid) + 1                                  # see grid_positions

        outputs: Dict[int, Tensor] = {}
        store = self._store_dtype(images.device.type)
        for i in range(self.cfg.depth):
            tokens = self.frame_blocks[i](tokens.reshape(b * s, n_tok, dim), frame_pos, frame_layout)
            frame_out = tokens.reshape(b, s, n_tok, dim)
            tokens = self.global_blocks[i](tokens.reshape(b, s * n_tok, dim), global_pos, global_layout)
            if i in keep and store is not None and i == self.cfg.depth - 1:
                # last block: its fp32 input and output are not needed after the concat, so cast
                # and drop them one at a time (peak 2.5x instead of 3x a [B, S, P, C] fp32 tensor)
                frame_half = frame_out.to(store)
                del frame_out
                global_half = tokens.reshape(b, s, n_tok, dim).to(store)
                del tokens
                outputs[i] = torch.cat((frame_half, global_half), dim=-1)
                del frame_half, global_half
                break
            if i in keep:
                outputs[i] = self._concat(frame_out, tokens.reshape(b, s, n_tok, dim), store)
            del frame_out
        return outputs

    #: Under autocast, keep the block outputs the heads read in the autocast dtype (as the
    #: VRAM-efficient VGGT* of FastVGGT does): 4 x [B, S, P, 2C] is 34 GB in fp32 at 1000 frames
    #: of 518x392, 17 GB in bf16. Without autocast (fp32 inference, the golden test) nothing
    #: changes. The heads cast their inputs to their own dtype.
    store_autocast_dtype: bool = True

    def _store_dtype(self, device_type: str) -> Optional[torch.dtype]:
        if not self.store_autocast_dtype or not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)

    @staticmethod
    def _concat(frame_out: Tensor, global_out: Tensor, dtype: Optional[torch.dtype]) -> Tensor:
        """cat((frame_out, global_out), -1), written straight into a ``dtype`` tensor if given."""
        if dtype is None or dtype == frame_out.dtype == global_out.dtype:
            return torch.cat((frame_out, global_out), dim=-1)
        dim = frame_out.shape[-1]
        out = torch.empty(*frame_out.shape[:-1], dim + global_out.shape[-1], dtype=dtype, device=frame_out.device)
        out[..., :dim] = frame_out
        out[..., dim:] = global_out
        return out

    def _resolve_keep(self, keep_layers: Optional[Iterable[int]]) -> set:
        if keep_layers is None:
            return set(self.default_keep())
        keep = set()
        for i in keep_layers:
            j = i + self.cfg.depth if i < 0 else i
            if not 0 <= j < self.cfg.depth:
                raise ValueError(f"aggregator layer {i} out of range for depth {self.cfg.depth}")
            keep.add(j)
        return keep
