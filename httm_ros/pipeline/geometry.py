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
helpers take numpy (float64). Rigid inversion, camera-frame unprojection and quaternion
conversions are VGGT's own (``httm_ros.vggt.geometry``): one implementation of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch

from ..vggt.geometry import (depth_to_camera_points, invert_extrinsics, quaternion_to_rotation,
                             rotation_to_quaternion)

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------- rigid transforms
def invert_rigid(mat: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms [..., 3|4, 4] -> [..., 4, 4] (R^T, -R^T t); VGGT's implementation."""
    return invert_extrinsics(mat)


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
def unproject_depth(depth: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                    stride: int = 1) -> torch.Tensor:
    """World points of depth maps.

    depth [S,H,W] (z along the optical axis), cam_to_world [S,4,4] (or [S,3,4]), intrinsics [S,3,3]
    -> points [S,h,w,3] with h = ceil(H/stride), w = ceil(W/stride) (the pixels 0, stride, ...).
    Runs in the dtype of ``depth``, on its device. The camera-frame unprojection is VGGT's
    ``depth_to_camera_points`` on the strided grid, whose pixel j is pixel stride*j of the full
    image: that is the same camera with intrinsics divided by the stride (fx, fy, cx, cy).
    """
    dtype = depth.dtype
    k = intrinsics.to(dtype)
    if stride != 1:
        k = k.clone()
        k[..., :2, :] = k[..., :2, :] / stride
    cam = depth_to_camera_points(depth[..., ::stride, ::stride], k)          # [S,h,w,3]
    pose = cam_to_world.to(dtype)
    rot, trans = pose[..., :3, :3], pose[..., :3, 3]
    return torch.einsum("sij,shwj->shwi", rot, cam) + trans[:, None, None, :]


# ----------------------------------------------------------------------------- quaternions / TUM
def rotmat_to_quat(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] as (x, y, z, w), w >= 0 (float64)."""
    return rotation_to_quaternion(torch.as_tensor(np.asarray(rot, dtype=np.float64))).numpy()


def quat_to_rotmat(quat: np.ndarray) -> np.ndarray:
    """Quaternions [...,4] (x, y, z, w; need not be unit) -> rotation matrices [...,3,3] (float64)."""
    return quaternion_to_rotation(torch.as_tensor(np.asarray(quat, dtype=np.float64))).numpy()


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
