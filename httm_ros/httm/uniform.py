"""Uniform baseline in the style of FastVGGT: one matching for all heads and for Q, K and V.

Metric: the keys of all heads concatenated, [B, N, H*d] (our hook gives no access to the
block's input x, which FastVGGT uses; the keys are the closest stand-in it offers).
Destinations: every first-frame patch token (anchoring) and, in the other frames, one patch
per 2x2 cell (the cell corner used cycles with the frame index, so a location that is a source
in one frame is a destination in a neighbouring one). Special tokens take no part: they are
neither merged nor merge targets, as in HTTM. Sources: all other patch tokens, matched against
all destinations of the whole sequence (global matching, chunked so memory stays bounded); the
``round(merge_ratio * sources)`` most similar join their destination (mean), the rest stay.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from httm_ros.timing import StageTimer

from .merge import Matching, best_destination, group_sizes, rank_descending, size_bias
from .records import MergeRecord
from .regions import round_half_up
from .settings import UniformMergeConfig

_CELL_CORNERS = ((0, 0), (1, 1), (0, 1), (1, 0))


@dataclass(frozen=True)
class UniformPartition:
    """Static partition of the tokens. special [n_sp], dst [Nd], src [Ns]: token indices; merge_count r;
    num_merged M = n_sp + Nd + Ns - r merged rows (special first, then dst, then unmerged src)."""

    special: Tensor
    dst: Tensor
    src: Tensor
    merge_count: int
    num_merged: int


@functools.lru_cache(maxsize=32)
def build_uniform_partition(layout, merge_ratio: float, anchor_first_frame: bool,
                            device: str = "cpu") -> UniformPartition:
    h, w = layout.grid
    s = torch.arange(layout.frames)[:, None]                              # [S, 1]
    row = torch.arange(h * w)[None, :] // w                               # [1, hw]
    col = torch.arange(h * w)[None, :] % w
    corner = torch.tensor(_CELL_CORNERS)[s.squeeze(1) % 4]                # [S, 2]
    is_dst = (row % 2 == corner[:, :1]) & (col % 2 == corner[:, 1:])      # [S, hw]
    if anchor_first_frame:
        is_dst[0] = True
    token = s * layout.tokens_per_frame + layout.patch_start + torch.arange(h * w)[None, :]
    special = (s * layout.tokens_per_frame + torch.arange(layout.patch_start)[None, :]).flatten()
    src = token[~is_dst]
    r = int(round_half_up(torch.tensor(merge_ratio * src.numel(), dtype=torch.float64)))
    n_dst = int(is_dst.sum())
    return UniformPartition(special.to(device), token[is_dst].to(device), src.to(device), r,
                       special.numel() + n_dst + src.numel() - r)


def uniform_assignment(metric: Tensor, part: UniformPartition, tile_elements: int) -> Tensor:
    """metric [B, N, C] -> assign [B, N]: merged row of every token (shared by all heads)."""
    b, n, _ = metric.shape
    src, dst = metric[:, part.src][:, None], metric[:, part.dst][:, None]  # [B, 1, Ns|Nd, C]
    ones = torch.ones(1, part.dst.numel(), dtype=torch.bool, device=metric.device)
    score, best = best_destination(src, dst, ones, tile_elements)
    score, best = score[:, 0], best[:, 0]                                 # [B, Ns]
    rank = rank_descending(score)
    n_sp, n_dst, r = part.special.numel(), part.dst.numel(), part.merge_count
    src_row = torch.where(rank < r, n_sp + best, n_sp + n_dst + rank - r)
    assign = torch.empty(b, n, dtype=torch.long, device=metric.device)
    assign[:, part.special] = torch.arange(n_sp, device=metric.device)
    assign[:, part.dst] = n_sp + torch.arange(n_dst, device=metric.device)
    assign[:, part.src] = src_row
    return assign


def uniform_attention(q: Tensor, k: Tensor, v: Tensor, layout, config: UniformMergeConfig,
                      layer: int = -1, profile: Optional[bool] = None):
    """q, k, v [B, H, N, d] -> (o [B, H, N, d], MergeRecord); one matching for every head."""
    profile = config.profile if profile is None else profile
    timer = StageTimer(q.device, "wall_sync" if profile or q.device.type == "cpu" else "off")
    b, h, n, d = q.shape
    part = build_uniform_partition(layout, config.merge_ratio, config.anchor_first_frame, str(q.device))
    metric = k.transpose(1, 2).reshape(b, n, h * d)                       # [B, N, H*d]
    assign = uniform_assignment(metric, part, config.tile_elements)[:, None].expand(b, h, n)
    timer.lap("match")
    m = part.num_merged
    matching = Matching(assign, m, group_sizes(assign[:, :1], m))        # sizes [B, 1, M]
    q_m, k_m, v_m = matching.merge(q), matching.merge(k), matching.merge(v)  # [B, H, M, d]
    bias = size_bias(matching.sizes, q.dtype) if config.proportional_attention else None
    timer.lap("merge")
    o_m = F.scaled_dot_product_attention(q_m, k_m, v_m, attn_mask=bias)   # [B, H, M, d]
    timer.lap("attention")
    o = matching.unmerge(o_m)                                             # [B, H, N, d]
    timer.lap("unmerge")
    kept = torch.full((b, h), m, dtype=torch.long, device=q.device)
    record = MergeRecord(method="uniform", layer=layer, tokens_in=n, kept_q=kept, kept_kv=kept,
                         outliers=torch.zeros_like(kept), padded_q=m, times_ms=timer.times_ms())
    return o, record
