"""The paper's Table 4 on our code: one global attention layer, stage by stage.

Inputs: the q, k, v that global block ``layer`` (default 0) really sees in the random-weight
VGGT-1B on the synthetic video (DINO + frame block 0 run first; the forward stops at that
block's attention core). Timed with CUDA events: HTTM's stages (``profile=True``: events only,
one synchronisation at the end), the uniform baseline's stages (its stopwatch synchronises
between stages), and dense SDPA on the same q, k, v. Each merged method: one warm-up call, then
the median of ``reps`` calls per stage.

Columns as in Table 4: attention kernel; matching (match_q + match_kv); aggregation and outliers
(aggregate_q + outliers_* + merge_kv); unmerge; reorder (0: fused into the kernels' gathers).
"""

from __future__ import annotations

import statistics
import time
import traceback
from typing import Callable, Dict, List

import torch

from httm_ros.httm import HTTMConfig, UniformMergeConfig, httm_attention, uniform_attention
from httm_ros.httm.attention import plans_for
from httm_ros.vggt.layers import sdpa

from .workload import HEIGHT, WIDTH, video_frames

TABLE4 = {
    "matching": ("match_q", "match_kv", "match"),
    "aggregation_outliers": ("aggregate_q", "outliers_dev", "outliers_select", "outliers_remove",
                             "merge_kv", "merge"),
    "unmerge": ("unmerge",),
    "attention": ("attention",),
    "plan": ("plan",),
}


class _Captured(Exception):
    pass


def capture_qkv(model, images, layer: int = 0):
    """(q, k, v [B, H, N, d], layout) at the attention core of global block ``layer``; earlier
    global blocks run dense."""
    attn = model.aggregator.global_blocks[layer].attn
    box: Dict = {}

    def core(q, k, v, layout):
        box.update(q=q, k=k, v=v, layout=layout)
        raise _Captured

    attn.core = core
    try:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if images.is_cuda else torch.autocast("cpu", enabled=False)
        with torch.inference_mode(), ctx:
            model.aggregator(images, keep_layers=[layer])
    except _Captured:
        pass
    finally:
        attn.core = None
    return box["q"], box["k"], box["v"], box["layout"]


def _elapsed_ms(fn: Callable[[], object], cuda: bool) -> float:
    if cuda:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b)
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def table4_columns(stages: Dict[str, float]) -> Dict[str, float]:
    """Stage times (ms) -> Table 4 columns (ms) + overhead = matching + aggregation + unmerge."""
    cols = {name: sum(stages.get(s, 0.0) for s in parts) for name, parts in TABLE4.items()}
    cols["reorder"] = 0.0
    cols["merge_overhead"] = cols["matching"] + cols["aggregation_outliers"] + cols["unmerge"] + cols["reorder"]
    cols["overhead_pct_of_attention"] = 100.0 * cols["merge_overhead"] / max(cols["attention"], 1e-9)
    return {k: round(v, 3) for k, v in cols.items()}


def time_method(name: str, fn, q, k, v, layout, config, reps: int) -> Dict:
    """Warm-up, then ``reps`` profiled calls -> median stage ms, total ms, peak extra GiB."""
    cuda = q.is_cuda
    out: Dict = {"config": repr(config), "error": None}
    try:
        fn(q, k, v, layout, config, profile=False)                        # warm-up (compiles, plans)
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        totals, stages, record = [], [], None
        for _ in range(reps):
            box = {}
            totals.append(_elapsed_ms(lambda: box.update(r=fn(q, k, v, layout, config, profile=True)), cuda))
            record = box["r"][1]
            stages.append(record.times_ms)
        names = sorted({s for st in stages for s in st})
        median = {s: round(statistics.median(st.get(s, 0.0) for st in stages), 3) for s in names}
        out.update(stages_ms=median, total_ms=round(statistics.median(totals), 3), reps=reps,
                   columns_ms=table4_columns(median),
                   kept_q=round(float(record.kept_q.float().mean()) / q.shape[2], 4),
                   kept_kv=round(float(record.kept_kv.float().mean()) / q.shape[2], 4),
                   padded_q=record.padded_q)
        if cuda:
            out["peak_extra_gib"] = round((torch.cuda.max_memory_allocated() - base) / 2 ** 30, 3)
        if name == "httm":
            from httm_ros.httm.kernels import dispatch
            from httm_ros.httm.kernels.fast import LAST_INFO

            out["kernels"] = dispatch.status()
            out["attention_grouping"] = dict(LAST_INFO)
            out["tuning"] = _tuning()
    except Exception as exc:                                              # noqa: BLE001
        out["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    return out


def _tuning() -> Dict:
    """Launch configurations the kernel tuner chose (and every candidate's time), if any."""
    from httm_ros.httm.kernels import tune

    return tune.report()


def plan_sizes(layout, config: HTTMConfig, device) -> Dict:
    """Block counts of the two HTTM plans (for the cost model in docs/KERNELS.md)."""
    pq, pkv = plans_for(layout, config, device)
    return {name: {"blocks": p.num_blocks, "dst_max": p.num_dst, "src_max": p.num_src,
                   "merged_rows": p.num_merged} for name, p in (("q", pq), ("kv", pkv))}


def run_layer(model, frames: int, device: torch.device, layer: int = 0, reps: int = 3,
              dense: bool = True, on_update: Callable[[Dict], None] = lambda r: None,
              image_hw=(HEIGHT, WIDTH)) -> Dict:
    """The Table 4 measurement at ``frames``; ``on_update`` gets the partial result after every
    method (so a timeout keeps what is done)."""
    result: Dict = {"frames": frames, "layer": layer,
                    "input": f"q, k, v of global block {layer} of the random-weight VGGT-1B on the "
                             f"synthetic panning video (DINO + frame block(s) before it run dense)",
                    "error": None}
    try:
        images = video_frames(frames, device, *image_hw)
        q, k, v, layout = capture_qkv(model, images, layer)
        del images
        result.update(tokens=q.shape[2], heads=q.shape[1], head_dim=q.shape[3], dtype=str(q.dtype),
                      plans=plan_sizes(layout, HTTMConfig(), q.device))
        on_update(result)
        for name, fn, config, n in (("httm", httm_attention, HTTMConfig(), reps),
                                    ("uniform", uniform_attention, UniformMergeConfig(), max(1, reps - 1))):
            with torch.inference_mode():
                result[name] = time_method(name, fn, q, k, v, layout, config, n)
            on_update(result)
        if dense:
            try:
                with torch.inference_mode():
                    sdpa(q[:, :, :4096], k, v)                            # warm-up (plan), small
                    result["dense_attention_ms"] = round(_elapsed_ms(lambda: sdpa(q, k, v), q.is_cuda), 3)
            except Exception as exc:                                      # noqa: BLE001
                result["dense_error"] = f"{type(exc).__name__}: {exc}"
            on_update(result)
    except Exception as exc:                                              # noqa: BLE001
        result["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    return result
