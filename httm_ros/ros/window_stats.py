"""httm_ros/msg/WindowStats from a pipeline WindowResult plus the node's counters, and the
per-window record the node keeps for diagnostics and the benchmark."""

from __future__ import annotations

import math
from typing import Optional

import torch

from httm_ros.msg import WindowStats

from .node_counters import NodeCounters, NodeTimings


def merge_outliers(model: Optional[torch.nn.Module]) -> int:
    """Query outliers restored in the last forward, summed over merged layers and heads."""
    if model is None:
        return 0
    from httm_ros.httm import merge_stats

    stats = merge_stats(model)
    if stats is None:
        return 0
    return int(sum(int(r.outliers.sum()) for r in stats.records))


def gpu_memory_mb(device: torch.device) -> tuple:
    """(allocated, peak) MiB on ``device``; NaN on the CPU."""
    if device.type != "cuda":
        return math.nan, math.nan
    return torch.cuda.memory_allocated(device) / 2**20, torch.cuda.max_memory_allocated(device) / 2**20


def window_stats(result, header, *, tokens_per_frame: int, counters: NodeCounters, timings: NodeTimings,
                 core_counters, queue, map_points: int, outliers: int, device: torch.device,
                 metric_scale: float = math.nan, side_counts: Optional[dict] = None, loops=None) -> WindowStats:
    """Fill WindowStats for ``result`` (a pipeline WindowResult); ``header`` is the world frame at
    the window's last keyframe stamp. Latencies in ms; preprocess = node decode + the core's resize.
    ``metric_scale``: metres per world unit applied to the outputs (NaN: world units);
    ``side_counts``: the side-input counters (side_inputs.SideCounters.snapshot); ``loops``: the
    core's LoopCloser (``rec.loops``) or None."""
    msg = WindowStats(header=header)
    msg.window_index = int(result.index)
    msg.num_keyframes = int(result.num_keyframes)
    msg.num_overlap_keyframes = int(result.num_overlap)
    msg.image_height, msg.image_width = (int(v) for v in result.image_hw)
    msg.tokens_per_frame = int(tokens_per_frame)
    msg.tokens_total = int(tokens_per_frame * result.num_keyframes)
    _merge_fields(msg, result.stats, outliers)
    _latency_fields(msg, result.timings, result.stats, timings)
    _alignment_fields(msg, result)
    _side_input_fields(msg, result, metric_scale, side_counts or {})
    _loop_fields(msg, loops)
    msg.map_points = int(map_points)
    msg.keyframes_total = int(core_counters.keyframes)
    msg.queue_depth = len(queue)
    msg.frames_dropped_queue_full = int(queue.dropped)
    _frame_fields(msg, counters)
    msg.windows_failed = counters.windows_failed
    msg.gpu_memory_allocated_mb, msg.gpu_memory_peak_mb = gpu_memory_mb(device)
    return msg


def _loop_fields(msg: WindowStats, loops) -> None:
    """Loops accepted / rejected (all reasons) / pending and corrections applied so far (0 without loop closure)."""
    if loops is None or not loops.active:
        return
    msg.loop_closures = int(loops.graph.loops_accepted)
    msg.loops_rejected = int(sum(loops.graph.rejected.values()))
    msg.loops_pending = len(loops.graph.pending)
    msg.pose_graph_corrections = int(loops.corrections)


def _frame_fields(msg: WindowStats, counters: NodeCounters) -> None:
    """The frame accounting, one consistent reading: received = processed + skipped + queued +
    sum(drop_counts); reasons sorted by name."""
    with counters.lock:
        account = counters.snapshot()
        msg.frames_dropped_bad_input = counters.frames_bad_input
        msg.frames_lost_in_transport = counters.frames_lost_in_transport
        msg.frames_estimated_missing = counters.frames_estimated_missing
    msg.frames_received = account.received
    msg.frames_processed = account.processed
    msg.frames_skipped = account.skipped
    msg.frames_queued = account.queued
    msg.drop_reasons = sorted(account.drops)
    msg.drop_counts = [account.drops[r] for r in msg.drop_reasons]
    msg.recent_drops = [recent_drop_text(*item) for item in account.recent]


def recent_drop_text(reason: str, count: int, detail: str) -> str:
    """One line of ``recent_drops``: ``reason x count: detail``."""
    return f"{reason} x {count}: {detail}" if detail else f"{reason} x {count}"


def _merge_fields(msg: WindowStats, stats: dict, outliers: int) -> None:
    merge = stats.get("merge") or {}
    msg.merge_mode = str(stats.get("merge_mode", ""))
    msg.kept_q_ratio = float(merge.get("kept_q", 1.0))
    msg.kept_kv_ratio = float(merge.get("kept_kv", 1.0))
    msg.outliers = int(outliers)


def _latency_fields(msg: WindowStats, core: dict, stats: dict, node: NodeTimings) -> None:
    ms = {k: 1e3 * float(v) for k, v in core.items()}
    msg.latency_preprocess_ms = node.decode_ms + node.queue_ms + ms.get("preprocess", 0.0) + ms.get("context", 0.0)
    msg.latency_model_ms = 1e3 * float(stats.get("model_s", core.get("predict", 0.0)))
    msg.latency_alignment_ms = ms.get("align", 0.0)
    msg.latency_postprocess_ms = max(0.0, ms.get("post", 0.0) - msg.latency_alignment_ms)
    msg.latency_publish_ms = node.publish_ms
    msg.latency_total_ms = node.latency_ms


def _alignment_fields(msg: WindowStats, result) -> None:
    rep = result.alignment
    msg.alignment_accepted = bool(rep.accepted)
    msg.alignment_scale = float(rep.scale)
    msg.alignment_residual = float(rep.residual)
    msg.alignment_inlier_fraction = float(rep.inlier_fraction)
    error = result.stats.get("error")
    msg.alignment_message = "" if rep.accepted else (f"window failed: {error}" if error else rep.reason)
    msg.tracking_state, msg.map_segment = result.tracking_state, int(result.segment)


def _side_input_fields(msg: WindowStats, result, metric_scale: float, side_counts: dict) -> None:
    """Predicted vs given focal length, the metric scale (applied, this window's), side counters."""
    msg.focal_predicted_px = float(getattr(result, "focal_predicted", math.nan))
    msg.focal_given_px = float(getattr(result, "focal_given", math.nan))
    msg.keyframes_with_camera_info = int(getattr(result, "given_intrinsics", 0))
    msg.metric = bool(math.isfinite(metric_scale))
    msg.metric_scale = float(metric_scale)
    report = getattr(result, "metric", None)
    estimate = report.window if report is not None else None
    msg.metric_scale_window = estimate.scale if estimate is not None else math.nan
    msg.metric_scale_spread = estimate.spread if estimate is not None else math.nan
    msg.metric_pixels = estimate.pixels if estimate is not None else 0
    msg.keyframes_with_depth = report.sensor_frames if report is not None else 0
    msg.side_input_counts_names = list(side_counts)
    msg.side_input_counts = [int(v) for v in side_counts.values()]


def window_summary(result, map_points: int) -> dict:
    """Per-window record for the node's history (diagnostics, benchmark); times in ms."""
    entry = {"index": result.index, "keyframes": result.num_keyframes,
             "new_keyframes": result.num_keyframes - result.num_overlap, "accepted": result.accepted,
             "points": 0 if result.points_xyz is None else int(result.points_xyz.shape[0]),
             "map_points": int(map_points), "model_ms": 1e3 * float(result.stats.get("model_s", 0.0))}
    entry.update({f"core_{k}_ms": 1e3 * v for k, v in result.timings.items()})
    return entry
