"""Bounded, thread-safe hand-over of decoded frames from ROS callbacks to the inference thread.

``put`` never blocks: when the queue is full it drops either the oldest waiting frame
("drop_oldest", low latency) or the incoming one ("drop_newest", contiguous frames), and counts
the drop. ``get`` blocks the worker with a timeout. With ``counters`` (NodeCounters) the queue
moves frames between their counters under the counters' own lock, so that every reading of them
balances (received = processed + skipped + queued + dropped).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any, Deque, Optional

import numpy as np

from .node_counters import NodeCounters

DROP_POLICIES = ("drop_oldest", "drop_newest")


@dataclass
class Frame:
    """One decoded camera frame: rgb uint8 [H, W, 3], its ROS stamp (builtin_interfaces/Time),
    the stamp in seconds, the decode time in ms and when it was received (perf_counter)."""

    rgb: np.ndarray
    stamp: Any
    stamp_sec: float
    decode_ms: float = 0.0
    received: float = field(default=0.0)


class FrameQueue:
    """Bounded FIFO with an explicit drop policy and counters (``received``, ``dropped``)."""

    def __init__(self, maxsize: int, policy: str = "drop_oldest",
                 counters: Optional[NodeCounters] = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.policy = policy
        self.received = 0
        self.dropped = 0
        self.counters = counters if counters is not None else NodeCounters()
        self._items: Deque[Frame] = collections.deque()
        self._cond = threading.Condition(self.counters.lock)
        self._closed = False

    @property
    def policy(self) -> str:
        return self._policy

    @policy.setter
    def policy(self, value: str) -> None:
        if value not in DROP_POLICIES:
            raise ValueError(f"drop policy must be one of {DROP_POLICIES}, got {value!r}")
        self._policy = value

    def put(self, frame: Frame) -> bool:
        """Enqueue without blocking; returns False when ``frame`` itself was dropped."""
        with self._cond:
            self.received += 1
            full = len(self._items) >= self.maxsize
            newest = full and self._policy == "drop_newest"
            self.counters.enter_queue(drop_oldest=full and not newest, dropped_newest=newest)
            if full:
                self.dropped += 1
                if newest:
                    return False
                self._items.popleft()
            self._items.append(frame)
            self._cond.notify()
            return True

    def get(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Oldest frame, or None after ``timeout`` seconds or once closed and empty. A frame
        returned is in flight until ``counters.finish`` says what became of it."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            self.counters.take()
            return self._items.popleft()

    def discard(self, reason: str = "shutdown") -> int:
        """Drop every waiting frame, counted under ``reason``; returns how many."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            self.counters.discard_waiting(count, reason, "queued when the node stopped")
            return count

    def close(self) -> None:
        """Wake the consumer; further ``get`` calls return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
