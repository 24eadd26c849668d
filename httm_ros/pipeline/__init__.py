"""Streaming reconstruction core (no ROS): keyframes, sliding windows, anchored alignment, map.

    from httm_ros.pipeline import StreamingReconstructor, StreamConfig, ModelPredictor
    rec = StreamingReconstructor(ModelPredictor(model, device="cuda"), StreamConfig(device="cuda"))
    results = rec.push(frame_rgb_uint8, stamp)      # -> list[WindowResult]
    rec.flush(); rec.map.save_ply("map.ply"); rec.trajectory.save_tum("traj.tum")

Modules, in data-flow order: stream_config (dataclasses), keyframes (KeyframeSelector), predictor
(Predictor protocol, WindowPrediction, ModelPredictor), alignment (weighted Umeyama + IRLS,
checked; chained mode), anchoring (anchored mode: anchor pose + robust scale; checks on new
keyframes), keyframe_store (bounded, descriptors), tracking (TrackingState), map (GlobalMap),
keyframe_trajectory (Trajectory), stream (StreamingReconstructor; docs/STREAMING.md); beside the
frames: input_mapping (source frame -> model input, for given intrinsics and sensor depth) and
metric_scale (metres per world unit from sensor depth; docs/ROS.md "camera_info and metric scale").
Geometry is :mod:`httm_ros.geometry`, file formats :mod:`httm_ros.io`, the ground-truth predictor
:mod:`httm_ros.synthetic.oracle`, metrics :mod:`httm_ros.eval.metrics`, the post-processing
benchmark :mod:`httm_ros.bench.postprocess`.
"""

from .alignment import AlignmentReport, FrameGeometry, align_overlap, robust_similarity, weighted_umeyama
from .keyframe_store import KeyframeStore
from .keyframe_trajectory import Trajectory
from .keyframes import KeyframeSelector
from .map import GlobalMap
from .predictor import ModelPredictor, Predictor, WindowPrediction
from .stream import FrameSizeError, MapSegment, StreamCounters, StreamingReconstructor, WindowResult
from .stream_config import (AlignConfig, FilterConfig, KeyframeConfig, MapConfig, StoreConfig, StreamConfig,
                            TrackingConfig, WindowConfig, apply_profile)
from .tracking import Tracker, TrackingState

__all__ = [
    "AlignConfig", "AlignmentReport", "FilterConfig", "FrameGeometry", "FrameSizeError", "GlobalMap",
    "KeyframeConfig", "KeyframeSelector", "KeyframeStore", "MapConfig", "MapSegment", "ModelPredictor", "Predictor",
    "StoreConfig", "StreamConfig", "StreamCounters", "StreamingReconstructor", "Tracker", "TrackingConfig",
    "TrackingState", "Trajectory", "WindowConfig",
    "WindowPrediction", "WindowResult", "align_overlap", "apply_profile", "robust_similarity", "weighted_umeyama",
]
