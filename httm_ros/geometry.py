"""Rigid and similarity geometry of cameras: the package's one implementation.

Conventions (the official VGGT's):

* Camera axes are OpenCV's: x right, y down, z forward.
* ``extrinsics`` are camera-from-world ``[..., 3, 4]``; ``cam_to_world`` are their inverses,
  stored as ``[..., 4, 4]``.
* Pixel ``(row i, column j)`` has image coordinates ``(u=j, v=i)`` (no half-pixel offset); a
  VGGT camera's principal point is ``(W/2, H/2)``. The synthetic renderer casts rays with this
  convention, so its depth and intrinsics unproject exactly with :func:`unproject_depth`.
* Quaternions are ``(x, y, z, w)`` (VGGT's pose encoding and the TUM trajectory format).

Torch functions are vectorised over any leading dims and run where their inputs live. The
``*_np`` style helpers at the end (``rotmat_to_quat``, ``quat_to_rotmat``, ``axis_angle_rotation``)
take and return numpy float64 for the numpy callers (file formats, ROS messages, oracles).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
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


# ------------------------------------------------------------------ rigid / similarity transforms


def invert_rigid(se3: Tensor) -> Tensor:
    """Closed-form inverse (R^T, -R^T t) of rigid transforms [..., 3, 4] or [..., 4, 4] -> [..., 4, 4].

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


def transform_cam_to_world(cam_to_local: Tensor, scale: float, rot: Tensor, trans: Tensor) -> Tensor:
    """Map camera poses [S,4,4] of a local frame into the world by x_w = s R x_l + t (R [3,3], t [3]).

    The result stays a rigid pose (rotation R R_c, centre s R c + t): the scale changes depth units,
    not the camera's rotation.
    """
    out = cam_to_local.clone()
    out[..., :3, :3] = rot @ cam_to_local[..., :3, :3]
    out[..., :3, 3] = scale * (cam_to_local[..., :3, 3] @ rot.T) + trans
    return out


# ----------------------------------------------------------------------- unprojection


def depth_to_camera_points(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """depth [..., H, W], intrinsics [..., 3, 3] -> camera-frame points [..., H, W, 3]."""
    height, width = depth.shape[-2:]
    u = torch.arange(width, dtype=depth.dtype, device=depth.device)
    v = torch.arange(height, dtype=depth.dtype, device=depth.device)[:, None]
    k = intrinsics[..., None, None, :, :]                                    # [..., 1, 1, 3, 3]
    x = (u - k[..., 0, 2]) * depth / k[..., 0, 0]
    y = (v - k[..., 1, 2]) * depth / k[..., 1, 1]
    return torch.stack((x, y, depth), dim=-1)


def unproject_depth(depth: Tensor, cam_to_world: Tensor, intrinsics: Tensor, stride: int = 1) -> Tensor:
    """World points of depth maps.

    depth [..., H, W] (z along the optical axis), cam_to_world [..., 4, 4] (or [..., 3, 4]),
    intrinsics [..., 3, 3] -> points [..., h, w, 3] with h = ceil(H/stride), w = ceil(W/stride)
    (the pixels 0, stride, ...). Runs in the dtype of ``depth``, on its device. The strided grid's
    pixel j is pixel stride*j of the full image: the same camera with fx, fy, cx, cy / stride.
    """
    dtype = depth.dtype
    k = intrinsics.to(dtype)
    if stride != 1:
        k = k.clone()
        k[..., :2, :] = k[..., :2, :] / stride
    cam = depth_to_camera_points(depth[..., ::stride, ::stride], k)          # [..., h, w, 3]
    pose = cam_to_world.to(dtype)
    rot, trans = pose[..., :3, :3], pose[..., :3, 3]
    return torch.einsum("...ij,...hwj->...hwi", rot, cam) + trans[..., None, None, :]


# ------------------------------------------------------------------ numpy entry points (float64)


def rotmat_to_quat(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] (x, y, z, w), w >= 0 (float64)."""
    return rotation_to_quaternion(torch.as_tensor(np.asarray(rot, dtype=np.float64))).numpy()


def quat_to_rotmat(quat: np.ndarray) -> np.ndarray:
    """Quaternions [...,4] (x, y, z, w; need not be unit) -> rotation matrices [...,3,3] (float64)."""
    return quaternion_to_rotation(torch.as_tensor(np.asarray(quat, dtype=np.float64))).numpy()


def axis_angle_rotation(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotation [3,3] float64 of ``angle`` radians about ``axis`` [3] (any length > 0; Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx
