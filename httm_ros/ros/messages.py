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
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from . import codec

# The world frame is REP-103 (x forward, y left, z up). Gravity is unknown, so by convention the
# first camera's forward axis (optical +z) is world +x and its down axis (optical +y) is world -z:
# world = WORLD_FROM_OPTICAL @ (the core's world, which is the first camera's optical frame).
WORLD_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0],
                               [-1.0, 0.0, 0.0],
                               [0.0, -1.0, 0.0]])
_WORLD_FROM_OPTICAL_4 = np.eye(4)
_WORLD_FROM_OPTICAL_4[:3, :3] = WORLD_FROM_OPTICAL

# odom_T_camera(stamp, camera_frame) -> float64 [4, 4] or None when TF has no such transform
OdomLookup = Callable[[Any, str], Optional[np.ndarray]]


def to_world_points(xyz: np.ndarray) -> np.ndarray:
    """Points of the core's world (first optical frame), float32 [N, 3] -> REP-103 world [N, 3]."""
    return (xyz @ WORLD_FROM_OPTICAL.T.astype(xyz.dtype)).astype(xyz.dtype, copy=False)


def to_world_poses(cam_to_world: np.ndarray) -> np.ndarray:
    """Camera (optical) -> core world float64 [K, 4, 4] -> camera -> REP-103 world [K, 4, 4]."""
    return _WORLD_FROM_OPTICAL_4 @ cam_to_world


def world_to_odom(world_T_camera: np.ndarray, odom_T_camera: np.ndarray) -> np.ndarray:
    """world -> odom [4, 4] such that world -> odom -> camera (the robot's TF) = world -> camera:
    world_T_odom = world_T_camera @ inv(odom_T_camera)."""
    return world_T_camera @ np.linalg.inv(odom_T_camera)


def camera_frame_of(values: Mapping[str, Any], input_frame: str) -> str:
    """Frame of depth / confidence / camera_info: the input image's, else ``camera_frame``."""
    return input_frame or values["camera_frame"]


def tf_child_frame(values: Mapping[str, Any], input_frame: str) -> str:
    """TF child of ``tf_mode`` camera: ``tf_child_frame``, else ``<input frame>_vggt`` (a frame of
    our own, never one with another parent), else ``camera_vggt``."""
    return values["tf_child_frame"] or f"{input_frame or 'camera'}_vggt"


@dataclass
class WindowOutputs:
    """Host copies of an accepted window's new keyframes (K' of them) and clouds.

    depth / conf float32 [K', H, W] (as predicted; None when not published), intrinsics
    float64 [K', 3, 3], cam_to_world float64 [K', 4, 4], points / map: (xyz float32 [N, 3],
    rgb uint8 [N, 3]) or None. ``keyframes``: indices of the new keyframes in the window.
    Lengths (depth, translations, points) are multiplied by ``scale`` (metres per world unit in
    metric mode, else 1). ``source_regions`` int [K', 4]: each keyframe's source region
    (x_offset, y_offset, width, height; ~/camera_info's roi) or None (zero roi).
    """

    keyframes: range
    image_hw: Tuple[int, int]
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    depth: Optional[np.ndarray] = None
    conf: Optional[np.ndarray] = None
    points: Optional[Tuple[np.ndarray, np.ndarray]] = None
    map: Optional[Tuple[np.ndarray, np.ndarray]] = None
    scale: float = 1.0
    source_regions: Optional[np.ndarray] = None


def host_copies(result, values: Mapping[str, Any],
                map_points: Optional[Tuple[np.ndarray, np.ndarray]] = None, scale: float = 1.0,
                source_regions: Optional[np.ndarray] = None) -> WindowOutputs:
    """Copy what the messages of an accepted ``result`` need to host memory (one transfer per
    array, nothing else: masking and packing happen in ``window_messages``). ``scale``: metres
    per world unit applied to every length (metric mode; 1 = world units)."""
    new = range(result.num_overlap, result.num_keyframes)
    sl = slice(new.start, new.stop)
    cam_to_world = scaled_poses(result.cam_to_world[sl].double().cpu().numpy(), scale)   # [K', 4, 4]
    out = WindowOutputs(new, tuple(result.image_hw), result.intrinsics[sl].double().cpu().numpy(),
                        cam_to_world, map=scaled_cloud(map_points, scale), scale=scale,
                        source_regions=source_regions)
    if values["publish_depth"]:
        out.depth = result.depth[sl].float().cpu().numpy()
        if scale != 1.0:
            out.depth = out.depth * np.float32(scale)                          # not in place: the core's
    if values["publish_depth_confidence"]:
        out.conf = result.conf[sl].float().cpu().numpy()
    if values["publish_points"]:
        out.points = scaled_cloud(result.points_numpy(), scale)
    return out


def scaled_poses(cam_to_world: np.ndarray, scale: float) -> np.ndarray:
    """cam_to_world [N, 4, 4] with its translations x ``scale`` (a copy: the input may be the
    core's own array); unchanged when ``scale`` is 1."""
    if scale == 1.0:
        return cam_to_world
    out = np.array(cam_to_world, copy=True)
    out[:, :3, 3] *= scale
    return out


def scaled_cloud(points: Optional[Tuple[np.ndarray, np.ndarray]], scale: float):
    """(xyz float32 [N, 3] x scale, rgb uint8 [N, 3]); None stays None."""
    if points is None or scale == 1.0:
        return points
    return points[0] * np.float32(scale), points[1]


def source_region_roi(mapping, enabled: bool = True) -> Tuple[int, int, int, int]:
    """~/camera_info's roi for a keyframe made by ``mapping`` (pipeline.input_mapping.InputMapping):
    the source region it shows, (x_offset, y_offset, width, height) in source pixels, rounded to
    whole pixels (exact unless a portrait frame was cropped); zeros when not ``enabled``."""
    if not enabled:
        return 0, 0, 0, 0
    return tuple(int(round(v)) for v in mapping.source_region())


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
                    with_tf: bool = False, input_frame: str = "",
                    odom_lookup: Optional[OdomLookup] = None) -> WindowMessages:
    """Messages from host copies: per new keyframe depth, confidence, camera info, pose (always:
    the path needs it) and TF when ``with_tf`` (by ``tf_mode``; ``odom`` needs ``odom_lookup``);
    the window's cloud and the map cloud when copied. Everything in the world frame is rotated to
    REP-103 (``WORLD_FROM_OPTICAL``). ``stamps``: builtin_interfaces/Time per keyframe of the
    window; ``values``: node parameters; ``input_frame``: the input images' header frame_id."""
    msgs = WindowMessages()
    world, camera = values["world_frame"], camera_frame_of(values, input_frame)
    height, width = outputs.image_hw
    world_T_camera = to_world_poses(outputs.cam_to_world)            # [K', 4, 4]
    poses = codec.poses_from_matrices(world_T_camera)
    for i, k in enumerate(outputs.keyframes):
        cam = codec.make_header(stamps[k], camera)
        if outputs.depth is not None:
            depth = outputs.depth[i]                          # NaN where not finite or <= 0 (REP 118)
            msgs.depth.append(codec.float_image(depth, cam, valid=depth > 0))
        if outputs.conf is not None:
            msgs.depth_confidence.append(codec.float_image(outputs.conf[i], cam))
        if values["publish_camera_info"]:
            roi = None if outputs.source_regions is None else outputs.source_regions[i]
            msgs.camera_info.append(codec.camera_info(outputs.intrinsics[i], width, height, cam, roi))
        msgs.pose.append(PoseStamped(header=codec.make_header(stamps[k], world), pose=poses[i]))
        if with_tf:
            msgs.tf.extend(_transforms(world_T_camera[i], poses[i], codec.make_header(stamps[k], world),
                                       values, input_frame, odom_lookup))
    if outputs.points is not None:
        msgs.points = world_cloud(outputs.points, codec.make_header(stamps[-1], world))
    if outputs.map is not None:
        msgs.map = world_cloud(outputs.map, codec.make_header(stamps[-1], world))
    return msgs


def world_cloud(points: Tuple[np.ndarray, np.ndarray], header) -> PointCloud2:
    """A cloud of the core's world (xyz float32 [N, 3], rgb uint8 [N, 3]) in the REP-103 world."""
    return codec.pointcloud2_xyzrgb(to_world_points(points[0]), points[1], header)


def _transforms(world_T_camera: np.ndarray, pose, header, values: Mapping[str, Any], input_frame: str,
                odom_lookup: Optional[OdomLookup]) -> List[TransformStamped]:
    """The /tf of one keyframe by ``tf_mode``: camera: world -> our own camera frame; odom: world
    -> odom_frame from the robot's odom -> camera at the keyframe's stamp (none when TF lacks it)."""
    if values["tf_mode"] == "camera":
        return [codec.transform_from_pose(pose, header, tf_child_frame(values, input_frame))]
    if values["tf_mode"] != "odom" or odom_lookup is None:
        return []
    odom_T_camera = odom_lookup(header.stamp, camera_frame_of(values, input_frame))
    if odom_T_camera is None:
        return []
    world_T_odom = codec.poses_from_matrices(world_to_odom(world_T_camera, odom_T_camera)[None])[0]
    return [codec.transform_from_pose(world_T_odom, header, values["odom_frame"])]
