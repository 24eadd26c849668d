"""The REP-103 world frame convention and tf_mode odom's arithmetic (httm_ros.ros.messages)."""

import numpy as np
import pytest

from httm_ros.geometry import axis_angle_rotation
from httm_ros.ros import messages


def test_first_camera_forward_is_world_x_and_its_up_is_world_z():
    optical = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], np.float32)    # front, above, left  [3, 3]
    world = messages.to_world_points(optical)
    assert world.dtype == np.float32
    assert world == pytest.approx(np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]]))
    assert np.linalg.det(messages.WORLD_FROM_OPTICAL) == pytest.approx(1.0)


def test_poses_rotate_with_the_points():
    cam_to_world = np.eye(4)[None].repeat(2, 0)                               # [2, 4, 4]
    cam_to_world[1, :3, :3] = axis_angle_rotation([0, 1, 0], 0.3)
    cam_to_world[1, :3, 3] = (0.2, -0.1, 0.5)
    poses = messages.to_world_poses(cam_to_world)
    point_in_cam = np.array([0.1, 0.2, 2.0, 1.0])
    via_pose = (poses[1] @ point_in_cam)[:3]
    via_points = messages.to_world_points((cam_to_world[1] @ point_in_cam)[None, :3])[0]
    assert via_pose == pytest.approx(via_points)
    assert poses[0][:3, :3] == pytest.approx(messages.WORLD_FROM_OPTICAL)


def test_world_to_odom_closes_the_chain_with_the_robots_odom_to_camera():
    world_T_camera, odom_T_camera = np.eye(4), np.eye(4)
    world_T_camera[:3, :3], world_T_camera[:3, 3] = axis_angle_rotation([1, 2, 3], 0.7), (1.0, -2.0, 0.5)
    odom_T_camera[:3, :3], odom_T_camera[:3, 3] = axis_angle_rotation([0, 0, 1], -1.1), (4.0, 0.3, 1.2)
    world_T_odom = messages.world_to_odom(world_T_camera, odom_T_camera)
    assert world_T_odom @ odom_T_camera == pytest.approx(world_T_camera)
    assert messages.world_to_odom(world_T_camera, world_T_camera) == pytest.approx(np.eye(4))


def test_frames_of_the_outputs():
    values = {"camera_frame": "camera_optical_frame", "tf_child_frame": ""}
    assert messages.camera_frame_of(values, "cam_optical") == "cam_optical"
    assert messages.camera_frame_of(values, "") == "camera_optical_frame"
    assert messages.tf_child_frame(values, "cam_optical") == "cam_optical_vggt"
    assert messages.tf_child_frame(values, "") == "camera_vggt"
    assert messages.tf_child_frame({**values, "tf_child_frame": "mine"}, "cam_optical") == "mine"


def test_the_demo_preview_undoes_the_same_rotation():
    from httm_ros.tools.demo import preview

    assert preview.OPTICAL_FROM_WORLD == pytest.approx(messages.WORLD_FROM_OPTICAL.T)
