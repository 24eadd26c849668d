"""HTTM attention: merge Q and K/V head-wise inside temporal regions, attend, unmerge.

One function, two implementations: ``httm_attention_torch`` below (the reference, ``merge.py``)
and ``kernels.httm_attention_fast`` (Triton). ``httm_attention`` runs the one ``impl`` names
("torch" or "triton", see ``kernels.resolve_impl``). With ``HTTMConfig.impl == "auto"`` a call
whose kernels fail (compile or launch error) runs on the torch reference instead: its record
says ``impl="torch-fallback"`` with the error, and the next call tries the kernels again.
Out-of-memory errors are not hidden: they propagate.
"""

from __future__ import annotations

import traceback
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from httm_ros.timing import StageTimer

from .kernels.fast import httm_attention_fast
from .kernels.tables import clear_cache as clear_kernel_tables
from .kernels.triton_env import resolve_impl
from .merge import match_keys, merge_queries, size_bias
from .records import MergeRecord
from .regions import build_region_layout, outlier_budget, region_layouts
from .settings import HTTMConfig


def clear_region_caches() -> None:
    """Drop every cached region layout and its kernel tables (their device memory goes with
    them; the next call rebuilds what it needs)."""
    build_region_layout.cache_clear()
    clear_kernel_tables()


def httm_attention(q: Tensor, k: Tensor, v: Tensor, layout, config: HTTMConfig,
                   layer: int = -1, profile: Optional[bool] = None, impl: Optional[str] = None):
    """q, k, v [B, H, N, d] (after qk-norm and RoPE) -> (o [B, H, N, d], MergeRecord).

    Each head merges its queries and its keys in its own way; V follows K. Query rows differ
    in number between heads (outliers are picked over all heads): shorter heads are padded to
    the longest, and the outputs of the padding rows are never read.

    ``impl``: "torch" or "triton", resolved by the caller; None resolves ``config.impl`` here.
    """
    impl = resolve_impl(config.impl, q.device) if impl is None else impl
    if impl == "triton":
        try:
            return httm_attention_fast(q, k, v, layout, config, layer=layer, profile=profile)
        except Exception as exc:                                          # noqa: BLE001 (compile/launch)
            error = _fallback_error(exc, config)
        return _fallback(q, k, v, layout, config, layer, profile, error)
    return httm_attention_torch(q, k, v, layout, config, layer, profile)


def httm_attention_owned(qkv: List[Tensor], layout, config: HTTMConfig, layer: int = -1,
                         profile: Optional[bool] = None, impl: Optional[str] = None):
    """``httm_attention`` on [q, k, v] handed over in a list, which is emptied. On the Triton
    fast path q is freed once the queries are merged and k, v once they are merged, so the
    merged attention needs far less than the dense q, k, v + output at once (a failure after an
    input was freed is raised: there is nothing left to fall back on)."""
    impl = resolve_impl(config.impl, qkv[0].device) if impl is None else impl
    error = None
    if impl == "triton":
        try:
            out = httm_attention_fast(None, None, None, layout, config, layer=layer, profile=profile,
                                      owned=qkv)
            qkv.clear()
            return out
        except Exception as exc:                                          # noqa: BLE001 (compile/launch)
            error = _fallback_error(exc, config, freed=any(t is None for t in qkv))
    q, k, v = qkv
    qkv.clear()
    if error is not None:
        return _fallback(q, k, v, layout, config, layer, profile, error)
    return httm_attention_torch(q, k, v, layout, config, layer, profile)


def _fallback_error(exc: Exception, config: HTTMConfig, freed: bool = False) -> str:
    """The text of a kernel failure that the torch reference may stand in for; re-raises it
    when it may not (out of memory, ``impl="triton"`` asked for, inputs already freed)."""
    if isinstance(exc, torch.OutOfMemoryError) or config.impl == "triton" or freed:
        raise exc
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"


def _fallback(q, k, v, layout, config: HTTMConfig, layer: int, profile: Optional[bool], error: str):
    """This call on the torch reference after its kernels failed; the record says so."""
    o, record = httm_attention_torch(q, k, v, layout, config, layer, profile)
    record.impl, record.fallback_error = "torch-fallback", error
    return o, record


def httm_attention_torch(q: Tensor, k: Tensor, v: Tensor, layout, config: HTTMConfig,
                         layer: int = -1, profile: Optional[bool] = None):
    """The torch reference of ``httm_attention`` (same arguments, same result)."""
    profile = config.profile if profile is None else profile
    timer = StageTimer(q.device, "wall_sync" if profile or q.device.type == "cpu" else "off")
    regions_q, regions_kv = region_layouts(layout, config, q.device)
    not_mergeable = torch.zeros(q.shape[2], dtype=torch.bool, device=q.device)
    not_mergeable[regions_q.special_index] = True
    budget = outlier_budget(config.q_outlier, q.shape[1], regions_q.num_patch)
    timer.lap("plan")
    q_m, q_matching, info = merge_queries(q, regions_q, budget, config.tile_elements,
                                          not_mergeable, timer.lap)       # [B, H, Mq, d]
    kv_matching = match_keys(k, regions_kv, config.tile_elements)
    timer.lap("match_kv")
    k_m, v_m = kv_matching.merge(k), kv_matching.merge(v)                 # [B, H, Mk, d]
    bias = size_bias(kv_matching.sizes, q.dtype) if config.proportional_attention else None
    timer.lap("merge_kv")
    o_m = F.scaled_dot_product_attention(q_m, k_m, v_m, attn_mask=bias)   # [B, H, Mq, d]
    timer.lap("attention")
    o = q_matching.unmerge(o_m)                                           # [B, H, N, d]
    timer.lap("unmerge")
    b, h = q.shape[:2]
    record = MergeRecord(
        method="httm", layer=layer, tokens_in=q.shape[2], kept_q=info["kept_q"],
        kept_kv=torch.full((b, h), k_m.shape[2], dtype=torch.long, device=q.device),
        outliers=info["outliers"], padded_q=q_m.shape[2], times_ms=timer.times_ms(), impl="torch",
    )
    return o, record
