"""Streaming reconstruction core (no ROS): keyframes, sliding windows, anchored alignment, map.

    from httm_ros.pipeline import StreamingReconstructor, StreamConfig, ModelPredictor, OraclePredictor
    rec = StreamingReconstructor(ModelPredictor(model, device="cuda"), StreamConfig(device="cuda"))
    results = rec.push(frame_rgb_uint8, stamp)      # -> list[WindowResult]
    rec.flush(); rec.map.save_ply("map.ply"); rec.trajectory.save_tum("traj.tum")

Modules: config (dataclasses), keyframes, predictor (Predictor protocol, ModelPredictor,
OraclePredictor), alignment (weighted Umeyama + IRLS, checked), map (GlobalMap, PLY),
trajectory, stream (StreamingReconstructor), geometry, metrics, bench.
"""

from .alignment import AlignmentReport, FrameGeometry, align_overlap, robust_similarity, weighted_umeyama
from .config import AlignConfig, FilterConfig, KeyframeConfig, MapConfig, StreamConfig, WindowConfig
from .keyframes import KeyframeSelector
from .map import GlobalMap, load_ply, save_ply
from .predictor import ModelPredictor, OraclePredictor, Predictor, WindowPrediction
from .stream import FrameSizeError, StreamCounters, StreamingReconstructor, WindowResult
from .trajectory import Trajectory

__all__ = [
    "AlignConfig", "AlignmentReport", "FilterConfig", "FrameGeometry", "FrameSizeError", "GlobalMap",
    "KeyframeConfig", "KeyframeSelector", "MapConfig", "ModelPredictor", "OraclePredictor", "Predictor",
    "StreamConfig", "StreamCounters", "StreamingReconstructor", "Trajectory", "WindowConfig",
    "WindowPrediction", "WindowResult", "align_overlap", "load_ply", "robust_similarity", "save_ply",
    "weighted_umeyama",
]
