"""httm-reconstruct: offline reconstruction of one image sequence with VGGT (+ token merging).

    httm-reconstruct [IMAGE_FOLDER] [--weights model.safetensors] [--merge httm] --out DIR

Without IMAGE_FOLDER it reconstructs the built-in synthetic demo sequence. All frames go through
the model in one forward pass (no windows: for streams use the ROS node or the pipeline). Writes
DIR/points.ply (coloured, confidence-filtered points from depth + cameras), DIR/trajectory.tum
(camera-to-world, TUM format) and DIR/report.json (frames, resolution, device, timings, merging).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from httm_ros.httm import add_merge_arguments, merge_config_from_args
from httm_ros.pipeline import ModelPredictor
from httm_ros.geometry import invert_rigid, unproject_depth
from httm_ros.io.images import load_image_folder
from httm_ros.io.ply import save_ply
from httm_ros.io.tum import save_tum
from httm_ros.synthetic import demo_sequence
from httm_ros.timing import StageTimer
from httm_ros.vggt import CheckpointError
from httm_ros.vggt.factory import CONFIG_NAMES, WEIGHTS_HELP, build_model, resolve_device
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


def write_outputs(args, source, images, pred, xyz, rgb, cam_to_world, timings, device) -> dict:
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
    if not args.weights:
        LOG.warning("These outputs come from deterministic TEST WEIGHTS: the geometry is meaningless. "
                    "Pass --weights model.safetensors for a real reconstruction.")
    t = report["timings_s"]
    print(f"{report['frames']} frames at {report['model_input_hw'][1]}x{report['model_input_hw'][0]} on "
          f"{report['device']}: model {t['model_s']:.2f} s, {report['points']} points -> {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
