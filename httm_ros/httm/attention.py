"""HTTM attention: merge Q and K/V head-wise inside temporal blocks, attend, unmerge."""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import build_block_plan
from .config import HTTMConfig
from .kernels import dispatch
from .merge import merge_keys, merge_queries, size_bias
from .stats import MergeRecord, Stopwatch


def outlier_budget(q_outlier: float, heads: int, patch_tokens: int) -> int:
    """round(q_outlier * mergeable query tokens over all heads), halves rounded up."""
    return int(math.floor(q_outlier * heads * patch_tokens + 0.5))


def plans_for(layout, config: HTTMConfig, device: torch.device):
    """(query plan, key/value plan), cached per layout."""
    common = (config.spatial_block, config.temporal_frames)
    tail = (config.dst_ratio, config.anchor_first_frame, str(device))
    return (build_block_plan(layout, *common, config.q_merge, *tail),
            build_block_plan(layout, *common, config.kv_merge, *tail))


def clear_plan_caches() -> None:
    """Drop every cached block plan and its kernel tables (their device memory goes with them;
    the next call rebuilds what it needs)."""
    from .kernels.plan import clear_cache

    build_block_plan.cache_clear()
    clear_cache()


def httm_attention(q: Tensor, k: Tensor, v: Tensor, layout, config: HTTMConfig,
                   layer: int = -1, profile: Optional[bool] = None):
    """q, k, v [B, H, N, d] (after qk-norm and RoPE) -> (o [B, H, N, d], MergeRecord).

    Each head merges its queries and its keys in its own way; V follows K. Query rows differ
    in number between heads (outliers are picked over all heads): shorter heads are padded to
    the longest, and the outputs of the padding rows are never read.

    ``config.backend`` picks the Triton fast path (``kernels/``, same function) or this torch
    reference; see ``kernels.dispatch``.
    """
    if dispatch.resolve(config.backend, q.device) == "triton":
        out = dispatch.run_fast(q, k, v, layout, config, layer, profile)
        if out is not None:
            return out
    elif config.backend == "auto":
        dispatch.note_fallback()
    profile = config.profile if profile is None else profile
    watch = Stopwatch(profile or q.device.type == "cpu", q.device)
    plan_q, plan_kv = plans_for(layout, config, q.device)
    not_mergeable = torch.zeros(q.shape[2], dtype=torch.bool, device=q.device)
    not_mergeable[plan_q.special_index] = True
    budget = outlier_budget(config.q_outlier, q.shape[1], plan_q.num_patch)
    watch.lap("plan")
    q_m, unmerge, info = merge_queries(q, plan_q, budget, config.tile_elements, not_mergeable, watch.lap)
    merge_kv, _, sizes = merge_keys(k, plan_kv, config.tile_elements)
    watch.lap("match_kv")
    k_m, v_m = merge_kv(k), merge_kv(v)                                   # [B, H, Mk, d]
    bias = size_bias(sizes, q.dtype) if config.proportional_attention else None
    watch.lap("merge_kv")
    o_m = F.scaled_dot_product_attention(q_m, k_m, v_m, attn_mask=bias)   # [B, H, Mq, d]
    watch.lap("attention")
    o = unmerge(o_m)                                                      # [B, H, N, d]
    watch.lap("unmerge")
    b, h = q.shape[:2]
    record = MergeRecord(
        method="httm", layer=layer, tokens_in=q.shape[2], kept_q=info["kept_q"],
        kept_kv=torch.full((b, h), k_m.shape[2], dtype=torch.long, device=q.device),
        outliers=info["outliers"], padded_q=q_m.shape[2], times_ms=watch.times,
    )
    # which implementation ran: "torch", or "torch-fallback" when auto gave up on the kernels
    record.backend = "torch-fallback" if dispatch.status()["disabled"] and config.backend == "auto" else "torch"
    return o, record


def httm_attention_owned(qkv: List[Tensor], layout, config: HTTMConfig, layer: int = -1,
                         profile: Optional[bool] = None):
    """``httm_attention`` on [q, k, v] handed over in a list, which is emptied. On the Triton
    fast path q is freed once the queries are merged and k, v once they are merged, so the
    merged attention needs far less than the dense q, k, v + output at once."""
    if dispatch.resolve(config.backend, qkv[0].device) == "triton":
        out = dispatch.run_fast(None, None, None, layout, config, layer, profile, owned=qkv)
        if out is not None:
            qkv.clear()
            return out
    q, k, v = qkv
    qkv.clear()
    return httm_attention(q, k, v, layout, config, layer=layer, profile=profile)
