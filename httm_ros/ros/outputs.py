"""The messages of one accepted window, built from a pipeline WindowResult (no rclpy here).

``window_messages`` does every conversion the node needs (host copies included) and returns
plain message objects; the node only publishes them. Keeping the two apart lets the benchmark
time the conversions on a machine without DDS, and keeps the node a thin shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from . import codec


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


def window_messages(result, stamps: Sequence[Any], values: Mapping[str, Any],
                    map_points: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                    with_tf: bool = False) -> WindowMessages:
    """Messages for an accepted ``result``: per new keyframe (index >= num_overlap) depth,
    confidence, camera info, pose (always built: the path needs it) and TF when ``with_tf``;
    the window's cloud; the map cloud when ``map_points`` (xyz [N,3], rgb [N,3]) is given.
    ``stamps``: builtin_interfaces/Time per keyframe of the window; ``values``: node parameters
    (frame ids, publish_* switches)."""
    out = WindowMessages()
    world, camera = values["world_frame"], values["camera_frame"]
    new = range(result.num_overlap, result.num_keyframes)
    _keyframe_images(out, result, new, stamps, values, camera)
    poses = codec.poses_from_matrices(result.cam_to_world[new.start:new.stop].double().cpu().numpy())
    for k, pose in zip(new, poses):
        out.pose.append(PoseStamped(header=codec.make_header(stamps[k], world), pose=pose))
        if with_tf:
            out.tf.append(codec.transform_from_pose(pose, codec.make_header(stamps[k], world), camera))
    if values["publish_points"]:
        xyz, rgb = result.points_numpy()
        out.points = codec.pointcloud2_xyzrgb(xyz, rgb, codec.make_header(stamps[-1], world))
    if map_points is not None:
        out.map = codec.pointcloud2_xyzrgb(*map_points, codec.make_header(stamps[-1], world))
    return out


def _keyframe_images(out: WindowMessages, result, new: range, stamps, values, camera: str) -> None:
    """Depth (NaN where <= 0 or not finite), confidence and camera info of the new keyframes."""
    sl = slice(new.start, new.stop)
    depth = result.depth[sl].float().cpu().numpy() if values["publish_depth"] else None
    conf = result.conf[sl].float().cpu().numpy() if values["publish_depth_confidence"] else None
    intr = result.intrinsics[sl].double().cpu().numpy() if values["publish_camera_info"] else None
    height, width = result.image_hw
    for i, k in enumerate(new):
        header = codec.make_header(stamps[k], camera)
        if depth is not None:
            out.depth.append(codec.float_image(depth[i], header, valid=depth[i] > 0))
        if conf is not None:
            out.depth_confidence.append(codec.float_image(conf[i], header))
        if intr is not None:
            out.camera_info.append(codec.camera_info(intr[i], width, height, header))
