"""httm-bench distributed: one VGGT forward over N processes (``httm_ros.distributed``) per
(GPUs, frames, mode): seconds, peak memory per GPU, all-gather bytes and time per layer, and
the scaling efficiency against the 1-process row of the same frames and mode.

Every row runs in fresh processes (``distributed.launch``: NCCL on CUDA, gloo on CPU) with NVLink
multicast off (NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1).
Random weights (``workload.build_model``, the same seed on every rank), the panning video of
``workload.video_frames`` at 518x392, camera + depth heads, autocast bf16 on CUDA. Per row: an
untimed warm-up forward, a timed forward (all ranks synchronised before and after; all-gathers
unsynchronised, so overlap counts), then a profiled forward whose all-gathers are timed with
device syncs (the per-layer all-gather seconds). The 1-process rows use the same sharded path
(all-gathers to itself), so efficiency compares like with like. HTTM runs ``--impl`` (auto: the
Triton kernels on CUDA with the merged K/V gathered between merge and attention; torch: the
reference steps, the all-gather overlapping the query merge).

The JSON is rewritten after every row; rows already in ``--out`` are skipped (resume), so a run
can be split over several commands.

``--fidelity`` (CPU is enough) measures instead how far the sharded HTTM forward lands from the
one-process HTTM forward with each outlier budget (``global``, ``rank``), relative to how far
merging itself moves the outputs from dense: the ``synth`` network with deterministic test
weights on the synthetic demo sequence at 126x168, regions scaled down as in the fidelity proxy
(n_s = 36, n_t = 4).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import traceback
from pathlib import Path
from typing import Dict, List

import torch
import torch.distributed as dist

from httm_ros.distributed import (OUTLIER_MODES, DistributedError, GatherLog, gather_outputs, launch, shard_frames,
                                  sharded_forward)
from httm_ros.httm import HTTMConfig, patch
from httm_ros.provenance import device_name, environment, write_json
from httm_ros.synthetic import demo_sequence
from httm_ros.vggt.config import SYNTH_IMAGE_HW
from httm_ros.vggt.factory import build_model as build_test_model

from .workload import HEIGHT, WIDTH, build_model, merge_config, video_frames

HEADS = ("camera", "depth")


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", type=Path, required=True, help="JSON file (rewritten after every row; resumed)")
    s.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4], help="process counts (default: %(default)s)")
    s.add_argument("--frames", type=int, nargs="+", default=[1000, 2000, 4000], help="(default: %(default)s)")
    s.add_argument("--modes", nargs="+", choices=("dense", "httm"), default=["httm", "dense"])
    s.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: gloo processes")
    s.add_argument("--config", choices=("1b", "tiny", "synth"), default="1b")
    s.add_argument("--image-size", type=int, nargs=2, default=[HEIGHT, WIDTH], metavar=("H", "W"))
    s.add_argument("--outliers", choices=OUTLIER_MODES, default="global")
    s.add_argument("--impl", choices=("auto", "torch"), default="auto", help="HTTM implementation (default: auto)")
    s.add_argument("--no-profile", action="store_true", help="skip the profiled forward (per-layer seconds)")
    s.add_argument("--timeout", type=float, default=900.0, help="collective timeout, s (default: %(default)s)")
    s.add_argument("--fidelity", action="store_true",
                   help="outlier budget global vs per rank against one process (uses --gpus > 1, --frames)")


def bench_rank(ctx, row: Dict) -> Dict:
    """One rank of one row: warm-up, timed and profiled forwards -> this rank's measurements."""
    merge = merge_config(row["mode"], impl=row["impl"])
    shard = shard_frames(row["frames"], ctx.world, merge.temporal_frames if merge else None)[ctx.rank]
    model = build_model(ctx.device, row["config"])
    h, w = row["image_hw"]
    images = video_frames(row["frames"], torch.device("cpu"), h, w)[:, shard.start:shard.stop].to(ctx.device)

    def forward(log: GatherLog) -> float:
        dist.barrier(ctx.cpu_group)
        start = time.perf_counter()
        with torch.inference_mode():
            out = sharded_forward(model, images, shard, merge, HEADS, row["outliers"], ctx.group, log)
        del out
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        seconds = time.perf_counter() - start
        dist.barrier(ctx.cpu_group)
        return seconds

    forward(GatherLog())                                                 # warm-up (untimed)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    log = GatherLog()
    seconds = forward(log)
    peak = torch.cuda.max_memory_allocated(ctx.device) / 2 ** 30 if ctx.device.type == "cuda" else None
    result = {"rank": ctx.rank, "frames": [shard.start, shard.stop], "seconds": round(seconds, 4),
              "peak_memory_gib": None if peak is None else round(peak, 3), "all_gather": log.totals(),
              "device": device_name(ctx.device)}
    if not row["profile"]:
        result["all_gather_per_layer"] = log.per_layer()
        return result
    profiled = GatherLog(sync=True)
    result["profiled_seconds"] = round(forward(profiled), 4)
    result["all_gather_per_layer"] = profiled.per_layer()
    return result


def run_row(args: argparse.Namespace, gpus: int, frames: int, mode: str) -> Dict:
    row = {"gpus": gpus, "frames": frames, "mode": mode, "config": args.config, "image_hw": list(args.image_size),
           "outliers": args.outliers, "impl": args.impl, "profile": not args.no_profile, "device_kind": args.device}
    start = time.time()
    try:
        ranks = launch(bench_rank, gpus, args.device, args=(row,), timeout_s=args.timeout)
    except DistributedError as err:
        return {**row, "error": str(err), "wall_s": round(time.time() - start, 1)}
    except Exception as err:                                              # noqa: BLE001 (recorded)
        return {**row, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=4)}
    return {**row, "seconds": max(r["seconds"] for r in ranks), "ranks": ranks,
            "peak_memory_gib_max": max((r["peak_memory_gib"] or 0) for r in ranks) or None,
            "all_gather_bytes_per_rank": max(r["all_gather"]["bytes_sent"] for r in ranks),
            "wall_s": round(time.time() - start, 1)}


def efficiency(rows: List[Dict]) -> None:
    """Scaling efficiency t(1) / (N t(N)) where the 1-process row of the same frames/mode exists."""
    base = {(r["frames"], r["mode"]): r["seconds"] for r in rows if r["gpus"] == 1 and "seconds" in r}
    for r in rows:
        t1 = base.get((r["frames"], r["mode"]))
        if "seconds" in r and t1:
            r["speedup"] = round(t1 / r["seconds"], 3)
            r["efficiency"] = round(t1 / (r["gpus"] * r["seconds"]), 3)


FIDELITY_MERGE = HTTMConfig(spatial_block=36, temporal_frames=4, impl="torch")
OUTPUTS = ("pose_enc", "depth", "depth_conf")


def fidelity_case(frames: int):
    """(synth model with test weights, demo frames [S, 3, 126, 168]) on the CPU."""
    model = build_test_model("synth", allow_test_weights=True, device="cpu")
    seq = demo_sequence(num_frames=frames, width=SYNTH_IMAGE_HW[1], height=SYNTH_IMAGE_HW[0], seed=0)
    images = torch.from_numpy(seq.images).permute(0, 3, 1, 2).float() / 255.0
    return model, images


def fidelity_rank(ctx, frames: int) -> Dict:
    """Gathered outputs of the sharded HTTM forward with each outlier budget (rank 0; {} elsewhere)."""
    model, images = fidelity_case(frames)
    shard = shard_frames(frames, ctx.world, FIDELITY_MERGE.temporal_frames)[ctx.rank]
    out = {}
    for mode in OUTLIER_MODES:
        with torch.inference_mode():
            part = sharded_forward(model, images[shard.start:shard.stop], shard, FIDELITY_MERGE, HEADS, mode)
            out[mode] = gather_outputs(part)
    return out if ctx.rank == 0 else {}


def fidelity(args: argparse.Namespace, argv: List[str]) -> int:
    """Relative L2 errors of the sharded HTTM outputs against the one-process ones, per budget."""
    rows = []
    for frames in args.frames:
        model, images = fidelity_case(frames)
        with torch.inference_mode():
            dense = model(images, heads=HEADS)
            patch(model, FIDELITY_MERGE)
            httm = model(images, heads=HEADS)
            patch(model, None)
        merging = {k: _rel(httm[k], dense[k]) for k in OUTPUTS}
        for gpus in (g for g in args.gpus if g > 1):
            got = launch(fidelity_rank, gpus, "cpu", args=(frames,), timeout_s=args.timeout)[0]
            row = {"frames": frames, "processes": gpus, "merging_vs_dense": merging}
            for mode in OUTLIER_MODES:
                row[f"{mode}_vs_one_process"] = {k: _rel(got[mode][k], httm[k]) for k in OUTPUTS}
                row[f"{mode}_share_of_merging"] = {k: row[f"{mode}_vs_one_process"][k] / merging[k] for k in OUTPUTS}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"kind": "distributed_fidelity", "env": environment(torch.device("cpu"), argv),
              "merge": dataclasses.asdict(FIDELITY_MERGE),
              "model": "synth, deterministic test weights", "image_hw": list(SYNTH_IMAGE_HW), "rows": rows}
    write_json(args.out, result)
    return 0


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def run(args: argparse.Namespace, argv: List[str]) -> int:
    if args.fidelity:
        return fidelity(args, argv)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if device.type == "cuda" and torch.cuda.device_count() < max(args.gpus):
        print(f"httm-bench distributed: {max(args.gpus)} GPUs asked, {torch.cuda.device_count()} visible")
        return 2
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = [r for r in done.get("rows", []) if "error" not in r]
    result = {"kind": "distributed", "env": environment(device, argv), "heads": list(HEADS), "rows": rows}
    for frames in args.frames:
        for mode in args.modes:
            for gpus in args.gpus:
                if any((r["gpus"], r["frames"], r["mode"]) == (gpus, frames, mode) for r in rows):
                    continue
                row = run_row(args, gpus, frames, mode)
                rows.append(row)
                efficiency(rows)
                write_json(args.out, result)
                print(json.dumps({k: row.get(k) for k in ("gpus", "frames", "mode", "seconds", "peak_memory_gib_max",
                                                          "efficiency", "error")}), flush=True)
    return 0
