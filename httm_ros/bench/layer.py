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

import argparse
import statistics
import traceback
from typing import Callable, Dict, List

import torch

from httm_ros.httm import HTTMConfig, UniformMergeConfig, httm_attention, uniform_attention
from httm_ros.httm.kernels import tune
from httm_ros.httm.kernels.fast import LAST_INFO
from httm_ros.httm.records import MergeStats
from httm_ros.httm.regions import region_layouts
from httm_ros.provenance import environment, write_json
from httm_ros.timing import StageTimer
from httm_ros.vggt.layers import sdpa

from .harness import add_model_arguments, pick_device, timed_model
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
    """One call of ``fn``: CUDA events on the GPU, perf_counter on the host."""
    timer = StageTimer(torch.device("cuda" if cuda else "cpu"), "events")
    fn()
    timer.lap("call")
    return timer.times_ms()["call"]


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
        totals, stages, record, stats = [], [], None, MergeStats()
        for _ in range(reps):
            box = {}
            totals.append(_elapsed_ms(lambda: box.update(r=fn(q, k, v, layout, config, profile=True)), cuda))
            record = box["r"][1]
            stats.add(record)
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
            out["kernels"] = stats.kernel_status()
            out["attention_grouping"] = dict(LAST_INFO)
            out["tuning"] = tune.report()
    except Exception as exc:                                              # noqa: BLE001
        out["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    return out


def region_sizes(layout, config: HTTMConfig, device) -> Dict:
    """Region counts of HTTM's two region layouts (for the cost model in docs/KERNELS.md)."""
    rq, rkv = region_layouts(layout, config, device)
    return {name: {"regions": r.num_regions, "dst_max": r.num_dst, "src_max": r.num_src,
                   "merged_rows": r.num_merged} for name, r in (("q", rq), ("kv", rkv))}


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
                      regions=region_sizes(layout, HTTMConfig(), q.device))
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


# ------------------------------------------------------------------------------ command line

def add_arguments(la: argparse.ArgumentParser) -> None:
    add_model_arguments(la)
    la.add_argument("--frames", type=int, default=1000)
    la.add_argument("--layer", type=int, default=0)
    la.add_argument("--reps", type=int, default=3)
    la.add_argument("--no-dense", action="store_true")


def run(args, argv: List[str]) -> int:
    """``httm-bench layer``: the partial result is written to ``--out`` after every method."""
    device = pick_device(args.device)
    result: Dict = {"kind": "layer", "env": environment(device, argv), "config": args.config,
                    "layer_result": None}
    write_json(args.out, result)
    model, result["model_build_s"] = timed_model(args, device)

    def update(partial: Dict) -> None:
        result["layer_result"] = partial
        write_json(args.out, result)

    update(run_layer(model, args.frames, device, layer=args.layer, reps=args.reps,
                     dense=not args.no_dense, on_update=update, image_hw=tuple(args.image_size)))
    res = result["layer_result"]
    for name in ("httm", "uniform"):
        if isinstance(res.get(name), dict) and res[name].get("columns_ms"):
            print(f"[httm-bench] layer {name}: {res[name]['columns_ms']}", flush=True)
    print(f"[httm-bench] layer dense attention: {res.get('dense_attention_ms')} ms", flush=True)
    return 0
