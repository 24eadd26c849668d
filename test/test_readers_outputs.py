"""Third-party readers open our output files, produced by the real offline tool (run_bag of
httm-reconstruct-bag with the oracle predictor on the synthetic demo sequence):

- ``plyfile`` reads map.ply: the point count, xyz and colours of the map we wrote;
- ``mcap`` + ``mcap-ros2-support`` decode every message of the MCAP output bag, and the map
  cloud decodes to the same xyz + rgb;
- ``evo`` (``evo_ape tum GT EST -as``) reads trajectory.tum against the ground truth; its RMSE
  matches our ATE (httm_ros.eval.metrics.ate) within 1 %.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

plyfile = pytest.importorskip("plyfile")
pytest.importorskip("mcap_ros2")
pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from oracle_outputs import ground_truth_stamps, oracle_outputs  # noqa: E402


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return oracle_outputs(tmp_path_factory.mktemp("oracle"))


def test_plyfile_reads_the_map(outputs):
    from httm_ros.ros.messages import to_world_points

    xyz, rgb = outputs.rec.map.points()                                 # [N, 3] float32, [N, 3] uint8
    xyz = to_world_points(xyz)                                          # map.ply is in the REP-103 world
    vertex = plyfile.PlyData.read(str(outputs.out / "map.ply"))["vertex"]
    assert len(xyz) > 1000 and vertex.count == len(xyz)
    assert np.array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1), xyz.astype(np.float32))
    assert np.array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1), rgb)


def _cloud_xyzrgb(msg):
    """A PointCloud2 decoded by mcap_ros2 (a plain object) -> xyz [N, 3], rgb uint8 [N, 3],
    from its own fields (no httm_ros code)."""
    offsets = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height * msg.width, msg.point_step)
    order = ">" if msg.is_bigendian else "<"
    xyz = np.stack([raw[:, offsets[c]:offsets[c] + 4].copy().view(order + "f4")[:, 0] for c in "xyz"], axis=1)
    packed = raw[:, offsets["rgb"]:offsets["rgb"] + 4].copy().view(order + "u4")[:, 0]
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return xyz, rgb


def test_mcap_ros2_decodes_every_message(outputs):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    files = list((outputs.out / "bag").glob("*.mcap"))
    assert len(files) == 1
    counts, last = {}, {}
    with open(files[0], "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, _, decoded in reader.iter_decoded_messages():
            assert decoded is not None, channel.topic
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            last[channel.topic] = (schema.name, decoded)
    assert counts == outputs.report["output_messages"]
    assert {t: s for t, (s, _) in last.items()} == {
        "/reconstruct_node/points": "sensor_msgs/msg/PointCloud2", "/reconstruct_node/map": "sensor_msgs/msg/PointCloud2",
        "/reconstruct_node/depth": "sensor_msgs/msg/Image", "/reconstruct_node/depth_confidence": "sensor_msgs/msg/Image",
        "/reconstruct_node/camera_info": "sensor_msgs/msg/CameraInfo", "/reconstruct_node/pose": "geometry_msgs/msg/PoseStamped",
        "/reconstruct_node/path": "nav_msgs/msg/Path", "/reconstruct_node/stats": "httm_ros/msg/WindowStats",
        "/tf": "tf2_msgs/msg/TFMessage"}
    xyz, rgb = _cloud_xyzrgb(last["/reconstruct_node/map"][1])            # the final map (every window accepted)
    ours_xyz, ours_rgb = outputs.rec.map.points()
    from httm_ros.ros.messages import to_world_points

    ours_xyz = to_world_points(ours_xyz)                           # published in the REP-103 world
    assert np.array_equal(xyz, ours_xyz) and np.array_equal(rgb, ours_rgb)
    stats = last["/reconstruct_node/stats"][1]
    assert stats.alignment_accepted and stats.map_points == len(ours_xyz)
    assert len(last["/reconstruct_node/path"][1].poses) == outputs.report["summary"]["keyframes"]


def test_evo_ape_matches_our_ate(outputs, tmp_path):
    from httm_ros.eval.metrics import ate
    from httm_ros.io.tum import load_tum, save_tum

    evo_ape = shutil.which("evo_ape") or str(Path(sys.executable).with_name("evo_ape"))
    seq, est = outputs.sequence, outputs.out / "trajectory.tum"
    gt = tmp_path / "groundtruth.tum"
    save_tum(gt, ground_truth_stamps(seq), seq.cam_to_world)
    stamps, poses = load_tum(est)
    ids = np.searchsorted(ground_truth_stamps(seq), stamps - 1e-4)     # keyframe -> frame of the sequence
    assert np.allclose(ground_truth_stamps(seq)[ids], stamps, atol=1e-5)
    ours = ate(poses[:, :3, 3], seq.cam_to_world[ids, :3, 3], with_scale=True)["rmse"]
    run = subprocess.run([evo_ape, "tum", str(gt), str(est), "-as"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPLBACKEND": "Agg", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stdout + run.stderr
    found = re.search(r"^\s*rmse\s+([0-9.eE+-]+)", run.stdout, re.M)
    assert found, run.stdout
    theirs = float(found.group(1))
    print(f"ATE RMSE: ours {ours:.6f}, evo {theirs:.6f} ({len(stamps)} poses)")
    assert 0 < ours and abs(theirs - ours) <= 0.01 * ours
