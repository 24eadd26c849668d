"""Messages of the node's output topics -> numpy -> ReconstructionScene.

Works on rclpy messages (live) and on rosbags' deserialized messages (bags) alike: both have the
same field names, and the cloud and depth decoding (httm_ros.ros.codec) only read fields.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Dict

import numpy as np

from httm_ros.ros import codec

from .viser_scene import ReconstructionScene

LOG = logging.getLogger("httm_ros.viewer")
# output name (topic ~/<name> of reconstruct_node) -> message type
TOPIC_TYPES = {"map": "sensor_msgs/msg/PointCloud2", "points": "sensor_msgs/msg/PointCloud2",
               "path": "nav_msgs/msg/Path", "pose": "geometry_msgs/msg/PoseStamped",
               "depth": "sensor_msgs/msg/Image", "camera_info": "sensor_msgs/msg/CameraInfo",
               "stats": "httm_ros/msg/WindowStats"}
_COLORMAP = np.array([[48, 18, 59], [70, 130, 245], [30, 210, 160], [165, 250, 55], [250, 185, 40],
                      [220, 70, 10], [122, 4, 3]], np.float32)        # turbo-like, near -> far


def pose_arrays(pose) -> tuple:
    """geometry_msgs/Pose -> (position float64 [3], orientation wxyz float64 [4])."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([q.w, q.x, q.y, q.z])


def path_arrays(msg) -> tuple:
    """nav_msgs/Path -> (positions [K, 3], orientations wxyz [K, 4])."""
    pairs = [pose_arrays(p.pose) for p in msg.poses]
    if not pairs:
        return np.zeros((0, 3)), np.zeros((0, 4))
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """float depth [H, W] (NaN invalid) -> uint8 RGB [H, W, 3]; near blue, far red, invalid black."""
    depth = np.asarray(depth, np.float32)
    valid = np.isfinite(depth)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if valid.any():
        lo, hi = np.percentile(depth[valid], [2, 98])
        t = np.clip((depth[valid] - lo) / max(hi - lo, 1e-6), 0.0, 1.0) * (len(_COLORMAP) - 1)
        stops = np.arange(len(_COLORMAP))
        out[valid] = np.stack([np.interp(t, stops, _COLORMAP[:, c]) for c in range(3)], axis=1).astype(np.uint8)
    return out


def camera_model(msg) -> tuple:
    """sensor_msgs/CameraInfo -> (vertical field of view in radians, width / height)."""
    fy = float(msg.k[4])
    return 2.0 * math.atan(0.5 * msg.height / fy), msg.width / msg.height


def stats_fields(msg) -> Dict[str, object]:
    """httm_ros/WindowStats -> {field: value} (header left out)."""
    if dataclasses.is_dataclass(msg):                                     # rosbags
        names = [f.name for f in dataclasses.fields(msg)]
    else:                                                                 # rclpy
        names = list(msg.get_fields_and_field_types())
    out = {}
    for name in names:
        value = getattr(msg, name)
        if name != "header" and isinstance(value, (bool, int, float, str, np.generic)):
            out[name] = value.item() if isinstance(value, np.generic) else value
    return out


class SceneFeed:
    """``apply(name, msg)`` for each output name of TOPIC_TYPES: decodes and updates the scene.
    A message that cannot be decoded is logged and skipped (the viewer keeps going)."""

    def __init__(self, scene: ReconstructionScene) -> None:
        self.scene = scene
        self.handlers: Dict[str, Callable] = {
            "map": lambda m: scene.set_map(*codec.decode_pointcloud2_xyzrgb(m)),
            "points": lambda m: scene.set_window(*codec.decode_pointcloud2_xyzrgb(m)),
            "path": lambda m: scene.set_path(*path_arrays(m)),
            "pose": lambda m: scene.set_pose(*pose_arrays(m.pose)),
            "depth": lambda m: scene.set_depth(colorize_depth(codec.image_to_float(m))),
            "camera_info": lambda m: scene.set_camera_model(*camera_model(m)),
            "stats": lambda m: scene.set_stats(stats_fields(m)),
        }

    def apply(self, name: str, msg) -> None:
        try:
            self.handlers[name](msg)
        except Exception as err:  # noqa: BLE001 - one bad message must not stop the viewer
            LOG.warning("httm-view: skipped a %s message: %s: %s", name, type(err).__name__, err)
