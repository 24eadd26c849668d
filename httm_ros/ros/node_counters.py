"""What the node counts and times itself (the core counts keyframes and windows)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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
