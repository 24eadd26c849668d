"""The node's publisher thread: one window's messages built and published, in order.

The inference thread hands over a :class:`WindowJob` (host copies and the stats snapshot: nothing
here touches the GPU or the core's state) or a :class:`MapJob` (~/map on its own: the whole map on
request (~/publish_map), or, for a new map (~/reset, a restart), an empty ~/map and ~/path that
replace the latched old ones); the publisher thread converts the copies into messages
(:mod:`.messages`) and publishes them, stats last with the time the others took.
"""

from __future__ import annotations

import collections
import queue
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path

from httm_ros.msg import WindowStats

from . import codec
from .messages import OdomLookup, WindowOutputs, to_world_poses, window_messages, world_cloud
from .node_counters import NodeCounters, NodeTimings



@dataclass
class MapJob:
    """~/map outside a window: ``points`` (xyz float32 [N, 3], rgb uint8 [N, 3]; None: no ~/map)
    stamped ``header`` (world frame). ``restart``: a new map starts here: the path is cleared and,
    with ``publish_path``, published empty (late joiners of the latched topics see the new map)."""

    points: Optional[Tuple[np.ndarray, np.ndarray]]
    header: Any                          # std_msgs/Header
    restart: bool = False
    publish_path: bool = True

    @classmethod
    def new_map(cls, header, values: Dict[str, Any]) -> "MapJob":
        """The job of a new map: an empty ~/map (when ``publish_map``) and an empty ~/path."""
        empty = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
        return cls(empty if values["publish_map"] else None, header, True, values["publish_path"])


@dataclass
class WindowJob:
    """One window handed from the inference thread to the publisher thread."""

    outputs: Optional[WindowOutputs]     # host copies (None: window rejected or failed)
    stamps: List[Any]                    # builtin_interfaces/Time per keyframe
    values: Dict[str, Any]               # parameters when the window finished
    stats: WindowStats                   # filled but for latency_publish_ms / latency_total_ms
    timings: NodeTimings
    received: float                      # perf_counter() when its last keyframe arrived
    summary: dict                        # window_stats.window_summary
    input_frame: str = ""                # the input images' header frame_id
    corrected_path: Optional[Tuple[List[Any], np.ndarray]] = None
    """After a pose-graph correction: (stamps, cam_to_world [N, 4, 4] float64, core world) of every
    keyframe of the path, this window's included; replaces the published path (docs/ROS.md "Loop closure")."""


def corrected_poses(stamps: List[Any], cam_to_world: np.ndarray, world_frame: str) -> List[PoseStamped]:
    """The path after a pose-graph correction: one PoseStamped per keyframe (core world [N, 4, 4]
    -> REP-103 world, as every other pose)."""
    poses = codec.poses_from_matrices(to_world_poses(cam_to_world))
    return [PoseStamped(header=codec.make_header(t, world_frame), pose=p) for t, p in zip(stamps, poses)]


class WindowPublisher:
    """Publishes jobs taken from ``jobs`` on ``pub`` (topic -> rclpy publisher) and ``tf`` (a
    tf_publisher or None); keeps the path, the last stats and ``history``."""

    def __init__(self, pub: Dict[str, Any], tf, counters: NodeCounters, history: "collections.deque",
                 log_error: Callable[[str], None], odom_lookup: Optional[OdomLookup] = None) -> None:
        self.pub, self.tf, self.counters, self.history = pub, tf, counters, history
        self.odom_lookup = odom_lookup    # tf_mode odom: the robot's odom -> camera from TF
        self.log_error = log_error
        self.path: List[PoseStamped] = []
        self.closed = False               # shutdown ran out of time: publish nothing more
        self.last_timings = NodeTimings()
        self.last_stats: Optional[WindowStats] = None
        self._publish_call_ms = 0.0

    def run(self, jobs: "queue.Queue") -> None:
        """Thread body: publish jobs in order until a None job (or ``closed``)."""
        while not self.closed:
            job = jobs.get()
            if job is None:
                return
            try:
                if isinstance(job, MapJob):
                    self.publish_map(job)
                else:
                    self.publish(job)
            except Exception as err:  # noqa: BLE001 - the node must survive anything per window
                self.counters.worker_errors += 1
                self.log_error(f"publisher thread: {type(err).__name__}: {err}")

    def publish(self, job: WindowJob) -> None:
        """All outputs of one window; stats last, with the time the others took."""
        timings, values = job.timings, job.values
        self._publish_call_ms = 0.0
        if job.outputs is not None:
            t0 = time.perf_counter()
            msgs = window_messages(job.outputs, job.stamps, values,
                                   with_tf=self.tf is not None and values["publish_tf"],
                                   input_frame=job.input_frame, odom_lookup=self.odom_lookup)
            self._publish_messages(msgs, job.stamps[-1], values, job.corrected_path)
            timings.convert_ms = 1e3 * (time.perf_counter() - t0) - self._publish_call_ms
        timings.publish_calls_ms = self._publish_call_ms
        timings.latency_ms = 1e3 * (time.perf_counter() - job.received)
        job.stats.latency_publish_ms, job.stats.latency_total_ms = timings.publish_ms, timings.latency_ms
        self.last_timings, self.last_stats = timings, job.stats
        self.counters.windows_published += 1
        if values["publish_stats"]:
            self.pub["stats"].publish(job.stats)
        self.history.append({**job.summary, "decode_ms": timings.decode_ms, "queue_ms": timings.queue_ms,
                             "host_copy_ms": timings.host_copy_ms, "convert_ms": timings.convert_ms,
                             "publish_calls_ms": timings.publish_calls_ms, "latency_ms": timings.latency_ms})

    def publish_map(self, job: MapJob) -> None:
        """A MapJob: the path restarted (published empty) and/or ~/map."""
        self._publish_call_ms = 0.0
        if job.restart:
            self.path.clear()
            if job.publish_path:
                self._send("path", Path(header=job.header, poses=[]))
        if job.points is not None:
            self._send("map", world_cloud(job.points, job.header))

    def _publish_messages(self, msgs, stamp, values, corrected_path=None) -> None:
        for topic in ("depth", "depth_confidence", "camera_info"):
            for msg in getattr(msgs, topic):
                self._send(topic, msg)
        if corrected_path is not None:
            self.path = corrected_poses(*corrected_path, values["world_frame"])
        else:
            self.path.extend(msgs.pose)
        if values["publish_pose"]:
            for msg in msgs.pose:
                self._send("pose", msg)
        if values["publish_path"]:
            self._send("path", Path(header=codec.make_header(stamp, values["world_frame"]), poses=self.path))
        if msgs.tf:
            self.tf.send(msgs.tf)
        for topic in ("points", "map"):
            if getattr(msgs, topic) is not None:
                self._send(topic, getattr(msgs, topic))

    def _send(self, topic: str, msg) -> None:
        """Publish on one of ``self.pub``, timing the publish call (serialisation + transport)."""
        t0 = time.perf_counter()
        if self.closed:
            return
        self.pub[topic].publish(msg)
        self._publish_call_ms += 1e3 * (time.perf_counter() - t0)
