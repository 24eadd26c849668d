"""The node's health on /diagnostics (diagnostic_msgs/DiagnosticArray, one status per period)."""

from __future__ import annotations

from typing import Dict, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class Diagnostics:
    """Builds the node's status from its public state: ``runner``, ``rec``, ``queue``,
    ``counters``, ``window_publisher`` (path, last stats and timings) and whether ``threads_alive()``.
    Drops are reported as new since the previous status."""

    def __init__(self, node) -> None:
        self.node = node
        self._prev_drops = (0, 0)                    # (queue full, bad input) at the last status

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
        }
        stats, timings = publisher.last_stats, publisher.last_timings
        if stats is not None:
            values["last_model_ms"] = round(stats.latency_model_ms, 2)
            values["last_node_overhead_ms"] = round(timings.decode_ms + timings.publish_ms, 2)
            values["last_latency_ms"] = round(timings.latency_ms, 1)
        return values

    def _health(self) -> Tuple[int, str]:
        """(level, message) of the node right now."""
        node = self.node
        drops = (node.queue.dropped, node.counters.frames_bad_input)
        new_drops, new_bad = drops[0] - self._prev_drops[0], drops[1] - self._prev_drops[1]
        self._prev_drops = drops
        if not node.threads_alive():
            return DiagnosticStatus.ERROR, "inference or publisher thread stopped"
        last = node.window_publisher.last_stats
        if last is not None and last.alignment_message.startswith("window failed"):
            return DiagnosticStatus.ERROR, last.alignment_message
        notes = []
        if node.runner.test_weights:
            notes.append("TEST WEIGHTS: geometry meaningless")
        if new_drops:
            notes.append(f"inference too slow: {new_drops} frames dropped")
        if new_bad:
            notes.append(f"{new_bad} bad input images ({node.counters.last_bad_input})")
        if notes:
            return DiagnosticStatus.WARN, "; ".join(notes)
        if node.counters.frames_received == 0:
            return DiagnosticStatus.OK, "waiting for images"
        return DiagnosticStatus.OK, "running"
