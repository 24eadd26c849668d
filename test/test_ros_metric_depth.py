"""Metric mode (issue 17) over real rclpy: the node gets images, an aligned depth image (16UC1 mm
or 32FC1 m, with noise and holes) and camera_info of the same stamps; ~/depth, ~/points, ~/map and
~/pose come out in metres. Ground truth: the synthetic sequence's depth (metres); the oracle's
world unit is its first window's random scale."""

import os

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from httm_ros.ros import codec  # noqa: E402
from httm_ros.synthetic import demo_sequence  # noqa: E402
from httm_ros.tools.local_dds import wait_for  # noqa: E402
from rgbd_harness import H, TIMEOUT, W, RgbdHarness, depth_msg, info_msg, rgbd_ros, source_k, up2  # noqa: E402

def diagnostics(node) -> dict:
    """The node's /diagnostics status right now: its key-values, level and message."""
    status = node._diagnostics.message(node.get_clock().now().to_msg()).status[0]
    return {**{kv.key: kv.value for kv in status.values}, "level": status.level, "message": status.message}


NOISE, HOLES = 0.02, 0.25          # sensor depth: 2 % relative noise, 25 % holes (0 or NaN)


@pytest.fixture(scope="module")
def seq():
    return demo_sequence(num_frames=16, width=W, height=H, seed=0, speed=0.05)


@pytest.fixture(scope="module")
def ros():
    yield from rgbd_ros(__name__)


def sensor_depth(seq, i, rng, encoding):
    """The camera's depth of frame i (224x168), metres -> 16UC1 mm or 32FC1 m, noisy and holey."""
    metres = up2(seq.depth[i]) * (1.0 + NOISE * rng.standard_normal((2 * H, 2 * W)))
    holes = rng.random(metres.shape) < HOLES
    if encoding == "16UC1":
        mm = np.round(metres * 1000.0).astype(np.uint16)
        mm[holes] = 0
        return depth_msg(mm, "16UC1")
    metres = metres.astype(np.float32)
    metres[holes] = np.where(rng.random(int(holes.sum())) < 0.5, 0.0, np.nan)
    return depth_msg(metres, "32FC1")


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_metric_mode_publishes_depth_points_map_and_poses_in_metres(ros, seq, encoding):
    h = RgbdHarness(ros, seq, scale_range=(2.5, 4.0), use_depth=True, use_camera_info=True)
    rng = np.random.default_rng(7)
    try:
        for i in range(14):                                    # windows of 6 (overlap 2): 6 + 4 + 4
            h.send(i, info=info_msg(source_k(seq), 2 * W, 2 * H), depth=sensor_depth(seq, i, rng, encoding))
        last_pose = lambda: any(m.header.stamp.sec - 1_700_000_000 == 13 for m in h.col.messages["pose"])  # noqa: E731
        wait_for(lambda: h.col.count("stats") >= 3 and h.col.count("depth") >= 14 and h.col.count("map") >= 3
                 and last_pose(), TIMEOUT, "3 metric windows and the last keyframe's ~/pose")
        truth = 1.0 / h.oracle.calls[0]["scale"]              # metres per world unit
        assert truth < 0.4                                     # the world is really not in metres
        stats = h.col.messages["stats"][:3]
        for s in stats:
            assert s.metric and s.keyframes_with_depth == s.num_keyframes - s.num_overlap_keyframes
            assert s.metric_scale == pytest.approx(truth, rel=0.02)            # stated tolerance: 2 %
            assert s.metric_scale_window == pytest.approx(truth, rel=0.02)
            assert 0.0 < s.metric_scale_spread < 0.1 and s.metric_pixels > 1000
        # ~/depth in metres: median relative error to the ground truth below 3 %
        for msg in h.col.messages["depth"][:14:3]:
            i = msg.header.stamp.sec - 1_700_000_000
            depth = codec.image_to_float(msg)
            assert np.nanmedian(np.abs(depth / seq.depth[i] - 1.0)) < 0.03, i
        # ~/pose: distances between keyframes are the true ones in metres
        poses = {m.header.stamp.sec - 1_700_000_000: m.pose.position for m in h.col.messages["pose"]}
        got = np.linalg.norm([poses[13].x - poses[0].x, poses[13].y - poses[0].y, poses[13].z - poses[0].z])
        true = np.linalg.norm(seq.cam_to_world[13, :3, 3] - seq.cam_to_world[0, :3, 3])
        assert got == pytest.approx(true, rel=0.03)
        # ~/points and ~/map: the cloud's extent in metres (the scene's size), not world units
        xyz, _ = codec.decode_pointcloud2_xyzrgb(h.col.messages["map"][-1])
        gt = np.concatenate([seq.world_points(i, stride=4).reshape(-1, 3) for i in range(14)])
        gt = gt[np.isfinite(gt).all(1)]
        spread = lambda p: np.median(np.linalg.norm(p - np.median(p, 0), axis=1))       # noqa: E731
        assert spread(xyz) == pytest.approx(spread(gt), rel=0.1)
        pts, _ = codec.decode_pointcloud2_xyzrgb(h.col.messages["points"][-1])
        assert len(pts) > 100 and spread(pts) < 2 * spread(gt)
        diag = diagnostics(h.node)                             # /diagnostics: the scale, no metric warning
        assert float(diag["metric_scale"]) == pytest.approx(truth, rel=0.02)
        assert "metric mode" not in diag["message"]
    finally:
        h.close()


def test_unsupported_depth_and_missing_depth_leave_world_units(ros, seq):
    h = RgbdHarness(ros, seq, scale_range=(2.5, 4.0), use_depth=True, side_input_wait=0.0)
    try:
        for i in range(6):
            bad = depth_msg(np.zeros((2 * H, 2 * W), np.uint8), "8UC1") if i % 2 else None
            h.send(i, depth=bad)
        wait_for(lambda: h.col.count("stats") >= 1 and h.col.count("depth") >= 6, TIMEOUT, "a window")
        s = h.col.messages["stats"][0]
        counts = dict(zip(s.side_input_counts_names, s.side_input_counts))
        assert counts["refused.unsupported_depth_encoding"] == 3 and counts["paired.depth.unpaired"] == 6
        assert not s.metric and np.isnan(s.metric_scale) and s.metric_pixels == 0 and s.keyframes_with_depth == 0
        world = codec.image_to_float(h.col.messages["depth"][0])          # world units: the oracle's scale
        ratio = np.nanmedian(world / seq.depth[0])
        assert ratio == pytest.approx(h.oracle.calls[0]["scale"], rel=0.03)
        diag = diagnostics(h.node)                             # metres promised, world units given: WARN
        assert diag["level"] == DiagnosticStatus.WARN and diag["metric_scale"] == "none yet"
        assert "metric mode: no scale yet" in diag["message"]
    finally:
        h.close()
