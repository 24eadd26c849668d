"""The node's outputs as they arrive (serialized, for the output bag), its latest diagnostics, and
when it is idle."""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Tuple


class Recorder:
    """Records the node's outputs as serialized messages (for the output bag) and keeps the
    latest /diagnostics values of the node (to know when it is idle)."""

    def __init__(self, context, node_fqn: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from httm_ros.tools.local_dds import OUTPUTS, message_class

        self.node = Node("httm_demo_recorder", context=context)
        self.node_fqn = node_fqn
        self.records: List[Tuple[str, str, int, bytes]] = []      # (topic, msgtype, receive ns, bytes)
        self.diagnostics: Dict[str, str] = {}
        self.diag_count = 0
        self._lock = threading.Lock()
        self.subs = {}
        for name, (type_path, latched) in OUTPUTS.items():
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            msgtype = type_path.replace(".msg.", "/msg/").replace(".", "/")
            self.subs[name] = self.node.create_subscription(
                message_class(type_path), f"{node_fqn}/{name}", self._store(f"{node_fqn}/{name}", msgtype), qos,
                raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _store(self, topic: str, msgtype: str):
        def callback(data: bytes) -> None:
            with self._lock:
                self.records.append((topic, msgtype, time.time_ns(), bytes(data)))
        return callback

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.node_fqn + ":"):
                with self._lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.diagnostics["_message"] = status.message
                    self.diag_count += 1

    def messages(self, name: str) -> list:
        """Deserialized messages of one output (e.g. "stats"), in arrival order."""
        from rclpy.serialization import deserialize_message

        from httm_ros.tools.local_dds import OUTPUTS, message_class

        cls = message_class(OUTPUTS[name][0])
        topic = f"{self.node_fqn}/{name}"
        with self._lock:
            raws = [r[3] for r in self.records if r[0] == topic]
        return [deserialize_message(raw, cls) for raw in raws]

    def count(self, name: str) -> int:
        topic = f"{self.node_fqn}/{name}"
        with self._lock:
            return sum(1 for r in self.records if r[0] == topic)

    def snapshot(self) -> tuple:
        """(diagnostics values, how many diagnostics arrived so far)."""
        with self._lock:
            return dict(self.diagnostics), self.diag_count


def node_idle(diag: Dict[str, str], stats: list, frames: int, flushed: bool) -> bool:
    """True when the node has taken every frame and no window is running; after the flush also
    no keyframe may be waiting (``stats``: WindowStats received so far, in order)."""
    if not diag:
        return False
    taken = int(diag["frames_received"]) >= frames and int(diag["queue_depth"]) == 0
    no_window = int(diag["windows"]) == len(stats)
    if not flushed:
        return taken and no_window
    last_total = int(stats[-1].keyframes_total) if stats else 0
    return taken and no_window and int(diag["keyframes"]) == last_total
