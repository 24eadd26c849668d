"""httm-view's scene (viser, no ROS) and message adapter: what each update puts into the scene."""

import numpy as np
import pytest

pytest.importorskip("viser")

from httm_ros.viewer.server import start_viewer  # noqa: E402
from httm_ros.viewer.viser_scene import stats_markdown, tracking_state  # noqa: E402


@pytest.fixture()
def viewer():
    server, feed = start_viewer("127.0.0.1", 0)
    yield server, feed.scene
    server.stop()


def _handles(server):
    return server.scene._handle_from_node_name


def test_scene_shows_clouds_path_camera_depth_and_stats(viewer):
    server, scene = viewer
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(500, 3)).astype(np.float32)
    xyz[:10] = np.nan                                                   # invalid points are left out
    rgb = rng.integers(0, 255, size=(500, 3), dtype=np.uint8)
    scene.set_map(xyz, rgb)
    scene.set_window(xyz[:100], rgb[:100])
    assert scene.counts["map"] == 490 and scene.counts["window"] == 90
    assert _handles(server)["/map"].points.shape == (490, 3)
    assert np.allclose(server.initial_camera.look_at, np.median(xyz[10:], axis=0))   # view framed on the map

    k = 150                                                             # more keyframes than frustums
    positions = np.stack([np.linspace(0, 3, k), np.zeros(k), np.zeros(k)], axis=1)
    wxyz = np.tile([1.0, 0.0, 0.0, 0.0], (k, 1))
    scene.set_camera_model(np.deg2rad(50.0), 4 / 3)
    scene.set_path(positions, wxyz)
    assert scene.counts["path"] == k and scene.counts["frustums"] == 60
    assert _handles(server)["/trajectory/line"].points.shape == (k - 1, 2, 3)
    scene.set_path(positions[:5], wxyz[:5])                             # fewer: the extra frustums go
    assert scene.counts["frustums"] == 5 and "/trajectory/frustum_005" not in _handles(server)
    scene.set_pose(positions[4], wxyz[4])
    assert np.allclose(_handles(server)["/camera"].position, positions[4])

    scene.set_depth(np.zeros((84, 112, 3), np.uint8))
    scene.set_depth(np.full((84, 112, 3), 200, np.uint8))
    assert scene.counts["depth"] == 2
    scene.set_stats({"alignment_accepted": False, "alignment_message": "scale jump 3.1 > 2", "window_index": 7,
                     "map_points": 490, "kept_q_ratio": 0.2})
    assert "rejected: scale jump" in scene._status.content and "| window | 7 |" in scene._status.content


def test_tracking_state_and_stats_text():
    assert tracking_state({"alignment_accepted": True}) == "accepted"
    assert tracking_state({"alignment_accepted": False, "alignment_message": "window failed: CUDA out of memory"}) \
        == "failed: CUDA out of memory"
    assert tracking_state({"alignment_accepted": False, "alignment_message": "too few inliers"}) \
        == "rejected: too few inliers"
    text = stats_markdown({"alignment_accepted": True, "latency_total_ms": 123.456, "latency_model_ms": 10168.4,
                           "frames_received": 12}, 3)
    assert "| latency total [ms] | 123.5 |" in text and "| latency model [ms] | 10168 |" in text
    assert "| frames received | 12 |" in text
    assert "| stats messages | 3 |" in text
    text = stats_markdown({"alignment_accepted": False, "tracking_state": "LOST", "map_segment": 1}, 4)
    assert "| tracking state | LOST |" in text and "| map segment | 1 |" in text


def test_adapter_decodes_messages_into_the_scene(viewer):
    pytest.importorskip("sensor_msgs")
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path

    from httm_ros.ros import codec
    from httm_ros.viewer.msg_adapter import SceneFeed, colorize_depth

    server, scene = viewer
    feed = SceneFeed(scene)
    header = codec.make_header(codec.sec_to_stamp(1.0), "map")
    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    rgb = np.arange(30, dtype=np.uint8).reshape(10, 3)
    feed.apply("map", codec.pointcloud2_xyzrgb(xyz, rgb, header))
    assert np.array_equal(_handles(server)["/map"].colors, rgb)
    moved = np.tile(np.eye(4), (4, 1, 1))
    moved[:, 0, 3] = np.arange(4)                                       # [4, 4, 4] along x
    poses = [PoseStamped(header=header, pose=p) for p in codec.poses_from_matrices(moved)]
    feed.apply("path", Path(header=header, poses=poses))
    feed.apply("pose", poses[-1])
    assert scene.counts["path"] == 4 and np.allclose(_handles(server)["/camera"].position, [3, 0, 0])
    depth = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    depth[0, 0] = np.nan
    feed.apply("depth", codec.float_image(depth, header))
    assert scene.counts["depth"] == 1
    colours = colorize_depth(depth)
    assert colours.shape == (3, 4, 3) and colours[0, 0].tolist() == [0, 0, 0] and colours[2, 3].sum() > 0
    feed.apply("map", PoseStamped())                                    # wrong message: skipped, logged
    assert scene.counts["map"] == 10
