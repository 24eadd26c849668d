"""The keyframe trajectory in the world frame (camera-to-world poses with stamps)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Union

import numpy as np

from ..io.tum import save_tum


class Trajectory:
    """Append-only list of (frame id, stamp, cam_to_world float64 [4,4]) of accepted keyframes."""

    def __init__(self) -> None:
        self.frame_ids: List[int] = []
        self.stamps: List[float] = []
        self._poses: List[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.frame_ids)

    def append(self, frame_ids: Sequence[int], stamps: Sequence[float], cam_to_world: np.ndarray) -> None:
        """Add keyframes: ids [K], stamps [K], poses [K,4,4]."""
        poses = np.asarray(cam_to_world, dtype=np.float64).reshape(-1, 4, 4)
        if not len(frame_ids) == len(stamps) == len(poses):
            raise ValueError(f"Trajectory.append: {len(frame_ids)} ids, {len(stamps)} stamps, {len(poses)} poses")
        self.frame_ids += [int(i) for i in frame_ids]
        self.stamps += [float(s) for s in stamps]
        self._poses += list(poses)

    def cam_to_world(self) -> np.ndarray:
        """float64 [N,4,4]."""
        return np.stack(self._poses) if self._poses else np.zeros((0, 4, 4))

    def positions(self) -> np.ndarray:
        """Camera centres float64 [N,3]."""
        return self.cam_to_world()[:, :3, 3]

    def save_tum(self, path: Union[str, Path]) -> Path:
        """Write ``t tx ty tz qx qy qz qw`` lines (camera-to-world, OpenCV camera axes)."""
        save_tum(path, self.stamps, self.cam_to_world())
        return Path(path)
