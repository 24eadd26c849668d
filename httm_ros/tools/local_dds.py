"""An isolated DDS session on this host, for the demo, the node benchmark and the tests.

- ``ros_env(name)``: environment for an isolated run (a DDS domain of its own derived from the
  process and ``name``, the shared-memory-only Fast DDS profile, localhost discovery);
- ``RosContext``: an rclpy context + executor spinning in a background thread;
- ``OUTPUTS`` / ``message_class``: the node's output topics and their message classes;
- ``make_collector``: a node subscribed to every output of one reconstruct_node;
- ``wait_for(predicate, timeout)``: poll a condition with a deadline (no sleep-and-hope).
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Optional

SHM_PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml"


def shm_profile() -> Path:
    """The SHM-only Fast DDS profile (source tree, or the installed share/httm_ros/config)."""
    if SHM_PROFILE.exists():
        return SHM_PROFILE
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("httm_ros")) / "config" / "fastdds_shm.xml"


def domain_id(name: str) -> int:
    """A DDS domain for (this process, ``name``) in 1..100; differs between test modules/runs."""
    return (zlib.crc32(f"{os.getpid()}:{name}".encode()) % 100) + 1


def ros_env(name: str) -> Dict[str, str]:
    """Environment variables that keep DDS traffic on this host, in a domain of its own."""
    return {
        "ROS_DOMAIN_ID": str(domain_id(name)),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(shm_profile()),
    }


def wait_for(predicate: Callable[[], bool], timeout: float, what: str = "condition",
             interval: float = 0.01) -> None:
    """Return as soon as ``predicate()`` is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class RosContext:
    """An rclpy context (own domain, or ``domain`` when given) with a multi-threaded executor
    spinning in a thread."""

    def __init__(self, name: str, domain: Optional[int] = None) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        from ..ros.spinning import Spinner

        env = ros_env(name)
        if domain is not None:
            env["ROS_DOMAIN_ID"] = str(domain)
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)                      # read when the first participant is created
        self.domain_id = int(env["ROS_DOMAIN_ID"])
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.spinner = Spinner(self.executor)            # survives rclpy's destroy race (ros/spinning.py)
        self.spin_error: Optional[BaseException] = None
        self.nodes: List = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.spinner.spin_until()
        except ExternalShutdownException:
            pass
        except BaseException as err:                # a callback raised: said by the next add()
            self.spin_error = err
            raise

    def add(self, node):
        """Spin ``node`` until ``close`` (which destroys it after the executor has stopped)."""
        if not self._thread.is_alive() and not self.spinner.stopped.is_set():
            raise RuntimeError(f"the executor of this context stopped spinning: {self.spin_error!r}")
        self.executor.add_node(node)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        import rclpy

        self.spinner.shutdown()
        self._thread.join(5.0)                      # spinning stopped: handles are free to go
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


OUTPUTS = {  # topic under the node's namespace -> (message type, latched)
    "points": ("sensor_msgs.msg.PointCloud2", False),
    "map": ("sensor_msgs.msg.PointCloud2", True),
    "depth": ("sensor_msgs.msg.Image", False),
    "depth_confidence": ("sensor_msgs.msg.Image", False),
    "camera_info": ("sensor_msgs.msg.CameraInfo", False),
    "pose": ("geometry_msgs.msg.PoseStamped", False),
    "path": ("nav_msgs.msg.Path", True),
    "stats": ("httm_ros.msg.WindowStats", False),
}


def message_class(path: str):
    """"pkg.msg.Name" -> the message class."""
    module, _, name = path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def make_collector(context, node_fqn: str, name: str = "collector", diagnostics: bool = True):
    """A node storing every message of ``node_fqn``'s outputs in ``.messages[topic]``."""
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    class Collector(Node):
        def __init__(self) -> None:
            super().__init__(name, context=context)
            self.messages: Dict[str, List] = defaultdict(list)
            self._lock = threading.Lock()
            self.subscriptions_by_topic = {}
            for topic, (type_path, latched) in OUTPUTS.items():
                qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
                self.subscriptions_by_topic[topic] = self.create_subscription(
                    message_class(type_path), f"{node_fqn}/{topic}", self._store(topic), qos)
            if diagnostics:
                self.create_subscription(message_class("diagnostic_msgs.msg.DiagnosticArray"), "/diagnostics",
                                         self._store("diagnostics"), 10)

        def _store(self, topic: str):
            def callback(msg) -> None:
                with self._lock:
                    self.messages[topic].append(msg)
            return callback

        def matched(self, topic: str) -> bool:
            """True once the subscription to ``topic`` has found its publisher."""
            return self.subscriptions_by_topic[topic].get_publisher_count() > 0

        def count(self, topic: str) -> int:
            with self._lock:
                return len(self.messages[topic])

        def last(self, topic: str):
            with self._lock:
                return self.messages[topic][-1] if self.messages[topic] else None

    return Collector()


def wait_matched(publisher, count: int = 1, timeout: float = 10.0) -> None:
    """Wait until ``publisher`` has ``count`` subscribers (discovery done)."""
    wait_for(lambda: publisher.get_subscription_count() >= count, timeout,
             f"{count} subscriber(s) on {publisher.topic_name}")

