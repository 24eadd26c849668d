"""The node's parameter values -> the streaming core's configuration objects (no rclpy here).

``params.validate`` uses :func:`config_errors`, so the core's own checks reject bad values.
``image_size`` 0 is resolved here (:func:`image_width`): the checkpoint model card's width, else 518;
so is the card's ``stream_profile`` (:func:`stream_profile`, parameter ``card_stream_profile``), and
the window and merging settings left at 0 / "auto" take the values it was measured with (:func:`card_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from httm_ros.httm import HTTMConfig, UniformMergeConfig
from httm_ros.httm.arguments import parse_layers
from httm_ros.pipeline import (FilterConfig, KeyframeConfig, MapConfig, StreamConfig, WindowConfig, apply_profile,
                               gtsam_backend)
from httm_ros.pipeline.metric_scale import MetricScaleConfig
from httm_ros.pipeline.pose_graph import LoopClosureConfig
from httm_ros.pipeline.stream import model_input_size


DEFAULT_IMAGE_SIZE = 518       # image_size 0 without a model card that says otherwise: VGGT-1B's width


def image_width(values: Mapping[str, Any]) -> Tuple[int, str]:
    """(model input width, where it comes from) of ``image_size``: a value > 0 as given ("image_size");
    0: the width of the checkpoint's model card ``image_hw`` ("the model card of <file>"), else
    DEFAULT_IMAGE_SIZE ("default"). ValueError for a model card whose image_hw is malformed."""
    if values["image_size"] > 0:
        return int(values["image_size"]), "image_size"
    checkpoint = values.get("checkpoint") or ""
    if checkpoint:
        from httm_ros.vggt.checkpoint import CheckpointError, checkpoint_image_hw

        try:
            hw = checkpoint_image_hw(checkpoint)
        except CheckpointError as err:
            raise ValueError(f"image_size 0 takes the checkpoint's model card width: {err}") from None
        if hw is not None:
            return hw[1], f"the model card of {Path(checkpoint).name}"
    return DEFAULT_IMAGE_SIZE, "default"


def core_values(values: Mapping[str, Any], warn: Callable[[str], None]) -> Mapping[str, Any]:
    """The values the core is built from: ``loop_closure`` off, with one log line, without gtsam."""
    if values["loop_closure"] and not gtsam_backend.available():
        warn("loop_closure is true but gtsam is not installed (pip install gtsam==4.3.0): running "
             "without loop closure")
        return {**values, "loop_closure": False}
    return values


def merge_config(values: Mapping[str, Any]):
    """Parameter values -> HTTMConfig, UniformMergeConfig or None (ValueError with a reason);
    merge_mode "auto" is resolved here (:func:`card_settings`)."""
    mode = values["merge_mode"] if values["merge_mode"] != "auto" else card_settings(values)["merge_mode"]
    if mode == "none":
        return None
    try:
        layers = parse_layers(values["merge_layers"])
    except Exception as err:  # argparse.ArgumentTypeError
        raise ValueError(f"merge_layers: {err}") from None
    anchor = values["merge_anchor_first_frame"]
    if mode == "uniform":
        return UniformMergeConfig(merge_ratio=values["uniform_merge_ratio"], anchor_first_frame=anchor,
                                  layers=layers)
    return HTTMConfig(q_merge=values["httm_q_merge"], q_outlier=values["httm_q_outlier"],
                      kv_merge=values["httm_kv_merge"], spatial_block=values["httm_spatial_block"],
                      temporal_frames=values["httm_temporal_frames"], anchor_first_frame=anchor,
                      layers=layers)


def filter_config(values: Mapping[str, Any]) -> FilterConfig:
    """Confidence filtering (the run-time adjustable part of the stream)."""
    return FilterConfig(conf_threshold=values["conf_threshold"], conf_percentile=values["conf_percentile"],
                        pixel_stride=values["pixel_stride"])


def stream_config(values: Mapping[str, Any], device: str = "cpu") -> StreamConfig:
    """Parameter values -> StreamConfig (ValueError naming the field when inconsistent); window
    settings left at 0 / "auto" are resolved here (:func:`card_settings`)."""
    values = {**values, **card_settings(values)}
    keyframes = KeyframeConfig(enabled=values["keyframe_policy"] == "motion",
                               min_motion=values["keyframe_min_motion"], max_gap=values["keyframe_max_gap"])
    voxel = values["voxel_size"]
    config = StreamConfig(
        keyframes=keyframes,
        window=WindowConfig(size=values["window_size"], overlap=values["window_overlap"], mode=values["window_mode"]),
        filter=filter_config(values),
        map=MapConfig(voxel_size=voxel if voxel > 0 else None, voxel_size_rel=values["voxel_size_rel"],
                      max_points=values["map_max_points"], overflow=values["map_overflow"]),
        metric=metric_config(values), image_width=image_width(values)[0], device=device,
        loop_closure=loop_closure_config(values))
    return apply_profile(config, stream_profile(values))


#: settings whose 0 / "auto" means: the model card's measured_with, else this fallback (VGGT-1B's)
#: (VGGT-1B: 24-frame windows with 4 known keyframes, anchored, HTTM; issue 16, docs/STREAMING.md "Defaults")
CARD_SETTINGS = {"window_size": (0, 24), "window_overlap": (0, 4), "keyframe_policy": ("auto", "motion"),
                 "window_mode": ("auto", "anchored"), "merge_mode": ("auto", "httm")}


def card_settings(values: Mapping[str, Any]) -> Dict[str, Any]:
    """{name: value} of the ``CARD_SETTINGS`` left at 0 / "auto": the checkpoint model card's
    stream_profile ``measured_with`` while ``card_stream_profile`` is on, else the fallbacks; {}
    when every one is given. ValueError for a malformed card."""
    auto = [name for name, (sentinel, _) in CARD_SETTINGS.items() if values.get(name, sentinel) == sentinel]
    if not auto:
        return {}
    measured = (stream_profile(values) or {}).get("measured_with") or {}
    return {name: measured.get(name, CARD_SETTINGS[name][1]) for name in auto}


def profile_mismatch(values: Mapping[str, Any], profile: Optional[dict]) -> list:
    """'name=value (measured with other)' for each node parameter that differs from the values a
    stream profile (:func:`stream_profile`) was measured with (its ``measured_with``); [] without."""
    measured = (profile or {}).get("measured_with") or {}
    return [f"{name}={values[name]!r} (measured with {want!r})" for name, want in measured.items()
            if name in values and values[name] != want]


def stream_profile(values: Mapping[str, Any]):
    """The checkpoint model card's stream_profile when ``card_stream_profile`` is on, else None
    (ValueError for a malformed card)."""
    checkpoint = values.get("checkpoint") or ""
    if not (checkpoint and values.get("card_stream_profile", True)):
        return None
    from httm_ros.vggt.checkpoint import CheckpointError, checkpoint_stream_profile

    try:
        return checkpoint_stream_profile(checkpoint)
    except CheckpointError as err:
        raise ValueError(f"card_stream_profile: {err}") from None


def loop_closure_config(values: Mapping[str, Any]) -> LoopClosureConfig:
    """The pose graph's knobs (docs/STREAMING.md "Loop closure"); the rest keep their defaults."""
    return LoopClosureConfig(enabled=values["loop_closure"], min_gap=values["loop_min_gap"],
                             min_similarity=values["loop_min_similarity"],
                             window_sigma_rot_deg=values["loop_window_sigma_rot_deg"],
                             kernel=values["loop_kernel"], batch_resolve=values["loop_batch_resolve"],
                             consistent_loops=values["loop_consistent_loops"],
                             consistency_window=values["loop_consistency_window"],
                             consistency_chi2=values["loop_consistency_chi2"],
                             verify_min_visible=values["loop_verify_min_visible"],
                             verify_min_agreement=values["loop_verify_min_agreement"])


def metric_config(values: Mapping[str, Any]) -> MetricScaleConfig:
    """The metric scale estimator (metric mode, use_depth)."""
    return MetricScaleConfig(conf_quantile=values["metric_conf_quantile"], min_depth=values["metric_min_depth"],
                             max_depth=values["metric_max_depth"], mad_k=values["metric_mad_k"],
                             min_pixels=values["metric_min_pixels"], smoothing=values["metric_smoothing"],
                             ema_alpha=values["metric_ema_alpha"], median_windows=values["metric_median_windows"])


def config_errors(values: Mapping[str, Any]) -> list:
    """Reasons the core's configuration objects reject these values (empty: accepted)."""
    errors = []
    for build in (merge_config, stream_config):
        try:
            build(values)
        except ValueError as err:
            errors.append(str(err))
    return errors


def input_limits(values: Dict[str, Any], image_width) -> "codec.InputLimits":
    """Input bounds from the parameters; frames too elongated for the model input are refused
    at decode time, not on the inference thread. (The codec holds message classes: imported
    here so that this module stays free of ROS imports.)"""
    from . import codec

    def fits(width: int, height: int):
        try:
            model_input_size(height, width, image_width)
        except ValueError:
            return f"image {width}x{height} is too elongated to make a model input {image_width} wide"
        return None

    return codec.InputLimits(values["max_input_pixels"], values["max_aspect_ratio"], fits)
