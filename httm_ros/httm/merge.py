"""HTTM's merging steps in plain PyTorch (the reference that faster kernels are tested against).

Shapes: B batch, H heads, N tokens of the layout, d head dim, nblk merging regions with L slots
(D destination + S source slots), M merged tokens per head (special tokens first).

As in ToMe, a matching is computed once and then applied: ``match_keys`` returns a ``Matching``
whose ``merge`` is applied to K and V, ``merge_queries`` returns the merged queries with the
``Matching`` whose ``unmerge`` is applied to the attention output. A matching is summarised by
``assign`` [B, H, N]: for every original token (in layout order) the row of the merged sequence
it belongs to. Merging is a scatter-mean by ``assign``, unmerging (with the inverse reorder) a
gather by ``assign``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .regions import RegionLayout, reorder


# ------------------------------------------------------------------------------ matching

def best_destination(src: Tensor, dst: Tensor, dst_valid: Tensor, tile_elements: int) -> Tuple[Tensor, Tensor]:
    """Cosine similarity of each source to its most similar destination, region by region.

    src [..., nblk, S, d], dst [..., nblk, D, d], dst_valid [nblk, D]
    -> score [..., nblk, S] (float32), index [..., nblk, S] (destination slot, long).
    At most ``tile_elements`` similarities exist at once: chunks of whole regions, or of the
    sources of one region when a single region is larger than that.
    """
    lead, s, d_len = src.shape[:-2], src.shape[-2], dst.shape[-2]
    src = F.normalize(src, dim=-1).flatten(0, -3)                         # [R, S, d]
    dst_t = F.normalize(dst, dim=-1).flatten(0, -3).transpose(1, 2)       # [R, d, D]
    bias = torch.zeros(dst_valid.shape, dtype=src.dtype, device=src.device)
    bias = bias.masked_fill(~dst_valid, float("-inf"))                    # [nblk, D]
    bias = bias.expand(src.shape[0] // dst_valid.shape[0], -1, -1).flatten(0, 1)[:, None, :]  # [R, 1, D]
    score = torch.empty(src.shape[:2], dtype=torch.float32, device=src.device)
    index = torch.empty(src.shape[:2], dtype=torch.long, device=src.device)
    r_step = max(1, tile_elements // max(1, s * d_len))
    s_step = max(1, s if s * d_len <= tile_elements else tile_elements // max(1, d_len))
    for i in range(0, src.shape[0], r_step):                              # chunks of regions, not regions
        for j in range(0, s, s_step):
            rows, cols = slice(i, i + r_step), slice(j, j + s_step)
            best = torch.baddbmm(bias[rows], src[rows, cols], dst_t[rows]).max(dim=-1)  # [r, s]
            score[rows, cols], index[rows, cols] = best.values.float(), best.indices
    return score.view(*lead, s), index.view(*lead, s)


def rank_descending(score: Tensor) -> Tensor:
    """score [..., S] -> rank [..., S]: 0 for the largest score of each row."""
    order = score.argsort(dim=-1, descending=True)
    ar = torch.arange(score.shape[-1], device=score.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ar)


def match_regions(tokens: Tensor, regions: RegionLayout, tile_elements: int) -> Tensor:
    """Bipartite matching inside every region (ToMe style): the r most similar sources join their
    best destination, the other sources stay on their own.

    tokens [B, H, nblk, L, d] (``reorder``ed) -> group [B, H, nblk, L] (long) per slot: the destination slot
    (0..D-1) a token belongs to, D + i for the i-th unmerged source, or K (trash) for padding.
    """
    d_n = regions.num_dst
    dst_valid, src_valid = regions.dst_valid, regions.src_valid
    score, best = best_destination(tokens[..., d_n:, :], tokens[..., :d_n, :], dst_valid, tile_elements)
    score = score.masked_fill(~src_valid, float("-inf"))                  # padding sorts last
    rank = rank_descending(score)                                         # [B, H, nblk, S]
    r = regions.merge_count[:, None]                                      # [nblk, 1]
    src_group = torch.where(rank < r, best, d_n + rank - r)
    src_group = src_group.masked_fill(~src_valid, regions.num_groups)
    dst_group = torch.arange(d_n, device=tokens.device).expand(dst_valid.shape)
    dst_group = dst_group.masked_fill(~dst_valid, regions.num_groups)
    return torch.cat((dst_group.expand(*score.shape[:-1], -1), src_group), dim=-1)


def assignment(group: Tensor, regions: RegionLayout) -> Tensor:
    """group [B, H, nblk, L] (from ``match_regions``) -> assign [B, H, N]: merged row of every
    token in layout order (this is the inverse reorder of the groups)."""
    b, h = group.shape[:2]
    row = torch.gather(regions.group_compact.expand(b, h, -1, -1), 3, group)  # [B, H, nblk, L]
    special = torch.arange(regions.num_special, device=group.device).expand(b, h, -1)
    return torch.cat((row.flatten(2), special), dim=2).index_select(2, regions.slot_of_token)


# ---------------------------------------------------------------------------- aggregation

def group_sizes(assign: Tensor, rows: int) -> Tensor:
    """assign [B, H, N] (values < rows) -> counts [B, H, rows] (float32): constituents per row."""
    ones = torch.ones((), device=assign.device).expand(assign.shape)
    return torch.zeros(assign.shape[:2] + (rows,), device=assign.device).scatter_add_(2, assign, ones)


def group_sums(x: Tensor, assign: Tensor, rows: int) -> Tensor:
    """x [B, H, N, d], assign [B, H, N] -> sums [B, H, rows, d] (accumulated in float32)."""
    b, h, _, d = x.shape
    xf = x.float()
    return xf.new_zeros(b, h, rows, d).scatter_add_(2, assign[..., None].expand_as(xf), xf)


def means(sums: Tensor, counts: Tensor) -> Tensor:
    """[B, H, rows, d] / [B, H, rows] -> [B, H, rows, d]; empty rows give zeros."""
    return sums / counts.clamp_min(1.0)[..., None]


# ----------------------------------------------------------------------- outlier filtering

def deviation(x: Tensor, merged: Tensor, counts: Tensor, assign: Tensor) -> Tensor:
    """L2 distance of every token to its merged token; 0 for tokens merged with nobody.
    x [B, H, N, d], merged [B, H, M, d] (float32), counts [B, H, M], assign [B, H, N] -> [B, H, N]."""
    target = torch.gather(merged, 2, assign[..., None].expand(*assign.shape, merged.shape[-1]))
    dev = torch.linalg.vector_norm(x.float() - target, dim=-1)
    return dev.masked_fill(torch.gather(counts, 2, assign) <= 1, 0.0)


def select_outliers(dev: Tensor, budget: int) -> Tuple[Tensor, Tensor]:
    """Global top-k over all heads (per batch element): dev [B, H, N] -> (flat index h*N + n
    [B, k], valid [B, k]). A pick is valid when its deviation is > 0 (it was really merged)."""
    k = min(budget, dev[0].numel())
    values, index = dev.flatten(1).topk(k, dim=1)
    return index, values > 0


def rank_within_head(index: Tensor, valid: Tensor, heads: int, n: int) -> Tuple[Tensor, Tensor]:
    """Outlier slot of each pick inside its head (picks ordered by token), and picks per head.
    index/valid [B, k] (flat h*N + n) -> pos [B, k] (meaningless for invalid picks), count [B, H]."""
    head = torch.div(index, n, rounding_mode="floor")                     # [B, k]
    count = torch.zeros(index.shape[0], heads, dtype=torch.long, device=index.device)
    count.scatter_add_(1, head, valid.long())
    order = torch.where(valid, index, heads * n + index).argsort(dim=1)  # invalid picks sort last
    first = torch.cumsum(count, dim=1) - count                            # [B, H] first pick of a head
    pos_sorted = torch.arange(index.shape[1], device=index.device) - first.gather(1, head.gather(1, order))
    return torch.empty_like(pos_sorted).scatter_(1, order, pos_sorted), count


def remove_outliers(x: Tensor, sums: Tensor, counts: Tensor, assign: Tensor,
                    index: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Take the outliers out of their merged tokens; each becomes a token of its own.

    x [B, H, N, d], sums [B, H, M, d], counts [B, H, M], assign [B, H, N], index/valid [B, k]
    -> rows [B, H, M + O, d] (float32 merged queries, outliers after the M merged rows,
    O = most outliers of any head), new assign [B, H, N], rows really used per head [B, H]
    (merged tokens left non-empty + outliers), outliers per head [B, H].
    Rows past a head's own count are padding.
    """
    b, h, n, d = x.shape
    m = sums.shape[2]
    head = torch.div(index, n, rounding_mode="floor")                     # [B, k]
    picked = x.flatten(1, 2).gather(1, index[..., None].expand(-1, -1, d)).float()  # [B, k, d]
    old = assign.flatten(1).gather(1, index)                              # [B, k] their merged rows
    w = valid.to(picked.dtype)
    sums = sums.flatten(1, 2).scatter_add(1, (head * m + old)[..., None].expand(-1, -1, d),
                                          -picked * w[..., None]).view(b, h, m, d)
    counts = counts.flatten(1).scatter_add(1, head * m + old, -w).view(b, h, m)

    pos, per_head = rank_within_head(index, valid, h, n)
    o_max = int(per_head.max()) if per_head.numel() else 0                # one host sync: row count
    width = m + o_max + 1                                                 # + 1 trash row
    slot = torch.where(valid, m + pos, m + o_max)                         # invalid picks -> trash
    rows = torch.cat((means(sums, counts), sums.new_zeros(b, h, o_max + 1, d)), dim=2)
    rows = rows.flatten(1, 2).scatter(1, (head * width + slot)[..., None].expand(-1, -1, d), picked)
    new_assign = assign.flatten(1).scatter(1, index, torch.where(valid, m + pos, old)).view(b, h, n)
    kept = (counts > 0.5).sum(2) + per_head                               # real rows per head
    return rows.view(b, h, width, d)[:, :, :m + o_max], new_assign, kept, per_head


# ------------------------------------------------------------------------ merge / unmerge

@dataclass(frozen=True)
class Matching:
    """One matching, applied by ``merge`` (tokens -> merged rows) and ``unmerge`` (merged rows ->
    tokens). assign [B, H|1, N] (values < rows): merged row of every token; sizes [B, H|1, rows]
    float32 constituents per row, or None (counted from ``assign`` when ``merge`` needs them)."""

    assign: Tensor
    rows: int
    sizes: Optional[Tensor] = None

    def merge(self, x: Tensor) -> Tensor:
        """Scatter-mean: x [B, H, N, d] -> [B, H, rows, d] in x's dtype (float32 sums)."""
        sizes = self.sizes if self.sizes is not None else group_sizes(self.assign, self.rows)
        return means(group_sums(x, self.assign, self.rows), sizes).to(x.dtype)

    def unmerge(self, o: Tensor) -> Tensor:
        """Unmerge and inverse reorder in one gather: o [B, H, rows, d] -> [B, H, N, d]; each
        token gets the output of the merged row it belongs to (its own row if it is an outlier)."""
        return torch.gather(o, 2, self.assign[..., None].expand(*self.assign.shape, o.shape[-1]))


def match_keys(k: Tensor, regions: RegionLayout, tile_elements: int) -> Matching:
    """Head-wise region matching on the keys; its ``merge`` applies to K and V.

    k [B, H, N, d] -> Matching (assign [B, H, N], sizes of the merged keys [B, H, M] float32).
    """
    assign = assignment(match_regions(reorder(k, regions), regions, tile_elements), regions)
    return Matching(assign, regions.num_merged, group_sizes(assign, regions.num_merged))


def size_bias(counts: Tensor, dtype: torch.dtype) -> Tensor:
    """Proportional attention: log(size) of each merged key as an additive attention bias.
    counts [B, H|1, M] -> [B, H|1, 1, M]."""
    return counts.log()[:, :, None, :].to(dtype)


def _no_lap(name: str) -> None:
    pass


def merge_queries(q: Tensor, regions: RegionLayout, outlier_budget: int, tile_elements: int,
                  not_mergeable: Tensor, lap: Callable[[str], object] = _no_lap,
                  ) -> Tuple[Tensor, Matching, dict]:
    """Head-wise region matching on the queries, then adaptive outlier filtering. The queries are
    merged while matching (outlier filtering needs their merged means), so this returns them
    with the matching, whose ``unmerge`` applies to the attention output.

    q [B, H, N, d]; not_mergeable [N] bool (special tokens, never outliers); ``lap(stage)`` is
    called after each stage (timing) -> (merged queries [B, H, Mq, d] with Mq = M + most
    outliers of any head (shorter heads are padded with rows whose outputs are discarded),
    Matching (assign [B, H, N] over Mq rows), info {kept_q, outliers: [B, H]}).
    """
    assign = assignment(match_regions(reorder(q, regions), regions, tile_elements), regions)
    lap("match_q")
    rows = regions.num_merged
    sums, counts = group_sums(q, assign, rows), group_sizes(assign, rows)
    lap("aggregate_q")
    dev = deviation(q, means(sums, counts), counts, assign).masked_fill(not_mergeable, -1.0)
    index, valid = select_outliers(dev, outlier_budget)
    lap("outliers_select")
    merged, assign, kept, outliers = remove_outliers(q, sums, counts, assign, index, valid)
    lap("outliers_remove")
    info = {"kept_q": kept, "outliers": outliers}
    return merged.to(q.dtype).contiguous(), Matching(assign, merged.shape[2]), info
