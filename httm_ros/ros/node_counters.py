"""What the node counts and times itself (the core counts keyframes and windows).

Every image message the node receives ends in exactly one place (docs/ROS.md "Drops and counters"):

    frames_received = frames_processed + frames_skipped + frames_queued + sum(drops.values())

``NodeCounters`` moves a frame between these under one lock (the FrameQueue shares it), so a
``snapshot()`` taken from any thread balances exactly.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

RECENT_DROPS = 8                      # distinct drop reasons kept with their count and last detail


@dataclass(frozen=True)
class FrameAccount:
    """One consistent reading of the frame counters (frames)."""

    received: int
    processed: int
    skipped: int
    queued: int
    drops: Dict[str, int]
    recent: Tuple[Tuple[str, int, str], ...]      # (reason, count, last detail), newest first

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    @property
    def balanced(self) -> bool:
        """received = processed + skipped + queued + dropped."""
        return self.received == self.processed + self.skipped + self.queued + self.dropped


@dataclass
class NodeCounters:
    """What the node counts itself (the core counts keyframes and windows). The frame fields move
    only through the methods below (under ``lock``) so that they always balance."""

    frames_received: int = 0          # image messages received (counted once rejected or queued)
    frames_bad_input: int = 0         # messages the codec refused (any of codec.DROP_REASONS)
    last_bad_input: str = ""          # reason of the last one
    frames_processed: int = 0         # frames the keyframe selection took
    frames_skipped: int = 0           # frames the keyframe selection passed over
    frames_waiting: int = 0           # in the FrameQueue
    frames_in_flight: int = 0         # taken by the inference thread, not yet processed or skipped
    drops: Dict[str, int] = field(default_factory=dict)     # reason -> frames dropped
    frames_lost_in_transport: int = 0  # middleware "message lost" events (total count)
    frames_estimated_missing: int = 0  # missing between received stamps (StampGaps)
    frames_rescaled: int = 0          # frames resized to the stream's input size (size change)
    stream_restarts: int = 0          # new maps started (size change with policy restart, ~/reset)
    windows_published: int = 0        # windows whose outputs were published
    windows_failed: int = 0           # windows whose model run failed (e.g. out of memory)
    windows_rejected: int = 0         # windows the core rejected (alignment or non-finite output)
    windows_rejected_in_row: int = 0  # rejected (or failed) since the last accepted window
    worker_errors: int = 0            # unexpected exceptions in the inference thread
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _recent: "collections.OrderedDict[str, str]" = field(default_factory=collections.OrderedDict,
                                                         repr=False, compare=False)

    @property
    def frames_queued(self) -> int:
        return self.frames_waiting + self.frames_in_flight

    def reject(self, reason: str, detail: str = "") -> None:
        """A received frame refused before the queue (bad input: a codec reason)."""
        with self.lock:
            self.frames_received += 1
            self.frames_bad_input += 1
            self.last_bad_input = detail or reason
            self._drop(reason, detail)

    def skip(self) -> None:
        """A received frame the keyframe selection passed over before the queue."""
        with self.lock:
            self.frames_received += 1
            self.frames_skipped += 1

    def enter_queue(self, drop_oldest: bool, dropped_newest: bool) -> None:
        """A received frame put in the FrameQueue (called by it, under the shared lock):
        ``drop_oldest``: a waiting frame made room; ``dropped_newest``: this one was refused."""
        with self.lock:
            self.frames_received += 1
            if dropped_newest:
                self._drop("queue_full", "drop_newest: the incoming frame")
                return
            if drop_oldest:
                self.frames_waiting -= 1
                self._drop("queue_full", "drop_oldest: the oldest waiting frame")
            self.frames_waiting += 1

    def take(self) -> None:
        """The inference thread took a waiting frame (called by the FrameQueue)."""
        with self.lock:
            self.frames_waiting -= 1
            self.frames_in_flight += 1

    def discard_waiting(self, count: int, reason: str, detail: str = "") -> None:
        """``count`` waiting frames discarded (e.g. ``shutdown``; called by the FrameQueue)."""
        with self.lock:
            self.frames_waiting -= count
            for _ in range(count):
                self._drop(reason, detail)

    def finish(self, outcome: str, detail: str = "") -> None:
        """A frame in flight is done: ``processed``, ``skipped`` or a drop reason."""
        with self.lock:
            self.frames_in_flight -= 1
            if outcome == "processed":
                self.frames_processed += 1
            elif outcome == "skipped":
                self.frames_skipped += 1
            else:
                self._drop(outcome, detail)

    def _drop(self, reason: str, detail: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self._recent.pop(reason, None)
        self._recent[reason] = detail
        while len(self._recent) > RECENT_DROPS:
            self._recent.popitem(last=False)

    def snapshot(self) -> FrameAccount:
        """The frame counters as one consistent reading."""
        with self.lock:
            recent = tuple((r, self.drops[r], d) for r, d in reversed(self._recent.items()))
            return FrameAccount(self.frames_received, self.frames_processed, self.frames_skipped,
                                self.frames_queued, dict(self.drops), recent)


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


class StampGaps:
    """Frames missing between received ones, estimated from their stamps: the frame period is a
    low percentile of recent stamp steps (robust to the gaps themselves); a step of ``n`` periods
    (n >= 2, rounded) means ``n - 1`` frames never arrived. Steps seen before the period is known
    are counted once it is. Steps that go back in time, or longer than ``max_gap_periods`` periods
    (a pause, a new bag), count nothing."""

    def __init__(self, history: int = 64, min_steps: int = 8, max_gap_periods: float = 1000.0) -> None:
        self._steps: "collections.deque[float]" = collections.deque(maxlen=history)
        self._unresolved: List[float] = []                    # steps seen while the period was unknown
        self._last: Optional[float] = None
        self.min_steps = min_steps
        self.max_gap_periods = max_gap_periods

    @property
    def period(self) -> Optional[float]:
        """Estimated frame period in seconds, None until ``min_steps`` steps were seen."""
        if len(self._steps) < self.min_steps:
            return None
        ordered = sorted(self._steps)
        return ordered[len(ordered) // 5]                     # 20th percentile

    def add(self, stamp_sec: float) -> int:
        """Record a received frame's stamp; returns the frames newly estimated missing (before it,
        or before earlier frames once the period became known)."""
        last, self._last = self._last, stamp_sec
        if last is None or stamp_sec <= last:
            return 0
        self._steps.append(stamp_sec - last)
        period = self.period
        if period is None or period <= 0:
            self._unresolved.append(stamp_sec - last)
            return 0
        steps, self._unresolved = self._unresolved + [stamp_sec - last], []
        return sum(self._missing(step, period) for step in steps)

    def _missing(self, step: float, period: float) -> int:
        periods = step / period
        if periods > self.max_gap_periods:
            return 0
        return max(0, int(round(periods)) - 1)
