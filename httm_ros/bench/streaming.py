"""httm-bench streaming: anchored vs chained windows, tracking states, relocalisation (CPU).

Runs the streaming core on synthetic sequences with a predictor (the distorted oracle by default;
``--predictor checkpoint --checkpoint PATH`` runs a trained model the same way) and writes one JSON
per run to bench/results/streaming/ through :mod:`httm_ros.provenance`:

* ``compare``: per sequence length (300, 1000, 5000 frames), chained vs anchored: ATE (Sim(3)-aligned
  RMSE, % of the path), final drift (last keyframe's error with the alignment fitted on the first
  ones), scale drift (|log| ratio of the scales fitted on the last and first keyframes), windows
  accepted / partial / rejected, keyframes dropped, states visited;
* ``failure``: frames of another room for 3 s, then back (expect TRACKING -> LOST -> RELOCALISED,
  one segment, ATE of the whole map); ``never_back``: the other room to the end (expect NEW_SEGMENT).

    python -m httm_ros.bench streaming --lengths 300 1000 5000
    python -m httm_ros.bench streaming --predictor checkpoint --checkpoint weights/synth.pt --lengths 300 1000
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..eval.metrics import ate
from ..pipeline import AlignConfig, KeyframeConfig, StreamConfig, StreamingReconstructor, WindowConfig, apply_profile
from ..provenance import environment, write_json
from ..synthetic import demo_sequence
from ..synthetic.oracle import CORRUPTIONS, OraclePredictor, with_other_room
from ..synthetic.trajectory import KINDS

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "streaming"
ORACLE_HW = (42, 56)            # (H, W) of the oracle's sequences; a checkpoint's come at its card's image_hw


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lengths", type=int, nargs="+", default=[300, 1000, 5000], help="frames per sequence")
    p.add_argument("--modes", nargs="+", default=["chained", "anchored"], choices=["chained", "anchored"])
    p.add_argument("--window", type=int, default=8, help="keyframes per window (K)")
    p.add_argument("--overlap", type=int, default=3, help="known keyframes per window (O)")
    p.add_argument("--min-motion", type=float, default=KeyframeConfig().min_motion,
                   help="image motion (share of the width) that makes a keyframe (default %(default)s)")
    p.add_argument("--noise", type=float, default=0.02, help="oracle noise (pose/depth distortion per window)")
    p.add_argument("--corrupt-every", type=int, default=25, help="corrupt every n-th window (0 = never)")
    p.add_argument("--predictor", choices=["oracle", "checkpoint"], default="oracle")
    p.add_argument("--checkpoint", help="VGGT checkpoint for --predictor checkpoint (default: the shipped "
                                        "httm-vggt-synth); frames are rendered at its model card's image_hw")
    p.add_argument("--merge", choices=["none", "httm", "uniform"], default="none",
                   help="--predictor checkpoint: token merging in the model, with the node's default "
                        "settings for it (merge_mode; default: dense)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trajectories", nargs="+", default=["orbit"], choices=list(KINDS),
                   help="camera paths of the compared sequences (default: orbit, the demo's)")
    p.add_argument("--no-failure", action="store_true", help="skip the another-room scenarios")
    p.add_argument("--library-checks", action="store_true",
                   help="--predictor checkpoint: the library's default checks instead of the model card's "
                        "stream_profile")
    p.add_argument("--out", type=Path, default=RESULTS)


def make_predictor(name: str, seq, noise: float, corrupt_every: int, seed: int, checkpoint: Optional[str],
                   device: str = "cpu", merge: str = "none"):
    """The oracle (per-window distortion + corruptions) or a VGGT checkpoint (ModelPredictor; ``merge``
    "httm" / "uniform": merging as the node's merge_mode with its other defaults)."""
    if name == "checkpoint":
        from ..pipeline import ModelPredictor
        from ..ros.core_config import merge_config
        from ..ros.params import defaults
        from ..vggt import VGGT
        return ModelPredictor(VGGT.from_checkpoint(checkpoint), device=device,
                              merge=merge_config({**defaults(), "merge_mode": merge}))
    corrupt = {}
    if corrupt_every:
        corrupt = {i: CORRUPTIONS[(i // corrupt_every) % len(CORRUPTIONS)]
                   for i in range(corrupt_every, 100_000, corrupt_every)}
    return OraclePredictor(seq, noise=noise, seed=seed, corrupt=corrupt)


def stream_config(mode: str, window: int, overlap: int, device: str = "cpu",
                  min_motion: Optional[float] = None, profile: Optional[dict] = None) -> StreamConfig:
    """The benchmark's stream: windows K/O in ``mode``, frames used at their size; ``profile``: a
    checkpoint's stream_profile (:func:`~httm_ros.pipeline.apply_profile`)."""
    keyframes = KeyframeConfig() if min_motion is None else KeyframeConfig(min_motion=min_motion)
    return apply_profile(StreamConfig(window=WindowConfig(window, overlap, mode), align=AlignConfig(min_points=200),
                                      keyframes=keyframes, image_width=None, device=device), profile)


def run_stream(seq, predictor, config: StreamConfig, on_push: Optional[Callable[[list, float], bool]] = None,
               flush: bool = True):
    """A new reconstructor of ``predictor`` and ``config`` through :func:`push_stream` -> (reconstructor,
    results, wall seconds)."""
    rec = StreamingReconstructor(predictor, config)
    results, wall = push_stream(seq, rec, on_push, flush)
    return rec, results, wall


def push_stream(seq, rec: StreamingReconstructor, on_push: Optional[Callable[[list, float], bool]] = None,
                flush: bool = True):
    """Push every frame of ``seq`` into ``rec``, then flush (unless ``flush`` is False); returns
    (results, wall seconds). ``on_push(windows, seconds)``, called after each push (and the flush)
    with the WindowResults it returned and its seconds: its own time is left out of the wall
    seconds; when it returns True no more frames are pushed (the flush still runs)."""
    results: list = []
    outside = [0.0]

    def step(call) -> bool:
        """One push or the flush; True when ``on_push`` asks to stop pushing."""
        start = time.perf_counter()
        got = call()
        results.extend(got)
        if on_push is None:
            return False
        called = time.perf_counter()
        stop = on_push(got, called - start)
        outside[0] += time.perf_counter() - called
        return stop

    t0 = time.perf_counter()
    for img, t in zip(seq.images, seq.timestamps):
        if step(lambda: rec.push(img, float(t))):
            break
    if flush:
        step(rec.flush)
    return results, time.perf_counter() - t0 - outside[0]


def trained_network_run(kind: str, program: str, args, **config) -> Tuple[str, dict]:
    """Set-up of a CPU run of the shipped network (or ``args.weights``) over held-out streams
    (``bench/window_accuracy.py``, ``bench/loops_trained.py``): one torch thread, tracking
    transitions not logged -> (weights, the result's header: ``kind``, provenance, ``config`` (the
    arguments but ``out``, the weights and their sha256, and ``config``), the card's stream_profile, no rows yet)."""
    from ..provenance import file_sha256
    from ..vggt.checkpoint import checkpoint_stream_profile
    from ..weights import synth_weights

    torch.set_num_threads(1)
    logging.getLogger("httm_ros.pipeline.tracking").setLevel(logging.ERROR)
    weights = args.weights or str(synth_weights())
    out = {"kind": kind, "environment": environment(torch.device("cpu"), program=program),
           "config": {**{k: v for k, v in vars(args).items() if k != "out"}, "weights": weights,
                      "weights_sha256": file_sha256(weights), **config},
           "stream_profile": checkpoint_stream_profile(weights), "rows": []}
    return weights, out


def trajectory_metrics(seq, traj) -> Dict[str, float]:
    """ATE (Sim(3)), final drift and scale drift of one segment's trajectory against the ground truth."""
    ids = np.array(traj.frame_ids)
    if len(ids) < 6:
        return {"keyframes": int(len(ids))}
    est, gt = traj.positions(), seq.cam_to_world[ids, :3, 3]
    length = float(np.linalg.norm(np.diff(gt, axis=0), axis=1).sum())
    whole = ate(est, gt)
    n = max(5, len(ids) // 10)
    head, tail = ate(est[:n], gt[:n]), ate(est[-n:], gt[-n:])
    moved = _apply(head["transform"], est)
    return {"keyframes": int(len(ids)), "path_m": length, "ate_rmse_m": whole["rmse"],
            "ate_pct": 100 * whole["rmse"] / length, "final_drift_m": float(np.linalg.norm(moved[-1] - gt[-1])),
            "final_drift_pct": 100 * float(np.linalg.norm(moved[-1] - gt[-1])) / length,
            "scale_drift": abs(math.log(_scale(tail["transform"]) / _scale(head["transform"])))}


def _scale(t: np.ndarray) -> float:
    return float(np.cbrt(abs(np.linalg.det(np.asarray(t)[:3, :3]))))


def _apply(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    return x @ t[:3, :3].T + t[:3, 3]


def summary(seq, rec, results, wall_s: float) -> dict:
    c = rec.counters
    room = np.asarray(seq.info.get("room", np.zeros(len(seq), int)))
    segs = []
    for s in rec.segments:
        m = trajectory_metrics(seq, s.trajectory) if len(s.trajectory) and not room[s.trajectory.frame_ids].any() else {}
        segs.append({"index": s.index, "keyframes": len(s.trajectory), "map_points": len(s.map),
                     "other_room_keyframes": int(room[s.trajectory.frame_ids].sum()) if len(s.trajectory) else 0,
                     **m})
    return {"frames": len(seq), "windows": c.windows, "accepted": c.windows_accepted, "partial": c.windows_partial,
            "rejected": c.windows_rejected, "keyframes": c.keyframes, "keyframes_dropped": c.keyframes_dropped,
            "keyframes_requeued": c.keyframes_requeued,
            "relocalisations": c.relocalisations, "states": rec.tracker.states(),
            "transitions": [t.as_dict() for t in rec.tracker.history], "segments": segs,
            "wall_s": wall_s, **(segs[0] if segs else {})}


def sequence(frames: int, seed: int, hw: Tuple[int, int] = ORACLE_HW, trajectory: str = "orbit"):
    return demo_sequence(num_frames=frames, width=hw[1], height=hw[0], seed=seed, speed=0.03, trajectory=trajectory)


def other_room(seq, seed: int, come_back: bool, hw: Tuple[int, int] = ORACLE_HW):
    """seq with 3 s (90 frames at 30 fps) of another room inserted after a third of it."""
    start = len(seq) // 3
    count = 90 if come_back else 300
    other = demo_sequence(num_frames=count, width=hw[1], height=hw[0], seed=seed + 100, speed=0.03)
    return with_other_room(seq, other, start, count, come_back)


def resolve_checkpoint(args) -> Tuple[int, int]:
    """--predictor checkpoint: the checkpoint (default: the shipped httm-vggt-synth, set on ``args``)
    and the (H, W) its card names; the oracle: ORACLE_HW."""
    if args.predictor != "checkpoint":
        return ORACLE_HW
    from ..vggt.checkpoint import checkpoint_image_hw
    from ..weights import synth_weights
    shipped = synth_weights()
    args.checkpoint = args.checkpoint or (str(shipped) if shipped else None)
    if not args.checkpoint:
        raise SystemExit("--predictor checkpoint needs --checkpoint PATH (no shipped httm-vggt-synth found)")
    hw = checkpoint_image_hw(args.checkpoint)
    if hw is None:
        raise SystemExit(f"{args.checkpoint} has no model card with image_hw: its input size is unknown")
    return hw


def stream_profile(args) -> Optional[dict]:
    """--predictor checkpoint: its model card's stream_profile unless --library-checks; else None."""
    if args.predictor != "checkpoint" or getattr(args, "library_checks", False):
        return None
    from ..vggt.checkpoint import checkpoint_stream_profile
    return checkpoint_stream_profile(args.checkpoint)


def _mode_row(args, seq, mode: str, corrupt_every: int) -> dict:
    """One stream of ``seq`` in window ``mode`` with the predictor and window settings of ``args`` -> its summary."""
    pred = make_predictor(args.predictor, seq, args.noise, corrupt_every, args.seed, args.checkpoint, args.device,
                          getattr(args, "merge", "none"))
    config = stream_config(mode, args.window, args.overlap, args.device, args.min_motion, args.profile)
    rec, results, wall = run_stream(seq, pred, config)
    return {"mode": mode, **summary(seq, rec, results, wall)}


def _compare(args, out: dict, path: Path, seq, trajectory: str) -> None:
    """Every mode of ``args.modes`` over one sequence: a row of out["compare"] each (written as it goes)."""
    for mode in args.modes:
        row = {"frames": len(seq), "trajectory": trajectory, **_mode_row(args, seq, mode, args.corrupt_every)}
        out["compare"].append(row)
        print(f"{len(seq):5d} frames {trajectory:8s} {mode:8s}: ATE {row.get('ate_pct', math.nan):.3f} %, final drift "
              f"{row.get('final_drift_pct', math.nan):.3f} %, scale drift {row.get('scale_drift', math.nan):.4f}, "
              f"accepted {row['accepted']}/{row['windows']} ({row['wall_s']:.1f} s)")
        write_json(path, out)


def run(args, argv: List[str]) -> int:
    out = {"environment": environment(torch.device(args.device), list(argv)),
           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"},
           "compare": [], "failure": []}
    hw = resolve_checkpoint(args)
    args.profile = stream_profile(args)
    out["config"]["checkpoint"], out["image_hw"], out["stream_profile"] = args.checkpoint, list(hw), args.profile
    path = args.out / f"streaming_{args.predictor}.json"
    for trajectory in args.trajectories:
        for n in args.lengths:
            _compare(args, out, path, sequence(n, args.seed, hw, trajectory), trajectory)
    if not args.no_failure:
        for come_back in (True, False):
            seq = other_room(sequence(300, args.seed, hw, args.trajectories[0]), args.seed, come_back, hw)
            for mode in args.modes:
                row = {"scenario": "back_after_3s" if come_back else "never_back", **_mode_row(args, seq, mode, 0)}
                out["failure"].append(row)
                print(f"{row['scenario']:14s} {mode:8s}: states {' -> '.join(row['states'])}, "
                      f"segments {len(row['segments'])}, ATE seg0 {row.get('ate_pct', math.nan):.3f} %")
                write_json(path, out)
    print(f"wrote {path}")
    return 0

