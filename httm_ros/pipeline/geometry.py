"""Small geometry helpers shared by the pipeline and the synthetic renderer.

Conventions (the same as VGGT):

* Camera axes are OpenCV's: x right, y down, z forward.
* ``extrinsics`` are camera-from-world ``[..., 3, 4]``; ``cam_to_world`` are their inverses,
  stored as ``[..., 4, 4]``.
* Pixel ``(row i, column j)`` has image coordinates ``(u=j, v=i)`` (no half-pixel offset), and the
  principal point of a VGGT camera is ``(W/2, H/2)``. The renderer casts rays with this convention,
  so ground-truth depth and intrinsics unproject exactly with :func:`unproject_depth`.
* Quaternions are ``(x, y, z, w)`` as in the TUM trajectory format.

Torch functions are device-agnostic (they run where their inputs live); the TUM / quaternion
helpers are numpy (float64) because they only touch a few poses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------- rigid transforms
def to_homogeneous(mat: torch.Tensor) -> torch.Tensor:
    """[..., 3, 4] -> [..., 4, 4] (appends the row 0 0 0 1); [..., 4, 4] is returned as is."""
    if mat.shape[-2:] == (4, 4):
        return mat
    if mat.shape[-2:] != (3, 4):
        raise ValueError(f"expected [...,3,4] or [...,4,4], got {tuple(mat.shape)}")
    bottom = torch.zeros(*mat.shape[:-2], 1, 4, dtype=mat.dtype, device=mat.device)
    bottom[..., 0, 3] = 1
    return torch.cat([mat, bottom], dim=-2)


def invert_rigid(mat: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms [..., 3|4, 4] -> [..., 4, 4] (R^T, -R^T t)."""
    rot, trans = mat[..., :3, :3], mat[..., :3, 3:]
    rot_t = rot.transpose(-1, -2)
    return to_homogeneous(torch.cat([rot_t, -rot_t @ trans], dim=-1))


def similarity_matrix(scale: float, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """4x4 matrix of x -> scale * R x + t (rot [3,3], trans [3])."""
    out = torch.eye(4, dtype=rot.dtype, device=rot.device)
    out[:3, :3] = scale * rot
    out[:3, 3] = trans
    return out


def transform_cam_to_world(cam_to_local: torch.Tensor, scale: float, rot: torch.Tensor,
                           trans: torch.Tensor) -> torch.Tensor:
    """Map camera poses [S,4,4] of a local frame into the world by x_w = s R x_l + t.

    The result stays a rigid pose (rotation R R_c, centre s R c + t): the scale changes depth units,
    not the camera's rotation.
    """
    out = cam_to_local.clone()
    out[..., :3, :3] = rot @ cam_to_local[..., :3, :3]
    out[..., :3, 3] = scale * (cam_to_local[..., :3, 3] @ rot.T) + trans
    return out


# ----------------------------------------------------------------------------- unprojection
def pixel_grid(height: int, width: int, stride: int = 1, device=None,
               dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates [h, w, 3] = (u=j, v=i, 1) for rows/columns 0, stride, ..."""
    v = torch.arange(0, height, stride, device=device, dtype=dtype)
    u = torch.arange(0, width, stride, device=device, dtype=dtype)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv, torch.ones_like(uu)], dim=-1)


def unproject_depth(depth: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                    stride: int = 1) -> torch.Tensor:
    """World points of depth maps.

    depth [S,H,W] (z along the optical axis), cam_to_world [S,4,4] (or [S,3,4]), intrinsics [S,3,3]
    -> points [S,h,w,3] with h = ceil(H/stride), w = ceil(W/stride) (the pixels 0, stride, ...).
    Runs in the dtype of ``depth``, on its device.
    """
    S, H, W = depth.shape
    dtype, dev = depth.dtype, depth.device
    pix = pixel_grid(H, W, stride, device=dev, dtype=dtype)             # [h,w,3]
    d = depth[:, ::stride, ::stride]                                    # [S,h,w]
    k_inv = torch.linalg.inv(intrinsics.to(torch.float64)).to(dtype)   # [S,3,3]
    rays = torch.einsum("sij,hwj->shwi", k_inv, pix)                    # [S,h,w,3], z == 1
    cam_pts = rays * d[..., None]
    pose = cam_to_world.to(dtype)
    rot, trans = pose[:, :3, :3], pose[:, :3, 3]
    return torch.einsum("sij,shwj->shwi", rot, cam_pts) + trans[:, None, None, :]


# ----------------------------------------------------------------------------- quaternions / TUM
def rotmat_to_quat(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] as (x, y, z, w), w >= 0."""
    rot = np.asarray(rot, dtype=np.float64)
    m = rot.reshape(-1, 3, 3)
    # Shepperd's method: pick the largest of 4 candidate denominators for stability.
    tr = np.trace(m, axis1=1, axis2=2)
    cand = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    k = np.argmax(cand, axis=1)
    q = np.empty((m.shape[0], 4))
    for idx in range(m.shape[0]):
        q[idx] = _quat_from_matrix(m[idx], int(k[idx]))
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(*rot.shape[:-2], 4)


def _quat_from_matrix(m: np.ndarray, k: int) -> np.ndarray:
    """One rotation matrix -> (x, y, z, w), using branch k of Shepperd's method."""
    if k == 0:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] + m[1, 1] + m[2, 2], 1e-300))
        return np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4])
    if k == 1:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 1e-300))
        return np.array([s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s])
    if k == 2:
        s = 2.0 * math.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 1e-300))
        return np.array([(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s])
    s = 2.0 * math.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 1e-300))
    return np.array([(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s])


def quat_to_rotmat(quat: np.ndarray) -> np.ndarray:
    """Quaternions [...,4] (x, y, z, w), normalised here -> rotation matrices [...,3,3]."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def save_tum(path: PathLike, stamps: Sequence[float], cam_to_world: np.ndarray) -> None:
    """Write poses [N,4,4] as TUM lines ``t tx ty tz qx qy qz qw`` (camera-to-world)."""
    poses = np.asarray(cam_to_world, dtype=np.float64).reshape(-1, 4, 4)
    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1)
    if len(stamps) != len(poses):
        raise ValueError(f"{len(stamps)} stamps for {len(poses)} poses")
    quats = rotmat_to_quat(poses[:, :3, :3]) if len(poses) else np.zeros((0, 4))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("# timestamp tx ty tz qx qy qz qw (camera-to-world, OpenCV camera axes)\n")
        for t, pose, q in zip(stamps, poses, quats):
            vals = [*pose[:3, 3], *q]
            f.write(f"{t:.6f} " + " ".join(f"{v:.9f}" for v in vals) + "\n")


def load_tum(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory -> (stamps float64 [N], cam_to_world float64 [N,4,4])."""
    rows = [line.split() for line in Path(path).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, 3] = data[:, 1:4]
    if len(data):
        poses[:, :3, :3] = quat_to_rotmat(data[:, 4:8])
    return data[:, 0], poses
