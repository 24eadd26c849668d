"""The node's health on /diagnostics (diagnostic_msgs/DiagnosticArray, one status per period).

Levels: ERROR when a thread stopped or the last window failed (the model raised, e.g. out of
memory); WARN when not TRACKING, when ``rejected_windows_warn`` windows in a row were rejected, on
test weights, drops or losses; OK only while tracking with none of these. The ``device`` key says
where the model runs (``cpu`` after a ``device: auto`` without CUDA).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from httm_ros.pipeline.tracking import TrackingState

from .codec import DROP_REASONS
from .window_stats import recent_drop_text


class Diagnostics:
    """Builds the node's status from its public state: ``runner``, ``rec``, ``queue``,
    ``counters``, ``window_publisher`` (path, last stats and timings) and whether ``threads_alive()``.
    Drops and losses are reported as new since the previous status. Keys: the frame accounting
    (received = processed + skipped + queued + every ``dropped.<reason>``), see docs/ROS.md."""

    def __init__(self, node) -> None:
        self.node = node
        self._prev: Dict[str, int] = {}              # drop reason / loss counter -> value at the last status

    def message(self, stamp) -> DiagnosticArray:
        """The DiagnosticArray of right now, stamped ``stamp``."""
        node = self.node
        status = DiagnosticStatus(name=f"{node.get_fully_qualified_name()}: reconstruction",
                                  hardware_id=node.runner.description)
        status.level, status.message = self._health()
        status.values = [KeyValue(key=k, value=str(v)) for k, v in self._values().items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = stamp
        return msg

    def _values(self) -> Dict[str, object]:
        node = self.node
        core, counters, queue, publisher = node.rec.counters, node.counters, node.queue, node.window_publisher
        values = {
            "frames_received": counters.frames_received, "keyframes": core.keyframes,
            "windows": core.windows, "windows_accepted": core.windows_accepted,
            "windows_rejected": counters.windows_rejected, "windows_failed": counters.windows_failed,
            "queue_depth": len(queue), "queue_size": queue.maxsize,
            "frames_dropped_queue_full": queue.dropped, "frames_dropped_bad_input": counters.frames_bad_input,
            "last_bad_input": counters.last_bad_input, "frames_rescaled": counters.frames_rescaled,
            "stream_restarts": counters.stream_restarts, "map_points": len(node.rec.map),
            "path_length": len(publisher.path), "test_weights": node.runner.test_weights,
            "windows_rejected_in_row": counters.windows_rejected_in_row, "device": str(node.runner.device),
            "tracking_state": node.rec.tracking_state.value, "map_segments": core.segments,
            "relocalisations": core.relocalisations, "windows_partial": core.windows_partial,
            "keyframes_dropped": core.keyframes_dropped, "keyframes_requeued": core.keyframes_requeued,
            "windows_errored": core.windows_errored,
        }
        if node.values.get("use_depth"):
            scale = node.rec.metric.scale
            values["metric_scale"] = "none yet" if scale is None else f"{scale:.6g}"
        values.update(self._frame_values())
        stats, timings = publisher.last_stats, publisher.last_timings
        if stats is not None:
            values["last_model_ms"] = round(stats.latency_model_ms, 2)
            values["last_node_overhead_ms"] = round(timings.decode_ms + timings.publish_ms, 2)
            values["last_latency_ms"] = round(timings.latency_ms, 1)
        return values

    def _frame_values(self) -> Dict[str, object]:
        """The frame accounting as one consistent reading, one key per drop reason."""
        counters = self.node.counters
        with counters.lock:
            account = counters.snapshot()
            lost, missing = counters.frames_lost_in_transport, counters.frames_estimated_missing
        values: Dict[str, object] = {
            "frames_received": account.received, "frames_processed": account.processed, "frames_skipped": account.skipped,
            "frames_queued": account.queued, "frames_dropped": account.dropped,
            "frames_accounted": account.balanced,
            "frames_lost_in_transport": lost, "frames_estimated_missing": missing,
        }
        values.update({f"dropped.{reason}": count for reason, count in sorted(account.drops.items())})
        values["recent_drops"] = " | ".join(recent_drop_text(*item) for item in account.recent)
        return values

    def _new_since_last(self) -> Tuple[Dict[str, int], int, int]:
        """(drops per reason, frames lost or missing, frames received) since the previous status."""
        counters = self.node.counters
        with counters.lock:
            now = dict(counters.drops, __lost=counters.frames_lost_in_transport,
                       __missing=counters.frames_estimated_missing, __received=counters.frames_received)
        new = {k: v - self._prev.get(k, 0) for k, v in now.items()}
        self._prev = now
        lost = new.pop("__lost") + new.pop("__missing")
        received = new.pop("__received")
        return {k: v for k, v in new.items() if v > 0}, lost, received

    def _loss_note(self, lost: int, received: int) -> str:
        """A warning when more than lost_frames_warn_fraction of the frames sent were lost."""
        fraction = self.node.values.get("lost_frames_warn_fraction", 0.05)
        if lost <= 0 or lost <= fraction * (lost + received):
            return ""
        return f"{lost} of {lost + received} frames lost in transport or missing (see qos_depth)"

    def _health(self) -> Tuple[int, str]:
        """(level, message) of the node right now."""
        node = self.node
        drops, lost, received = self._new_since_last()
        new_drops = drops.pop("queue_full", 0)
        if not node.threads_alive():
            return DiagnosticStatus.ERROR, "inference or publisher thread stopped"
        last = node.window_publisher.last_stats
        if last is not None and last.alignment_message.startswith("window failed"):
            return DiagnosticStatus.ERROR, last.alignment_message
        notes = _tracking_notes(node.rec, node.counters.frames_received)
        notes += _metric_notes(node)
        in_row = node.counters.windows_rejected_in_row
        if in_row >= node.values.get("rejected_windows_warn", 3):
            notes.append(f"{in_row} windows rejected in a row")
        if node.runner.test_weights:
            notes.append("TEST WEIGHTS: geometry meaningless")
        if new_drops:
            notes.append(f"inference too slow: {new_drops} frames dropped")
        bad = {r: n for r, n in drops.items() if r in DROP_REASONS}
        if bad:
            notes.append(f"{sum(bad.values())} bad input images ({_reasons(bad)})")
        other = {r: n for r, n in drops.items() if r not in DROP_REASONS}
        if other:
            notes.append(f"{sum(other.values())} frames dropped ({_reasons(other)})")
        loss = self._loss_note(lost, received)
        if loss:
            notes.append(loss)
        if notes:
            return DiagnosticStatus.WARN, "; ".join(notes)
        return DiagnosticStatus.OK, "running (tracking)"


def _tracking_notes(rec, frames_received: int) -> List[str]:
    """OK only while TRACKING: every other state of the streaming core is a WARN note, with the
    reason of the transition that entered it."""
    state = rec.tracking_state
    if state == TrackingState.TRACKING:
        return []
    if state == TrackingState.INITIALISING:
        return ["initialising: no accepted window yet" + ("" if frames_received else " (waiting for images)")]
    history = rec.tracker.history
    reason = f": {history[-1].reason}" if history else ""
    return [f"tracking {state.value}{reason}"]


def _metric_notes(node) -> List[str]:
    """use_depth promises metres: a WARN while the outputs are still in world units (no window with
    enough paired sensor depth yet)."""
    if not node.values.get("use_depth") or node.rec.metric.scale is not None or not node.rec.counters.windows_accepted:
        return []
    return ["metric mode: no scale yet (no window with enough paired depth): outputs in world units"]


def _reasons(counts: Dict[str, int]) -> str:
    return ", ".join(f"{reason} x {count}" for reason, count in sorted(counts.items()))
