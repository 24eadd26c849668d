"""HTTM attention on the Triton kernels: same function as ``attention.httm_attention`` (the torch
reference), fewer passes over q, k, v. Stage by stage (B=1, H=16, N tokens, d=64, bf16):

  match_q          one read of q (sources once, destinations once per source tile, from L2);
                   writes best destination per source and the assignment of every source
  aggregate_q      one-hot x rows products per block: sums (fp32) and counts of merged queries
  outliers_dev     one read of q + gathers of the merged means: deviation per token
  outliers_select  exact global top-k by a two-level radix histogram (no sort, no sync)
  outliers_remove  outliers leave their merged token (atomics), get their own row; means
  match_kv         as match_q on k (no assignment needed: K/V are never unmerged)
  merge_kv         K and V aggregated together (one matching): means in bf16 + sizes
  attention        SDPA (cuDNN first) over per-head query lengths, grouped (ragged.py)
  unmerge          gather by the assignment (unmerge + inverse reorder in one pass) into
                   [B, N, H, d] memory, so the attention module's transpose before proj is free

Temporal reordering has no pass of its own: the kernels gather tokens through the plan's
``token_index`` (its "reorder" time is 0; it is inside match/aggregate).

The four match/aggregate launches go through the launch-configuration tuner (``tune.py``; CUDA
only, ``HTTM_TUNE=0`` turns it off): the first call per block shape includes its timing runs, so
stage times of a first (cold) call are not representative.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..blocks import BlockPlan
from ..config import HTTMConfig
from ..merge import assignment, rank_descending, size_bias
from ..stats import MergeRecord
from . import ops, tune
from .plan import KernelPlan, kernel_plan
from .ragged import ragged_attention, round_rows
from .select import positions, topk_mask

#: Details of the last fast call (attention grouping), for benchmarks.
LAST_INFO: Dict = {}


class EventWatch:
    """Stage timer. CUDA: events recorded between stages, read once at the end (one sync);
    CPU: perf_counter. Disabled: no-op."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled
        self.cuda = device.type == "cuda"
        self.marks: List[Tuple[str, object]] = []
        if enabled:
            self.marks.append(("", self._mark()))

    def _mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def lap(self, name: str) -> None:
        if self.enabled:
            self.marks.append((name, self._mark()))

    def times(self) -> Dict[str, float]:
        """Stage name -> ms (stages with one name add up)."""
        if not self.enabled:
            return {}
        if self.cuda:
            self.marks[-1][1].synchronize()
        out: Dict[str, float] = {}
        for (_, a), (name, b) in zip(self.marks, self.marks[1:]):
            ms = a.elapsed_time(b) if self.cuda else 1e3 * (b - a)
            out[name] = out.get(name, 0.0) + ms
        return out


def _ranked_groups(score: Tensor, best: Tensor, kp: KernelPlan) -> Tensor:
    """Some sources stay unmerged (dst_ratio < 1): the r best-scoring sources of each block join
    their destination, the others get groups D, D+1, ... in score order (as ``match_blocks``).
    score/best [BH, nblk, S] -> group [BH, nblk, S] int32 (-1 at padding)."""
    rank = rank_descending(score)
    r = kp.merge_count.view(1, -1, 1)
    group = torch.where(rank < r, best.long(), kp.num_dst + rank - r)
    return group.masked_fill(~kp.src_valid, -1).to(torch.int32)


def _assign_from_groups(group: Tensor, kp: KernelPlan, plan: BlockPlan, b: int, h: int) -> Tensor:
    """group [BH, nblk, S] int32 -> assign [BH, N] int32 (through the reference ``assignment``)."""
    trash = plan.num_groups
    dst = torch.arange(plan.num_dst, device=group.device).expand(plan.dst_valid.shape)
    dst = dst.masked_fill(~plan.dst_valid, trash).expand(group.shape[0], -1, -1)
    src = group.long().masked_fill(group < 0, trash)
    full = torch.cat((dst, src), dim=-1).view(b, h, plan.num_blocks, -1)
    return assignment(full, plan).view(b * h, -1).to(torch.int32)


def _tuned(name: str, x: Tensor, kp: KernelPlan, *args, **kwargs):
    """``ops().<name>(x, kp, *args, **kwargs)`` (``match`` or ``aggregate``) with the launch
    configuration the tuner picked for this block shape (``tune.py``; its first use per key times
    every candidate). The key is what sets the best configuration, not the token or frame count."""
    fn = getattr(ops(), name)
    key = (x.dtype, x.shape[-1], kp.num_dst, kp.num_src, kp.num_groups, kwargs.get("mean"),
           kwargs.get("y") is not None, kwargs.get("assign") is not None)
    return tune.run_tuned(name, key, lambda cfg: fn(x, kp, *args, **kwargs, **cfg), x.device)


def match(x: Tensor, kp: KernelPlan, plan: BlockPlan, want_assign: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """x [B, H, N, d] -> (group of every source slot [BH, nblk, S] int32, assign [BH, N] int32
    or None)."""
    b, h = x.shape[:2]
    if kp.all_merged:
        assign = kp.base_assign.expand(b * h, -1).contiguous() if want_assign else None
        _, best = _tuned("match", x, kp, assign=assign)
        return best, assign
    score, best = _tuned("match", x, kp)
    group = _ranked_groups(score, best, kp)
    return group, (_assign_from_groups(group, kp, plan, b, h) if want_assign else None)


def httm_attention_fast(q: Optional[Tensor], k: Optional[Tensor], v: Optional[Tensor], layout,
                        config: HTTMConfig, layer: int = -1, profile: Optional[bool] = None,
                        owned: Optional[list] = None):
    """q, k, v [B, H, N, d] -> (o [B, H, N, d] (a view of [B, N, H, d] memory), MergeRecord).

    ``owned``: [q, k, v] handed over instead (q, k, v None); its entries are set to None as soon
    as each input is merged, so that (with no other reference left) its memory is freed before
    the attention: q after the query merge, k and v after the key/value merge.
    """
    from ..attention import outlier_budget, plans_for

    if owned is not None:
        q, k, v = owned

    profile = config.profile if profile is None else profile
    watch = EventWatch(profile or q.device.type == "cpu", q.device)
    k_ops = ops()
    b, h, n, d = q.shape
    plan_q, plan_kv = plans_for(layout, config, torch.device("cpu"))      # host tables, cached
    kq, kkv = kernel_plan(plan_q, q.device), kernel_plan(plan_kv, q.device)  # this call's device copies
    if not (kq.all_merged and kkv.all_merged):                              # ranking path: device plans
        plan_q, plan_kv = plans_for(layout, config, q.device)
    watch.lap("plan")

    dtype = q.dtype
    group_q, assign = match(q, kq, plan_q, want_assign=True)
    watch.lap("match_q")
    sums, _, counts = _tuned("aggregate", q, kq, group_q, mean=False)      # [BH, M, d], [BH, M]
    del group_q
    watch.lap("aggregate_q")
    dev = k_ops.deviation(q, assign, sums, counts, kq.num_special)          # [BH, N]
    watch.lap("outliers_dev")
    budget = outlier_budget(config.q_outlier, h, plan_q.num_patch)
    mask = topk_mask(dev.view(b, h * n), budget).view(b * h, n)
    del dev
    pos, per_head = positions(mask)                                        # [BH, N], [BH]
    del mask
    watch.lap("outliers_select")
    per_head_host = per_head.tolist()                                      # the one sync: row counts
    mq = round_rows(kq.num_merged + max(per_head_host))                    # few distinct shapes
    q_m, assign = k_ops.split_outliers(q, assign, pos, sums, counts, mq - kq.num_merged)
    kept_q = ((counts > 0.5).sum(1) + per_head).view(b, h)
    del pos, sums, counts
    q = _release(owned, 0)
    watch.lap("outliers_remove")

    group_k, _ = match(k, kkv, plan_kv, want_assign=False)
    watch.lap("match_kv")
    k_m, v_m, sizes = _tuned("aggregate", k, kkv, group_k, y=v, mean=True)  # [B, H, Mk, d]
    del group_k
    k, v = _release(owned, 1), _release(owned, 2)
    bias = size_bias(sizes, dtype) if config.proportional_attention else None
    watch.lap("merge_kv")

    lengths = [kq.num_merged + c for c in per_head_host]
    mk = k_m.shape[2]
    o_m, info = ragged_attention(q_m, k_m, v_m, lengths, bias, rounding=round_rows)  # [B, H, Mq, d]
    padded_q = q_m.shape[2]
    del q_m, k_m, v_m, bias
    watch.lap("attention")
    o = k_ops.unmerge(o_m, assign)                                         # [B, H, N, d]
    del o_m
    watch.lap("unmerge")

    LAST_INFO.clear()
    LAST_INFO.update(info, backend="triton", layer=layer)
    record = MergeRecord(
        method="httm", layer=layer, tokens_in=n, kept_q=kept_q,
        kept_kv=torch.full((b, h), mk, dtype=torch.long, device=o.device),
        outliers=per_head.view(b, h), padded_q=padded_q, times_ms=watch.times(),
    )
    record.backend = "triton"
    return o, record


def _release(owned: Optional[list], i: int):
    """Drop the hand-over list's reference to input ``i`` (the caller's local goes with the
    returned None); without a list the caller keeps its tensors anyway."""
    if owned is not None:
        owned[i] = None
    return None
