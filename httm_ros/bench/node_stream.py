"""httm-bench stream: the streaming core at the node's defaults over a long sequence (issue 14).

The node without DDS: the model runner is built by the node's own ``build_model_runner`` from the
node's parameter values (``params.defaults()`` with test weights, as the node runs without a
checkpoint; ``--config``, ``--device`` and ``--set name=value`` override values and are validated
as the node validates them), including the node's start-up warm-up (timed apart). The frames of a
synthetic sequence (``demo_sequence``, by default at the model input size of a 4:3 frame) are
pushed in order into the node's own streaming core (the runner's, as the node builds it; with
``--geometry oracle`` its predictor is wrapped, below; ``streaming.push_stream``); every window's wall latency
(from the push of its last frame to its result) and the core's per-stage seconds are recorded.

Geometry: with random / test weights the model's poses are meaningless and the windows would be
rejected, so the stages after the model would not run as they do in the node. ``--geometry oracle``
(default) runs the model on every window (its time and merge statistics) and then hands the core
the :class:`~httm_ros.synthetic.oracle.OraclePredictor`'s prediction of the same frame ids (the
sequence's ground truth, distorted like VGGT output); the oracle's own seconds are measured and
left out of the latencies and the ``predict`` stage, as the node never pays them. ``--geometry
model`` hands the core the model's own outputs.

At the node's defaults (``flush_on_shutdown`` false) the keyframes still queued at the end are not
run as a last window; with ``--set flush_on_shutdown=true`` they are. The JSON is rewritten after
every window (a run cut by a timeout keeps what it measured; ``"complete": false``).

    python -m httm_ros.bench stream --out OUT/stream_node.json             # VGGT-1B, 600 frames, GPU
    python -m httm_ros.bench stream --config tiny --device cpu --set image_size=56 --frames 60 \\
        --set window_size=6 --set window_overlap=2 --out /tmp/stream.json
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..pipeline import WindowPrediction
from ..pipeline.stream import POST_STAGES, WindowResult, model_input_size
from ..provenance import environment, write_json
from ..ros import params
from ..ros.core_config import core_values, image_width
from ..ros.model_runner import ModelRunner, SafePredictor, build_model_runner
from ..synthetic import demo_sequence
from ..synthetic.oracle import OraclePredictor
from ..synthetic.trajectory import KINDS
from .streaming import push_stream, trajectory_metrics

LOG = logging.getLogger("httm_ros.bench.node_stream")
STAGES = ("preprocess", "context", "predict") + POST_STAGES + ("post", "total")   # WindowResult.timings keys
GIB = 2 ** 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="result JSON (rewritten after every window)")
    p.add_argument("--frames", type=int, default=600, help="frames of the sequence (default %(default)s)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="frame size (default: the model input of a 4:3 frame at the node's image_size, "
                        "518x392 for VGGT-1B); --geometry oracle needs frames at the model input size")
    p.add_argument("--seed", type=int, default=0, help="scene, camera path and oracle seed")
    p.add_argument("--trajectory", default="orbit", choices=list(KINDS), help="camera path (default: the demo's)")
    p.add_argument("--geometry", choices=["oracle", "model"], default="oracle",
                   help="oracle: the model runs on every window, the core gets the oracle's geometry of "
                        "the same frames (representative post-processing with random weights); model: "
                        "the core gets the model's outputs")
    p.add_argument("--oracle-noise", type=float, default=0.01, help="OraclePredictor noise (default %(default)s)")
    p.add_argument("--config", choices=params.BY_NAME["model_config"].choices,
                   help="the node parameter model_config (default: the node's)")
    p.add_argument("--device", help="the node parameter device (default: the node's, auto)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a node parameter value, read as a -p NAME:=VALUE is (repeatable)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop pushing frames once the stream has run this long (the result says truncated)")


# ------------------------------------------------------------------ the node's values

def node_values(args) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the node parameter values the core is built from, the overrides given): the node's defaults
    with test weights and ``--config`` / ``--device`` / ``--set``, validated and resolved as the node
    does (window and merging settings left at 0 / auto resolved; loop_closure off without gtsam);
    SystemExit with the node's reasons when the values are invalid."""
    overrides = parse_sets(args.set)
    if args.config:
        overrides.setdefault("model_config", args.config)
    if args.device:
        overrides.setdefault("device", args.device)
    values = {**params.defaults(), "allow_test_weights": True, **overrides}
    errors = params.validate(values)
    if errors:
        raise SystemExit("httm-bench stream: invalid node parameters: " + "; ".join(errors))
    return core_values(params.resolved(values), LOG.warning), overrides      # as declare_all, then the node


def parse_sets(items: Sequence[str]) -> Dict[str, Any]:
    """["name=value", ...] -> {name: value}: a string parameter takes the text; the others read it
    as the node reads ``-p name:=value`` (bool, integer, double; an integer for a double parameter
    is a double), so that a wrong type is refused by the node's own checks."""
    out: Dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in params.BY_NAME:
            raise SystemExit(f"httm-bench stream: --set {item!r}: expected NAME=VALUE with a node parameter NAME")
        param = params.BY_NAME[name]
        out[name] = text if param.type is str else params.coerce(param, params._scalar(text))
    return out


def frame_hw(args, values: Dict[str, Any]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((H, W) of the frames, (H, W) of the model input they map to); SystemExit when the oracle
    cannot serve them (its ground truth is at the frames' size, the core's images at the model's)."""
    width = image_width(values)[0]
    hw = tuple(args.image_size) if args.image_size else model_input_size(480, 640, width)
    model_hw = model_input_size(hw[0], hw[1], width)
    if args.geometry == "oracle" and tuple(model_hw) != tuple(hw):
        raise SystemExit(f"httm-bench stream: frames {hw[1]}x{hw[0]} become model input {model_hw[1]}x{model_hw[0]} "
                         f"(image_size {width}); --geometry oracle needs frames at the model input size: leave "
                         "--image-size out, or give a size both of whose sides are multiples of 14 and "
                         "--set image_size=<its width>")
    return hw, model_hw


# ------------------------------------------------------------------ the predictor

class OracleGeometry:
    """Predictor: ``model`` (the node's predictor) runs on every window for its time and stats, then
    ``oracle``'s prediction of the same frame ids is returned with the model's stats merged into its
    own (``model_s``, ``merge`` ... are the model's; ``oracle`` and ``oracle_s`` the oracle's)."""

    def __init__(self, model, oracle: OraclePredictor) -> None:
        self.model, self.oracle = model, oracle

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        """images [S,3,H,W] in [0,1] -> the oracle's WindowPrediction [S,...] with both stats."""
        stats = self.model.predict(images, frame_ids).stats
        start = time.perf_counter()
        pred = self.oracle.predict(images, frame_ids)
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
        pred.stats = {**pred.stats, **stats, "oracle_s": time.perf_counter() - start}
        return pred


def stream_predictor(runner: ModelRunner, geometry: str, seq, noise: float, seed: int):
    """The predictor the core runs: the runner's (model geometry) or the runner's model followed by
    the oracle, inside the node's SafePredictor."""
    if geometry == "model":
        return runner.predictor
    return SafePredictor(OracleGeometry(runner.predictor.inner, OraclePredictor(seq, noise=noise, seed=seed)),
                         log=LOG.error)


# ------------------------------------------------------------------ per window and summary

def window_record(result: WindowResult, seconds: float, flush: bool) -> Dict[str, Any]:
    """One window: its latency (``seconds`` of the push that returned it, less the oracle's time),
    the core's per-stage seconds (predict and total less the oracle's), the model's stats."""
    stats = result.stats
    oracle_s = float(stats.get("oracle_s", 0.0))
    timings = dict(result.timings)
    for stage in ("predict", "total"):
        timings[stage] = timings.get(stage, 0.0) - oracle_s
    new = result.num_keyframes - result.num_overlap if result.accepted else 0
    return {"index": result.index, "last_frame": int(max(result.frame_ids)), "keyframes": result.num_keyframes,
            "overlap": result.num_overlap, "new_keyframes": int(new), "accepted": bool(result.accepted),
            "reason": result.alignment.reason, "dropped": len(result.dropped), "tracking_state": result.tracking_state,
            "segment": result.segment, "flush": flush, "latency_s": seconds - oracle_s, "wall_s": seconds,
            "oracle_s": oracle_s, "model_s": stats.get("model_s"), "error": stats.get("error"),
            "compiled": stats.get("compiled"), "merge": stats.get("merge"), "timings": timings}


def latency_summary(seconds: List[float]) -> Dict[str, Any]:
    """First window, then p50/p90/p99/max/mean over the windows after it (as ``httm-bench windows``)."""
    out: Dict[str, Any] = {"first_window_s": seconds[0] if seconds else None,
                           "windows_after_first": max(0, len(seconds) - 1)}
    rest = np.asarray(seconds[1:], dtype=np.float64)
    if rest.size:
        p = {q: float(np.percentile(rest, q)) for q in (50, 90, 99)}
        out.update({"p50_s": p[50], "p90_s": p[90], "p99_s": p[99], "max_s": float(rest.max()),
                    "mean_s": float(rest.mean()), "first_over_p50": seconds[0] / p[50] if p[50] > 0 else None})
    return out


def stage_summary(windows: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """stage -> {median_s, total_s, windows} over the windows that ran it (plus the model's forward
    and, with oracle geometry, the oracle's own time)."""
    out = {}
    for stage in STAGES + ("model", "oracle"):
        key = {"model": "model_s", "oracle": "oracle_s"}.get(stage)
        vals = [w[key] if key else w["timings"].get(stage) for w in windows]
        vals = [float(v) for v in vals if v is not None]
        if vals and (stage != "oracle" or any(vals)):
            out[stage] = {"median_s": float(np.median(vals)), "total_s": float(sum(vals)), "windows": len(vals)}
    return out


def summary(windows: List[Dict[str, Any]], stream_s: float, frames_pushed: int) -> Dict[str, Any]:
    """New keyframes/s (over the windows' latencies and over the stream), latency, stages."""
    new = sum(w["new_keyframes"] for w in windows)
    window_s = sum(w["latency_s"] for w in windows)
    oracle_s = sum(w["oracle_s"] for w in windows)
    stream_s = stream_s - oracle_s
    return {"frames_pushed": frames_pushed, "windows": len(windows), "accepted": sum(w["accepted"] for w in windows),
            "new_keyframes": new, "windows_s": window_s, "stream_s": stream_s,
            "new_keyframes_per_s": new / window_s if window_s > 0 else None,
            "new_keyframes_per_stream_s": new / stream_s if stream_s > 0 else None,
            "frames_per_stream_s": frames_pushed / stream_s if stream_s > 0 else None,
            "latency": latency_summary([w["latency_s"] for w in windows]), "stages": stage_summary(windows)}


def map_summary(rec, seq) -> Dict[str, Any]:
    """Keyframes and points in the map at the end; ATE of segment 0 against the sequence's ground
    truth (either geometry: the synthetic sequence knows its cameras)."""
    c, in_map = rec.counters, sum(len(s.trajectory) for s in rec.segments)
    out = {"keyframes_in_map": in_map, "segments": len(rec.segments),
           "map_points": sum(len(s.map) for s in rec.segments), "keyframes_selected": c.keyframes,
           "keyframes_dropped": c.keyframes_dropped, "keyframes_requeued": c.keyframes_requeued,
           "keyframes_pending": c.keyframes - in_map - c.keyframes_dropped,     # queued, never run (no flush)
           "states": rec.tracker.states()}
    if len(rec.segments[0].trajectory):
        out["trajectory"] = trajectory_metrics(seq, rec.segments[0].trajectory)
    return out


def gpu_memory(device: torch.device) -> Optional[Dict[str, float]]:
    """Peak allocated / reserved GiB since the last reset (None off CUDA)."""
    if device.type != "cuda":
        return None
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB}


# ------------------------------------------------------------------ run

def build(values: Dict[str, Any]) -> Tuple[ModelRunner, float]:
    """The node's model runner (model, warm-up, core) from its values -> (runner, seconds)."""
    start = time.perf_counter()
    runner = build_model_runner(values, warn=LOG.warning, error=LOG.error)
    return runner, time.perf_counter() - start


def warmup_seconds(runner: ModelRunner) -> Optional[float]:
    """Seconds of the node's start-up warm-up: the model's forwards and, on CUDA, the streaming
    core's two scratch windows (None: off or failed)."""
    w = runner.warmup
    if not w or w.get("error"):
        return None
    return float(sum(w["seconds"])) + float((w.get("core") or {}).get("seconds", 0.0))


def run(args, argv: List[str]) -> int:
    values, overrides = node_values(args)
    hw, model_hw = frame_hw(args, values)
    runner, build_s = build(values)
    start, device = time.perf_counter(), str(runner.device)      # rendered where the node runs: seconds on a GPU
    seq = demo_sequence(args.frames, hw[1], hw[0], seed=args.seed, trajectory=args.trajectory,
                        device=device)                                        # images [N,H,W,3] on the host
    sequence = {"frames": args.frames, "image_hw": list(hw), "model_input_hw": list(model_hw), "seed": args.seed,
                "trajectory": args.trajectory, "render_device": device, "render_s": time.perf_counter() - start}
    out = header(args, argv, values, overrides, runner, sequence)
    out["build_s"] = build_s
    if runner.device.type == "cuda":
        out["memory_after_warmup_gib"] = torch.cuda.memory_allocated(runner.device) / GIB
        torch.cuda.reset_peak_memory_stats(runner.device)
    write_json(args.out, out)
    rec = stream(args, out, runner, seq)
    out["summary"].update(map_summary(rec, seq))
    out["complete"] = True
    if rec.loops is not None:
        rec.loops.close()
    write_json(args.out, out)
    print("\n".join(stream_table(out)))
    print(f"wrote {args.out}")
    return 0


def header(args, argv: List[str], values: Dict[str, Any], overrides: Dict[str, Any], runner: ModelRunner,
           sequence: Dict[str, Any]) -> Dict[str, Any]:
    """The result before the stream: provenance, the node's values, geometry, sequence, warm-up."""
    return {"kind": "stream", "env": environment(runner.device, list(argv)), "settings": values,
            "overrides": overrides, "geometry": args.geometry,
            "oracle_noise": args.oracle_noise if args.geometry == "oracle" else None,
            "description": runner.description, "test_weights": runner.test_weights, "sequence": sequence,
            "warmup_s": warmup_seconds(runner), "warmup": runner.warmup, "flush": values["flush_on_shutdown"],
            "complete": False, "truncated": False, "windows": [], "summary": {}}


def stream(args, out: Dict[str, Any], runner: ModelRunner, seq):
    """Push the sequence through the core, recording every window into ``out`` (rewritten each
    window); returns the reconstructor."""
    predictor = stream_predictor(runner, args.geometry, seq, args.oracle_noise, args.seed)
    pushed, started = [0], time.perf_counter()

    def on_push(results: List[WindowResult], seconds: float) -> bool:
        flushing = pushed[0] >= len(seq) or out["truncated"]       # the call after the last push
        if not flushing:
            pushed[0] += 1
        for result in results:
            out["windows"].append(window_record(result, seconds, flushing))
            w = out["windows"][-1]
            LOG.info("window %d: %s, %d new keyframes, %.3f s (model %.3f s)", w["index"],
                     "accepted" if w["accepted"] else f"rejected ({w['reason']})", w["new_keyframes"],
                     w["latency_s"], w["model_s"] or 0.0)
            out["summary"] = {**summary(out["windows"], time.perf_counter() - started, pushed[0]),
                              "gpu_memory": gpu_memory(runner.device)}
            write_json(args.out, out)
        if args.budget_s is not None and not out["truncated"] and time.perf_counter() - started > args.budget_s:
            out["truncated"] = True
        return out["truncated"]

    rec = runner.reconstructor                                  # the node's own core, as built
    rec.predictor = predictor
    _, wall = push_stream(seq, rec, on_push, flush=out["flush"])
    out["summary"] = {**summary(out["windows"], wall, pushed[0]), "gpu_memory": gpu_memory(runner.device)}
    return rec


# ------------------------------------------------------------------ table

def _f(x, fmt: str = "{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def stream_table(result: Dict[str, Any]) -> List[str]:
    """Markdown lines: one row of the summary, then the per-stage medians and totals."""
    s, lat = result.get("summary") or {}, (result.get("summary") or {}).get("latency") or {}
    cfg = result.get("settings") or {}
    mem = (s.get("gpu_memory") or {}).get("peak_allocated_gib")
    ate = (s.get("trajectory") or {}).get("ate_pct")
    seq = result.get("sequence") or {}
    out = ["| geometry | device | model | windows K/O | frames | windows accepted | new keyframes | "
           "new kf/s (windows) | new kf/s (stream) | first window s | p50 s | p90 s | p99 s | max s | "
           "first / p50 | warm-up s | GPU peak GiB | keyframes in map | ATE % |",
           "|---" * 19 + "|",
           f"| {result.get('geometry', '-')} | {(result.get('env') or {}).get('device', '-')} | "
           f"{_model_name(cfg)} {cfg.get('merge_mode', '')} | {cfg.get('window_size', '-')}/"
           f"{cfg.get('window_overlap', '-')} {cfg.get('window_mode', '')} | {s.get('frames_pushed', '-')}"
           f"{' (truncated)' if result.get('truncated') else ''} | {s.get('accepted', '-')}/{s.get('windows', '-')} | "
           f"{s.get('new_keyframes', '-')} | {_f(s.get('new_keyframes_per_s'), '{:.1f}')} | "
           f"{_f(s.get('new_keyframes_per_stream_s'), '{:.1f}')} | {_f(lat.get('first_window_s'))} | "
           f"{_f(lat.get('p50_s'))} | {_f(lat.get('p90_s'))} | {_f(lat.get('p99_s'))} | {_f(lat.get('max_s'))} | "
           f"{_f(lat.get('first_over_p50'), '{:.2f}')} | {_f(result.get('warmup_s'), '{:.2f}')} | "
           f"{_f(mem, '{:.2f}')} | {s.get('keyframes_in_map', '-')} | {_f(ate)} |",
           "",
           f"Per stage ({seq.get('image_hw', ['?', '?'])[1]}x{seq.get('image_hw', ['?', '?'])[0]} frames; "
           f"geometry {result.get('geometry', '-')}"
           + ("; predict and total exclude the oracle's own time)" if result.get("geometry") == "oracle" else ")")
           + ":",
           "",
           "| stage | median s | total s | windows |",
           "|---|---|---|---|"]
    for stage, row in (s.get("stages") or {}).items():
        out.append(f"| {stage} | {_f(row['median_s'], '{:.4f}')} | {_f(row['total_s'])} | {row['windows']} |")
    gap = outside_stages(result.get("windows") or [])
    if gap:
        out += ["", "Outside every stage (a window's latency less its stages but `preprocess`, which its "
                "frames paid in earlier pushes: the last frame's keyframe selection and preprocessing, "
                f"{'work before 605259e timed nowhere, ' if 'context' not in (s.get('stages') or {}) else ''}"
                f"the core's bookkeeping): first window {gap[0]:.3f} s, median {gap[1]:.3f} s, max {gap[2]:.3f} s."]
    return out


def outside_stages(windows: List[Dict[str, Any]]) -> Optional[Tuple[float, float, float]]:
    """(first, median, max) over the windows of the latency less the core's stages after preprocessing
    (``total - preprocess``: the new keyframes' preprocessing ran in the earlier pushes); None if none."""
    gap = [w["latency_s"] - w["timings"]["total"] + w["timings"].get("preprocess", 0.0)
           for w in windows if "total" in (w.get("timings") or {})]
    if not gap:
        return None
    return gap[0], float(np.median(gap)), max(gap)


def _model_name(settings: Dict[str, Any]) -> str:
    """The checkpoint's file name, else the model_config preset (test weights)."""
    checkpoint = settings.get("checkpoint") or ""
    return Path(checkpoint).stem if checkpoint else f"{settings.get('model_config', '-')} (test weights)"
