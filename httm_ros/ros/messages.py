"""The messages of one accepted window, in two steps (no rclpy here).

1. ``host_copies(result, values, map_points)`` (inference thread): the window's outputs as host
   numpy arrays, masked on their device first. Everything that touches the core's tensors or the
   GPU happens here, before the next window runs.
2. ``window_messages(outputs, stamps, values)`` (publisher thread): pure numpy -> messages.

Splitting them lets the node publish one window while the model runs the next, and lets the
benchmark time the conversions on a machine without DDS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from . import codec


@dataclass
class WindowOutputs:
    """Host copies of an accepted window's new keyframes (K' of them) and clouds.

    depth / conf float32 [K', H, W] (as predicted; None when not published), intrinsics
    float64 [K', 3, 3], cam_to_world float64 [K', 4, 4], points / map: (xyz float32 [N, 3],
    rgb uint8 [N, 3]) or None. ``keyframes``: indices of the new keyframes in the window.
    """

    keyframes: range
    image_hw: Tuple[int, int]
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    depth: Optional[np.ndarray] = None
    conf: Optional[np.ndarray] = None
    points: Optional[Tuple[np.ndarray, np.ndarray]] = None
    map: Optional[Tuple[np.ndarray, np.ndarray]] = None


def host_copies(result, values: Mapping[str, Any],
                map_points: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> WindowOutputs:
    """Copy what the messages of an accepted ``result`` need to host memory (one transfer per
    array, nothing else: masking and packing happen in ``window_messages``)."""
    new = range(result.num_overlap, result.num_keyframes)
    sl = slice(new.start, new.stop)
    out = WindowOutputs(new, tuple(result.image_hw), result.intrinsics[sl].double().cpu().numpy(),
                        result.cam_to_world[sl].double().cpu().numpy(), map=map_points)
    if values["publish_depth"]:
        out.depth = result.depth[sl].float().cpu().numpy()
    if values["publish_depth_confidence"]:
        out.conf = result.conf[sl].float().cpu().numpy()
    if values["publish_points"]:
        out.points = result.points_numpy()
    return out


@dataclass
class WindowMessages:
    """Messages of one window; lists hold one message per new keyframe, in order."""

    depth: List[Image] = field(default_factory=list)
    depth_confidence: List[Image] = field(default_factory=list)
    camera_info: List[CameraInfo] = field(default_factory=list)
    pose: List[PoseStamped] = field(default_factory=list)
    tf: List[TransformStamped] = field(default_factory=list)
    points: Optional[PointCloud2] = None
    map: Optional[PointCloud2] = None


def window_messages(outputs: WindowOutputs, stamps: Sequence[Any], values: Mapping[str, Any],
                    with_tf: bool = False) -> WindowMessages:
    """Messages from host copies: per new keyframe depth, confidence, camera info, pose (always:
    the path needs it) and TF when ``with_tf``; the window's cloud and the map cloud when copied.
    ``stamps``: builtin_interfaces/Time per keyframe of the window; ``values``: node parameters."""
    msgs = WindowMessages()
    world, camera = values["world_frame"], values["camera_frame"]
    height, width = outputs.image_hw
    poses = codec.poses_from_matrices(outputs.cam_to_world)
    for i, k in enumerate(outputs.keyframes):
        cam = codec.make_header(stamps[k], camera)
        if outputs.depth is not None:
            depth = outputs.depth[i]                          # NaN where not finite or <= 0 (REP 118)
            msgs.depth.append(codec.float_image(depth, cam, valid=depth > 0))
        if outputs.conf is not None:
            msgs.depth_confidence.append(codec.float_image(outputs.conf[i], cam))
        if values["publish_camera_info"]:
            msgs.camera_info.append(codec.camera_info(outputs.intrinsics[i], width, height, cam))
        msgs.pose.append(PoseStamped(header=codec.make_header(stamps[k], world), pose=poses[i]))
        if with_tf:
            msgs.tf.append(codec.transform_from_pose(poses[i], codec.make_header(stamps[k], world), camera))
    if outputs.points is not None:
        msgs.points = codec.pointcloud2_xyzrgb(*outputs.points, codec.make_header(stamps[-1], world))
    if outputs.map is not None:
        msgs.map = codec.pointcloud2_xyzrgb(*outputs.map, codec.make_header(stamps[-1], world))
    return msgs
