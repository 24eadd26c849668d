"""Every parameter of reconstruct_node, declared from one table, with validation.

``PARAMS`` lists name, default (its Python type is the parameter type), description, numeric
range (and step) or choices, and whether the value may change at run time (``runtime=True``:
thresholds, frame ids, output switches; everything that shapes the model, the windows or the
subscriptions is read-only). The declared ranges ARE the validation: the same table makes the ROS
descriptors (``ros2 param describe``) and :func:`check_value`, and a value inside its range is
accepted by the streaming core on its own. What depends on two parameters is one of ``RULES``,
stated in words and reported with the values (docs/ROS.md "Parameters").

``validate`` checks a whole set of values and returns the reasons for rejection; it needs no ROS,
so it is unit-tested directly. The rclpy glue (declaring, integers for doubles, type errors that
name the type, ``-p`` overrides that a later ``--params-file`` replaced) is at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

MERGE_MODES = ("none", "uniform", "httm")


@dataclass(frozen=True)
class Param:
    """One node parameter. ``range`` is inclusive (lo, hi) for int/float; ``step`` (int only):
    the value is lo + a multiple of step; ``choices`` for str."""

    name: str
    default: Any
    description: str
    range: Optional[Tuple[float, float]] = None
    choices: Optional[Tuple[str, ...]] = None
    runtime: bool = False
    step: int = 0

    @property
    def type(self) -> type:
        return type(self.default)


_OUTPUTS = ("points", "map", "depth", "depth_confidence", "camera_info", "pose", "path", "tf", "stats")

PARAMS: Tuple[Param, ...] = (
    # --- input -----------------------------------------------------------------------------
    Param("input_type", "raw", "Subscribe to 'image' (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, "
          "mono8 and 16-bit variants) or to 'image/compressed' (CompressedImage: jpeg, png).",
          choices=("raw", "compressed")),
    Param("qos_reliability", "best_effort", "Reliability of the image subscription; best_effort "
          "(sensor data) connects to both kinds of publisher, reliable only to reliable ones.",
          choices=("best_effort", "reliable")),
    Param("qos_depth", 5, "History depth of the image subscription.", range=(1, 1000)),
    Param("queue_size", 32, "Frames waiting for the inference thread; beyond it frames are "
          "dropped by drop_policy and counted.", range=(1, 10000)),
    Param("drop_policy", "drop_oldest", "Which frame to drop when the queue is full: the oldest "
          "waiting one (keeps latency low) or the incoming one (keeps frames contiguous).",
          choices=("drop_oldest", "drop_newest"), runtime=True),
    Param("max_input_pixels", 3840 * 2160, "Largest input image (width x height, pixels; default "
          "4K UHD), checked from the message header before decoding (compressed: the PNG/JPEG "
          "header); larger frames are dropped and counted (too_many_pixels).", range=(1, 1 << 40)),
    Param("max_aspect_ratio", 8.0, "Largest longer side / shorter side of an input image; more "
          "elongated frames are dropped and counted (aspect_ratio).", range=(1.0, 1e6)),
    Param("lost_frames_warn_fraction", 0.05, "/diagnostics warns when more than this fraction of "
          "the frames sent since its previous status were lost in transport or are missing "
          "between received stamps.", range=(0.0, 1.0), runtime=True),
    Param("rejected_windows_warn", 3, "/diagnostics warns when this many windows in a row were "
          "rejected (alignment, checks or non-finite output) or failed.", range=(1, 100000), runtime=True),
    # --- model -----------------------------------------------------------------------------
    Param("checkpoint", "", "VGGT checkpoint (.safetensors or .pt, e.g. facebook/VGGT-1B "
          "model.safetensors). Required unless allow_test_weights is true."),
    Param("allow_test_weights", False, "Without a checkpoint, run with deterministic test weights "
          "(every stage runs, the geometry is MEANINGLESS). For tests and demos only."),
    Param("model_config", "1b", "Network size: '1b' (VGGT-1B), 'tiny' (test network) or 'synth' "
          "(httm-vggt-synth's size); a checkpoint that carries its config is built with that config.",
          choices=("1b", "tiny", "synth")),
    Param("device", "auto", "Torch device: auto, cpu, cuda or cuda:N. A missing GPU falls back "
          "to CPU with a warning at start-up (auto included); /diagnostics says the device."),
    Param("require_gpu", False, "Refuse to start without CUDA: one error line and exit status 2 "
          "instead of the fallback to CPU."),
    Param("dtype", "bfloat16", "Autocast dtype of the aggregator on CUDA (the camera head stays "
          "float32, the DPT heads follow dpt_dtype); ignored on CPU.",
          choices=("bfloat16", "float16", "float32")),
    Param("dpt_dtype", "bfloat16", "Dtype of the DPT heads (depth, points) on CUDA: they run under "
          "autocast with channels-last convolutions, their outputs stay float32; 'float32' is "
          "VGGT's own fp32 heads; ignored on CPU. Measured on an H100 (VGGT-1B, 24-frame HTTM "
          "windows, compiled): p50 0.268 -> 0.261 s, depth within 6e-3 of the public code's "
          "golden output (docs/ROS.md 'DPT heads dtype').",
          choices=("bfloat16", "float16", "float32")),
    Param("weights_dtype", "float32", "Dtype the model's weights are cast to at load (on the CPU, "
          "before they go to the device): bfloat16 or float16 halve the weight memory (VGGT-1B: "
          "about 5 GB -> 2.5 GB) and the images are fed in the same dtype; outputs stay float32. "
          "On CPU only float32 and bfloat16 are allowed (float16 refuses to start). Measured "
          "difference of bfloat16 weights vs float32: docs/ROS.md 'Weights dtype'.",
          choices=("float32", "bfloat16", "float16")),
    Param("compile_tokenwise", "auto", "Run the blocks' token-wise passes (norms, projections, "
          "RoPE, LayerScale, residuals, MLP) and the DPT heads (the work between their "
          "convolutions) through torch.compile for windows of window_size "
          "frames; the warm-up forward (4:3 frames) pays the compile (seconds on a GPU, cached on "
          "disk); a camera of another aspect ratio pays it once in its first window; other window "
          "sizes run eager. Measured on an H100, VGGT-1B 24-frame windows: HTTM p50 0.411 -> "
          "0.271 s with the passes; on an H200 the heads too, one 24-frame forward 0.245 -> "
          "0.224 s (docs/ROS.md 'Compiled token-wise passes'). 'auto': on with CUDA, off on CPU.",
          choices=("auto", "on", "off")),
    Param("image_size", 0, "Model input width in pixels (multiple of 14); frames are resized "
          "keeping their aspect ratio (height rounded to a multiple of 14, no crop). 0: the width "
          "the checkpoint was trained at (its model card's image_hw, e.g. 168 for the shipped "
          "httm-vggt-synth), else 518 (VGGT-1B's).",
          range=(0, 4088), step=14),
    Param("size_change_policy", "rescale", "A frame whose size maps to a different model input "
          "than the stream's (another aspect ratio): 'rescale' resizes it to the stream's input "
          "size and the stream goes on; 'restart' finishes the current window and starts a new "
          "map and path. Frames of the same aspect ratio are always just resized.",
          choices=("rescale", "restart")),
    Param("warmup_forwards", 1, "Forwards of the model on synthetic frames at the window size "
          "(window_size frames, image_size wide, 4:3) before the node reports ready, so that the "
          "first real window does not pay the one-time costs (Triton compilation and tuning, "
          "plans, memory pool). Measured on an H100 with VGGT-1B HTTM: 13.6 s at 24 frames on a "
          "fresh machine (Triton compiles the merging kernels, cached on disk for later starts), "
          "2.5 s at 64 frames once compiled. On a CPU it costs about one window and buys little. "
          "0 = no warm-up.", range=(0, 100)),
    # --- windows and keyframes ----------------------------------------------------------------
    Param("window_size", 0, "Keyframes per model window (K); at least 3 (2 overlap + 1 new). 0: "
          "the value the checkpoint's model card was measured with (its stream_profile's "
          "measured_with, e.g. 16 for the shipped httm-vggt-synth, while card_stream_profile is "
          "true), else 24.", range=(0, 1024)),
    Param("window_overlap", 0, "Keyframes shared with the previous window, used to align it (O < K); "
          "at least 2, the fewest the alignment accepts (AlignConfig.min_overlap_frames). 0: the "
          "model card's value (6 for httm-vggt-synth, 4 for httm-vggt-synth-merge), else 4.", range=(0, 1023)),
    Param("keyframe_policy", "auto", "'motion': a frame becomes a keyframe when the image moved "
          "by keyframe_min_motion or after keyframe_max_gap frames; 'every': every frame is one. "
          "'auto': the model card's policy ('every' for httm-vggt-synth), else 'motion'.",
          choices=("auto", "motion", "every")),
    Param("keyframe_min_motion", 0.03, "Mean image motion since the last keyframe, as a fraction "
          "of the image width, that makes a keyframe.", range=(0.0, 1.0)),
    Param("keyframe_max_gap", 15, "A keyframe is forced after this many frames.", range=(1, 100000)),
    Param("window_mode", "auto", "'chained': each window is aligned on the overlap of the previous "
          "one; 'anchored': on an anchor keyframe of the map and context keyframes chosen by "
          "covisibility (keyframe store, tracking state, relocalisation; docs/STREAMING.md). "
          "loop_closure needs anchored. 'auto': the model card's mode (anchored for both shipped "
          "networks), else 'anchored'.", choices=("auto", "chained", "anchored")),
    Param("card_stream_profile", True, "Apply the checkpoint model card's stream_profile: the "
          "alignment and tracking checks calibrated to that network's accuracy (httm-vggt-synth: "
          "wider depth tolerances, anchored windows on the last window's keyframes, appearance checks; "
          "docs/STREAMING.md), and the settings it was measured with wherever window_size, "
          "window_overlap, keyframe_policy, window_mode or merge_mode are left at 0 / 'auto'. false: "
          "the library defaults, set on VGGT-level accuracy, and windows of 24/4, motion keyframes, "
          "anchored, httm merging."),
    # --- loop closure (docs/STREAMING.md "Loop closure", docs/ROS.md "Loop closure") --------------
    Param("loop_closure", False, "Pose graph over keyframes (GTSAM iSAM2 on its own thread) with "
          "loops from retrieval verified by a window; after a correction ~/path and ~/map are "
          "republished. Needs window_mode anchored. Without gtsam installed the node logs one "
          "line and runs without it."),
    Param("loop_min_gap", 40, "Keyframes between a loop's two ends (closer ones are ordinary "
          "tracking).", range=(2, 1_000_000)),
    Param("loop_min_similarity", 0.8, "Descriptor cosine similarity of a retrieval hit before it is "
          "verified by a window.", range=(0.0, 1.0)),
    Param("loop_window_sigma_rot_deg", 3.0, "Rotation sigma (degrees) of a window constraint at "
          "alignment residual 0, per keyframe after the anchor: the drift the graph expects of the "
          "model. Too small for the model's drift and true loops are rejected (docs/STREAMING.md, "
          "the 1.0 deg case).", range=(0.01, 90.0)),
    Param("loop_kernel", "huber", "Robust kernel on every between-factor.", choices=("huber", "cauchy")),
    Param("loop_batch_resolve", True, "A loop that fails the graph's gates after iSAM2 gets a "
          "batch Levenberg-Marquardt solve of the whole graph (same gates): closes loops after a "
          "large drift; a wrong loop that such a drift could explain would then pass the graph: "
          "the loop consistency test (loop_consistent_loops) keeps it out."),
    Param("loop_consistent_loops", 1, "Loop consistency: a loop waits (pending) until this many other "
          "verified loops close in time agree with it (both imply the same drift correction); "
          "0 = no test, every verified loop goes straight to the graph.", range=(0, 100)),
    Param("loop_consistency_window", 30, "Keyframes of chain (the two loops' old ends plus new ends "
          "apart) within which two loops are compared; a pending loop whose new keyframe falls "
          "further behind the newest one is rejected.", range=(1, 1_000_000)),
    Param("loop_consistency_chi2", 14.07, "Two loops agree when the cycle loop1, chain, loop2^-1, "
          "chain has a whitened squared error (7 dof, sigmas from the loops and the chain) below "
          "this (14.07: the 95 % quantile).", range=(0.1, 1000.0)),
    Param("loop_verify_min_visible", 0.5, "Loop verification: share of the old keyframe's stored "
          "sample points that must land in the new view at the loop pose (a keyframe stores about "
          "half of a 64-point grid: its confident pixels).", range=(0.01, 1.0)),
    Param("loop_verify_min_agreement", 0.8, "Loop verification: share of those points whose depth "
          "agrees with the new keyframe's predicted depth (a loop is permanent and global: stricter "
          "than a window's min_depth_agreement).", range=(0.01, 1.0)),
    Param("loop_export_dir", "", "With loop_closure: at shutdown write keyframes_before.tum, "
          "keyframes_after.tum (keyframe poses before / after optimisation, REP-103 world) and "
          "pose_graph.g2o into this folder; empty = no export."),
    # --- merging ---------------------------------------------------------------------------
    Param("merge_mode", "auto", "Token merging in global attention: none, uniform (FastVGGT-style "
          "baseline) or httm (head-wise temporal merging). 'auto': the model card's (none for "
          "httm-vggt-synth, whose windows lose accuracy with merging, httm for httm-vggt-synth-merge: "
          "docs/STREAMING.md), else httm.",
          choices=("auto",) + MERGE_MODES),
    Param("merge_layers", "all", "Global blocks to merge in: 'all' or a list such as '0,4-23'."),
    Param("merge_anchor_first_frame", True, "First-frame tokens are destinations, never merged "
          "away (httm and uniform)."),
    Param("httm_q_merge", 0.9, "HTTM: fraction of query tokens merged per block.", range=(0.0, 0.999)),
    Param("httm_q_outlier", 0.1, "HTTM: fraction of query tokens restored as outliers "
          "(<= httm_q_merge).", range=(0.0, 0.999)),
    Param("httm_kv_merge", 0.7, "HTTM: fraction of key/value tokens merged per block.",
          range=(0.0, 0.999)),
    Param("httm_spatial_block", 128, "HTTM: most patch positions in one merging block (n_s).",
          range=(1, 1 << 20)),
    Param("httm_temporal_frames", 30, "HTTM: most consecutive frames in one merging block (n_t).",
          range=(1, 1 << 16)),
    Param("uniform_merge_ratio", 0.9, "Uniform merging (FastVGGT): int(ratio x all tokens) sources merge, "
          "at most the unprotected ones (0.9: ~35% of tokens kept).",
          range=(0.0, 1.0)),
    # --- points and map ----------------------------------------------------------------------
    Param("conf_threshold", 1.0, "Keep pixels with depth confidence >= this (VGGT's confidence "
          "is >= 1, so 1.0 = off).", range=(0.0, 1e6), runtime=True),
    Param("conf_percentile", 50.0, "Also drop the lowest this-percent confidences of each "
          "window's new keyframes (0 = off).", range=(0.0, 99.9), runtime=True),
    Param("pixel_stride", 2, "Unproject every n-th pixel in both directions.", range=(1, 64),
          runtime=True),
    Param("voxel_size", 0.0, "Voxel edge of the accumulated map in world units (the first "
          "window's arbitrary scale); 0 = voxel_size_rel x the first window's median depth.",
          range=(0.0, 1e6)),
    Param("voxel_size_rel", 0.005, "Voxel edge relative to the first window's median depth, when "
          "voxel_size is 0.", range=(1e-6, 1.0)),
    Param("map_max_points", 2_000_000, "Bound on the map's voxels.", range=(1, 1_000_000_000)),
    Param("map_overflow", "coarsen", "Beyond map_max_points: 'coarsen' doubles the voxel size, "
          "'evict_oldest' forgets the voxels updated longest ago.", choices=("coarsen", "evict_oldest")),
    # --- frames ----------------------------------------------------------------------------
    Param("world_frame", "vggt_map", "Frame id of clouds, poses, path and stats: REP 103 (x forward, "
          "y left, z up by convention: the first keyframe's camera forward is +x, its down is -z); "
          "its origin is the first keyframe's camera. Not 'map': that is a SLAM stack's.", runtime=True),
    Param("camera_frame", "camera_optical_frame", "Frame id of depth, confidence and camera_info "
          "(optical: x right, y down, z forward) when the input image's header has no frame_id "
          "(otherwise the header's frame_id is used).", runtime=True),
    Param("tf_mode", "camera", "/tf: 'camera' publishes world_frame -> tf_child_frame (a frame of our "
          "own); 'odom' publishes world_frame -> odom_frame from the robot's odom -> camera transform "
          "at each keyframe's stamp (needs tf2_ros); 'none' publishes no /tf.",
          choices=("camera", "odom", "none")),
    Param("tf_child_frame", "", "Child frame of tf_mode camera; empty = the input header's frame_id "
          "+ '_vggt' ('camera_vggt' when the header has none). Never a frame that has another parent.",
          runtime=True),
    Param("odom_frame", "odom", "The robot's odometry frame, child of world_frame in tf_mode odom.",
          runtime=True),
    # --- side inputs: camera_info and metric depth (docs/ROS.md "camera_info and metric scale") ---
    Param("use_camera_info", False, "Subscribe to 'camera_info' (sensor_msgs/CameraInfo, relative, "
          "remap it): the K of the camera_info paired with a keyframe, mapped to the model input, "
          "replaces the predicted intrinsics. Distorted camera_info (non-zero D) is refused and "
          "counted (distorted_camera_info): feed rectified images."),
    Param("use_depth", False, "Subscribe to 'depth/image' (sensor_msgs/Image 16UC1 mm or 32FC1 m, "
          "aligned to the colour image, relative, remap it): metric mode; a robust scale from sensor "
          "vs predicted depth makes depth, points, map, pose, path and /tf metres."),
    Param("side_input_sync", "exact", "Pairing of camera_info / depth with a keyframe: 'exact' = the "
          "message within side_input_tolerance of the image stamp, else none; 'latest' = that, else "
          "the latest received.", choices=("exact", "latest"), runtime=True),
    Param("side_input_tolerance", 0.001, "Seconds between the image stamp and a side message's "
          "stamp that still count as the same stamp.", range=(0.0, 10.0), runtime=True),
    Param("side_input_wait", 0.1, "Seconds the inference thread waits for a side message of a "
          "keyframe's stamp that has not arrived yet.", range=(0.0, 5.0), runtime=True),
    Param("side_input_buffer", 64, "Side messages kept per topic for pairing (the newest).",
          range=(1, 10000)),
    Param("camera_info_rectified", False, "The images are rectified (image_proc's image_rect with "
          "the driver's camera_info): the intrinsics are read from camera_info's P (the rectified "
          "image's, as image_geometry does) and D is ignored. false: K is used and a non-zero D is "
          "refused (distorted_camera_info)."),
    Param("camera_info_roi", True, "~/camera_info's roi = the source image region the model input "
          "shows (x_offset, y_offset, width, height in source pixels); false = zero roi (for "
          "image_geometry consumers of cropped, portrait inputs: it shifts cx, cy by a roi offset).",
          runtime=True),
    Param("metric_smoothing", "ema", "Metric scale over windows: 'ema' (exponential moving average "
          "of log scale, weight metric_ema_alpha) or 'median' (running median of the last "
          "metric_median_windows window scales).", choices=("ema", "median")),
    Param("metric_ema_alpha", 0.3, "Weight of a new window's scale in the 'ema' smoothing.",
          range=(0.001, 1.0)),
    Param("metric_median_windows", 9, "Window scales in the 'median' smoothing.", range=(1, 1000)),
    Param("metric_conf_quantile", 0.5, "Metric scale: only pixels whose confidence is at or above "
          "this quantile of the window's confidences.", range=(0.0, 0.99)),
    Param("metric_min_depth", 0.1, "Sensor depth below this (metres) is not used.", range=(0.0, 1.0)),
    Param("metric_max_depth", 20.0, "Sensor depth above this (metres) is not used.", range=(1.5, 1000.0)),
    Param("metric_mad_k", 3.0, "Ratios further than this many robust sigmas (1.4826 MAD) from their "
          "median are outliers.", range=(0.5, 100.0)),
    Param("metric_min_pixels", 200, "A window needs this many valid pixels for a scale estimate.",
          range=(1, 100_000_000)),
    # --- outputs ---------------------------------------------------------------------------
    *(Param(f"publish_{name}", True, f"Publish {name} (can be switched at run time).", runtime=True)
      for name in _OUTPUTS),
    Param("map_publish_every", 1, "Publish ~/map (the whole voxel map) every N accepted windows; "
          "~/publish_map publishes it on demand, ~/reset publishes an empty one.", range=(1, 10000), runtime=True),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.05, 3600.0)),
    # --- shutdown (docs/ROS.md "Shutdown") ----------------------------------------------------
    Param("flush_on_shutdown", False, "On SIGINT/SIGTERM: false drops the queued frames and the "
          "window in flight (counted and logged); true runs the queued keyframes as a last window "
          "and publishes it before exiting (within shutdown_timeout).", runtime=True),
    Param("shutdown_timeout", 5.0, "Seconds a stop waits for the inference and publisher threads "
          "(the window in flight; with flush_on_shutdown the last window); after it the node exits "
          "anyway (status 0), logging what was lost. ros2 launch sends SIGTERM 5 s after SIGINT "
          "(ignored: the stop is under way) and SIGKILL 5 s later: keep it below about 8 s.",
          range=(0.1, 3600.0), runtime=True),
    Param("debug_window_delay", 0.0, "FOR TESTS: every window waits this many seconds before its "
          "model forward, announced in the log, so a test can act while a window runs. 0 = off.",
          range=(0.0, 600.0)),
)

BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMS}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# window_size / window_overlap given explicitly (not 0, the model card's): the smallest windows the
# alignment accepts (AlignConfig.min_overlap_frames known keyframes plus one new one)
_EXPLICIT_MIN = {"window_size": 3, "window_overlap": 2}


def defaults() -> Dict[str, Any]:
    """name -> default value."""
    return {p.name: p.default for p in PARAMS}


# ROS's names of the parameter types (ros2 param describe / set): the words type errors use
ROS_TYPES = {bool: "a bool", int: "an integer", float: "a double", str: "a string"}


def type_name(value: Any) -> str:
    return ROS_TYPES.get(type(value), "a " + type(value).__name__)


def coerce(param: Param, value: Any) -> Any:
    """An integer given for a double parameter is that double (``conf_threshold:=2`` -> 2.0)."""
    if param.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_value(param: Param, value: Any) -> Optional[str]:
    """Reason why ``value`` is not acceptable for ``param`` on its own, or None."""
    value = coerce(param, value)
    if type(value) is not param.type:
        hint = " (an integer is taken as a double)" if param.type is float else ""
        return f"{param.name} must be {ROS_TYPES[param.type]}{hint}, got {type_name(value)} {value!r}"
    if param.choices is not None and value not in param.choices:
        return f"{param.name} must be one of {', '.join(param.choices)}; got {value!r}"
    if param.range is not None and not param.range[0] <= value <= param.range[1]:
        return f"{param.name} must be in [{param.range[0]}, {param.range[1]}], got {value!r}"
    if param.step and (value - param.range[0]) % param.step:
        return f"{param.name} must be a multiple of {param.step} in [{param.range[0]}, {param.range[1]}], got {value}"
    if param.name in _EXPLICIT_MIN and 0 < value < _EXPLICIT_MIN[param.name]:
        return (f"{param.name} must be 0 (the model card's value) or at least {_EXPLICIT_MIN[param.name]}, "
                f"got {value!r}")
    if param.name == "tf_child_frame" and value.startswith("/"):
        return f"tf_child_frame must be a frame id without a leading '/' (or empty); got {value!r}"
    if param.name == "device" and not _DEVICE_RE.match(value):
        return f"device must be auto, cpu, cuda or cuda:N; got {value!r}"
    if param.name in ("world_frame", "camera_frame", "odom_frame") and (not value or value.startswith("/")):
        return f"{param.name} must be a non-empty frame id without a leading '/'; got {value!r}"
    return None


@dataclass(frozen=True)
class Rule:
    """A rule between parameters: ``text`` says it in words, ``holds(values)`` checks it."""

    text: str
    names: Tuple[str, ...]
    holds: Callable[[Mapping[str, Any]], bool]

    def check(self, values: Mapping[str, Any]) -> Optional[str]:
        """None when it holds, else the rule in words with the values."""
        if self.holds(values):
            return None
        return f"{self.text} (got {', '.join(f'{n}={values[n]!r}' for n in self.names)})"


RULES: Tuple[Rule, ...] = (
    Rule("loop_closure needs window_mode anchored (window_mode auto is anchored unless the model card "
         "says chained): loops are verified and corrected through the keyframe store",
         ("loop_closure", "window_mode"), lambda v: not v["loop_closure"] or v["window_mode"] == "anchored"),
    Rule("window_overlap must be smaller than window_size: each window shares window_overlap "
         "keyframes with the previous one and adds window_size - window_overlap new ones",
         ("window_overlap", "window_size"), lambda v: v["window_overlap"] < v["window_size"]),
    Rule("with merge_mode httm, httm_q_outlier must not exceed httm_q_merge: only merged queries "
         "can be restored as outliers", ("merge_mode", "httm_q_outlier", "httm_q_merge"),
         lambda v: v["merge_mode"] != "httm" or v["httm_q_outlier"] <= v["httm_q_merge"]),
    Rule("world_frame and camera_frame must differ: the camera pose is the transform between them",
         ("world_frame", "camera_frame"), lambda v: v["world_frame"] != v["camera_frame"]),
    Rule("with tf_mode odom, world_frame and odom_frame must differ: /tf is the transform between them",
         ("world_frame", "odom_frame", "tf_mode"),
         lambda v: v["tf_mode"] != "odom" or v["world_frame"] != v["odom_frame"]),
    Rule("with tf_mode camera, world_frame and tf_child_frame must differ: /tf is the transform between them",
         ("world_frame", "tf_child_frame", "tf_mode"),
         lambda v: v["tf_mode"] != "camera" or v["world_frame"] != v["tf_child_frame"]),
)


def validate(values: Mapping[str, Any]) -> List[str]:
    """All reasons why this complete set of values is invalid (empty list: valid): single values
    (type, range, choices), then ``RULES``, then - as a backstop, never reached by values the
    first two accept (test_ros_params checks the range ends) - the core's own configuration checks."""
    from .core_config import config_errors          # torch: only when values are checked

    errors = [reason for p in PARAMS if (reason := check_value(p, values[p.name])) is not None]
    if errors:
        return errors
    try:
        values = resolved(values)
    except ValueError as err:                       # a malformed model card
        return [str(err)]
    errors = [reason for rule in RULES if (reason := rule.check(values)) is not None]
    return errors or config_errors({n: coerce(BY_NAME[n], v) if n in BY_NAME else v for n, v in values.items()})


def resolved(values: Mapping[str, Any]) -> Dict[str, Any]:
    """``values`` with the window and merging settings left at 0 / 'auto' replaced by the model card's
    or the fallback ones (``core_config.card_settings``); ValueError for a malformed card."""
    from .core_config import card_settings

    return {**values, **card_settings(values)}


def check_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> List[str]:
    """Reasons to reject a run-time update ``changes`` of the ``current`` values."""
    unknown = [name for name in changes if name not in BY_NAME]
    if unknown:
        return [f"unknown parameter(s) {', '.join(unknown)}"]
    frozen = [name for name in changes if not BY_NAME[name].runtime and changes[name] != current[name]]
    if frozen:
        return [f"{', '.join(frozen)} cannot change at run time (read-only; restart the node)"]
    return validate({**current, **changes})


# ----------------------------------------------------------------------------- rclpy glue
def descriptor(param: Param):
    """rcl_interfaces/ParameterDescriptor for ``param`` (range and step, choices, read-only).

    Dynamically typed, so that a value of the wrong type reaches :func:`check_value` (whose reason
    names the expected type) instead of rclpy's "Wrong parameter type, expected '3' got '2'"; an
    integer for a double is converted before (:func:`declare_all`)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(name=param.name, description=param.description,
                               read_only=not param.runtime, dynamic_typing=True)
    if param.choices is not None:
        desc.additional_constraints = "one of: " + ", ".join(param.choices)
    if param.range is not None and param.type is int:
        desc.integer_range = [IntegerRange(from_value=int(param.range[0]), to_value=int(param.range[1]),
                                           step=param.step or 1)]
    elif param.range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(param.range[0]),
                                                        to_value=float(param.range[1]), step=0.0)]
    return desc


class ParameterError(ValueError):
    """Invalid parameter values at start-up; ``str(err)`` lists every reason."""


def declare_all(node) -> Dict[str, Any]:
    """Declare every parameter on ``node`` (overrides from --ros-args apply) and return the
    validated values; integers given for doubles are doubles, at start-up and in later sets.
    Raises ParameterError (or rclpy's InvalidParameterValueException for a number outside a
    descriptor range) with the reasons."""
    _doubles_from_integers(getattr(node, "_parameter_overrides", None))
    declared = node.declare_parameters("", [(p.name, p.default, descriptor(p)) for p in PARAMS])
    values = {param.name: coerce(BY_NAME[param.name], param.value) for param in declared}
    errors = validate(values)
    if errors:
        raise ParameterError("invalid parameters: " + "; ".join(errors))
    node.add_pre_set_parameters_callback(_coerce_parameters)
    return resolved(values)


def _doubles_from_integers(overrides: Optional[dict]) -> None:
    """``-p conf_threshold:=2`` (rcl reads an integer) -> the double 2.0 in rclpy's override table
    (name -> rclpy Parameter, read by ``declare_parameters``), so the parameter is a double."""
    if isinstance(overrides, dict):
        for name, param in list(overrides.items()):
            if name in BY_NAME and coerce(BY_NAME[name], param.value) is not param.value:
                overrides[name] = _double(param)


def _coerce_parameters(parameters: List) -> List:
    """Pre-set callback: integers for double parameters become doubles (``ros2 param set ...
    conf_threshold 2``)."""
    return [_double(p) if p.name in BY_NAME and coerce(BY_NAME[p.name], p.value) is not p.value else p
            for p in parameters]


def _double(param):
    from rclpy.parameter import Parameter

    return Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))


def keep_declared_types(node, names) -> None:
    """After a refused set: rclpy's dynamic typing already wrote the refused value's type into the
    stored descriptor; put the table's type back (``ros2 param describe`` stays right)."""
    from rclpy.parameter import Parameter

    for name in names:
        if name in BY_NAME and node.has_parameter(name):
            node.describe_parameter(name).type = Parameter.Type.from_parameter_value(BY_NAME[name].default).value


def updates_from(parameters: Sequence) -> Dict[str, Any]:
    """rclpy Parameter objects of a set request -> name -> value."""
    return {p.name: coerce(BY_NAME[p.name], p.value) if p.name in BY_NAME else p.value
            for p in parameters}


# ----------------------------------------------------------------------------- command line
def command_line_overrides(argv: Sequence[str], node_name: str) -> Dict[str, str]:
    """``-p [node:]name:=value`` / ``--param`` rules of the ``--ros-args`` sections of ``argv`` that
    apply to ``node_name``: name -> value text of the last one (rcl applies them in order)."""
    found: Dict[str, str] = {}
    in_ros, tokens = False, iter(argv)
    for token in tokens:
        if token in ("--ros-args", "--"):
            in_ros = token == "--ros-args"
        elif in_ros and token in ("-p", "--param"):
            target, sep, text = next(tokens, "").partition(":=")
            node, _, name = target.rpartition(":")
            if sep and node.rsplit("/", 1)[-1] in ("", node_name, "*", "**"):
                found[name] = text
    return found


def _scalar(text: str) -> Any:
    """A ``-p`` value as rcl's YAML reads it (bool, integer, double, else string)."""
    low = text.strip().lower()
    if low in ("true", "yes", "on", "false", "no", "off"):
        return low in ("true", "yes", "on")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip("'\"")


def ignored_overrides(argv: Sequence[str], node_name: str, values: Mapping[str, Any]) -> List[str]:
    """Warnings for ``-p`` overrides the node does not run with: a ``--params-file`` later on the
    command line set the parameter again (rcl applies ``-p`` and ``--params-file`` in command-line
    order, the last one wins), or the node has no such parameter (rcl ignores it silently)."""
    warnings = []
    for name, text in command_line_overrides(argv, node_name).items():
        if name not in values:
            warnings.append(f"-p {name}:={text} is ignored: {node_name} has no parameter {name!r}")
            continue
        given, value = coerce(BY_NAME[name], _scalar(text)), values[name]
        if type(given) is not type(value) or given != value:
            warnings.append(f"-p {name}:={text} was not applied: {name} is {value!r}, set by a "
                            "--params-file that comes later on the command line (overrides apply "
                            "in command-line order, the last one wins: put -p after --params-file)")
    return warnings
