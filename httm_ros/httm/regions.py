"""Merging regions: which tokens form each region (the paper's "merging block"), which are destinations.

The global-attention sequence is frame-major, ``[S * P]`` with ``P = patch_start + h*w``.
Patch tokens are regrouped (temporal reordering) into merging regions that each hold up to ``n_s``
raster-order patch positions (one spatial chunk) from up to ``n_t`` consecutive frames (one
temporal group), frame after frame. Special tokens (camera + registers) belong to no region: they
are never merged. (The paper calls a region a "block"; here "block" means the transformer's.)

Ragged sizes: the ``h*w`` patch positions are cut into ``ceil(h*w / n_s)`` chunks whose sizes
differ by at most one (so 28x37 = 1036 with n_s = 128 gives 9 chunks of 115-116, not 8 of 128 and
one of 12); frames likewise into ``ceil(S / n_t)`` groups. Regions are padded to the largest region
and carry validity masks, so every step runs on all regions at once.

Everything here depends only on the layout and the ratios, never on the tokens: a ``RegionLayout``
is built once per (token layout, ratios) and cached.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class RegionLayout:
    """Static index tables of one (token layout, merge ratio) pair. nblk regions, L = D + S slots each.

    token_index   [nblk, L]  token (index into the layout's N) at each region slot; the first
                             ``num_dst`` slots hold destinations, the next ``num_src`` sources
    dst_valid     [nblk, D]  bool, destination slot holds a token
    src_valid     [nblk, S]  bool, source slot holds a token
    merge_count   [nblk]     r: sources merged away in each region
    group_compact [nblk, K+1] merged-token id of each region group (see ``match_regions``): groups
                             0..D-1 are the destinations, D..K-1 the unmerged sources, K is the
                             trash group of padding slots; ids count after the special tokens
    slot_of_token [N]        flat region slot (blk * L + slot) of each patch token, and
                             nblk * L + i for the i-th special token
    special_index [n_sp]     token index of each special token (frame-major)
    num_merged    M: merged tokens per head, special tokens included
    """

    token_index: Tensor
    dst_valid: Tensor
    src_valid: Tensor
    merge_count: Tensor
    group_compact: Tensor
    slot_of_token: Tensor
    special_index: Tensor
    num_dst: int
    num_src: int
    num_groups: int
    num_merged: int

    @property
    def num_regions(self) -> int:
        return self.token_index.shape[0]

    @property
    def num_special(self) -> int:
        return self.special_index.numel()

    @property
    def num_patch(self) -> int:
        return self.slot_of_token.numel() - self.num_special


def balanced_chunks(total: int, max_size: int) -> Tensor:
    """Sizes of ceil(total / max_size) consecutive chunks covering ``total``, differing by <= 1."""
    n = -(-total // max_size)
    base, extra = divmod(total, n)
    return torch.tensor([base + 1] * extra + [base] * (n - extra), dtype=torch.long)


def round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).long()


def shard_groups(layout, n_t: int) -> Tensor:
    """Sizes of the temporal groups of ``layout``'s frames [ng]: ``balanced_chunks`` of the whole
    sequence, restricted to the layout's frames when it is a shard of a longer one (a sharded
    forward); a shard must start and end on group boundaries."""
    total, offset = layout.sequence_frames, layout.frame_offset
    group = balanced_chunks(total, n_t)
    if total == layout.frames:
        return group
    ends = group.cumsum(0)
    first = int(torch.searchsorted(ends, offset, right=True))
    last = int(torch.searchsorted(ends, offset + layout.frames, right=False))
    starts_ok = offset == 0 or int(ends[first - 1]) == offset
    if not starts_ok or last >= len(ends) or int(ends[last]) != offset + layout.frames:
        raise ValueError(f"frames [{offset}, {offset + layout.frames}) of {total} do not fall on the "
                         f"temporal groups of n_t={n_t} (ends {ends.tolist()})")
    return group[first:last + 1]


def _region_grid(layout, n_s: int, n_t: int):
    """Slots of all regions on a padded (frame, position) grid: tensors [nblk, T, C]."""
    h, w = layout.grid
    chunk = balanced_chunks(h * w, n_s)                                   # [nc]
    group = shard_groups(layout, n_t)                                     # [ng]
    c_start, g_start = chunk.cumsum(0) - chunk, group.cumsum(0) - group
    t = torch.arange(int(group.max()))[None, :, None]                     # [1, T, 1]
    j = torch.arange(int(chunk.max()))[None, None, :]                     # [1, 1, C]
    g_of = torch.arange(len(group)).repeat_interleave(len(chunk))         # [nblk]
    c_of = torch.arange(len(chunk)).repeat(len(group))                    # [nblk]
    valid = (t < group[g_of, None, None]) & (j < chunk[c_of, None, None])  # [nblk, T, C]
    frame = g_start[g_of, None, None] + t
    token = frame * layout.tokens_per_frame + layout.patch_start + c_start[c_of, None, None] + j
    t_full = t.expand_as(valid)
    j_full = j.expand_as(valid)
    return valid, token.masked_fill(~valid, 0), frame.expand_as(valid), t_full, j_full


def choose_destinations(valid: Tensor, anchor: Tensor, t: Tensor, j: Tensor, n_extra: Tensor) -> Tensor:
    """Destination mask [nblk, T, C]: the anchors plus ``n_extra[blk]`` slots spread in space-time.

    Non-anchor slots are ranked by the phase frac(j / sigma + t * golden), sigma = candidates /
    n_extra: within a frame the picks are ~sigma positions apart, and the pattern shifts by a
    golden-ratio fraction of sigma from frame to frame, so every position gets a destination in
    some nearby frame and every frame has nearby destinations. Deterministic; ties by slot order.
    """
    cand = valid & ~anchor
    n_cand = cand.flatten(1).sum(1)                                       # [nblk]
    sigma = (n_cand.double() / n_extra.clamp_min(1).double())[:, None, None]
    phase = torch.frac(j.double() / sigma + t.double() * _GOLDEN)
    phase = phase.masked_fill(~cand, math.inf).flatten(1)                 # [nblk, T*C]
    order = torch.sort(phase, dim=1, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    picked = (rank < n_extra[:, None]).view_as(valid) & cand
    return anchor | picked


@functools.lru_cache(maxsize=8)
def build_region_layout(layout, spatial_block: int, temporal_frames: int, merge_ratio: float,
                      dst_ratio: float, anchor_first_frame: bool, device: str = "cpu") -> RegionLayout:
    """Regions, destinations and merge counts for one token layout (see the module doc).

    Per region of n tokens: kept = n - round(merge_ratio * n); destinations D = max(anchors,
    max(1, round(dst_ratio * kept))); where the first frame alone holds more tokens than
    ``kept`` (few frames per region with anchoring), kept is raised to D, i.e. r = n - D.
    """
    valid, token, frame, t, j = _region_grid(layout, spatial_block, temporal_frames)
    nblk = valid.shape[0]
    first = -layout.frame_offset                                          # local index of frame 0
    anchor = valid & (frame == first) if anchor_first_frame else torch.zeros_like(valid)
    n = valid.flatten(1).sum(1)                                           # [nblk]
    n_anchor = anchor.flatten(1).sum(1)
    kept = n - round_half_up(merge_ratio * n.double())
    n_dst = torch.maximum(n_anchor, round_half_up(dst_ratio * kept.double()).clamp_min(1)).minimum(n)
    kept = torch.maximum(kept, n_dst)
    merge_count = n - kept
    is_dst = choose_destinations(valid, anchor, t, j, n_dst - n_anchor).flatten(1)
    is_src = valid.flatten(1) & ~is_dst
    n_src = n - n_dst
    d_max, s_max = int(n_dst.max()), int(n_src.max())
    slot = torch.where(is_dst, is_dst.cumsum(1) - 1, d_max + is_src.cumsum(1) - 1)  # [nblk, T*C]

    width = d_max + s_max
    flat_valid = valid.flatten(1)
    blk = torch.arange(nblk)[:, None].expand_as(slot)
    token_index = torch.zeros(nblk, width, dtype=torch.long)
    token_index[blk[flat_valid], slot[flat_valid]] = token.flatten(1)[flat_valid]

    n_special = layout.frames * layout.patch_start
    special_index = (torch.arange(layout.frames)[:, None] * layout.tokens_per_frame
                     + torch.arange(layout.patch_start)[None, :]).flatten()
    slot_of_token = torch.empty(layout.num_tokens, dtype=torch.long)
    slot_of_token[token.flatten(1)[flat_valid]] = (blk * width + slot)[flat_valid]
    slot_of_token[special_index] = nblk * width + torch.arange(n_special)

    n_unmerged = n_src - merge_count
    k_max = d_max + int(n_unmerged.max())
    g = torch.arange(k_max + 1)[None, :]
    group_valid = (g < n_dst[:, None]) | ((g >= d_max) & (g < d_max + n_unmerged[:, None]))
    group_compact = (n_special + group_valid.flatten().cumsum(0) - 1).view(nblk, k_max + 1)
    group_compact = group_compact.masked_fill(~group_valid, 0)

    to = functools.partial(torch.Tensor.to, device=device)
    return RegionLayout(
        token_index=to(token_index),
        dst_valid=to(torch.arange(d_max)[None, :] < n_dst[:, None]),
        src_valid=to(torch.arange(s_max)[None, :] < n_src[:, None]),
        merge_count=to(merge_count),
        group_compact=to(group_compact),
        slot_of_token=to(slot_of_token),
        special_index=to(special_index),
        num_dst=d_max,
        num_src=s_max,
        num_groups=k_max,
        num_merged=n_special + int(group_valid.sum()),
    )


def reorder(x: Tensor, regions: RegionLayout) -> Tensor:
    """Temporal reordering: x [B, H, N, d] -> regions [B, H, nblk, L, d] (padding slots hold token 0)."""
    b, h, _, d = x.shape
    idx = regions.token_index.flatten()                                     # [nblk * L]
    return x.index_select(2, idx).view(b, h, regions.num_regions, -1, d)


def outlier_budget(q_outlier: float, heads: int, patch_tokens: int) -> int:
    """round(q_outlier * mergeable query tokens over all heads), halves rounded up."""
    return int(math.floor(q_outlier * heads * patch_tokens + 0.5))


def region_layouts(layout, config, device: torch.device) -> Tuple[RegionLayout, RegionLayout]:
    """(query regions, key/value regions) of an ``HTTMConfig`` on ``device``, cached per layout."""
    common = (config.spatial_block, config.temporal_frames)
    tail = (config.dst_ratio, config.anchor_first_frame, str(device))
    return (build_region_layout(layout, *common, config.q_merge, *tail),
            build_region_layout(layout, *common, config.kv_merge, *tail))
