"""The tracking state of a stream: a small enum and the one function that changes it.

    INITIALISING --first accepted window--> TRACKING
    TRACKING --lost_after failed windows--> LOST
    LOST --a window anchored on a retrieved keyframe is accepted--> RELOCALISED --next--> TRACKING
    LOST --relocalisation failed for relocalise_timeout_s--> NEW_SEGMENT --next accepted--> TRACKING

A failed window: its anchor/context check failed, or every new keyframe was dropped. NEW_SEGMENT
starts a new map segment with its own world frame (segments are never merged). Every transition
goes through :meth:`Tracker.transition`, is logged once with its reason and kept in ``history``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import List, Optional

LOG = logging.getLogger("httm_ros.pipeline.tracking")


class TrackingState(str, enum.Enum):
    INITIALISING = "INITIALISING"
    TRACKING = "TRACKING"
    LOST = "LOST"
    RELOCALISED = "RELOCALISED"
    NEW_SEGMENT = "NEW_SEGMENT"


# allowed transitions (anything else is a programming error)
_ALLOWED = {
    TrackingState.INITIALISING: {TrackingState.TRACKING},
    TrackingState.TRACKING: {TrackingState.LOST},
    TrackingState.LOST: {TrackingState.RELOCALISED, TrackingState.NEW_SEGMENT},
    TrackingState.RELOCALISED: {TrackingState.TRACKING, TrackingState.LOST},
    TrackingState.NEW_SEGMENT: {TrackingState.TRACKING, TrackingState.LOST},
}


@dataclass
class Transition:
    """One state change: at window ``window`` (index), stream time ``stamp``, with its reason."""

    window: int
    stamp: float
    old: TrackingState
    new: TrackingState
    reason: str

    def as_dict(self) -> dict:
        return {"window": self.window, "stamp": self.stamp, "from": self.old.value, "to": self.new.value,
                "reason": self.reason}


class Tracker:
    """The state, when it was entered, consecutive failures, and the transition history."""

    def __init__(self) -> None:
        self.state = TrackingState.INITIALISING
        self.since_stamp: Optional[float] = None
        self.failures = 0
        self.history: List[Transition] = []
        self.log: logging.Logger = LOG          # where transitions are logged (a scratch core: a silent one)

    def transition(self, new: TrackingState, reason: str, window: int, stamp: float) -> None:
        """Change the state (logged once); a no-op when already in ``new``."""
        if new == self.state:
            return
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"tracking: transition {self.state.value} -> {new.value} is not allowed")
        step = Transition(window, float(stamp), self.state, new, reason)
        self.history.append(step)
        level = logging.WARNING if new in (TrackingState.LOST, TrackingState.NEW_SEGMENT) else logging.INFO
        self.log.log(level, "tracking %s -> %s at window %d (t=%.3f s): %s", self.state.value, new.value,
                     window, stamp, reason)
        self.state, self.since_stamp = new, float(stamp)

    def states(self) -> List[str]:
        """The sequence of states visited, starting with INITIALISING."""
        return [TrackingState.INITIALISING.value] + [t.new.value for t in self.history]
