"""Pose messages from single 4x4 matrices, for tests (the node converts whole windows with
``codec.poses_from_matrices``)."""

import numpy as np
from geometry_msgs.msg import Pose, PoseStamped, TransformStamped

from httm_ros.ros import codec


def pose_from_matrix(matrix: np.ndarray) -> Pose:
    """camera-to-world [4, 4] -> geometry_msgs/Pose (any scale in the 3x3 block is removed)."""
    return codec.poses_from_matrices(np.asarray(matrix)[None])[0]


def pose_stamped(matrix: np.ndarray, header) -> PoseStamped:
    """camera-to-world [4, 4] -> PoseStamped in ``header.frame_id``."""
    return PoseStamped(header=header, pose=pose_from_matrix(matrix))


def transform_stamped(matrix: np.ndarray, header, child_frame_id: str) -> TransformStamped:
    """camera-to-world [4, 4] -> TransformStamped parent ``header.frame_id`` -> ``child_frame_id``."""
    return codec.transform_from_pose(pose_from_matrix(matrix), header, child_frame_id)
