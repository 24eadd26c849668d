"""Benchmark of the per-window post-processing (everything after the model) of the stream.

    httm-bench postprocess --device cpu --out bench/pipeline_cpu.json
    httm-bench postprocess --device cuda --out bench/pipeline_cuda.json --model 1b

A synthetic sequence (``--width`` x ``--height``, default 518x392) goes through the
StreamingReconstructor with every frame a keyframe, windows of ``--keyframes`` (24) with
``--overlap`` (8), and the oracle predictor in place of the model. Per window it records the
stages: align, filter, unproject, map_update, post (all of them plus bookkeeping) and preprocess
(per-frame resize/upload of the window's new keyframes, here a no-op resize). The first window
defines the world (no alignment); medians are over the aligned windows of the timed pass (a
warm-up pass runs first). ``--model 1b|tiny`` also times one forward pass of our VGGT on the same
window (deterministic test weights: timing only) for comparison. Writes JSON with the exact
command, git commit, device and all numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import List, Sequence

import torch

from ..pipeline import (FilterConfig, KeyframeConfig, ModelPredictor, StreamConfig, StreamingReconstructor,
                        WindowConfig, WindowResult)
from ..provenance import device_name, git_commit
from ..synthetic import demo_sequence
from ..synthetic.oracle import OraclePredictor
from ..timing import StageTimer
from ..vggt.factory import build_model

STAGES = ("align", "filter", "unproject", "map_update", "post", "preprocess")


def run_stream(seq, args, device: torch.device) -> List[WindowResult]:
    """One pass of the whole sequence through a fresh reconstructor."""
    cfg = StreamConfig(keyframes=KeyframeConfig(enabled=False),
                       window=WindowConfig(args.keyframes, args.overlap),
                       filter=FilterConfig(pixel_stride=args.pixel_stride),
                       image_width=args.width, device=str(device))
    rec = StreamingReconstructor(OraclePredictor(seq, noise=0.01, seed=0), cfg)
    results: List[WindowResult] = []
    for img, t in zip(seq.images, seq.timestamps):
        results += rec.push(img, t)
    results += rec.flush()
    rejected = [r.index for r in results if not r.accepted]
    if rejected:
        raise RuntimeError(f"benchmark windows {rejected} were rejected: {results[rejected[0]].alignment.reason}")
    results[-1].stats["map_points"] = len(rec.map)
    return results


def time_model(name: str, seq, args, device: torch.device) -> dict:
    """One (warm) forward pass of our VGGT on the first window's frames."""
    model = build_model(name, allow_test_weights=True, device=str(device))
    pred = ModelPredictor(model, device=device)
    images = torch.as_tensor(seq.images[:args.keyframes]).permute(0, 3, 1, 2).float().div(255).to(device)
    pred.predict(images, list(range(args.keyframes)))                      # warm-up
    times = [pred.predict(images, list(range(args.keyframes))).stats["model_s"] for _ in range(args.model_repeats)]
    return {"config": name, "weights": "deterministic test weights (timing only)",
            "model_s_median": statistics.median(times), "model_s": times}


def summarise(results: List[WindowResult]) -> dict:
    aligned = [r for r in results[1:] if r.num_keyframes == results[0].num_keyframes]
    med = {s: 1e3 * statistics.median(r.timings[s] for r in aligned) for s in STAGES}
    return {
        "median_ms": {k: round(v, 2) for k, v in med.items()},
        "first_window_ms": {s: round(1e3 * results[0].timings.get(s, float("nan")), 2) for s in STAGES},
        "windows": [{"index": r.index, "keyframes": r.num_keyframes, "points": int(r.points_xyz.shape[0]),
                     "alignment": {"scale": r.alignment.scale, "inlier_fraction": r.alignment.inlier_fraction,
                                   "residual_rel": r.alignment.residual_rel},
                     "timings_ms": {k: round(1e3 * v, 2) for k, v in r.timings.items() if k != "predict"}}
                    for r in results],
        "aligned_windows_in_median": len(aligned),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``httm-bench postprocess``."""
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--out", default="bench/pipeline_cpu.json", help="JSON output (default: %(default)s)")
    p.add_argument("--width", type=int, default=518)
    p.add_argument("--height", type=int, default=392)
    p.add_argument("--keyframes", type=int, default=24, help="window size K (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=8, help="overlap O (default: %(default)s)")
    p.add_argument("--windows", type=int, default=5, help="windows per pass (default: %(default)s)")
    p.add_argument("--pixel-stride", type=int, default=FilterConfig().pixel_stride)
    p.add_argument("--model", choices=("none", "tiny", "1b"), default="none",
                   help="also time one VGGT forward on the window (default: %(default)s)")
    p.add_argument("--model-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``httm-bench postprocess``: argv is the command line after ``httm-bench`` (recorded in the JSON)."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    frames = args.keyframes + (args.windows - 1) * (args.keyframes - args.overlap)
    timer = StageTimer(mode="wall")
    seq = demo_sequence(num_frames=frames, width=args.width, height=args.height, seed=0, speed=0.03)
    render_s = timer.lap("render")
    run_stream(seq, args, device)                                          # warm-up
    results = run_stream(seq, args, device)
    report = {
        "command": "httm-bench " + " ".join(argv),
        "git_commit": git_commit(),
        "device": device_name(device),
        "torch": torch.__version__,
        "image_hw": [args.height, args.width], "keyframes": args.keyframes, "overlap": args.overlap,
        "pixel_stride": args.pixel_stride, "frames": frames,
        "render_s": round(render_s, 3), "render_ms_per_frame": round(1e3 * render_s / frames, 2),
        "map_points": results[-1].stats.get("map_points"),
        **summarise(results),
    }
    if args.model != "none":
        report["model"] = time_model(args.model, seq, args, device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    med = report["median_ms"]
    print(f"{report['device']}: post-processing per window of {args.keyframes} keyframes at "
          f"{args.width}x{args.height}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
    if "model" in report:
        print(f"model forward ({args.model}): {1e3 * report['model']['model_s_median']:.1f} ms")
    print(f"-> {out}")
    return 0
