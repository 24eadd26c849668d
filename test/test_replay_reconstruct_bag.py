"""httm-reconstruct-bag: a bag through the streaming core into an output bag + PLY + TUM (no DDS)."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from httm_ros.tools import reconstruct_bag  # noqa: E402
from httm_ros.tools.bag_io import OutputBag, read_messages  # noqa: E402
from httm_ros.tools.reconstruct_bag import ParamsError, node_values  # noqa: E402
from httm_ros.ros import codec, params  # noqa: E402
from httm_ros.synthetic import demo_sequence  # noqa: E402

TINY = ["-p", "model_config:=tiny", "-p", "image_size:=56", "-p", "window_size:=4", "-p", "window_overlap:=2",
        "-p", "keyframe_policy:=every", "--allow-test-weights", "--device", "cpu"]


def _bag(path, frames=6, bad_at=None):
    """Raw and compressed copies of the demo sequence; frame ``bad_at`` of the compressed topic is
    not an image."""
    seq = demo_sequence(num_frames=frames, width=112, height=84, seed=0)
    with OutputBag(path) as out:
        for i in range(frames):
            header = codec.make_header(codec.sec_to_stamp(50.0 + 0.1 * i), "camera")
            ns = int(round((50.0 + 0.1 * i) * 1e9))
            out.write_message("/cam/image_raw", codec.rgb_to_image(seq.images[i], header), ns)
            compressed = codec.rgb_to_compressed(seq.images[i], header)
            if i == bad_at:
                compressed.data = compressed.data[:10]
            out.write_message("/cam/image_raw/compressed", compressed, ns)
        out.commit()
    return path


def test_params_files_and_overrides_in_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("/**:\n  ros__parameters:\n    window_size: 8\n    voxel_size: 1\n    use_sim_time: true\n")
    b.write_text("reconstruct_node:\n  ros__parameters:\n    window_size: 6\nother_node:\n  ros__parameters:\n"
                 "    window_size: 99\n")
    values = node_values([a, b], ["window_overlap:=3", 'device:="cpu"'])
    assert (values["window_size"], values["window_overlap"], values["device"]) == (6, 3, "cpu")
    assert values["voxel_size"] == 1.0 and type(values["voxel_size"]) is float
    given = ("window_size", "window_overlap", "device", "voxel_size")
    assert {k: v for k, v in values.items() if k not in given} \
        == {k: v for k, v in params.resolved(params.defaults()).items() if k not in given}
    assert (values["keyframe_policy"], values["window_mode"]) == ("motion", "anchored")   # auto, no model card
    with pytest.raises(ParamsError, match="unknown parameter\\(s\\): windowsize"):
        node_values([], ["windowsize:=3"])
    with pytest.raises(ParamsError, match="window_size must be in"):
        node_values([], ["window_size:=-1"])
    with pytest.raises(ParamsError, match="window_size must be 0 .* or at least 3"):
        node_values([], ["window_size:=2"])
    with pytest.raises(ParamsError, match="expected NAME:=VALUE"):
        node_values([], ["window_size=3"])


def test_bag_to_output_bag_ply_and_tum(tmp_path, capsys):
    from rclpy.serialization import deserialize_message
    from nav_msgs.msg import Path
    from sensor_msgs.msg import PointCloud2

    from httm_ros.msg import WindowStats
    from httm_ros.io.tum import load_tum
    from httm_ros.io.ply import load_ply

    bag = _bag(tmp_path / "in", bad_at=3)
    out = tmp_path / "result"
    assert reconstruct_bag.main([str(bag), "--topic", "/cam/image_raw/compressed", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "TEST WEIGHTS" in printed and "windows 2 (" in printed
    assert sorted(os.listdir(out)) == ["bag", "map.ply", "report.json", "trajectory.tum"]
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]
    report = json.loads((out / "report.json").read_text())
    assert report["input_type"] == "compressed" and report["frames_bad_input"] == 1 and report["test_weights"]
    stats = [deserialize_message(raw, WindowStats) for _, raw in read_messages(out / "bag", "/reconstruct_node/stats")]
    assert [s.num_keyframes for s in stats] == [4, 3]                   # 5 good frames: a window, then the flush
    assert stats[0].alignment_accepted and stats[0].merge_mode == "httm" and stats[0].image_width == 56
    assert stats[0].header.stamp == codec.sec_to_stamp(50.4) and stats[0].frames_dropped_bad_input == 1
    for s in stats:                                                      # the node's accounting holds here too
        assert s.frames_received == (s.frames_processed + s.frames_skipped + s.frames_queued
                                     + sum(s.drop_counts)), s
    assert stats[-1].frames_received == 6 and stats[-1].frames_processed + stats[-1].frames_skipped == 5
    (_, raw), = list(read_messages(out / "bag", "/reconstruct_node/map"))
    xyz, rgb = codec.decode_pointcloud2_xyzrgb(deserialize_message(raw, PointCloud2))
    ply_xyz, ply_rgb = load_ply(out / "map.ply")
    np.testing.assert_allclose(ply_xyz, xyz)
    np.testing.assert_array_equal(ply_rgb, rgb)
    paths = [deserialize_message(r, Path) for _, r in read_messages(out / "bag", "/reconstruct_node/path")]
    stamps, poses = load_tum(out / "trajectory.tum")
    assert len(paths[-1].poses) == len(stamps) == 4
    np.testing.assert_allclose(poses[:, :3, 3], [[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                                                 for p in paths[-1].poses], atol=1e-6)
    counts = report["output_messages"]
    assert counts["/reconstruct_node/depth"] == counts["/reconstruct_node/pose"] == counts["/tf"] == 4


def test_bad_bags_and_choices_write_nothing(tmp_path, capsys):
    bag = _bag(tmp_path / "in", frames=2)
    out = tmp_path / "result"
    assert reconstruct_bag.main([str(bag), "--out", str(out), *TINY]) == 2
    assert "several image topics" in capsys.readouterr().err and not out.exists()
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x89MCAP0\r\n" + b"\0" * 64)
    assert reconstruct_bag.main([str(junk), "--out", str(out), *TINY]) == 2
    assert "not a readable rosbag2 bag" in capsys.readouterr().err and not out.exists()
    assert reconstruct_bag.main([str(bag), "--topic", "/cam/image_raw", "--out", str(out), "-p", "window_size:=1",
                                 "--allow-test-weights"]) == 2
    assert "window_size must be 0 (the model card's value) or at least 3" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in", "junk.mcap"]
