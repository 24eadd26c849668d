"""httm-reconstruct: offline reconstruction of one image sequence with VGGT (+ token merging).

    httm-reconstruct [IMAGE_FOLDER] [--weights model.safetensors] [--merge httm] --out DIR

Without IMAGE_FOLDER it reconstructs the built-in synthetic demo sequence. All frames go through
the model in one forward pass (no windows: for streams use the ROS node or the pipeline). Writes
DIR/points.ply (coloured, confidence-filtered points from depth + cameras), DIR/trajectory.tum
(camera-to-world, TUM format) and DIR/report.json (frames, resolution, device, timings, merging).

Several GPUs (docs/DISTRIBUTED.md): ``--gpus N`` spawns N processes (NCCL, rank r on cuda:r)
that split the frames and run one consistent forward; ``--gpus N --device cpu`` runs N CPU
processes (gloo). Under torchrun: ``torchrun --nproc-per-node N -m httm_ros.distributed ARGS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from httm_ros.distributed import (OUTLIER_MODES, GatherLog, RankContext, gather_outputs, init_from_env, launch,
                                  run_rank, shard_frames, sharded_forward)
from httm_ros.httm import HTTMConfig, add_merge_arguments, merge_config_from_args
from httm_ros.pipeline import ModelPredictor, WindowPrediction
from httm_ros.geometry import invert_rigid, unproject_depth
from httm_ros.io.images import load_image_folder
from httm_ros.io.ply import save_ply
from httm_ros.io.tum import save_tum
from httm_ros.synthetic import demo_sequence
from httm_ros.timing import StageTimer
from httm_ros.vggt import CheckpointError
from httm_ros.vggt.factory import CONFIG_NAMES, WEIGHTS_HELP, build_model, resolve_device
from httm_ros.vggt.pose_encoding import pose_encoding_to_extrinsics_intrinsics
from httm_ros.vggt.preprocess import preprocess_images

LOG = logging.getLogger("httm_ros.reconstruct")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="httm-reconstruct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="folder of images (sorted by name); default: demo sequence")
    p.add_argument("--out", default="outputs/reconstruct", help="output folder (default: %(default)s)")
    p.add_argument("--weights", help="VGGT checkpoint (.safetensors preferred, or .pt). " + WEIGHTS_HELP)
    p.add_argument("--allow-test-weights", action="store_true",
                   help="without --weights, run with deterministic test weights (meaningless geometry)")
    p.add_argument("--config", choices=CONFIG_NAMES, default="1b", help="network size (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--frames", type=int, default=8,
                   help="frames of the demo sequence, or at most this many images of a folder (default: %(default)s)")
    p.add_argument("--stride", type=int, default=1, help="use every N-th image of a folder (default: 1)")
    p.add_argument("--size", type=int, default=518,
                   help="model input width ('crop') or longer side ('pad'), multiple of 14 (default: %(default)s)")
    p.add_argument("--preprocess", choices=("crop", "pad"), default="crop", help="as the official loader")
    p.add_argument("--conf-percentile", type=float, default=50.0,
                   help="drop points below this percentile of depth confidence, 0-100 (default: %(default)s)")
    p.add_argument("--max-points", type=int, default=2_000_000, help="random subsample above this (default: %(default)s)")
    add_merge_arguments(p)
    p.add_argument("--gpus", type=int, help="split the frames over N processes: N GPUs (NCCL), or N CPU "
                   "processes (gloo) with --device cpu (default: one process)")
    p.add_argument("--outliers", choices=OUTLIER_MODES, default="global",
                   help="with --gpus and HTTM: outlier budget over all ranks (as one process) or per rank "
                        "(default: %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="with --gpus: seconds a collective may wait before the run fails (default: %(default)s)")
    args = p.parse_args(argv)
    _validate(p, args)
    return args


def _validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.frames < 1:
        p.error("--frames must be >= 1")
    if args.stride < 1:
        p.error("--stride must be >= 1")
    if args.size < 14 or args.size % 14:
        p.error("--size must be a positive multiple of 14")
    if not 0.0 <= args.conf_percentile < 100.0:
        p.error("--conf-percentile must be in [0, 100)")
    if args.max_points < 1:
        p.error("--max-points must be >= 1")
    if args.input and not Path(args.input).is_dir():
        p.error(f"input folder {args.input!r} does not exist")
    if args.gpus is not None:
        if args.gpus < 1:
            p.error("--gpus must be >= 1")
        if args.merge == "uniform":
            p.error("--gpus supports --merge httm or none (the uniform baseline matches over all frames)")
        if args.device not in ("auto", "cuda", "cpu"):
            p.error("with --gpus, --device is auto, cuda (rank r on cuda:r) or cpu (N gloo processes)")
        if args.timeout <= 0:
            p.error("--timeout must be > 0")


def load_frames(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """-> (RGB uint8 [S, H, W, 3], description of the source)."""
    if args.input:
        frames = load_image_folder(args.input)[:: args.stride][: args.frames]
        return frames, f"folder {args.input}"
    height = round(args.size * 0.75 / 14) * 14          # 4:3 frames, e.g. 518 -> 518x392
    seq = demo_sequence(num_frames=args.frames, width=args.size, height=height, seed=0)
    return seq.images, f"built-in demo sequence ({args.frames} frames)"


def reconstruct(args: argparse.Namespace) -> dict:
    """Run the whole job; returns the report (also written to OUT/report.json)."""
    if args.gpus is not None:
        return launch(reconstruct_rank, args.gpus, distributed_device(args), args=(args,), timeout_s=args.timeout)[0]
    timer = StageTimer(mode="wall")
    frames, source = load_frames(args)
    images = preprocess_images(list(frames), mode=args.preprocess, target_size=args.size)  # [S,3,H,W]
    timer.lap("load_s")

    device = resolve_device(args.device)
    model = build_model(args.config, args.weights, args.allow_test_weights, str(device))
    predictor = ModelPredictor(model, device=device, merge=merge_config_from_args(args))
    timer.lap("model_build_s")

    pred = predictor.predict(images, list(range(len(images))))
    timer.lap("model_s")

    xyz, rgb = colored_points(pred, images, args.conf_percentile, args.max_points)
    cam_to_world = invert_rigid(pred.extrinsics).cpu().numpy()  # [S, 4, 4]
    timer.lap("points_s")
    timings = {name: ms / 1e3 for name, ms in timer.times_ms().items()}
    return write_outputs(args, source, images, pred, xyz, rgb, cam_to_world, timings, device)


def colored_points(pred, images: torch.Tensor, percentile: float, max_points: int):
    """World points of confident pixels -> (xyz float32 [N, 3], rgb uint8 [N, 3])."""
    depth = pred.depth.float()                                     # [S, H, W]
    pts = unproject_depth(depth, invert_rigid(pred.extrinsics.float()), pred.intrinsics.float())  # [S,H,W,3]
    conf = pred.depth_conf.float()
    keep = conf >= torch.quantile(conf.flatten()[::max(1, conf.numel() // 1_000_000)], percentile / 100)
    keep &= torch.isfinite(pts).all(-1) & (depth > 0)
    colors = (images.permute(0, 2, 3, 1).to(pts.device) * 255).round().to(torch.uint8)
    xyz, rgb = pts[keep].cpu().numpy(), colors[keep].cpu().numpy()
    if len(xyz) > max_points:
        idx = np.random.default_rng(0).choice(len(xyz), max_points, replace=False)
        xyz, rgb = xyz[idx], rgb[idx]
    return xyz.astype(np.float32), rgb


def distributed_device(args: argparse.Namespace) -> str:
    """"cuda" or "cpu" for ``--gpus``; auto without CUDA is an error (say --device cpu)."""
    if args.device == "auto":
        if not torch.cuda.is_available():
            raise RuntimeError("--gpus N needs CUDA; for N CPU processes (gloo) pass --device cpu")
        return "cuda"
    return args.device


def reconstruct_rank(ctx: RankContext, args: argparse.Namespace) -> Optional[dict]:
    """One rank of ``--gpus N``: its frames through ``sharded_forward``; rank 0 gathers the
    outputs (on the CPU) and writes them. -> the report on rank 0, None elsewhere."""
    timer = StageTimer(mode="wall")
    frames, source = load_frames(args)
    merge = merge_config_from_args(args)
    shard = shard_frames(len(frames), ctx.world, merge.temporal_frames if isinstance(merge, HTTMConfig) else None)
    shard = shard[ctx.rank]
    images = preprocess_images(list(frames[shard.start:shard.stop]), mode=args.preprocess,
                               target_size=args.size)                    # [S_r, 3, H, W]
    timer.lap("load_s")
    model = build_model(args.config, args.weights, args.allow_test_weights, str(ctx.device))
    timer.lap("model_build_s")
    log = GatherLog()
    dist.barrier(ctx.cpu_group)
    start = time.perf_counter()
    with torch.inference_mode():
        out = sharded_forward(model, images.to(ctx.device), shard, merge, ("camera", "depth"), args.outliers,
                              ctx.group, log)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    rank_stats = {"rank": ctx.rank, "frames": [shard.start, shard.stop], "model_s": time.perf_counter() - start,
                  "all_gather": log.totals(),
                  "peak_memory_gib": torch.cuda.max_memory_allocated(ctx.device) / 2 ** 30
                  if ctx.device.type == "cuda" else None}
    local = {"pose_enc": out["pose_enc"].float().cpu(), "depth": out["depth"][..., 0].float().cpu(),
             "depth_conf": out["depth_conf"].float().cpu(), "images": images[None]}
    full = gather_outputs(local, ctx.cpu_group)                          # [1, S, ...] on every rank
    ranks = [None] * ctx.world
    dist.all_gather_object(ranks, rank_stats, group=ctx.cpu_group)
    timer.lap("model_s")
    if ctx.rank != 0:
        return None
    return _write_gathered(args, source, full, ranks, timer, ctx)


def _write_gathered(args, source, full, ranks, timer, ctx: RankContext) -> dict:
    """Rank 0: points, trajectory and report from the gathered outputs."""
    all_images = full["images"][0]                                       # [S, 3, H, W]
    hw = tuple(all_images.shape[-2:])
    extr, intr = pose_encoding_to_extrinsics_intrinsics(full["pose_enc"][0], image_hw=hw)
    pred = WindowPrediction(extr, intr, full["depth"][0], full["depth_conf"][0], stats={})
    pred.check(all_images.shape[0], *hw)
    xyz, rgb = colored_points(pred, all_images, args.conf_percentile, args.max_points)
    cam_to_world = invert_rigid(pred.extrinsics).cpu().numpy()
    timer.lap("points_s")
    timings = {name: ms / 1e3 for name, ms in timer.times_ms().items()}
    extra = {"distributed": {"processes": ctx.world, "backend": dist.get_backend(), "outliers": args.outliers,
                             "ranks": ranks}}
    return write_outputs(args, source, all_images, pred, xyz, rgb, cam_to_world, timings, ctx.device, extra)


def write_outputs(args, source, images, pred, xyz, rgb, cam_to_world, timings, device,
                  extra: Optional[dict] = None) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_ply(out / "points.ply", xyz, rgb)
    save_tum(out / "trajectory.tum", np.arange(len(cam_to_world), dtype=np.float64), cam_to_world)
    report = {
        "source": source,
        "frames": int(images.shape[0]),
        "model_input_hw": [int(images.shape[2]), int(images.shape[3])],
        "weights": args.weights or "deterministic test weights (geometry meaningless)",
        "config": args.config,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "merge": args.merge,
        "merge_stats": pred.stats.get("merge", {}) if pred.stats else {},
        "points": int(len(xyz)),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "outputs": {"points": str(out / "points.ply"), "trajectory": str(out / "trajectory.tum")},
        "command": " ".join(["httm-reconstruct", *sys.argv[1:]]),
        **(extra or {}),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        report = reconstruct(args)
    except CheckpointError as err:
        print(f"httm-reconstruct: error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as err:                            # incl. DistributedError
        if args.gpus is None:
            raise
        print(f"httm-reconstruct: error: {err}", file=sys.stderr)
        return 1
    return _summary(args, report)


def main_torchrun(argv: Optional[Sequence[str]] = None) -> int:
    """One rank of ``torchrun --nproc-per-node N -m httm_ros.distributed [httm-reconstruct args]``
    (--gpus is implied by torchrun's WORLD_SIZE; --device cpu runs gloo)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if "WORLD_SIZE" not in os.environ:
        print("python -m httm_ros.distributed: not started by torchrun (no WORLD_SIZE); run "
              "`torchrun --nproc-per-node N -m httm_ros.distributed ...` or `httm-reconstruct --gpus N`",
              file=sys.stderr)
        return 2
    args.gpus = int(os.environ["WORLD_SIZE"])
    ctx = init_from_env(distributed_device(args), args.timeout)
    try:
        report = run_rank(reconstruct_rank, ctx, (args,))
    finally:
        dist.destroy_process_group()
    return _summary(args, report) if report is not None else 0


def _summary(args: argparse.Namespace, report: dict) -> int:
    if not args.weights:
        LOG.warning("These outputs come from deterministic TEST WEIGHTS: the geometry is meaningless. "
                    "Pass --weights model.safetensors for a real reconstruction.")
    t = report["timings_s"]
    print(f"{report['frames']} frames at {report['model_input_hw'][1]}x{report['model_input_hw'][0]} on "
          f"{report['device']}: model {t['model_s']:.2f} s, {report['points']} points -> {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
