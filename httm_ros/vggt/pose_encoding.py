"""Camera geometry for VGGT outputs (vectorised torch; any leading dims; any device).

Conventions (as the official VGGT): extrinsics are 3x4 camera-from-world matrices in OpenCV
camera axes (x right, y down, z forward); the first frame is the world frame. The pose
encoding "absT_quaR_FoV" is [t (3), quaternion xyzw (4), fov_h, fov_w]. Intrinsics have the
principal point at the image centre (W/2, H/2). Pixel (u, v) is the integer column/row
index (no +0.5).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

# ------------------------------------------------------------------------ rotations


def quaternion_to_rotation(quat: Tensor) -> Tensor:
    """quat [..., 4] (x, y, z, w; need not be unit) -> rotation matrices [..., 3, 3]."""
    x, y, z, w = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def rotation_to_quaternion(rot: Tensor) -> Tensor:
    """rot [..., 3, 3] -> unit quaternion [..., 4] (x, y, z, w) with w >= 0.

    Four candidate formulas (one per largest component) are formed and the best-conditioned
    one is kept, so the result is stable for any rotation.
    """
    m = rot.reshape(*rot.shape[:-2], 9).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    # 4 * (w^2, x^2, y^2, z^2)
    t = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                     1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1)
    # each row is 4*c*(x, y, z, w) for the candidate's own component c
    cands = torch.stack((
        torch.stack((m21 - m12, m02 - m20, m10 - m01, t[..., 0]), -1),
        torch.stack((t[..., 1], m10 + m01, m02 + m20, m21 - m12), -1),
        torch.stack((m10 + m01, t[..., 2], m12 + m21, m02 - m20), -1),
        torch.stack((m02 + m20, m12 + m21, t[..., 3], m10 - m01), -1),
    ), dim=-2)                                                               # [..., 4, 4]
    best = t.argmax(-1)                                                      # [...]
    pick = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = pick / (2 * torch.gather(t, -1, best[..., None]).clamp_min(1e-12).sqrt())
    quat = quat / quat.norm(dim=-1, keepdim=True)
    return torch.where(quat[..., 3:] < 0, -quat, quat)


# ------------------------------------------------------------------ pose encoding


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


# ------------------------------------------------------------------ rigid transforms


def invert_extrinsics(se3: Tensor) -> Tensor:
    """Closed-form inverse of rigid transforms [..., 3, 4] or [..., 4, 4] -> [..., 4, 4].

    For camera-from-world extrinsics this gives world-from-camera (camera-to-world) poses.
    """
    if se3.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(f"expected [..., 3, 4] or [..., 4, 4], got {tuple(se3.shape)}")
    rot_t = se3[..., :3, :3].transpose(-1, -2)
    trans = -(rot_t @ se3[..., :3, 3:])                                      # [..., 3, 1]
    out = torch.zeros(*se3.shape[:-2], 4, 4, dtype=se3.dtype, device=se3.device)
    out[..., :3, :3] = rot_t
    out[..., :3, 3:] = trans
    out[..., 3, 3] = 1.0
    return out


closed_form_inverse_se3 = invert_extrinsics


# ----------------------------------------------------------------------- unproject


def depth_to_camera_points(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """depth [..., H, W], intrinsics [..., 3, 3] -> camera-frame points [..., H, W, 3]."""
    height, width = depth.shape[-2:]
    u = torch.arange(width, dtype=depth.dtype, device=depth.device)
    v = torch.arange(height, dtype=depth.dtype, device=depth.device)[:, None]
    k = intrinsics[..., None, None, :, :]                                    # [..., 1, 1, 3, 3]
    x = (u - k[..., 0, 2]) * depth / k[..., 0, 0]
    y = (v - k[..., 1, 2]) * depth / k[..., 1, 1]
    return torch.stack((x, y, depth), dim=-1)


def depth_to_world_points(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor) -> Tensor:
    """depth [..., H, W], extrinsics [..., 3, 4] (camera-from-world), intrinsics [..., 3, 3]
    -> world points [..., H, W, 3]."""
    cam = depth_to_camera_points(depth, intrinsics)
    world_from_cam = invert_extrinsics(extrinsics)
    rot = world_from_cam[..., None, None, :3, :3]                             # [..., 1, 1, 3, 3]
    trans = world_from_cam[..., None, None, :3, 3]                            # [..., 1, 1, 3]
    return (rot @ cam[..., None]).squeeze(-1) + trans
