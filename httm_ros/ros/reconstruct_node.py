"""reconstruct_node: camera images in, VGGT + HTTM reconstruction out.

A thin ROS 2 shell over :mod:`httm_ros.pipeline` (all geometry lives there):

    image / image/compressed --executor: decode, keyframe?--> FrameQueue (keyframes only; bounded,
      drop policy, counted; other frames are counted as skipped)
      --inference thread: StreamingReconstructor.push--> WindowResult --host copies--> job queue (2)
      --publisher thread: messages, publish--> topics

Callbacks never wait for the GPU; the inference thread never waits for DDS (the publisher
converts and publishes window N while the model runs window N+1; it only waits when two
windows are already pending). A window that fails (e.g. CUDA out of memory, see model_runner.py) is
reported on ~/stats and /diagnostics and the stream goes on.

Subscribes (relative names, remap as usual)
    image             sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, *16)  input_type=raw
    image/compressed  sensor_msgs/CompressedImage (jpeg, png)                   input_type=compressed
    camera_info       sensor_msgs/CameraInfo of the images (rectified: D zero)  use_camera_info=true
                      paired by stamp; its K, mapped to the model input, replaces the predicted one
    depth/image       sensor_msgs/Image 16UC1 (mm) or 32FC1 (m), aligned to the images,
                      paired by stamp: metric mode (outputs in metres)          use_depth=true
Publishes (stamped with the source images' stamps)
    ~/points            PointCloud2 x y z rgb, the latest window's new points    world_frame
    ~/map               PointCloud2, voxel map (transient local: late joiners)   world_frame
    ~/depth             Image 32FC1 per new keyframe, world units (metres in metric mode),
                        NaN invalid                                  input frame_id or camera_frame
    ~/depth_confidence  Image 32FC1 per new keyframe (VGGT confidence, >= 1)     input frame_id or camera_frame
    ~/camera_info       CameraInfo per new keyframe at the model's resolution,   input frame_id or camera_frame
                        roi = the source region shown (docs/ROS.md "camera_info and metric scale")
    ~/pose              PoseStamped per new keyframe (camera -> world)           world_frame
    ~/path              nav_msgs/Path of all keyframes (transient local)         world_frame
    /tf                 per new keyframe by tf_mode: camera: world_frame -> tf_child_frame (default
                        <input frame_id>_vggt); odom: world_frame -> odom_frame; none (docs/ROS.md)
    ~/stats             httm_ros/WindowStats per window (also rejected / failed ones)
    /diagnostics        diagnostic_msgs/DiagnosticArray, node health every diagnostics_period
Services
    ~/flush   std_srvs/Trigger: run the queued keyframes as a last window (end of a bag)
    ~/reset   std_srvs/Trigger: flush, then start a new map and path (empty ~/map and ~/path published)
    ~/publish_map  std_srvs/Trigger: publish the whole ~/map now (besides every map_publish_every windows)

The world frame's origin is the first accepted window's first camera (VGGT convention), its unit
the first window's arbitrary scale: depth and points are metres only up to that scale, unless
use_depth (metric mode) scales every length to metres once a scale is known (~/stats: metric).
Parameters: see :mod:`httm_ros.ros.params` (one table, with descriptions and ranges).
Large clouds between processes on one host: use config/fastdds_shm.xml (see that file).

This module is the wiring (parameters, subscription, publishers, threads); the work is in
:mod:`.messages` and :mod:`.window_stats` (what is published), :mod:`.window_publisher` (the
publisher thread), :mod:`.diagnostics`, :mod:`.services` and :mod:`.model_runner` (the model and
the streaming core). The managed (lifecycle) variant with the same body (:class:`ReconstructBody`):
:mod:`.lifecycle_node`.
"""

from __future__ import annotations

import collections
import gc
import math
import queue
import sys
import threading
import time
from typing import Any, Dict, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from httm_ros.msg import WindowStats
from httm_ros.pipeline.keyframes import KeyframeSelector
from httm_ros.pipeline.stream import model_input_size
from httm_ros.vggt.preprocess import resize_rgb

from . import codec, params, services
from .core_config import core_values, filter_config, input_limits
from .diagnostics import Diagnostics
from .frame_queue import Frame, FrameQueue
from .loop_outputs import LoopOutputs
from .messages import host_copies, scaled_cloud, source_region_roi
from .model_runner import build_model_runner
from .node_counters import NodeCounters, NodeTimings, StampGaps
from .node_main import NodeEntry, run
from .side_inputs import SideInputs
from .tf_publisher import make_odom_lookup, make_tf_publisher
from .window_publisher import MapJob, WindowJob, WindowPublisher
from .window_stats import merge_outliers, window_stats, window_summary

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


class ReconstructBody:
    """The node's body, shared by :class:`ReconstructNode` (plain rclpy Node) and the managed
    variant (:mod:`.lifecycle_node`): a mixin placed before the rclpy base class. Its stages:
    ``_configure`` (parameters, model, publishers, services), ``_activate`` (subscription,
    threads, diagnostics timer), ``shutdown``/``_deactivate`` (the one stop path: intake stops,
    queue flushed or dropped, threads joined) and ``_release`` (what ``_configure`` created goes).
    Hooks for the base: ``_checked_parameters`` and ``_output_publisher``."""

    def _checked_parameters(self) -> Dict[str, Any]:
        """The validated parameter values, declared now (raises ParameterError)."""
        return params.declare_all(self)

    def _output_publisher(self, msg_type, topic: str, qos: QoSProfile):
        """One output publisher (a lifecycle publisher in the managed variant)."""
        return self.create_publisher(msg_type, topic, qos)

    def _configure(self, predictor) -> None:
        """Parameters, the model and the core, publishers, services: everything but the intake."""
        log = self.get_logger()
        self._entities_before = self._entities()
        self.values: Dict[str, Any] = self._checked_parameters()
        odom_lookup = make_odom_lookup(self) if self.values["tf_mode"] == "odom" else None   # refused without tf2_ros
        self.runner = build_model_runner(core_values(self.values, log.warning), predictor, warn=log.warning,
                                         error=log.error, core_selects_keyframes=False)
        self.rec = self.runner.reconstructor
        self.selector = KeyframeSelector(self.runner.keyframes)      # in the callback, before the queue
        self.counters = NodeCounters()
        self.queue = FrameQueue(self.values["queue_size"], self.values["drop_policy"], self.counters)
        self.history: "collections.deque[dict]" = collections.deque(maxlen=1000)   # per-window timings
        self._stamps = codec.StampBook()
        self._accepted_since_map = 0
        self._window_decode_ms = 0.0
        self._window_queue_ms = 0.0
        self._last_frame_received = 0.0
        self._last_stamp = codec.sec_to_stamp(0.0)             # of the last frame taken (world headers)
        self._input_frame = ""                                 # the input images' header frame_id
        self._requests = services.StreamRequests()
        self._frames_taken = 0
        self._filter_update = None
        self.loop_outputs = LoopOutputs()                      # corrections republished, exports
        self.side = SideInputs(self.values)                    # camera_info / depth, paired by stamp
        self._make_publishers()
        tf = make_tf_publisher(self) if self.values["tf_mode"] != "none" else None
        self.window_publisher = WindowPublisher(self.pub, tf, self.counters, self.history, log.error, odom_lookup)
        self._set_parameters_callback = self._on_set_parameters
        self.add_on_set_parameters_callback(self._set_parameters_callback)
        services.advertise(self, self._requests, self.queue)
        self._diagnostics = Diagnostics(self)

    def _activate(self) -> None:
        """Intake and work: the subscription, the inference and publisher threads, diagnostics."""
        self._stopping = threading.Event()     # shutdown() began
        self._stop = threading.Event()         # the inference thread ends (now, or once drained)
        self._drain = threading.Event()        # flush_on_shutdown: the queue, then a last window
        self._discard = threading.Event()      # stopping without flush: windows are not handed over
        self._jobs: "queue.Queue" = queue.Queue(maxsize=2)     # windows waiting for the publisher
        self.window_publisher.closed = False
        self._sub = self._make_subscription()
        self._side_subs = self._make_side_subscriptions()
        self._diag_timer = self.create_timer(self.values["diagnostics_period"], self._publish_diagnostics)
        self._publish_thread = threading.Thread(target=self.window_publisher.run, args=(self._jobs,),
                                                name="reconstruct_publisher", daemon=True)
        self._publish_thread.start()
        self._worker = threading.Thread(target=self._run, name="reconstruct_worker", daemon=True)
        self._worker.start()

    def ready_line(self) -> str:
        """The "ready: ..." line (logged by node_main.run once the node is up)."""
        return (f"ready: {self.runner.description}; subscribed to {self._sub.topic_name} "
                f"({self.values['qos_reliability']}, depth {self.values['qos_depth']}), windows of "
                f"{self.values['window_size']} keyframes (overlap {self.values['window_overlap']})")

    # ------------------------------------------------------------------ set-up
    def _make_publishers(self) -> None:
        kf = _qos(_PER_KEYFRAME_DEPTH)
        self.pub = {
            "points": self._output_publisher(PointCloud2, "~/points", _qos(2)),
            "map": self._output_publisher(PointCloud2, "~/map", _qos(1, latched=True)),
            "depth": self._output_publisher(Image, "~/depth", kf),
            "depth_confidence": self._output_publisher(Image, "~/depth_confidence", kf),
            "camera_info": self._output_publisher(CameraInfo, "~/camera_info", kf),
            "pose": self._output_publisher(PoseStamped, "~/pose", kf),
            "path": self._output_publisher(Path, "~/path", _qos(1, latched=True)),
            "stats": self._output_publisher(WindowStats, "~/stats", _qos(10)),
            "diagnostics": self._output_publisher(DiagnosticArray, "/diagnostics", _qos(10)),
        }

    def _make_subscription(self):
        qos = input_qos(self.values)
        self._limits = input_limits(self.values, self.rec.config.image_width)
        codec.apply_pillow_limit(self._limits)
        self._gaps = StampGaps()
        self._warned: Dict[str, float] = {}                   # drop reason -> last warning (monotonic)
        events = SubscriptionEventCallbacks(message_lost=self._on_message_lost)
        if self.values["input_type"] == "compressed":
            return self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos,
                                            event_callbacks=events)
        return self.create_subscription(Image, "image", self._on_image, qos, event_callbacks=events)

    def _make_side_subscriptions(self) -> list:
        """camera_info (use_camera_info) and depth/image (use_depth), same QoS as the images."""
        topics = {"camera_info": (CameraInfo, "camera_info"), "depth": (Image, "depth/image")}
        return [self.create_subscription(topics[kind][0], topics[kind][1],
                                         lambda msg, kind=kind: self._on_side_input(kind, msg), input_qos(self.values))
                for kind in self.side.buffers]

    def _on_side_input(self, kind: str, msg) -> None:
        error = self.side.add(kind, msg)
        if error is not None:
            self._warn_side(error)

    def _warn_side(self, err) -> None:
        """A refused side message (counted in ~/stats side_input_counts); warn every 5 s per reason."""
        now = time.monotonic()
        if now - self._warned.get(err.reason, -math.inf) >= 5.0:
            self._warned[err.reason] = now
            self.get_logger().warning(f"refused a side input ({err.reason}): {err}")

    def threads_alive(self) -> bool:
        """True while both the inference and the publisher thread run."""
        return self._worker.is_alive() and self._publish_thread.is_alive()

    # ------------------------------------------------------------------ callbacks (executor thread)
    def _on_image(self, msg) -> None:
        """Check, decode, select keyframes and enqueue them (the others are counted as skipped);
        never waits for inference."""
        t0 = time.perf_counter()
        stamp = msg.header.stamp
        self._input_frame = msg.header.frame_id
        self.counters.frames_estimated_missing += self._gaps.add(codec.stamp_to_sec(stamp))
        try:
            rgb = codec.decode_any(msg, self._limits)
        except codec.ImageDecodeError as err:
            self._bad_input(err)
            return
        if not self.selector.select(rgb)[0]:                   # rgb uint8 [H, W, 3]
            self.counters.skip()
            return
        t1 = time.perf_counter()
        kept = self.queue.put(Frame(rgb, stamp, codec.stamp_to_sec(stamp), 1e3 * (t1 - t0), t1))
        self._window_queue_ms += 1e3 * (time.perf_counter() - t1)
        if not kept:
            self.get_logger().warning("inference cannot keep up: dropping incoming frames (drop_newest)",
                                      throttle_duration_sec=5.0)
        elif self.queue.dropped:
            self.get_logger().warning("inference cannot keep up: dropping the oldest queued frames",
                                      throttle_duration_sec=5.0)

    def _bad_input(self, err: "codec.ImageDecodeError") -> None:
        """Count a refused input under its reason; warn at most every 5 s per reason."""
        self.counters.reject(err.reason, str(err))
        now = time.monotonic()
        if now - self._warned.get(err.reason, -math.inf) >= 5.0:
            self._warned[err.reason] = now
            count = self.counters.drops.get(err.reason, 0)
            self.get_logger().warning(f"dropped a bad input image ({err.reason}, {count} so far): {err}")

    def _on_message_lost(self, info) -> None:
        """The middleware reports messages lost before they reached this subscription."""
        self.counters.frames_lost_in_transport = int(info.total_count)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Validate run-time updates; apply the safe ones (read-only ones are refused)."""
        changes = {k: v for k, v in params.updates_from(parameters).items() if k in params.BY_NAME}
        errors = params.check_update(self.values, changes)
        if errors:
            params.keep_declared_types(self, changes)
            return SetParametersResult(successful=False, reason="; ".join(errors))
        new = {**self.values, **changes}
        if new["drop_policy"] != self.values["drop_policy"]:
            self.queue.policy = new["drop_policy"]
        if any(k in changes for k in ("conf_threshold", "conf_percentile", "pixel_stride")):
            self._filter_update = filter_config(new)
        self.values = new
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        self.pub["diagnostics"].publish(self._diagnostics.message(self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        """Inference loop: frames from the queue into the core, results out as messages."""
        while not self._stop.is_set():
            frame = self.queue.get(timeout=0.05)
            if frame is None and self._drain.is_set():
                self._last_window()
                return
            try:
                self._apply_filter_update()
                if frame is not None:
                    self._frames_taken += 1
                    self._process(frame)
            except Exception as err:  # noqa: BLE001 - the node must survive anything per frame
                self._worker_error(err)
            try:                      # flush/reset requests are served even after a failed frame
                self._serve_requests()
            except Exception as err:  # noqa: BLE001
                self._worker_error(err)

    def _worker_error(self, err: Exception) -> None:
        self.counters.worker_errors += 1
        self.get_logger().error(f"inference thread: {type(err).__name__}: {err}")

    def _apply_filter_update(self) -> None:
        if self._filter_update is not None:
            self.rec.config.filter, self._filter_update = self._filter_update, None

    def _serve_requests(self) -> None:
        """Flush/reset requests whose earlier frames have all been processed (or dropped)."""
        for what in self._requests.due(self._frames_taken, self.queue):
            if what == "publish_map":
                self._put_job(MapJob(scaled_cloud(self.rec.map.points(), self._metric_scale() or 1.0),
                                     self._world_header()))
                continue
            self._publish_results(self.rec.flush())
            if what == "reset":
                self._restart("reset requested")

    def _world_header(self):
        """Header in the world frame, stamped with the last frame the inference thread took."""
        return codec.make_header(self._last_stamp, self.values["world_frame"])

    def _restart(self, why: str) -> None:
        self.rec.reset()
        self._accepted_since_map = 0
        self._put_job(MapJob.new_map(self._world_header(), self.values))   # in order after the last window
        self.counters.stream_restarts += 1
        self.get_logger().warning(f"new map and path: {why}")

    def _process(self, frame: Frame) -> None:
        """One frame into the core; counted as processed (a keyframe), skipped, or dropped as
        ``inference_error`` when the core raises."""
        try:
            rgb = self._fit_size(frame)
            self._stamps.add(frame.stamp_sec, frame.stamp)
            self._window_decode_ms += frame.decode_ms
            self._last_frame_received = frame.received
            self._last_stamp = frame.stamp
            keyframes = self.rec.counters.keyframes
            k, depth, refused = self.side.pair(frame.stamp_sec, frame.rgb.shape[:2], rgb.shape[:2], self.values)
            if refused is not None:
                self._warn_side(refused)
            results = self.rec.push(rgb, frame.stamp_sec, intrinsics=k, depth=depth)
        except Exception as err:
            self.counters.finish("inference_error", f"{type(err).__name__}: {err}")
            raise
        self.counters.finish("processed" if self.rec.counters.keyframes > keyframes else "skipped")
        self._publish_results(results)

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
        return resize_rgb(frame.rgb, hw)                      # [hw[0], hw[1], 3], as VGGT's preprocessing

    # ------------------------------------------------------------------ hand-over (worker thread)
    def _publish_results(self, results) -> None:
        """Hand each window to the publisher thread (waits while two are already pending); none
        once a stop without flush began (the window in flight is discarded)."""
        for result in results:
            if self._discard.is_set():
                return
            self._put_job(self._window_job(result))

    def _put_job(self, job, deadline: Optional[float] = None) -> None:
        """Queue ``job`` for the publisher; gives up if the publisher thread has died or at
        ``deadline`` (time.monotonic(), shutdown)."""
        while True:
            try:
                self._jobs.put(job, timeout=0.1)
                return
            except queue.Full:
                if not self._publish_thread.is_alive() or (deadline is not None and time.monotonic() > deadline):
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
        self.counters.windows_rejected_in_row = 0 if result.accepted else self.counters.windows_rejected_in_row + 1
        scale = self._metric_scale()
        if result.accepted:
            corrected = self.loop_outputs.corrected_path(self.rec, self._stamps.get, scale or 1.0,
                                                         self.get_logger().info)
            outputs = host_copies(result, values, self._map_snapshot(values, corrected is not None), scale or 1.0,
                                  self._source_regions(result, values))
        else:
            self.counters.windows_rejected += 1
            self.get_logger().warning(f"window {result.index} rejected, not added to the map: "
                                      f"{error or result.alignment.reason}")
        timings = NodeTimings(self._window_decode_ms, self._window_queue_ms)
        self._window_decode_ms = self._window_queue_ms = 0.0
        stats = window_stats(result, codec.make_header(stamps[-1], values["world_frame"]),
                             tokens_per_frame=self.runner.tokens_per_frame(result.image_hw),
                             counters=self.counters, timings=timings, core_counters=self.rec.counters,
                             queue=self.queue, map_points=len(self.rec.map),
                             outliers=merge_outliers(getattr(self.runner.predictor, "model", None)),
                             device=self.runner.device, metric_scale=scale or math.nan,
                             side_counts=self.side.counters.snapshot(), loops=self.rec.loops)
        timings.host_copy_ms = 1e3 * (time.perf_counter() - t0)
        return WindowJob(outputs, stamps, values, stats, timings, self._last_frame_received,
                         window_summary(result, len(self.rec.map)), self._input_frame,
                         corrected if result.accepted else None)

    def _metric_scale(self) -> Optional[float]:
        """Metres per world unit in metric mode (use_depth) once known, else None (world units)."""
        return self.rec.metric.scale if self.values["use_depth"] else None

    def _source_regions(self, result, values) -> Optional[np.ndarray]:
        """~/camera_info roi per new keyframe [K', 4] (None: unknown source sizes, zero roi)."""
        maps = self.side.source_mappings(result.stamps[result.num_overlap:], result.image_hw,
                                         self.rec.config.image_width)
        if any(m is None for m in maps):
            return None
        return np.array([source_region_roi(m, values["camera_info_roi"]) for m in maps], dtype=np.int64)

    def _map_snapshot(self, values, force: bool = False):
        """The map's points when ~/map is due with this window (or ``force``: rebuilt), else None."""
        self._accepted_since_map += 1
        if not values["publish_map"] or (self._accepted_since_map < values["map_publish_every"] and not force):
            return None
        self._accepted_since_map = 0
        return self.rec.map.points()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, flush: Optional[bool] = None, timeout: Optional[float] = None) -> bool:
        """The one stop (docs/ROS.md "Shutdown"): intake stops; with ``flush`` (default
        flush_on_shutdown) the queued frames run and the queued keyframes make a last window, which
        is published; without, the queued frames are dropped (counted, reason ``shutdown``) and the
        window in flight is discarded. The threads are joined within ``timeout`` seconds (default
        shutdown_timeout) and the outputs acknowledged by reliable subscribers. Returns True when
        both threads ended. Idempotent; the node is destroyed by the caller."""
        finished = self._deactivate(flush, timeout, final=True)
        if finished:                                           # the core is idle: loop closure exports
            self._export_loops()
        return finished

    def _export_loops(self) -> None:
        """Loop closure exports (``loop_export_dir``; once per core), with the core idle."""
        for path in self.loop_outputs.export(self.rec, self.values["loop_export_dir"]):
            self.get_logger().info(f"loop closure export: {path}")

    def _deactivate(self, flush: Optional[bool] = None, timeout: Optional[float] = None,
                    final: bool = False) -> bool:
        """``shutdown``'s stop; not ``final`` (a lifecycle deactivate) the queue stays open, so
        that ``_activate`` can start again."""
        if self._stopping.is_set():
            return not self._threads_running()
        self._stopping.set()
        flush = self.values["flush_on_shutdown"] if flush is None else flush
        timeout = self.values["shutdown_timeout"] if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._stop_intake()
        self._stop_worker(flush, timeout, deadline, close_queue=final)
        self._put_job(None, deadline)                          # after the worker's last window
        self._publish_thread.join(max(0.0, deadline - time.monotonic()))
        if self._publish_thread.is_alive():
            self.window_publisher.closed = True
            self.get_logger().warning(f"the publisher thread did not finish within shutdown_timeout "
                                      f"({timeout:g} s): the rest of its window is not published")
        self._wait_acknowledged(deadline)
        return not self._threads_running()

    def _stop_intake(self) -> None:
        """No more frames or diagnostics: the subscription and the timer go."""
        self._diag_timer.cancel()
        self.destroy_timer(self._diag_timer)
        self.destroy_subscription(self._sub)
        for sub in self._side_subs:
            self.destroy_subscription(sub)

    def _stop_worker(self, flush: bool, timeout: float, deadline: float, close_queue: bool = True) -> None:
        log = self.get_logger()
        if flush:
            log.info(f"flush_on_shutdown: running the {len(self.queue)} queued frames and the last "
                     "window before exiting")
            self._drain.set()
        else:
            self._discard.set()
            self._stop.set()
            dropped = self.queue.discard("shutdown")
            log.info(f"dropped at shutdown: {dropped} queued frames, window in flight discarded")
        if close_queue:                                        # else the worker sees the events within 0.05 s
            self.queue.close()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():
            self._discard.set()
            self._stop.set()
            log.warning(f"the inference thread did not finish within shutdown_timeout ({timeout:g} s): "
                        "the window it runs is discarded")
        late = self.queue.discard("shutdown")                  # a callback still running at the stop
        if late:
            log.info(f"dropped at shutdown: {late} frames that arrived while stopping")

    def _last_window(self) -> None:
        """flush_on_shutdown, queue drained: the queued keyframes as a last window, published."""
        try:
            self._publish_results(self.rec.flush())
        except Exception as err:  # noqa: BLE001 - reported; the stop goes on
            self.counters.worker_errors += 1
            self.get_logger().error(f"inference thread (last window): {type(err).__name__}: {err}")

    def _wait_acknowledged(self, deadline: float) -> None:
        """Reliable outputs already published reach their subscribers before the node goes."""
        for publisher in self.pub.values():
            left = deadline - time.monotonic()
            if left <= 0 or not publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                return

    def _threads_running(self) -> bool:
        return any(t is not None and t.is_alive() for t in (getattr(self, "_worker", None),
                                                             getattr(self, "_publish_thread", None)))

    def _entities(self) -> Dict[str, set]:
        """The node's DDS entities and timers now (those the rclpy base created stay at _release)."""
        return {"publishers": set(self.publishers), "subscriptions": set(self.subscriptions),
                "services": set(self.services), "timers": set(self.timers)}

    def _release(self) -> None:
        """Undo ``_configure`` after a stop: its publishers, services, subscriptions (TF) and
        timers, the parameter callback, and the model with the core (memory returned)."""
        before = getattr(self, "_entities_before", None)
        if before is None:
            return
        for kind, entities in self._entities().items():
            for entity in entities - before[kind]:
                getattr(self, f"destroy_{kind[:-1]}")(entity)
        if getattr(self, "_set_parameters_callback", None) is not None:
            self.remove_on_set_parameters_callback(self._set_parameters_callback)
        self._set_parameters_callback = None
        self._entities_before = None
        self.runner = self.rec = self.selector = self.window_publisher = self._diagnostics = None
        self.pub = {}
        gc.collect()

    def _abandon_start(self) -> None:
        """A start that failed or was stopped (StopRequest): the threads, if they started, and every
        DDS entity created so far go, so nothing is left behind (/dev/shm included)."""
        if getattr(self, "_worker", None) is not None:
            self.shutdown(flush=False, timeout=1.0)
        elif getattr(self, "_publish_thread", None) is not None:
            self._jobs.put(None)
        self.destroy_node()


class ReconstructNode(ReconstructBody, Node):
    """The node. ``predictor`` (optional) replaces the model, e.g. an OraclePredictor in tests."""

    def __init__(self, predictor=None, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self._configure(predictor)
            self._activate()
        except BaseException:        # a start-up error, or a stop signal (StopRequest) in the model build
            self._abandon_start()
            raise


ENTRY = NodeEntry(name=NODE_NAME, node_class=ReconstructNode, stop=ReconstructNode.shutdown,
                  abandon=ReconstructNode._abandon_start, values=lambda node: node.values,
                  up_line=ReconstructNode.ready_line)


def main(args=None) -> int:
    """Entry point of the ``reconstruct_node`` executable; returns the exit status: 0 after a
    SIGINT/SIGTERM at any moment (docs/ROS.md "Shutdown"), 2 when the node cannot start."""
    return run(ENTRY, args)


if __name__ == "__main__":
    sys.exit(main())
