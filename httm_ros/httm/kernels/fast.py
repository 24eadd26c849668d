"""HTTM attention on the Triton kernels: same function as ``attention.httm_attention`` (the torch
reference), fewer passes over q, k, v. Stage by stage (B=1, H=16, N tokens, d=64, bf16):

  match_q          one read of q (sources once, destinations once per source tile, from L2);
                   writes best destination per source and the assignment of every source
  aggregate_q      one-hot x rows products per region: sums (fp32) and counts of merged queries
  outliers_dev     one read of q + gathers of the merged means: deviation per token
  outliers_select  exact global top-k by a two-level radix histogram (no sort, no sync)
  outliers_remove  outliers leave their merged token (atomics), get their own row; means
  match_kv         as match_q on k (no assignment needed: K/V are never unmerged)
  merge_kv         K and V aggregated together (one matching): means in bf16 + sizes
  attention        SDPA over per-head query lengths, grouped (ragged.py): flash kernels, or
                   cuDNN first (``HTTMConfig.attention_sdpa``)
  unmerge          gather by the assignment (unmerge + inverse reorder in one pass) into
                   [B, N, H, d] memory, so the attention module's transpose before proj is free

Temporal reordering has no pass of its own: the kernels gather tokens through the region
layout's ``token_index`` (its "reorder" time is 0; it is inside match/aggregate).

The four match/aggregate launches go through the launch-configuration tuner (``tune.py``; CUDA
only, ``HTTM_TUNE=0`` turns it off): the first call per region shape includes its timing runs,
so stage times of a first (cold) call are not representative.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from httm_ros.timing import StageTimer

from ..merge import assignment, rank_descending, size_bias
from ..records import MergeRecord
from ..regions import RegionLayout, outlier_budget, region_layouts
from ..settings import HTTMConfig
from . import tune
from .ragged import ragged_attention, round_rows
from .select import positions, topk_mask
from .tables import KernelTables, kernel_tables
from .triton_env import ops

#: Details of the last fast call (attention grouping), for benchmarks.
LAST_INFO: Dict = {}


def _ranked_groups(score: Tensor, best: Tensor, kt: KernelTables) -> Tensor:
    """Some sources stay unmerged (dst_ratio < 1): the r best-scoring sources of each region join
    their destination, the others get groups D, D+1, ... in score order (as ``match_regions``).
    score/best [BH, nblk, S] -> group [BH, nblk, S] int32 (-1 at padding)."""
    rank = rank_descending(score)
    r = kt.merge_count.view(1, -1, 1)
    group = torch.where(rank < r, best.long(), kt.num_dst + rank - r)
    return group.masked_fill(~kt.src_valid, -1).to(torch.int32)


def _assign_from_groups(group: Tensor, regions: RegionLayout, b: int, h: int) -> Tensor:
    """group [BH, nblk, S] int32 -> assign [BH, N] int32 (through the reference ``assignment``)."""
    trash = regions.num_groups
    dst = torch.arange(regions.num_dst, device=group.device).expand(regions.dst_valid.shape)
    dst = dst.masked_fill(~regions.dst_valid, trash).expand(group.shape[0], -1, -1)
    src = group.long().masked_fill(group < 0, trash)
    full = torch.cat((dst, src), dim=-1).view(b, h, regions.num_regions, -1)
    return assignment(full, regions).view(b * h, -1).to(torch.int32)


def _tuned(name: str, x: Tensor, kt: KernelTables, *args, **kwargs):
    """``ops().<name>(x, kt, *args, **kwargs)`` (``match`` or ``aggregate``) with the launch
    configuration the tuner picked for this region shape (``tune.py``; its first use per key times
    every candidate). The key is what sets the best configuration, not the token or frame count."""
    fn = getattr(ops(), name)
    key = (x.dtype, x.shape[-1], kt.num_dst, kt.num_src, kt.num_groups, kwargs.get("mean"),
           kwargs.get("y") is not None, kwargs.get("assign") is not None)
    return tune.run_tuned(name, key, lambda cfg: fn(x, kt, *args, **kwargs, **cfg), x.device)


def match(x: Tensor, kt: KernelTables, regions: RegionLayout, want_assign: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """x [B, H, N, d] -> (group of every source slot [BH, nblk, S] int32, assign [BH, N] int32
    or None)."""
    b, h = x.shape[:2]
    if kt.all_merged:
        assign = kt.base_assign.expand(b * h, -1).contiguous() if want_assign else None
        _, best = _tuned("match", x, kt, assign=assign)
        return best, assign
    score, best = _tuned("match", x, kt)
    group = _ranked_groups(score, best, kt)
    return group, (_assign_from_groups(group, regions, b, h) if want_assign else None)


def httm_attention_fast(q: Optional[Tensor], k: Optional[Tensor], v: Optional[Tensor], layout,
                        config: HTTMConfig, layer: int = -1, profile: Optional[bool] = None,
                        owned: Optional[list] = None, shard=None):
    """q, k, v [B, H, N, d] -> (o [B, H, N, d] (a view of [B, N, H, d] memory), MergeRecord).

    ``owned``: [q, k, v] handed over instead (q, k, v None); its entries are set to None as soon
    as each input is merged, so that (with no other reference left) its memory is freed before
    the attention: q after the query merge, k and v after the key/value merge.
    ``shard``: the exchange of a sharded forward (``httm_ros.distributed``, batch 1), with
    ``outlier_count(dev [1, H*N], heads) -> int`` (this rank's outliers) and
    ``exchange_kv(k_m, v_m, sizes) -> (k_m, v_m, sizes)`` (every rank's merged keys/values).
    """
    if owned is not None:
        q, k, v = owned

    profile = config.profile if profile is None else profile
    timer = StageTimer(q.device, "events" if profile or q.device.type == "cpu" else "off")
    k_ops = ops()
    b, h, n, d = q.shape
    regions_q, regions_kv = region_layouts(layout, config, torch.device("cpu"))  # host tables, cached
    kq, kkv = kernel_tables(regions_q, q.device), kernel_tables(regions_kv, q.device)  # device copies
    if not (kq.all_merged and kkv.all_merged):                              # ranking path: on the device
        regions_q, regions_kv = region_layouts(layout, config, q.device)
    timer.lap("plan")

    dtype = q.dtype
    group_q, assign = match(q, kq, regions_q, want_assign=True)
    timer.lap("match_q")
    sums, _, counts = _tuned("aggregate", q, kq, group_q, mean=False)      # [BH, M, d], [BH, M]
    del group_q
    timer.lap("aggregate_q")
    dev = k_ops.deviation(q, assign, sums, counts, kq.num_special)          # [BH, N]
    timer.lap("outliers_dev")
    if shard is None:
        budget = outlier_budget(config.q_outlier, h, regions_q.num_patch)
    else:
        budget = shard.outlier_count(dev.view(b, h * n), h)
    mask = topk_mask(dev.view(b, h * n), budget).view(b * h, n)
    del dev
    pos, per_head = positions(mask)                                        # [BH, N], [BH]
    del mask
    timer.lap("outliers_select")
    per_head_host = per_head.tolist()                                      # the one sync: row counts
    mq = round_rows(kq.num_merged + max(per_head_host))                    # few distinct shapes
    q_m, assign = k_ops.split_outliers(q, assign, pos, sums, counts, mq - kq.num_merged)
    kept_q = ((counts > 0.5).sum(1) + per_head).view(b, h)
    del pos, sums, counts
    q = _release(owned, 0)
    timer.lap("outliers_remove")

    group_k, _ = match(k, kkv, regions_kv, want_assign=False)
    timer.lap("match_kv")
    k_m, v_m, sizes = _tuned("aggregate", k, kkv, group_k, y=v, mean=True)  # [B, H, Mk, d]
    del group_k
    k, v = _release(owned, 1), _release(owned, 2)
    if shard is not None:
        k_m, v_m, sizes = shard.exchange_kv(k_m, v_m, sizes)               # [B, H, Mk (all ranks), d]
    bias = size_bias(sizes, dtype) if config.proportional_attention else None
    timer.lap("merge_kv")

    lengths = [kq.num_merged + c for c in per_head_host]
    mk = k_m.shape[2]
    o_m, info = ragged_attention(q_m, k_m, v_m, lengths, bias, rounding=round_rows,
                                 kernels=config.attention_sdpa)         # [B, H, Mq, d]
    padded_q = q_m.shape[2]
    del q_m, k_m, v_m, bias
    timer.lap("attention")
    o = k_ops.unmerge(o_m, assign)                                         # [B, H, N, d]
    del o_m
    timer.lap("unmerge")

    LAST_INFO.clear()
    LAST_INFO.update(info, impl="triton", layer=layer)
    record = MergeRecord(
        method="httm", layer=layer, tokens_in=n, kept_q=kept_q,
        kept_kv=torch.full((b, h), mk, dtype=torch.long, device=o.device),
        outliers=per_head.view(b, h), padded_q=padded_q, times_ms=timer.times_ms(), impl="triton",
    )
    return o, record


def _release(owned: Optional[list], i: int):
    """Drop the hand-over list's reference to input ``i`` (the caller's local goes with the
    returned None); without a list the caller keeps its tensors anyway."""
    if owned is not None:
        owned[i] = None
    return None
