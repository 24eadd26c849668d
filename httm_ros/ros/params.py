"""Every parameter of reconstruct_node, declared from one table, with validation.

``PARAMS`` lists name, default (its Python type is the parameter type), description, numeric
range or choices, and whether the value may change at run time (``runtime=True``: thresholds,
frame ids, output switches; everything that shapes the model, the windows or the subscriptions is
read-only). ``validate`` checks a whole set of values (single values and cross-parameter rules)
and returns the reasons for rejection; it needs no ROS, so it is unit-tested directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

MERGE_MODES = ("none", "uniform", "httm")


@dataclass(frozen=True)
class Param:
    """One node parameter. ``range`` is inclusive (lo, hi) for int/float; ``choices`` for str."""

    name: str
    default: Any
    description: str
    range: Optional[Tuple[float, float]] = None
    choices: Optional[Tuple[str, ...]] = None
    runtime: bool = False

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
    # --- model -----------------------------------------------------------------------------
    Param("checkpoint", "", "VGGT checkpoint (.safetensors or .pt, e.g. facebook/VGGT-1B "
          "model.safetensors). Required unless allow_test_weights is true."),
    Param("allow_test_weights", False, "Without a checkpoint, run with deterministic test weights "
          "(every stage runs, the geometry is MEANINGLESS). For tests and demos only."),
    Param("model_config", "1b", "Network size: '1b' (VGGT-1B) or 'tiny' (test network).",
          choices=("1b", "tiny")),
    Param("device", "auto", "Torch device: auto, cpu, cuda or cuda:N. A missing GPU falls back "
          "to CPU with a warning."),
    Param("dtype", "bfloat16", "Autocast dtype of the aggregator on CUDA (heads stay float32); "
          "ignored on CPU.", choices=("bfloat16", "float16", "float32")),
    Param("image_size", 518, "Model input width in pixels (multiple of 14); frames are resized "
          "keeping their aspect ratio (height rounded to a multiple of 14, no crop).",
          range=(14, 4088)),
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
    Param("window_size", 24, "Keyframes per model window (K).", range=(2, 1024)),
    Param("window_overlap", 8, "Keyframes shared with the previous window, used to align it (O < K).",
          range=(1, 1023)),
    Param("keyframe_policy", "motion", "'motion': a frame becomes a keyframe when the image moved "
          "by keyframe_min_motion or after keyframe_max_gap frames; 'every': every frame is one.",
          choices=("motion", "every")),
    Param("keyframe_min_motion", 0.03, "Mean image motion since the last keyframe, as a fraction "
          "of the image width, that makes a keyframe.", range=(0.0, 1.0)),
    Param("keyframe_max_gap", 15, "A keyframe is forced after this many frames.", range=(1, 100000)),
    # --- merging ---------------------------------------------------------------------------
    Param("merge_mode", "httm", "Token merging in global attention: none, uniform (FastVGGT-style "
          "baseline) or httm (head-wise temporal merging).", choices=MERGE_MODES),
    Param("merge_layers", "all", "Global blocks to merge in: 'all' or a list such as '0,4-23'."),
    Param("merge_anchor_first_frame", True, "First-frame tokens are destinations, never merged "
          "away (httm and uniform)."),
    Param("httm_q_merge", 0.9, "HTTM: fraction of query tokens merged per block.", range=(0.0, 0.999)),
    Param("httm_q_outlier", 0.1, "HTTM: fraction of query tokens restored as outliers "
          "(<= httm_q_merge).", range=(0.0, 1.0)),
    Param("httm_kv_merge", 0.7, "HTTM: fraction of key/value tokens merged per block.",
          range=(0.0, 0.999)),
    Param("httm_spatial_block", 128, "HTTM: most patch positions in one merging block (n_s).",
          range=(1, 1 << 20)),
    Param("httm_temporal_frames", 30, "HTTM: most consecutive frames in one merging block (n_t).",
          range=(1, 1 << 16)),
    Param("uniform_merge_ratio", 0.9, "Uniform merging: fraction of source tokens merged.",
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
    Param("world_frame", "map", "Frame id of clouds, poses, path and stats (REP 105); its origin is "
          "the first keyframe's camera.", runtime=True),
    Param("camera_frame", "camera_optical_frame", "Frame id of depth, confidence and camera_info "
          "(optical: x right, y down, z forward) and the TF child frame. Use a name that has no "
          "other TF parent.", runtime=True),
    # --- outputs ---------------------------------------------------------------------------
    *(Param(f"publish_{name}", True, f"Publish {name} (can be switched at run time).", runtime=True)
      for name in _OUTPUTS),
    Param("map_publish_every", 1, "Publish ~/map every N windows.", range=(1, 10000), runtime=True),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.05, 3600.0)),
)

BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMS}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def defaults() -> Dict[str, Any]:
    """name -> default value."""
    return {p.name: p.default for p in PARAMS}


def check_value(param: Param, value: Any) -> Optional[str]:
    """Reason why ``value`` is not acceptable for ``param``, or None."""
    if param.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not param.type:
        return f"{param.name} must be {param.type.__name__}, got {type(value).__name__} {value!r}"
    if param.choices is not None and value not in param.choices:
        return f"{param.name} must be one of {', '.join(param.choices)}; got {value!r}"
    if param.range is not None and not param.range[0] <= value <= param.range[1]:
        return f"{param.name} must be in [{param.range[0]}, {param.range[1]}], got {value!r}"
    if param.name == "device" and not _DEVICE_RE.match(value):
        return f"device must be auto, cpu, cuda or cuda:N; got {value!r}"
    if param.name in ("world_frame", "camera_frame") and (not value or value.startswith("/")):
        return f"{param.name} must be a non-empty frame id without a leading '/'; got {value!r}"
    if param.name == "image_size" and value % 14:
        return f"image_size must be a multiple of 14 (the patch size), got {value}"
    return None


def _cross_checks(values: Mapping[str, Any]) -> List[str]:
    """Rules between parameters; ``values`` holds all of them. The core's configuration objects
    (StreamConfig, HTTMConfig, ...) check their own rules, e.g. window_overlap < window_size."""
    from .core_config import config_errors          # torch: only when values are checked

    errors = config_errors(values)
    if values["world_frame"] == values["camera_frame"]:
        errors.append("world_frame and camera_frame must differ")
    return errors


def validate(values: Mapping[str, Any]) -> List[str]:
    """All reasons why this complete set of values is invalid (empty list: valid)."""
    errors = [reason for p in PARAMS if (reason := check_value(p, values[p.name])) is not None]
    return errors or _cross_checks(values)


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
    """rcl_interfaces/ParameterDescriptor for ``param`` (range, choices, read-only)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(name=param.name, description=param.description,
                               read_only=not param.runtime)
    if param.choices is not None:
        desc.additional_constraints = "one of: " + ", ".join(param.choices)
    if param.range is not None and param.type is int:
        desc.integer_range = [IntegerRange(from_value=int(param.range[0]), to_value=int(param.range[1]), step=1)]
    elif param.range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(param.range[0]),
                                                        to_value=float(param.range[1]), step=0.0)]
    return desc


class ParameterError(ValueError):
    """Invalid parameter values at start-up; ``str(err)`` lists every reason."""


def declare_all(node) -> Dict[str, Any]:
    """Declare every parameter on ``node`` (overrides from --ros-args apply) and return the
    validated values. Raises ParameterError (or rclpy's InvalidParameterValueException for a
    value outside a descriptor range) with the reasons."""
    declared = node.declare_parameters("", [(p.name, p.default, descriptor(p)) for p in PARAMS])
    values = {param.name: _coerce(BY_NAME[param.name], param.value) for param in declared}
    errors = validate(values)
    if errors:
        raise ParameterError("invalid parameters: " + "; ".join(errors))
    return values


def _coerce(param: Param, value: Any) -> Any:
    return float(value) if param.type is float and isinstance(value, int) else value


def updates_from(parameters: Sequence) -> Dict[str, Any]:
    """rclpy Parameter objects of a set request -> name -> value."""
    return {p.name: _coerce(BY_NAME[p.name], p.value) if p.name in BY_NAME else p.value
            for p in parameters}
