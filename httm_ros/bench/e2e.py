"""End-to-end rows: one whole VGGT forward (camera + depth heads) per mode and frame count.

Per row: median seconds over the repeats (the host clock around a synchronised forward), peak
GPU memory (``max_memory_allocated``, so weights and input frames count), and a time breakdown
of the last repeat from CUDA events: DINO patch embedding, the attention cores of the global and
the frame blocks (``Attention.attend``: SDPA, or merge + SDPA + unmerge), the rest of the
aggregator, and the heads; the peak memory is split over the same parts.

Warm rows: a forward at the row's own size runs untimed before the repeats (``first_run_s``
records it) whenever that is affordable, and always for HTTM, whose attention shapes depend on
the per-head outlier counts: cuDNN builds an execution plan for every new shape (measured on the
H100: a cold 100-frame HTTM forward 6.22 s, warm 1.87 s). Dense and uniform attention have one
shape per size, so their cold run pays at most one plan build per shape. Region-layout caches
are cleared before every row, so one row's cached tables never count in another row's peak.
"""

from __future__ import annotations

import argparse
import statistics
import time
import traceback
from typing import Callable, Dict, List, Optional

import torch

from httm_ros.httm import patch
from httm_ros.httm.attention import clear_region_caches
from httm_ros.httm.kernels import tune
from httm_ros.httm.kernels.fast import LAST_INFO
from httm_ros.provenance import environment, write_json
from httm_ros.vggt.layers import _SDPA_STATE

from .harness import add_model_arguments, compile_options, pick_device, start_time, timed_model
from .timeline import Timeline
from .workload import HEIGHT, WIDTH, MODES, anchored_window, merge_config, tokens_per_frame, video_frames

HEADS = ("camera", "depth")


def estimate_seconds(mode: str, frames: int) -> float:
    """Rough H100 seconds of one forward, from the anchors (ANCHORS.md) with margins: used only
    to skip rows that cannot finish before the deadline."""
    dense = 0.0163 * frames + 2.63e-4 * frames ** 2                      # fits 4.3 s @100, 279 s @1000
    if mode == "dense":
        return 1.05 * dense
    if mode == "uniform":
        return 1.5 * (0.02 * frames + 4.7e-5 * frames ** 2)               # FastVGGT 67 s @1000, x1.5
    return 0.045 * frames + 0.12 * 2.63e-4 * frames ** 2                  # HTTM, 2x its 8x target


def breakdown(total: float, parts: Dict[str, float]) -> Dict[str, float]:
    """Seconds per part: dino, global_attention, frame_attention, aggregator_other, heads."""
    agg = parts.get("aggregator", 0.0)
    out = {k: parts.get(k, 0.0) for k in ("dino", "global_attention", "frame_attention")}
    out["aggregator_other"] = agg - sum(out.values())
    out["heads_and_host"] = total - agg
    return {k: round(v, 4) for k, v in out.items()}


def forward_seconds(model, images, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(images, heads=HEADS)
    if device.type == "cuda":
        torch.cuda.synchronize()
    del out
    return time.perf_counter() - start


def row_warmup(mode: str, frames: int) -> bool:
    """Warm the row at its own size first: always for HTTM (shapes depend on the outliers), for
    the other modes where one more forward costs about a minute or less."""
    return mode == "httm" or estimate_seconds(mode, frames) <= 60.0


def run_row(model, mode: str, frames: int, repeats: int, device: torch.device,
            impl: str = "auto", image_hw=(HEIGHT, WIDTH), warm: bool = False,
            attention_sdpa: Optional[str] = None, overlap: Optional[int] = None) -> Dict:
    """One (mode, frames) row; never raises: errors land in row["error"]. ``warm``: one untimed
    forward at this size before the repeats (its time is ``first_run_s``). ``overlap``: the
    frames are one anchored window (anchor + overlap-1 context + new, ``workload.anchored_window``)
    and the row reports its new keyframes per second of model time."""
    row: Dict = {"mode": mode, "frames": frames, "tokens": frames * tokens_per_frame(image_hw),
                 "image_hw": list(image_hw), "repeats": repeats, "row_warmup": warm,
                 "seconds": None, "peak_gib": None, "error": None}
    if mode == "httm" and attention_sdpa is not None:
        row["attention_sdpa"] = attention_sdpa
    if overlap is not None:
        row.update({"layout": "anchored", "overlap": overlap, "new_frames": frames - overlap})
    clear_region_caches()
    timeline = Timeline(model) if device.type == "cuda" else None
    images = None
    try:
        stats = patch(model, merge_config(mode, impl, attention_sdpa))
        if overlap is None:
            images = video_frames(frames, device, *image_hw)
        else:
            images = anchored_window(frames, overlap, device, *image_hw)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if warm:
            row["first_run_s"] = round(forward_seconds(model, images, device), 4)
            stats.clear()
        if timeline is not None:
            timeline.reset_memory()
        runs = []
        for _ in range(repeats):
            if timeline is not None:
                timeline.reset()
            runs.append(forward_seconds(model, images, device))
        row["runs_s"] = [round(t, 4) for t in runs]
        row["seconds"] = round(statistics.median(runs), 4)
        if overlap is not None:
            row["new_keyframes_per_s"] = round((frames - overlap) / row["seconds"], 3)
        if device.type == "cuda":
            row["peak_gib_by_part"] = timeline.peak_gib()
            row["peak_gib"] = row["peak_gib_by_part"]["total"]
            row["breakdown_s"] = breakdown(runs[-1], timeline.seconds())
        if mode != "dense":
            row["merge"] = stats.summary()
            row["merge_backends"] = stats.impl_counts()                 # calls per implementation
        if mode == "httm":
            row["kernels"] = stats.kernel_status()
            row["tuning"] = tune.report()
            row["attention_grouping_last_layer"] = dict(LAST_INFO)
    except Exception as exc:                                              # noqa: BLE001 (record, go on)
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    finally:
        if timeline is not None:
            timeline.remove()
        patch(model, None)
        del images
        clear_region_caches()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row["sdpa_cudnn_first"] = _SDPA_STATE["priority_ok"]
    return row


def repeats_for(frames: int) -> int:
    """3 repeats at <= 100 frames, 1 beyond (after the row's warm-up, see ``row_warmup``): each
    part of the GPU suite must fit in 10 minutes."""
    return 3 if frames <= 100 else 1


def warm_up(model, modes, device: torch.device, frames: int = 8, impl: str = "auto",
            image_hw=(HEIGHT, WIDTH), attention_sdpa: Optional[str] = None) -> Dict:
    """One small forward per mode: CUDA context, cuDNN plans, Triton compilation."""
    out = {}
    for mode in modes:
        start = time.perf_counter()
        row = run_row(model, mode, frames, 1, device, impl, image_hw, attention_sdpa=attention_sdpa)
        out[mode] = {"seconds": round(time.perf_counter() - start, 3), "error": row["error"]}
    return out


def run_rows(model, schedule: List[tuple], device: torch.device, deadline: Optional[float],
             on_row: Callable[[Dict], None], impl: str = "auto", t0: Optional[float] = None,
             clock: Callable[[], float] = time.perf_counter, image_hw=(HEIGHT, WIDTH),
             warmups: Optional[Dict[str, str]] = None, attention_sdpa: Optional[str] = None,
             overlap: Optional[int] = None) -> None:
    """``schedule`` = [(mode, frames, repeats)]; rows that would end after ``deadline`` (seconds of
    ``clock`` since ``t0``) are skipped with the reason; ``on_row`` gets every row as soon as it
    exists. ``warmups``: mode -> "auto" (``row_warmup``), "always" or "never". ``attention_sdpa``
    and ``overlap``: as in ``run_row``."""
    warmups = warmups or {}
    t0 = clock() if t0 is None else t0
    for mode, frames, repeats in schedule:
        elapsed = clock() - t0
        policy = warmups.get(mode, "auto")
        warm = policy == "always" or (policy == "auto" and row_warmup(mode, frames))
        need = (repeats + warm) * estimate_seconds(mode, frames) + 5.0
        if deadline is not None and elapsed + need > deadline:
            on_row({"mode": mode, "frames": frames, "tokens": frames * tokens_per_frame(image_hw),
                    "image_hw": list(image_hw), "repeats": repeats,
                    "seconds": None, "peak_gib": None, "error": None,
                    "skipped": f"time guard: {elapsed:.0f} s elapsed + ~{need:.0f} s estimated > "
                               f"deadline {deadline:.0f} s"})
            continue
        on_row(run_row(model, mode, frames, repeats, device, impl, image_hw, warm=warm,
                       attention_sdpa=attention_sdpa, overlap=overlap))


# ------------------------------------------------------------------------------ command line

def add_arguments(e: argparse.ArgumentParser) -> None:
    add_model_arguments(e)
    e.add_argument("--frames", type=int, nargs="+", default=[100, 300, 500])
    e.add_argument("--modes", nargs="+", choices=MODES, default=["httm", "uniform", "dense"])
    e.add_argument("--repeats", type=int, default=None, help="default: 3 at <=100 frames, else 1")
    e.add_argument("--deadline-s", type=float, default=None)
    e.add_argument("--impl", "--backend", dest="impl", choices=("auto", "triton", "torch"), default="auto",
                   help="HTTM's implementation (HTTMConfig.impl)")
    e.add_argument("--no-warmup", action="store_true", help="skip the 8-frame warm-up per mode")
    e.add_argument("--row-warmup", choices=("auto", "always", "never"), default="auto",
                   help="an untimed forward at each row's size first (auto: always for httm, "
                        "for the others when it costs <= ~60 s)")
    e.add_argument("--attention-sdpa", choices=("flash", "cudnn"), default=None,
                   help="HTTMConfig.attention_sdpa of the httm rows (default: HTTMConfig's, flash)")
    e.add_argument("--overlap", type=int, default=None, metavar="O",
                   help="anchored window layout (docs/STREAMING.md): each row's frames are an anchor, "
                        "O-1 context and frames-O new keyframes; rows add new_keyframes_per_s")


def run(args, argv: List[str]) -> int:
    """``httm-bench e2e``: every row is written to ``--out`` as soon as it exists (atomic
    rewrite); ``--deadline-s`` counts from $BENCH_T0 or this process's start."""
    t0 = start_time()
    device = pick_device(args.device)
    result: Dict = {"kind": "e2e", "env": environment(device, argv), "config": args.config,
                    "weights_dtype": args.weights_dtype, "attention_sdpa": args.attention_sdpa,
                    **compile_options(args), "dpt_dtype": args.dpt_dtype,
                    "overlap": args.overlap, "rows": [], "complete": False}
    if args.overlap is not None and min(args.frames) <= args.overlap:
        raise SystemExit(f"--overlap {args.overlap} needs every --frames above it")
    write_json(args.out, result)
    model, result["model_build_s"] = timed_model(args, device)
    if not args.no_warmup:
        result["warmup"] = warm_up(model, args.modes, device, impl=args.impl, image_hw=tuple(args.image_size),
                                   attention_sdpa=args.attention_sdpa)
        write_json(args.out, result)
    schedule = [(mode, frames, args.repeats or repeats_for(frames)) for frames in args.frames for mode in args.modes]

    def on_row(row: Dict) -> None:
        row["elapsed_s"] = round(time.time() - t0, 1)
        result["rows"].append(row)
        write_json(args.out, result)
        print(f"[httm-bench] {row['mode']:8s} {row['frames']:5d} frames: {row.get('seconds')} s, "
              f"{row.get('peak_gib')} GiB"
              f"{', %s new kf/s' % row['new_keyframes_per_s'] if row.get('new_keyframes_per_s') else ''} "
              f"{'SKIPPED ' + row['skipped'] if row.get('skipped') else ''}"
              f"{'ERROR ' + row['error'].splitlines()[0] if row.get('error') else ''}", flush=True)

    run_rows(model, schedule, device, args.deadline_s, on_row, impl=args.impl, t0=t0, clock=time.time,
             image_hw=tuple(args.image_size), warmups={mode: args.row_warmup for mode in args.modes},
             attention_sdpa=args.attention_sdpa, overlap=args.overlap)
    result["complete"] = True
    write_json(args.out, result)
    return 0
