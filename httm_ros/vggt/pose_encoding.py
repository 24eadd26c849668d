"""VGGT's camera pose encoding <-> extrinsics / intrinsics (vectorised torch; any leading dims).

Conventions (as the official VGGT): extrinsics are 3x4 camera-from-world matrices in OpenCV
camera axes (x right, y down, z forward); the first frame is the world frame. The pose
encoding "absT_quaR_FoV" is [t (3), quaternion xyzw (4), fov_h, fov_w]. Intrinsics have the
principal point at the image centre (W/2, H/2). Rotations, rigid inverses and unprojection are
in :mod:`httm_ros.geometry`.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from ..geometry import quaternion_to_rotation, rotation_to_quaternion


def _focal_from_fov(fov: Tensor, size: float) -> Tensor:
    return (size / 2.0) / torch.tan(fov / 2.0)


def pose_encoding_to_extrinsics_intrinsics(pose_enc: Tensor, image_hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """pose_enc [..., 9] -> (extrinsics [..., 3, 4] camera-from-world, intrinsics [..., 3, 3])."""
    if pose_enc.shape[-1] != 9:
        raise ValueError(f"pose encoding must end in 9 values, got {tuple(pose_enc.shape)}")
    height, width = image_hw
    rot = quaternion_to_rotation(pose_enc[..., 3:7])
    extrinsics = torch.cat((rot, pose_enc[..., :3, None]), dim=-1)
    intrinsics = torch.zeros(*pose_enc.shape[:-1], 3, 3, dtype=pose_enc.dtype, device=pose_enc.device)
    intrinsics[..., 0, 0] = _focal_from_fov(pose_enc[..., 8], width)
    intrinsics[..., 1, 1] = _focal_from_fov(pose_enc[..., 7], height)
    intrinsics[..., 0, 2] = width / 2.0
    intrinsics[..., 1, 2] = height / 2.0
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def extrinsics_intrinsics_to_pose_encoding(extrinsics: Tensor, intrinsics: Tensor,
                                           image_hw: Tuple[int, int]) -> Tensor:
    """extrinsics [..., 3|4, 4] and intrinsics [..., 3, 3] -> pose_enc [..., 9]."""
    height, width = image_hw
    quat = rotation_to_quaternion(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2.0) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2.0) / intrinsics[..., 0, 0])
    return torch.cat((extrinsics[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]), dim=-1)
