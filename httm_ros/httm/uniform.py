"""The uniform baseline: FastVGGT's token merging (arXiv 2509.02560; github.com/mystorm16/FastVGGT),
reproduced from its released code in our own, in every global attention call it merges in:

- metric: the attention input x = norm1(block input), every token scaled to unit length and cast
  to bf16 (``block_metric``; ``patch`` computes it in a forward pre-hook of the global block,
  ``InputMetric``). Similarities are bf16 matrix products of sources against all destinations
  of the call (global matching), in chunks of 5000 sources as FastVGGT's.
- destinations: every token of the first frame, special tokens included; in every later frame
  its special tokens (camera + registers) and one patch per 2x2 cell, picked by
  ``torch.randint`` from a generator seeded with 33 on the call's device: the same draw in every
  layer and every call (``cell_destinations``, with FastVGGT's placement on odd grid widths).
- protected: int(0.1 N) tokens at stride N // int(0.1 N) over all N tokens of the call, of any
  kind; never merged. A protected destination is in the merged sequence twice: as the row its
  sources join, and alone; its own output comes from the lone copy (as FastVGGT's unmerge).
- merges: r = int(0.9 N), at most the unprotected sources; the r most similar join their most
  similar destination (mean, one matching for Q, K, V and all heads), the rest stay alone.
- unmerge: every token gets the attention output of its row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from httm_ros.timing import StageTimer
from httm_ros.vggt.layers import sdpa

from .merge import Matching, group_sizes, rank_descending, size_bias
from .records import MergeRecord
from .settings import UniformMergeConfig

SOURCE_CHUNK = 5000            # FastVGGT's sources per similarity product
METRIC_ROWS = 1 << 15          # tokens normalised at once by block_metric


# ------------------------------------------------------------------------------ partition

def cell_destinations(frames: int, grid: Tuple[int, int], generator: torch.Generator) -> Tensor:
    """[frames, h*w] bool: one destination patch per 2x2 cell, the cell corner drawn by
    ``torch.randint(4, (frames, h//2, w//2))`` (corner k = row k // 2, column k % 2).

    As FastVGGT's code, the cell pattern of the even (2*(h//2)) x (2*(w//2)) grid is written in
    its own raster order into the first 4*(h//2)*(w//2) patch positions of the frame: with an
    odd grid width (518 px: 37 patches) the cells drift by one column per row, and the last
    positions (the odd row/column's worth) are never destinations."""
    h, w = grid
    hs, ws = h // 2, w // 2
    corner = torch.randint(4, (frames, hs, ws), device=generator.device, generator=generator)
    cells = F.one_hot(corner, 4).bool().view(frames, hs, ws, 2, 2)       # [F, hs, ws, dy, dx]
    pattern = cells.transpose(2, 3).reshape(frames, 4 * hs * ws)         # raster of the even grid
    out = torch.zeros(frames, h * w, dtype=torch.bool, device=generator.device)
    out[:, :4 * hs * ws] = pattern
    return out


def protected_tokens(n: int, protect_ratio: float, device) -> Tensor:
    """[P] token indices never merged: P = int(protect_ratio * n) at stride n // P from 0."""
    count = int(n * protect_ratio)
    if count == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.arange(0, n, max(1, n // count), device=device)[:count]


@dataclass(frozen=True)
class UniformPartition:
    """The data-independent part of a call's matching. dst [Nd], src [Ns]: token indices in
    FastVGGT's order (see ``build_uniform_partition``); protected [P] ascending; src_protected
    [Ns] bool; merge_count r; unmerged: unprotected sources left alone. Merged rows: Nd
    destinations, then the unmerged sources, then P lone protected tokens (num_merged = Nd +
    unmerged + P). lone [N]: the lone row of each protected token, -1 for the others;
    copy_tokens [Pd]: the protected destinations, copy_rows [Pd] their lone rows."""

    dst: Tensor
    src: Tensor
    protected: Tensor
    src_protected: Tensor
    merge_count: int
    unmerged: int
    lone: Tensor
    copy_tokens: Tensor
    copy_rows: Tensor

    @property
    def num_merged(self) -> int:
        return self.dst.numel() + self.unmerged + self.protected.numel()


def destination_mask(layout, anchor_first_frame: bool, seed: int, device) -> Tensor:
    """[S, tokens_per_frame] bool: FastVGGT's destinations (see ``cell_destinations``)."""
    s, ps = layout.frames, layout.patch_start
    generator = torch.Generator(device=device).manual_seed(seed)
    is_dst = torch.zeros(s, layout.tokens_per_frame, dtype=torch.bool, device=device)
    is_dst[:, :ps] = True                                                 # special tokens, every frame
    is_dst[1:, ps:] = cell_destinations(s - 1, layout.grid, generator)
    if anchor_first_frame:
        is_dst[0] = True
    else:                                                                 # drawn after the others
        is_dst[0, ps:] = cell_destinations(1, layout.grid, generator)[0]
    return is_dst


@functools.lru_cache(maxsize=32)
def build_uniform_partition(layout, merge_ratio: float, protect_ratio: float = 0.1, seed: int = 33,
                            anchor_first_frame: bool = True, device: str = "cpu") -> UniformPartition:
    n = layout.num_tokens
    is_dst = destination_mask(layout, anchor_first_frame, seed, torch.device(device)).flatten()
    # FastVGGT's order of both sets: an argsort (not stable) of -1 (destination) / 0 (source)
    # flags [1, N, 1]; the destination order decides ties of the bf16 similarities
    order = torch.where(is_dst, -1, 0).reshape(1, n, 1).argsort(dim=1).flatten()
    n_dst = int(is_dst.sum())
    dst, src = order[:n_dst], order[n_dst:]
    protected = protected_tokens(n, protect_ratio, device)
    src_protected = torch.isin(src, protected)
    valid = src.numel() - int(src_protected.sum())
    r = min(int(n * merge_ratio), src.numel(), valid)
    lone = torch.full((n,), -1, dtype=torch.long, device=device)
    lone[protected] = n_dst + valid - r + torch.arange(protected.numel(), device=device)
    copies = lone[dst] >= 0
    return UniformPartition(dst, src, protected, src_protected, r, valid - r, lone, dst[copies], lone[dst][copies])


# ------------------------------------------------------------------------------- matching

def block_metric(x: Tensor, norm: nn.Module) -> Tensor:
    """x [B, N, C] block input -> [B, N, C] bf16: the attention input norm(x), every token divided
    by its length (in norm's output dtype), then cast to bf16; computed in chunks of tokens."""
    b, n, c = x.shape
    flat = x.reshape(b * n, c)
    out = torch.empty(b * n, c, dtype=torch.bfloat16, device=x.device)
    for i in range(0, b * n, METRIC_ROWS):
        m = norm(flat[i:i + METRIC_ROWS])
        out[i:i + METRIC_ROWS] = m / m.norm(dim=-1, keepdim=True)
    return out.view(b, n, c)


def keys_metric(k: Tensor) -> Tensor:
    """k [B, H, N, d] -> [B, N, H*d] bf16, unit length: the stand-in metric of calls made without
    the block input (the attention-level benchmarks, which have only q, k, v)."""
    b, h, n, d = k.shape
    m = k.transpose(1, 2).reshape(b, n, h * d).float()
    return (m / m.norm(dim=-1, keepdim=True)).to(torch.bfloat16)


class InputMetric:
    """Forward pre-hook of a global block (``patch`` registers it with_kwargs=True): keeps the
    ``block_metric`` of the block's input until its attention call ``take``s it."""

    def __init__(self) -> None:
        self.metric: Optional[Tensor] = None

    def __call__(self, block: nn.Module, args, kwargs) -> None:
        x = args[0] if args else kwargs["x"]
        self.metric = block_metric(x, block.norm1)

    def take(self) -> Optional[Tensor]:
        metric, self.metric = self.metric, None
        return metric


def best_destinations(metric: Tensor, part: UniformPartition, tile_elements: Optional[int]) -> Tuple[Tensor, Tensor]:
    """metric [B, N, C] bf16 -> (score [B, Ns] bf16, index [B, Ns] long): the most similar
    destination (position in ``part.dst``) of every source, bf16 products in chunks of sources."""
    b, n_src, n_dst = metric.shape[0], part.src.numel(), part.dst.numel()
    rows = SOURCE_CHUNK if tile_elements is None else max(1, tile_elements // max(1, n_dst))
    src = metric[:, part.src]                                             # [B, Ns, C]
    dst_t = metric[:, part.dst].transpose(1, 2)                           # [B, C, Nd]
    score = torch.empty(b, n_src, dtype=metric.dtype, device=metric.device)
    index = torch.empty(b, n_src, dtype=torch.long, device=metric.device)
    for i in range(0, n_src, rows):
        best = torch.bmm(src[:, i:i + rows], dst_t).max(dim=2)            # [B, rows]
        score[:, i:i + rows], index[:, i:i + rows] = best.values, best.indices
    return score, index


@dataclass(frozen=True)
class UniformMatching:
    """One matching for all heads. ``groups`` merges (mean of each destination with its sources,
    every other token alone); rows ``copy_rows`` then get a lone copy of the protected
    destinations ``copy_tokens``; ``unmerge`` gives each token the output of its ``out_row``
    [B, 1, N] (a protected token: its lone row)."""

    groups: Matching
    out_row: Tensor
    copy_rows: Tensor
    copy_tokens: Tensor

    def merge(self, x: Tensor) -> Tensor:
        """x [B, H, N, d] -> [B, H, M, d]."""
        merged = self.groups.merge(x)
        merged[:, :, self.copy_rows] = x[:, :, self.copy_tokens]
        return merged

    def unmerge(self, o: Tensor) -> Tensor:
        """o [B, H, M, d] -> [B, H, N, d]."""
        index = self.out_row[..., None].expand(o.shape[0], o.shape[1], -1, o.shape[-1])
        return torch.gather(o, 2, index)

    @property
    def sizes(self) -> Tensor:
        """[B, 1, M] float32 tokens per merged row (1 for the copies)."""
        sizes = self.groups.sizes.clone()
        sizes[:, :, self.copy_rows] = 1.0
        return sizes


def uniform_matching(metric: Tensor, part: UniformPartition, tile_elements: Optional[int]) -> UniformMatching:
    """metric [B, N, C] bf16 -> the call's matching (each batch element matched on its own)."""
    b, n = metric.shape[:2]
    n_dst, r = part.dst.numel(), part.merge_count
    score, best = best_destinations(metric, part, tile_elements)
    score = score.float().masked_fill(part.src_protected, float("-inf"))  # protected: never merged
    rank = rank_descending(score)                                         # [B, Ns]
    src_row = torch.where(rank < r, best, n_dst + rank - r)
    src_row = torch.where(part.src_protected, part.lone[part.src], src_row)
    assign = torch.empty(b, n, dtype=torch.long, device=metric.device)
    assign[:, part.dst] = torch.arange(n_dst, device=metric.device)
    assign[:, part.src] = src_row
    out_row = torch.where(part.lone >= 0, part.lone, assign)             # [B, N]
    m = part.num_merged
    groups = Matching(assign[:, None], m, group_sizes(assign[:, None], m))
    return UniformMatching(groups, out_row[:, None], part.copy_rows, part.copy_tokens)


# ------------------------------------------------------------------------------ attention

def uniform_attention(q: Tensor, k: Tensor, v: Tensor, layout, config: UniformMergeConfig,
                      layer: int = -1, profile: Optional[bool] = None, metric: Optional[Tensor] = None):
    """q, k, v [B, H, N, d] -> (o [B, H, N, d], MergeRecord). ``metric`` [B, N, C] bf16: the
    ``block_metric`` of the block input (``patch`` passes it); None: ``keys_metric(k)``."""
    profile = config.profile if profile is None else profile
    timer = StageTimer(q.device, "wall_sync" if profile or q.device.type == "cpu" else "off")
    b, h, n, d = q.shape
    if int(n * config.merge_ratio) <= 0:                                  # FastVGGT: nothing to do
        o, m = sdpa(q, k, v), n
        timer.lap("attention")
    else:
        part = build_uniform_partition(layout, config.merge_ratio, config.protect_ratio, config.seed,
                                       config.anchor_first_frame, str(q.device))
        metric = keys_metric(k) if metric is None else metric
        matching = uniform_matching(metric, part, config.tile_elements)
        timer.lap("match")
        q_m, k_m, v_m = matching.merge(q), matching.merge(k), matching.merge(v)  # [B, H, M, d]
        bias = size_bias(matching.sizes, q.dtype) if config.proportional_attention else None
        timer.lap("merge")
        o_m = sdpa(q_m, k_m, v_m, attn_mask=bias)                         # [B, H, M, d]
        timer.lap("attention")
        o, m = matching.unmerge(o_m), part.num_merged                    # [B, H, N, d]
        timer.lap("unmerge")
    kept = torch.full((b, h), m, dtype=torch.long, device=q.device)
    record = MergeRecord(method="uniform", layer=layer, tokens_in=n, kept_q=kept, kept_kv=kept,
                         outliers=torch.zeros_like(kept), padded_q=m, times_ms=timer.times_ms())
    return o, record
