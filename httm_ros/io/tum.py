"""TUM trajectory files: one ``t tx ty tz qx qy qz qw`` line per pose (camera-to-world, OpenCV axes)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np

from ..geometry import quat_to_rotmat, rotmat_to_quat

PathLike = Union[str, Path]


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
    return data[:, 0], poses_from_tum(data[:, 1:8])


def poses_from_tum(values: np.ndarray) -> np.ndarray:
    """TUM pose values [N,7] (tx ty tz qx qy qz qw) -> 4x4 poses float64 [N,4,4]."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, 7)
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    poses[:, :3, 3] = values[:, :3]
    if len(values):
        poses[:, :3, :3] = quat_to_rotmat(values[:, 3:7])
    return poses
