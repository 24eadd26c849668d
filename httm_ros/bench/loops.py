"""httm-bench loops: loop closure with the GTSAM pose graph, on the CPU with the oracle.

Writes bench/results/loops/loops_oracle.json (provenance by :mod:`httm_ros.provenance`):

* ``stream``: per drift (PerturbedOracle ``drift_deg``: every relative pose of a window followed by
  that rotation) on a two-lap "walk" sequence (the camera comes back to the same views): the
  anchored stream with and without loop closure: ATE (Sim(3)-aligned RMSE, m and % of the path),
  final drift, loops accepted / rejected by reason, optimisation time per update (worker thread),
  map rebuild time per applied correction, the stream's wall time; and a sequence without a loop
  (less than one lap): the same, to show no increase; each with the ``default`` and the
  ``previous_default`` knobs (``KNOBS``), and after every loop-closure stream a wrong loop injected
  (``wrong_loop``: rejected? map and trajectory unchanged?);
* ``graph_wrong_loop``: the graph-only wrong loop of test_pipeline_loops.py per knob set;
* ``scale`` (default knobs: consistency test and batch solves included): the pose graph
  alone (no images): a chain of ``--scale-keyframes`` keyframes on a circle
  with drift, submitted 5 at a time (like windows) with two loops (8 keyframes apart, so that the
  second confirms the first) every ``--loop-every`` keyframes:
  update time (mean / p95 / max per 1000 keyframes) and the process's resident memory;
* ``timing``: whether the asynchronous graph updates (the node's setting) change the result: per
  drift, the default-knob loop stream with ``LoopClosureConfig.synchronous`` (every update done
  before the next window), then asynchronous ``--timing-repeats`` times at the oracle's speed
  (~ms per window: a correction reaches the stream several windows late) and as many times with
  every model call taking ``--paced-s`` seconds (a stand-in for a GPU model's window time: the
  solver then finishes before the next window, as in the node).

    python -m httm_ros.bench loops
    python -m httm_ros.bench loops --drifts 0.3 0.5 --scale-keyframes 2000
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import List

import numpy as np
import torch

from ..provenance import environment, write_json
from ..synthetic import demo_sequence
from ..synthetic.oracle import PerturbedOracle
from .streaming import ORACLE_HW, run_stream, stream_config, trajectory_metrics

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "loops"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=920, help="frames of the two-lap sequence (one lap ~460)")
    p.add_argument("--drifts", type=float, nargs="+", default=[0.3, 0.5, 1.0], help="oracle drift_deg values")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale-keyframes", type=int, default=10000, help="keyframes of the graph-only scale run (0: skip)")
    p.add_argument("--loop-every", type=int, default=200, help="scale run: a loop every n keyframes")
    p.add_argument("--timing-repeats", type=int, default=3, help="asynchronous repeats per drift and pace (0: skip)")
    p.add_argument("--paced-s", type=float, default=0.05, help="model time per window of the paced rows (s)")
    p.add_argument("--out", type=Path, default=RESULTS)


# the graph's knobs per row: "default" (LoopClosureConfig(): window sigmas for ~1 deg drift per keyframe
# pair, batch re-solve, loop consistency) and "previous_default" (the knobs before the consistency test:
# 1 deg window sigma, iSAM2 only, no consistency test; docs/STREAMING.md "The 1.0 deg case")
KNOBS = {"default": {}, "previous_default": {"window_sigma_rot_deg": 1.0, "batch_resolve": False, "consistent_loops": 0}}


class Paced:
    """A predictor whose every window takes at least ``seconds`` (it waits out the rest): the oracle
    at a GPU model's pace, so that the solver thread runs against windows that take as long as the
    node's (a benchmark stand-in; no test relies on it)."""

    def __init__(self, predictor, seconds: float) -> None:
        self.predictor, self.seconds = predictor, seconds

    def predict(self, images: torch.Tensor, frame_ids):
        t0 = time.perf_counter()
        out = self.predictor.predict(images, frame_ids)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - t0)))
        return out


def stream_row(seq, drift: float, seed: int, loops: bool, knobs: str = "default", wrong_loop: bool = False,
               synchronous: bool = False, paced_s: float = 0.0) -> dict:
    """One stream; with ``wrong_loop`` a false loop (keyframe 10 claimed to be where the middle one is)
    is injected after it: rejected? map and trajectory unchanged? ``synchronous``: graph updates done
    before the stream goes on; ``paced_s`` > 0: each window takes that long (:class:`Paced`)."""
    from ..pipeline.pose_graph import LoopClosureConfig
    cfg = stream_config("anchored", 8, 3)
    cfg.loop_closure = LoopClosureConfig(enabled=loops, synchronous=synchronous, **KNOBS[knobs])
    predictor = PerturbedOracle(seq, drift_deg=drift, seed=seed)
    rec, _, wall = run_stream(seq, Paced(predictor, paced_s) if paced_s > 0 else predictor, cfg)
    row = {"loop_closure": loops, "knobs": knobs if loops else None, "drift_deg": drift, "wall_s": wall,
           "synchronous": synchronous, "paced_s": paced_s, **trajectory_metrics(seq, rec.trajectory)}
    if rec.loops is not None:
        t0 = time.perf_counter()
        rec.loops.flush()                              # the end of the stream: pending loops are rejected
        rec.loops.wait()
        row["wait_after_stream_s"] = time.perf_counter() - t0
        rec.loops.apply(rec)
        row.update(trajectory_metrics(seq, rec.trajectory), **rec.loops.summary())
        row["batch_solves"] = len(rec.loops.backend.batch_solves)
        row["batch_solve_s_max"] = max(rec.loops.backend.batch_solves, default=math.nan)
        if wrong_loop:
            row["wrong_loop"] = inject_wrong_loop(rec)
        rec.loops.close()
    return row


def inject_wrong_loop(rec) -> dict:
    """A false loop that passed verification (keyframe 10 -> the middle keyframe, identity): the result."""
    g = rec.loops.graph
    keys, rejected = g.keys(), dict(g.rejected)
    xyz, poses = rec.map.points()[0].copy(), rec.trajectory.cam_to_world().copy()
    rec.loops.add_loop(keys[10], keys[len(keys) // 2], np.eye(4))
    rec.loops.flush()                                  # no later loop comes: still pending -> rejected
    rec.loops.wait()
    applied = rec.loops.apply(rec)
    reasons = {k: v - rejected.get(k, 0) for k, v in g.rejected.items() if v != rejected.get(k, 0)}
    return {"loop": [keys[10], keys[len(keys) // 2]], "rejected": bool(reasons) and not applied, "reasons": reasons,
            "map_unchanged": bool(np.array_equal(rec.map.points()[0], xyz)),
            "trajectory_unchanged": bool(np.array_equal(rec.trajectory.cam_to_world(), poses))}


def graph_wrong_loop(knobs: str) -> dict:
    """The graph alone (test_pipeline_loops): a 120-keyframe chain, two laps of a 3 m circle, 0.5 deg
    drift per step; a false loop keyframe 30 -> 100 (identity). Rejected?"""
    from ..pipeline.gtsam_backend import GtsamBackend
    from ..pipeline.pose_graph import LoopClosureConfig, PoseGraph, sim3, sim3_inverse, window_sigmas
    cfg = LoopClosureConfig(enabled=True, **KNOBS[knobs])

    def rot(a):
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])

    th = np.linspace(0, 4 * math.pi, 120, endpoint=False)
    gt = [sim3(rot(t), [3 * math.cos(t), 3 * math.sin(t), 0.0]) for t in th]
    g, backend = PoseGraph(), GtsamBackend(cfg)
    pose = gt[0]
    g.add_keyframe(0, pose)
    factors = [g.priors[0]]
    for k in range(1, len(gt)):
        rel = sim3_inverse(gt[k - 1]) @ gt[k] @ sim3(rot(math.radians(0.5)), np.zeros(3))
        pose = pose @ rel
        g.add_keyframe(k, pose)
        factors.append(g.add_between(k - 1, k, rel, window_sigmas(cfg, 0.0)))
    backend.submit(g, g.keys(), factors)
    backend.wait()
    backend.submit(g, [], [g.add_between(30, 100, np.eye(4), window_sigmas(cfg, 0.0, "loop"), "loop")])
    backend.flush(g)
    backend.wait()
    backend.close()
    return {"knobs": knobs, "rejected": g.loops_accepted == 0 and sum(g.rejected.values()) == 1,
            "reasons": dict(g.rejected)}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


def scale_run(n: int, loop_every: int, knobs: str = "default") -> dict:
    """The graph alone: n keyframes on a 3 m circle (50 per lap), 0.3 deg drift per step, loops to lap 1."""
    from ..pipeline.gtsam_backend import GtsamBackend
    from ..pipeline.pose_graph import LoopClosureConfig, PoseGraph, sim3, sim3_inverse, window_sigmas
    cfg = LoopClosureConfig(enabled=True, **KNOBS[knobs])
    per_lap = 50

    def gt(k):
        t = 2 * math.pi * k / per_lap
        c, s = math.cos(t), math.sin(t)
        return sim3(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), [3 * c, 3 * s, 0.0])

    drift = sim3(np.array([[math.cos(0.005), -math.sin(0.005), 0], [math.sin(0.005), math.cos(0.005), 0], [0, 0, 1]]),
                 np.zeros(3))
    g, backend = PoseGraph(), GtsamBackend(cfg)
    rss0, pose = rss_mib(), gt(0)
    g.add_keyframe(0, pose)
    pending, factors, rows = [0], [g.priors[0]], []
    for k in range(1, n):
        rel = sim3_inverse(gt(k - 1)) @ gt(k) @ drift
        pose = pose @ rel
        g.add_keyframe(k, pose)
        pending.append(k)
        factors.append(g.add_between(k - 1, k, rel, window_sigmas(cfg, 0.0)))
        if k % loop_every in (0, 8) and k > per_lap:   # two loops 8 keyframes apart: the second confirms the first
            factors.append(g.add_between(k % per_lap, k, sim3_inverse(gt(k % per_lap)) @ gt(k),
                                         window_sigmas(cfg, 0.0, "loop"), "loop"))
        if len(pending) >= 5:
            backend.submit(g, pending, factors)
            pending, factors = [], []
        if (k + 1) % 1000 == 0:
            backend.wait(600)
            upd = np.array(backend.update_s)
            rows.append({"keyframes": k + 1, "updates": len(upd), "update_s_mean_last": float(upd[-200:].mean()),
                         "update_s_p95_last": float(np.percentile(upd[-200:], 95)), "update_s_max": float(upd.max()),
                         "rss_mib": rss_mib(), "rss_growth_mib": rss_mib() - rss0,
                         "loops_accepted": g.loops_accepted, "loops_rejected": dict(g.rejected),
                         "batch_solves": len(backend.batch_solves),
                         "batch_solve_s_max": max(backend.batch_solves, default=math.nan)})
            print(f"scale ({knobs}): {k + 1} keyframes, update {1e3 * rows[-1]['update_s_mean_last']:.1f} ms mean "
                  f"(last 200), max {1e3 * rows[-1]['update_s_max']:.0f} ms, RSS +{rows[-1]['rss_growth_mib']:.0f} MiB")
    backend.close()
    return {"keyframes": n, "loop_every": loop_every, "knobs": knobs, "rows": rows}


def run(args, argv: List[str]) -> int:
    out = {"environment": environment(torch.device("cpu"), list(argv)),
           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"},
           "knobs": KNOBS, "stream": [], "no_loop": [], "graph_wrong_loop": [], "scale": None,
           "not_measured": ["the ROS node (wired; test/test_ros_loop_closure.py, not benchmarked)"]}
    path = args.out / "loops_oracle.json"
    seq = demo_sequence(num_frames=args.frames, width=ORACLE_HW[1], height=ORACLE_HW[0], seed=args.seed, speed=0.03,
                        trajectory="walk")
    for drift in args.drifts:
        for loops, knobs in ((False, "default"), (True, "default"), (True, "previous_default")):
            row = stream_row(seq, drift, args.seed, loops, knobs, wrong_loop=loops)
            out["stream"].append(row)
            print(f"drift {drift} deg, loops {knobs if loops else 'off'}: ATE {row.get('ate_pct', math.nan):.3f} %, "
                  f"accepted loops {row.get('loops_accepted', '-')}, rejected {row.get('loops_rejected', '-')}, "
                  f"wrong loop {row.get('wrong_loop', '-')}")
            write_json(path, out)
    short = demo_sequence(num_frames=300, width=ORACLE_HW[1], height=ORACLE_HW[0], seed=args.seed + 1, speed=0.03, trajectory="walk")
    for loops, knobs in ((False, "default"), (True, "default"), (True, "previous_default")):
        out["no_loop"].append(stream_row(short, args.drifts[0], args.seed, loops, knobs))
        write_json(path, out)
    for knobs in KNOBS:
        out["graph_wrong_loop"].append(graph_wrong_loop(knobs))
        print(f"graph-only wrong loop ({knobs}): {out['graph_wrong_loop'][-1]}")
        write_json(path, out)
    out["timing"] = []
    for drift in args.drifts if args.timing_repeats else []:
        runs = [(True, 0.0)] + [(False, 0.0)] * args.timing_repeats + [(False, args.paced_s)] * args.timing_repeats
        for synchronous, paced in runs:
            row = stream_row(seq, drift, args.seed, True, "default", synchronous=synchronous, paced_s=paced)
            out["timing"].append(row)
            print(f"drift {drift} deg, {'synchronous' if synchronous else 'asynchronous'}, paced {paced} s: "
                  f"ATE {row.get('ate_pct', math.nan):.3f} %, accepted loops {row.get('loops_accepted')}")
            write_json(path, out)
    if args.scale_keyframes:
        out["scale"] = scale_run(args.scale_keyframes, args.loop_every)
        write_json(path, out)
    print(f"wrote {path}")
    return 0

