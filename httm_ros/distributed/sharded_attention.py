"""Global attention over frames held by several ranks: the ``attn.core`` hooks of a sharded forward.

Every rank holds the q, k, v of its own frames ([B, H, N_r, d], after qk-norm and RoPE; the
layout says which frames of the sequence they are).

- ``ShardedDenseCore``: all-gathers K and V in full and attends its queries to them (the
  baseline: the same attention as one process, in another summation order).
- ``ShardedHTTMCore``: HTTM per rank on its own frames (the regions are those of the whole
  sequence, ``TokenLayout.frame_offset``), all-gathers only the merged K and V (+ their sizes
  with proportional attention), attends its merged queries to them and unmerges locally. The
  all-gather runs while the queries are merged. The outlier budget is ``"global"`` (the top
  ``q_outlier`` of all ranks' deviations, as one process picks them: each rank sends its own
  top-budget deviations, all pick the same global top-k and keep their share) or ``"rank"``
  (each rank picks ``q_outlier`` of its own tokens).

Implementations: with ``HTTMConfig.impl`` resolving to "triton" (CUDA, batch 1) the Triton fast
path runs (``httm_attention_fast`` with this rank's ``KVExchange``: the merged K/V are gathered
between their merge and the attention, after the query merge, so nothing overlaps them there);
otherwise the torch reference steps (``httm.merge``) with the all-gather overlapping the query
merge. There is no fallback from failed kernels to the torch path here: a rank that changed path
alone would issue its collectives in another order, so a kernel failure fails the forward.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from httm_ros.httm.kernels.fast import httm_attention_fast
from httm_ros.httm.kernels.triton_env import resolve_impl
from httm_ros.httm.merge import (Matching, assignment, deviation, group_sizes, group_sums, match_keys,
                                 match_regions, means, remove_outliers, select_outliers, size_bias)
from httm_ros.httm.records import MergeRecord, MergeStats
from httm_ros.httm.regions import RegionLayout, outlier_budget, region_layouts, reorder
from httm_ros.httm.settings import HTTMConfig
from httm_ros.vggt.layers import sdpa

from .collectives import GatherLog, RowCounts, all_gather_rows

OUTLIER_MODES = ("global", "rank")


class ShardedDenseCore:
    """Dense global attention of this rank's queries over all ranks' keys and values."""

    def __init__(self, layer: int, group=None, log: Optional[GatherLog] = None,
                 counts: Optional[RowCounts] = None) -> None:
        self.layer, self.group, self.log = layer, group, log
        self.counts = counts if counts is not None else RowCounts(group)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layout) -> Tensor:
        rows = self.counts.get("kv", k.shape[2], k.device)
        kv = all_gather_rows(torch.stack((k, v)), 3, self.group, self.log, self.layer, "kv", rows)  # [2, B, H, N, d]
        return sdpa(q, kv[0], kv[1])                                       # [B, H, N_r, d]


class ShardedHTTMCore:
    """HTTM over a sharded sequence (see the module doc); records go to ``stats`` when given."""

    def __init__(self, config: HTTMConfig, layer: int, outliers: str = "global", group=None,
                 log: Optional[GatherLog] = None, stats: Optional[MergeStats] = None,
                 counts: Optional[RowCounts] = None) -> None:
        if outliers not in OUTLIER_MODES:
            raise ValueError(f"outliers must be one of {OUTLIER_MODES}, got {outliers!r}")
        self.config, self.layer, self.outliers = config, layer, outliers
        self.group, self.log, self.stats = group, log, stats
        self.counts = counts if counts is not None else RowCounts(group)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layout) -> Tensor:
        if q.shape[0] == 1 and resolve_impl(self.config.impl, q.device) == "triton":
            o, record = httm_attention_fast(q, k, v, layout, self.config, self.layer, shard=KVExchange(self, layout))
            record.impl = "triton-sharded"
            if self.stats is not None:
                self.stats.add(record)
            return o
        return self._call_torch(q, k, v, layout)

    def _call_torch(self, q: Tensor, k: Tensor, v: Tensor, layout) -> Tensor:
        """The torch reference steps; the merged K/V all-gather overlaps the query merge."""
        cfg = self.config
        regions_q, regions_kv = region_layouts(layout, cfg, q.device)
        kv_matching = match_keys(k, regions_kv, cfg.tile_elements)
        kv_m = torch.stack((kv_matching.merge(k), kv_matching.merge(v)))  # [2, B, H, Mk_r, d]
        rows = self.counts.get("merged_kv", kv_m.shape[3], k.device)
        pending_kv = all_gather_rows(kv_m, 3, self.group, self.log, self.layer, "merged_kv", rows, async_op=True)
        pending_sizes = None
        if cfg.proportional_attention:
            pending_sizes = all_gather_rows(kv_matching.sizes, 2, self.group, self.log, self.layer,
                                            "kv_sizes", rows, async_op=True)
        q_m, q_matching, info = self._merge_queries(q, regions_q, layout)  # [B, H, Mq_r, d]
        kv_all = pending_kv.wait()                                         # [2, B, H, Mk, d]
        bias = size_bias(pending_sizes.wait(), q.dtype) if pending_sizes is not None else None
        o = q_matching.unmerge(sdpa(q_m, kv_all[0], kv_all[1], attn_mask=bias))  # [B, H, N_r, d]
        if self.stats is not None:
            b, h = q.shape[:2]
            self.stats.add(MergeRecord(
                method="httm", layer=self.layer, tokens_in=q.shape[2], kept_q=info["kept_q"],
                kept_kv=torch.full((b, h), kv_m.shape[3], dtype=torch.long, device=q.device),
                outliers=info["outliers"], padded_q=q_m.shape[2], times_ms={}, impl="torch-sharded"))
        return o

    def _merge_queries(self, q: Tensor, regions: RegionLayout, layout):
        """``httm.merge.merge_queries`` with the outlier budget of this core's mode.
        q [B, H, N_r, d] -> (merged [B, H, Mq_r, d], Matching, info)."""
        assign = assignment(match_regions(reorder(q, regions), regions, self.config.tile_elements), regions)
        rows = regions.num_merged
        sums, counts = group_sums(q, assign, rows), group_sizes(assign, rows)
        not_mergeable = torch.zeros(q.shape[2], dtype=torch.bool, device=q.device)
        not_mergeable[regions.special_index] = True
        dev = deviation(q, means(sums, counts), counts, assign).masked_fill(not_mergeable, -1.0)  # [B, H, N_r]
        index, valid = self._select(dev, q.shape[1], layout)
        merged, assign, kept, outliers = remove_outliers(q, sums, counts, assign, index, valid)
        info = {"kept_q": kept, "outliers": outliers}
        return merged.to(q.dtype).contiguous(), Matching(assign, merged.shape[2]), info

    def _select(self, dev: Tensor, heads: int, layout):
        """Outliers of this rank: dev [B, H, N_r] -> (flat index [B, k], valid [B, k])."""
        share = self.outlier_counts(dev, heads, layout)                     # [B]
        index, valid = select_outliers(dev, int(share.max()))
        ranked = torch.arange(index.shape[1], device=dev.device)[None, :]
        return index, valid & (ranked < share[:, None])

    def outlier_counts(self, dev: Tensor, heads: int, layout) -> Tensor:
        """How many outliers this rank picks: dev [B, H, N_r] -> [B] long (see the module doc)."""
        if self.outliers == "rank":
            budget = outlier_budget(self.config.q_outlier, heads, layout.frames * layout.patches_per_frame)
            return torch.full((dev.shape[0],), budget, dtype=torch.long, device=dev.device)
        budget = outlier_budget(self.config.q_outlier, heads, layout.sequence_frames * layout.patches_per_frame)
        return global_share(dev, budget, self.group, self.log, self.layer)


class KVExchange:
    """What the Triton fast path (``httm_attention_fast(..., shard=)``) asks of a sharded forward:
    this rank's outlier count and every rank's merged keys/values."""

    def __init__(self, core: ShardedHTTMCore, layout) -> None:
        self.core, self.layout = core, layout

    def outlier_count(self, dev: Tensor, heads: int) -> int:
        """dev [1, H*N_r] -> this rank's outliers."""
        return int(self.core.outlier_counts(dev.view(dev.shape[0], heads, -1), heads, self.layout)[0])

    def exchange_kv(self, k_m: Tensor, v_m: Tensor, sizes: Tensor):
        """k_m, v_m [B, H, Mk_r, d], sizes [B, H, Mk_r] -> the same over all ranks' rows."""
        c = self.core
        rows = c.counts.get("merged_kv", k_m.shape[2], k_m.device)
        kv = all_gather_rows(torch.stack((k_m, v_m)), 3, c.group, c.log, c.layer, "merged_kv", rows)
        if c.config.proportional_attention:
            sizes = all_gather_rows(sizes, sizes.dim() - 1, c.group, c.log, c.layer, "kv_sizes", rows)
        return kv[0], kv[1], sizes


def global_share(dev: Tensor, budget: int, group=None, log: Optional[GatherLog] = None, layer: int = -1) -> Tensor:
    """How many of the global top-``budget`` deviations (over all ranks, per batch element) lie on
    this rank. dev [B, H, N_r] -> [B] long. Every rank sends its own top ``budget`` values (at
    most ``budget`` of them can be in the global top-k) and all ranks compute the same split
    from the same values (ties are broken by ``topk``, as in one process)."""
    flat = dev.flatten(1)                                                   # [B, H*N_r]
    if budget == 0:
        return torch.zeros(flat.shape[0], dtype=torch.long, device=dev.device)
    k = min(budget, flat.shape[1])
    top = flat.topk(k, dim=1).values.float()                                # [B, k] descending
    if k < budget:
        top = torch.cat((top, top.new_full((top.shape[0], budget - k), float("-inf"))), dim=1)
    every = all_gather_rows(top[None], 0, group, log, layer, "outlier_topk",
                            lengths=[1] * dist.get_world_size(group))       # [W, B, budget]
    pool = every.permute(1, 0, 2).flatten(1)                                # [B, W*budget]
    picked = pool.topk(budget, dim=1, sorted=False).indices                 # [B, budget]
    owner = torch.div(picked, budget, rounding_mode="floor")
    return (owner == dist.get_rank(group)).sum(1)
