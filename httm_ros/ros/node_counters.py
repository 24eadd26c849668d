"""httm_ros/msg/WindowStats from a pipeline WindowResult plus the node's counters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from httm_ros.msg import WindowStats


@dataclass
class NodeCounters:
    """What the node counts itself (the core counts keyframes and windows)."""

    frames_received: int = 0          # image messages received
    frames_bad_input: int = 0         # messages that could not be decoded
    last_bad_input: str = ""          # reason of the last one
    frames_rescaled: int = 0          # frames resized to the stream's input size (size change)
    stream_restarts: int = 0          # new maps started (size change with policy restart, ~/reset)
    windows_published: int = 0        # windows whose outputs were published
    windows_failed: int = 0           # windows whose model run failed (e.g. out of memory)
    windows_rejected: int = 0         # windows the core rejected (alignment or non-finite output)
    worker_errors: int = 0            # unexpected exceptions in the inference thread


@dataclass
class NodeTimings:
    """Node-side milliseconds of one window (everything but the core)."""

    decode_ms: float = 0.0            # decoding the frames received since the previous window
    queue_ms: float = 0.0             # putting those frames in the queue
    host_copy_ms: float = 0.0         # inference thread: outputs to host memory, stats snapshot
    convert_ms: float = 0.0           # publisher thread: messages from the host copies
    publish_calls_ms: float = 0.0     # publisher thread: the publish calls (serialisation, transport)
    latency_ms: float = math.nan      # last keyframe received -> stats published

    @property
    def publish_ms(self) -> float:
        """All output work of the window: host copies + conversion + publish calls."""
        return self.host_copy_ms + self.convert_ms + self.publish_calls_ms

    @property
    def inference_path_ms(self) -> float:
        """What the inference thread spends on the node per window (the rest runs beside it)."""
        return self.host_copy_ms


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
                 core_counters, queue, map_points: int, outliers: int, device: torch.device) -> WindowStats:
    """Fill WindowStats for ``result`` (a pipeline WindowResult); ``header`` is the world frame at
    the window's last keyframe stamp. Latencies in ms; preprocess = node decode + the core's resize."""
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
    msg.map_points = int(map_points)
    msg.frames_received = counters.frames_received
    msg.keyframes_total = int(core_counters.keyframes)
    msg.queue_depth = len(queue)
    msg.frames_dropped_queue_full = int(queue.dropped)
    msg.frames_dropped_bad_input = counters.frames_bad_input
    msg.windows_failed = counters.windows_failed
    msg.gpu_memory_allocated_mb, msg.gpu_memory_peak_mb = gpu_memory_mb(device)
    return msg


def _merge_fields(msg: WindowStats, stats: dict, outliers: int) -> None:
    merge = stats.get("merge") or {}
    msg.merge_mode = str(stats.get("merge_mode", ""))
    msg.kept_q_ratio = float(merge.get("kept_q", 1.0))
    msg.kept_kv_ratio = float(merge.get("kept_kv", 1.0))
    msg.outliers = int(outliers)


def _latency_fields(msg: WindowStats, core: dict, stats: dict, node: NodeTimings) -> None:
    ms = {k: 1e3 * float(v) for k, v in core.items()}
    msg.latency_preprocess_ms = node.decode_ms + node.queue_ms + ms.get("preprocess", 0.0)
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
