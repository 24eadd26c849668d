"""reconstruct_node: camera images in, VGGT + HTTM reconstruction out.

A thin ROS 2 shell over :mod:`httm_ros.pipeline` (all geometry lives there):

    image / image/compressed --executor: decode--> FrameQueue (bounded, drop policy, counted)
      --inference thread: StreamingReconstructor.push--> WindowResult --host copies--> job queue (2)
      --publisher thread: messages, publish--> topics

Callbacks never wait for the GPU; the inference thread never waits for DDS (the publisher
converts and publishes window N while the model runs window N+1; it only waits when two
windows are already pending). A window that fails (e.g. CUDA out of memory, see backend.py) is
reported on ~/stats and /diagnostics and the stream goes on.

Subscribes (relative names, remap as usual)
    image             sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, *16)  input_type=raw
    image/compressed  sensor_msgs/CompressedImage (jpeg, png)                   input_type=compressed
Publishes (stamped with the source images' stamps)
    ~/points            PointCloud2 x y z rgb, the latest window's new points    world_frame
    ~/map               PointCloud2, voxel map (transient local: late joiners)   world_frame
    ~/depth             Image 32FC1 per new keyframe, up-to-scale world units,
                        NaN invalid                                              camera_frame
    ~/depth_confidence  Image 32FC1 per new keyframe (VGGT confidence, >= 1)     camera_frame
    ~/camera_info       CameraInfo per new keyframe at the model's resolution    camera_frame
    ~/pose              PoseStamped per new keyframe (camera -> world)           world_frame
    ~/path              nav_msgs/Path of all keyframes (transient local)         world_frame
    /tf                 world_frame -> camera_frame per new keyframe (when tf2_ros is importable)
    ~/stats             httm_ros/WindowStats per window (also rejected / failed ones)
    /diagnostics        diagnostic_msgs/DiagnosticArray, node health every diagnostics_period
Services
    ~/flush   std_srvs/Trigger: run the queued keyframes as a last window (end of a bag)
    ~/reset   std_srvs/Trigger: flush, then start a new map and path

The world frame's origin is the first accepted window's first camera (VGGT convention), its unit
the first window's arbitrary scale: depth and points are metres only up to that scale.
Parameters: see :mod:`httm_ros.ros.params` (one table, with descriptions and ranges).
Large clouds between processes on one host: use config/fastdds_shm.xml (see that file).
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import rclpy
import torch
import torch.nn.functional as F
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger

from httm_ros.msg import WindowStats
from httm_ros.pipeline.stream import model_input_size

from . import codec, params
from .backend import build_backend, filter_config
from .frame_queue import Frame, FrameQueue
from .outputs import WindowOutputs, host_copies, window_messages
from .stats import NodeCounters, NodeTimings, merge_outliers, window_stats

NODE_NAME = "reconstruct_node"
_PER_KEYFRAME_DEPTH = 64           # history of per-keyframe topics: a whole window fits


def _qos(depth: int, latched: bool = False) -> QoSProfile:
    """Reliable output QoS; ``latched`` = transient local (late subscribers get the last one)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def input_qos(values: Dict[str, Any]) -> QoSProfile:
    """Image subscription QoS from the parameters (sensor-data style by default)."""
    reliability = (ReliabilityPolicy.BEST_EFFORT if values["qos_reliability"] == "best_effort"
                   else ReliabilityPolicy.RELIABLE)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=values["qos_depth"], reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def resize_rgb(rgb: np.ndarray, hw) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> uint8 [hw[0], hw[1], 3] (bilinear, antialiased)."""
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=tuple(hw), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


@dataclass
class WindowJob:
    """One window handed from the inference thread to the publisher thread."""

    outputs: Optional[WindowOutputs]     # host copies (None: window rejected or failed)
    stamps: List[Any]                    # builtin_interfaces/Time per keyframe
    values: Dict[str, Any]               # parameters when the window finished
    stats: WindowStats                   # filled but for latency_publish_ms / latency_total_ms
    timings: NodeTimings
    received: float                      # perf_counter() when its last keyframe arrived
    summary: dict


class StampBook:
    """Exact ROS stamps of recent frames by their float seconds (the core carries floats)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._items: "collections.OrderedDict[float, Any]" = collections.OrderedDict()
        self.capacity = capacity

    def add(self, seconds: float, stamp) -> None:
        self._items[seconds] = stamp
        self._items.move_to_end(seconds)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, seconds: float):
        stamp = self._items.get(seconds)
        return stamp if stamp is not None else codec.sec_to_stamp(seconds)


class ReconstructNode(Node):
    """The node. ``predictor`` (optional) replaces the model, e.g. an OraclePredictor in tests."""

    def __init__(self, predictor=None, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        log = self.get_logger()
        self.values: Dict[str, Any] = params.declare_all(self)
        self.backend = build_backend(self.values, predictor, warn=log.warning, error=log.error)
        self.rec = self.backend.reconstructor
        self.queue = FrameQueue(self.values["queue_size"], self.values["drop_policy"])
        self.counters = NodeCounters()
        self.last_timings = NodeTimings()
        self.last_stats: Optional[WindowStats] = None
        self.history: "collections.deque[dict]" = collections.deque(maxlen=1000)   # per-window timings
        self._publish_call_ms = 0.0
        self._stamps = StampBook()
        self._path: List[PoseStamped] = []
        self._accepted_since_map = 0
        self._window_decode_ms = 0.0
        self._window_queue_ms = 0.0
        self._last_frame_received = 0.0
        # (request, frames enqueued when it came): served once those frames were processed or dropped
        self._requests: "collections.deque[tuple[str, int]]" = collections.deque()
        self._frames_taken = 0
        self._filter_update = None
        self._stop = threading.Event()
        self._jobs: "queue.Queue" = queue.Queue(maxsize=2)     # windows waiting for the publisher
        self._make_publishers()
        self._tf = self._make_tf_broadcaster()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._sub = self._make_subscription()
        self.create_service(Trigger, "~/flush", lambda req, res: self._request("flush", res))
        self.create_service(Trigger, "~/reset", lambda req, res: self._request("reset", res))
        self._diag_prev = (0, 0)
        self._diag_timer = self.create_timer(self.values["diagnostics_period"], self._publish_diagnostics)
        self._publisher = threading.Thread(target=self._publish_loop, name="reconstruct_publisher", daemon=True)
        self._publisher.start()
        self._worker = threading.Thread(target=self._run, name="reconstruct_worker", daemon=True)
        self._worker.start()
        log.info(f"ready: {self.backend.description}; subscribed to {self._sub.topic_name} "
                 f"({self.values['qos_reliability']}, depth {self.values['qos_depth']}), windows of "
                 f"{self.values['window_size']} keyframes (overlap {self.values['window_overlap']})")

    # ------------------------------------------------------------------ set-up
    def _make_publishers(self) -> None:
        kf = _qos(_PER_KEYFRAME_DEPTH)
        self.pub = {
            "points": self.create_publisher(PointCloud2, "~/points", _qos(2)),
            "map": self.create_publisher(PointCloud2, "~/map", _qos(1, latched=True)),
            "depth": self.create_publisher(Image, "~/depth", kf),
            "depth_confidence": self.create_publisher(Image, "~/depth_confidence", kf),
            "camera_info": self.create_publisher(CameraInfo, "~/camera_info", kf),
            "pose": self.create_publisher(PoseStamped, "~/pose", kf),
            "path": self.create_publisher(Path, "~/path", _qos(1, latched=True)),
            "stats": self.create_publisher(WindowStats, "~/stats", _qos(10)),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", _qos(10)),
        }

    def _make_tf_broadcaster(self):
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            self.get_logger().info("tf2_ros is not importable: TF world -> camera is NOT published "
                                   "(the same poses are on ~/pose and ~/path)")
            return None
        return TransformBroadcaster(self)

    def _make_subscription(self):
        qos = input_qos(self.values)
        if self.values["input_type"] == "compressed":
            return self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos)
        return self.create_subscription(Image, "image", self._on_image, qos)

    # ------------------------------------------------------------------ callbacks (executor thread)
    def _on_image(self, msg) -> None:
        """Decode and enqueue; never waits for inference."""
        self.counters.frames_received += 1
        t0 = time.perf_counter()
        try:
            rgb = codec.decode_any(msg)
        except codec.ImageDecodeError as err:
            self._bad_input(str(err))
            return
        t1 = time.perf_counter()
        stamp = msg.header.stamp
        frame = Frame(rgb, stamp, codec.stamp_to_sec(stamp), msg.header.frame_id, 1e3 * (t1 - t0), t1)
        kept = self.queue.put(frame)
        self._window_queue_ms += 1e3 * (time.perf_counter() - t1)
        if not kept:
            self.get_logger().warning("inference cannot keep up: dropping incoming frames (drop_newest)",
                                      throttle_duration_sec=5.0)
        elif self.queue.dropped:
            self.get_logger().warning("inference cannot keep up: dropping the oldest queued frames",
                                      throttle_duration_sec=5.0)

    def _bad_input(self, reason: str) -> None:
        self.counters.frames_bad_input += 1
        self.counters.last_bad_input = reason
        self.get_logger().warning(f"dropped a bad input image: {reason}", throttle_duration_sec=5.0)

    def _request(self, what: str, response):
        self._requests.append((what, self.queue.received))
        response.success = True
        response.message = f"{what} queued (after the frames already received)"
        return response

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate run-time updates; apply the safe ones (read-only ones are refused)."""
        changes = {k: v for k, v in params.updates_from(parameters).items() if k in params.BY_NAME}
        errors = params.check_update(self.values, changes)
        if errors:
            return SetParametersResult(successful=False, reason="; ".join(errors))
        new = {**self.values, **changes}
        if new["drop_policy"] != self.values["drop_policy"]:
            self.queue.policy = new["drop_policy"]
        if any(k in changes for k in ("conf_threshold", "conf_percentile", "pixel_stride")):
            self._filter_update = filter_config(new)
        self.values = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        """Inference loop: frames from the queue into the core, results out as messages."""
        while not self._stop.is_set():
            frame = self.queue.get(timeout=0.05)
            try:
                self._apply_filter_update()
                if frame is not None:
                    self._frames_taken += 1
                    self._process(frame)
                self._serve_requests()
            except Exception as err:  # noqa: BLE001 - the node must survive anything per frame
                self.counters.worker_errors += 1
                self.get_logger().error(f"inference thread: {type(err).__name__}: {err}")

    def _apply_filter_update(self) -> None:
        if self._filter_update is not None:
            self.rec.config.filter, self._filter_update = self._filter_update, None

    def _serve_requests(self) -> None:
        """Flush/reset requests whose earlier frames have all been processed (or dropped)."""
        while self._requests:
            what, enqueued_before = self._requests[0]
            if len(self.queue) and self._frames_taken + self.queue.dropped < enqueued_before:
                return                                          # frames from before it still queued
            self._requests.popleft()
            self._publish_results(self.rec.flush())
            if what == "reset":
                self._restart("reset requested")

    def _restart(self, why: str) -> None:
        self.rec.reset()
        self._put_job("restart")                               # the publisher clears the path in order
        self.counters.stream_restarts += 1
        self.get_logger().warning(f"new map and path: {why}")

    def _process(self, frame: Frame) -> None:
        rgb = self._fit_size(frame)
        self._stamps.add(frame.stamp_sec, frame.stamp)
        self._window_decode_ms += frame.decode_ms
        self._last_frame_received = frame.received
        self._publish_results(self.rec.push(rgb, frame.stamp_sec))

    def _fit_size(self, frame: Frame) -> np.ndarray:
        """Apply size_change_policy to a frame the stream cannot take as it is."""
        hw = self.rec.model_hw
        height, width = frame.rgb.shape[:2]
        if hw is None or model_input_size(height, width, self.rec.config.image_width) == hw:
            return frame.rgb
        if self.values["size_change_policy"] == "restart":
            self._publish_results(self.rec.flush())
            self._restart(f"input size changed to {width}x{height}")
            return frame.rgb
        self.counters.frames_rescaled += 1
        self.get_logger().warning(f"input size changed to {width}x{height} (another aspect ratio): "
                                  f"rescaling to the stream's {hw[1]}x{hw[0]}", throttle_duration_sec=5.0)
        return resize_rgb(frame.rgb, hw)

    # ------------------------------------------------------------------ hand-over (worker thread)
    def _publish_results(self, results) -> None:
        """Hand each window to the publisher thread (waits while two are already pending)."""
        for result in results:
            self._put_job(self._window_job(result))

    def _put_job(self, job) -> None:
        """Queue ``job`` for the publisher; gives up only if the publisher thread has died."""
        while True:
            try:
                self._jobs.put(job, timeout=0.1)
                return
            except queue.Full:
                if not self._publisher.is_alive():
                    return

    def _window_job(self, result) -> WindowJob:
        """Everything the publisher needs, taken now: host copies of the outputs (the GPU and the
        core's state are only touched here) and the stats snapshot."""
        t0 = time.perf_counter()
        values = self.values
        stamps = [self._stamps.get(s) for s in result.stamps]
        error = result.stats.get("error")
        self.counters.windows_failed += bool(error)
        outputs = None
        if result.accepted:
            outputs = host_copies(result, values, self._map_snapshot(values))
        else:
            self.counters.windows_rejected += 1
            self.get_logger().warning(f"window {result.index} rejected, not added to the map: "
                                      f"{error or result.alignment.reason}")
        timings = NodeTimings(self._window_decode_ms, self._window_queue_ms)
        self._window_decode_ms = self._window_queue_ms = 0.0
        stats = window_stats(result, codec.make_header(stamps[-1], values["world_frame"]),
                             tokens_per_frame=self.backend.tokens_per_frame(result.image_hw),
                             counters=self.counters, timings=timings, core_counters=self.rec.counters,
                             queue=self.queue, map_points=len(self.rec.map),
                             outliers=merge_outliers(getattr(self.backend.predictor, "model", None)),
                             device=self.backend.device)
        timings.host_copy_ms = 1e3 * (time.perf_counter() - t0)
        return WindowJob(outputs, stamps, values, stats, timings, self._last_frame_received,
                         self._summary(result))

    def _map_snapshot(self, values):
        """The map's points when ~/map is due with this window, else None."""
        self._accepted_since_map += 1
        if not values["publish_map"] or self._accepted_since_map < values["map_publish_every"]:
            return None
        self._accepted_since_map = 0
        return self.rec.map.points()

    def _summary(self, result) -> dict:
        """Per-window record for the history (diagnostics, benchmark)."""
        entry = {"index": result.index, "keyframes": result.num_keyframes,
                 "new_keyframes": result.num_keyframes - result.num_overlap, "accepted": result.accepted,
                 "points": 0 if result.points_xyz is None else int(result.points_xyz.shape[0]),
                 "map_points": len(self.rec.map), "model_ms": 1e3 * float(result.stats.get("model_s", 0.0))}
        entry.update({f"core_{k}_ms": 1e3 * v for k, v in result.timings.items()})
        return entry

    # ------------------------------------------------------------------ publishing (publisher thread)
    def _publish_loop(self) -> None:
        """Convert and publish windows handed over by the inference thread, in order."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if job == "restart":
                    self._path.clear()
                else:
                    self._publish_job(job)
            except Exception as err:  # noqa: BLE001
                self.counters.worker_errors += 1
                self.get_logger().error(f"publisher thread: {type(err).__name__}: {err}")

    def _publish_job(self, job: WindowJob) -> None:
        """All outputs of one window; stats last, with the time the others took."""
        timings, values = job.timings, job.values
        self._publish_call_ms = 0.0
        if job.outputs is not None:
            t0 = time.perf_counter()
            msgs = window_messages(job.outputs, job.stamps, values, with_tf=self._tf is not None and values["publish_tf"])
            self._publish_messages(msgs, job.stamps[-1], values)
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

    def _publish_messages(self, msgs, stamp, values) -> None:
        for topic in ("depth", "depth_confidence", "camera_info"):
            for msg in getattr(msgs, topic):
                self._send(topic, msg)
        self._path.extend(msgs.pose)
        if values["publish_pose"]:
            for msg in msgs.pose:
                self._send("pose", msg)
        if values["publish_path"]:
            self._send("path", Path(header=codec.make_header(stamp, values["world_frame"]), poses=self._path))
        if msgs.tf:
            self._tf.sendTransform(msgs.tf)
        for topic in ("points", "map"):
            if getattr(msgs, topic) is not None:
                self._send(topic, getattr(msgs, topic))

    def _send(self, topic: str, msg) -> None:
        """Publish on one of ``self.pub``, timing the publish call (serialisation + transport)."""
        t0 = time.perf_counter()
        self.pub[topic].publish(msg)
        self._publish_call_ms += 1e3 * (time.perf_counter() - t0)

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: reconstruction",
                                  hardware_id=self.backend.description)
        status.level, status.message = self._health()
        core = self.rec.counters
        pairs = {
            "frames_received": self.counters.frames_received, "keyframes": core.keyframes,
            "windows": core.windows, "windows_accepted": core.windows_accepted,
            "windows_rejected": self.counters.windows_rejected, "windows_failed": self.counters.windows_failed,
            "queue_depth": len(self.queue), "queue_size": self.queue.maxsize,
            "frames_dropped_queue_full": self.queue.dropped, "frames_dropped_bad_input": self.counters.frames_bad_input,
            "last_bad_input": self.counters.last_bad_input, "frames_rescaled": self.counters.frames_rescaled,
            "stream_restarts": self.counters.stream_restarts, "map_points": len(self.rec.map),
            "path_length": len(self._path), "test_weights": self.backend.test_weights,
        }
        if self.last_stats is not None:
            pairs["last_model_ms"] = round(self.last_stats.latency_model_ms, 2)
            pairs["last_node_overhead_ms"] = round(self.last_timings.decode_ms + self.last_timings.publish_ms, 2)
            pairs["last_latency_ms"] = round(self.last_timings.latency_ms, 1)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in pairs.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub["diagnostics"].publish(msg)

    def _health(self):
        """(level, message) of the node right now."""
        drops = (self.queue.dropped, self.counters.frames_bad_input)
        new_drops = drops[0] - self._diag_prev[0]
        new_bad = drops[1] - self._diag_prev[1]
        self._diag_prev = drops
        if not self._worker.is_alive() or not self._publisher.is_alive():
            return DiagnosticStatus.ERROR, "inference or publisher thread stopped"
        if self.last_stats is not None and self.last_stats.alignment_message.startswith("window failed"):
            return DiagnosticStatus.ERROR, self.last_stats.alignment_message
        notes = []
        if self.backend.test_weights:
            notes.append("TEST WEIGHTS: geometry meaningless")
        if new_drops:
            notes.append(f"inference too slow: {new_drops} frames dropped")
        if new_bad:
            notes.append(f"{new_bad} bad input images ({self.counters.last_bad_input})")
        if notes:
            return DiagnosticStatus.WARN, "; ".join(notes)
        if self.counters.frames_received == 0:
            return DiagnosticStatus.OK, "waiting for images"
        return DiagnosticStatus.OK, "running"

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the inference thread (the window in progress finishes first)."""
        self._stop.set()
        self.queue.close()
        self._diag_timer.cancel()
        self._worker.join(timeout)
        self._jobs.put(None)                                   # after the worker's last window
        self._publisher.join(timeout)


def main(args=None) -> int:
    """Entry point of the ``reconstruct_node`` executable; returns the exit status."""
    rclpy.init(args=args)
    try:
        node = ReconstructNode()
    except Exception as err:  # noqa: BLE001 - one clear line for every start-up failure
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {type(err).__name__}: {err}")
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
