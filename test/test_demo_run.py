"""The default demo end to end (what scripts/demo runs after building), small: the shipped trained
httm-vggt-synth on 36 frames (three windows), a cached synthetic bag, the installed node as a
process, replay over DDS, outputs, the accuracy against the ground truth, the PNG preview and the
viewer's screenshot (a warning line instead where chromium is missing)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built package (run via scripts/test)", allow_module_level=True)

from httm_ros.tools.local_dds import ros_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_viewer_screenshot(out, summary, stdout):
    """viewer.png (httm-view on the output bag) where chromium runs; else one warning line."""
    from httm_ros.viewer.screenshot import find_chromium, scene_pixels

    if find_chromium() is None:
        assert "WARNING: no viewer screenshot" in stdout and not (out / "viewer.png").exists()
        assert "viewer" not in summary["outputs"]
        return
    assert summary["outputs"]["viewer"] == str(out / "viewer.png") and f"viewer     {out / 'viewer.png'}" in stdout
    assert scene_pixels(out / "viewer.png") >= 2000


def test_demo_writes_preview_map_trajectory_bag_and_summary(tmp_path):
    from PIL import Image

    from httm_ros.io.tum import load_tum
    from httm_ros.io.ply import load_ply
    from httm_ros.tools.bag_io import image_topics, open_reader

    out, cache = tmp_path / "demo", tmp_path / "cache"
    env = {**os.environ, **ros_env(__name__)}
    env.pop("WEIGHTS", None)
    cmd = [sys.executable, "-m", "httm_ros.tools.demo", "--out", str(out), "--cache-dir", str(cache),
           "--frames", "36", "--device", "cpu", "--rate", "2", "--timeout", "120"]
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "rendering the synthetic demo sequence: 36 frames at 168x126" in run.stdout
    assert "httm-vggt-synth (trained on synthetic rooms only; not VGGT-1B) on cpu" in run.stdout
    assert "TEST WEIGHTS" not in run.stdout and "open the preview" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["test_weights"] and summary["frames_received"] == summary["frames_published"] == 36
    assert summary["settings"]["checkpoint"].endswith("httm-vggt-synth.safetensors")
    assert summary["image_size"] == [168, 126]                          # the model card's size
    env_rec = summary["environment"]                                    # what produced these numbers
    assert env_rec["command"].startswith("httm-demo --out") and env_rec["device"].startswith("CPU") and env_rec["commit"]
    # 16 + 10 + 10 keyframes: three windows, all aligned
    assert summary["windows"] == 3 and summary["windows_accepted"] == 3, summary["per_window"]
    assert summary["map_points"] > 1000 and summary["keyframes_in_map"] == 36
    acc = summary["accuracy"]
    assert acc["keyframes"] == 36 and acc["ate_percent"] < 25.0 and acc["map_median_m"] < 0.6, acc
    assert f"ATE {acc['ate_percent']:.1f} %" in run.stdout
    # the node's merge_mode auto: the card's (measured dense; merging costs this network its windows)
    assert summary["node_exit_status"] == 0 and summary["merge_mode"] == "none"
    assert all(w["kept_q"] == 1.0 for w in summary["per_window"])
    xyz, rgb = load_ply(out / "map.ply")
    assert len(xyz) == summary["map_points"] and rgb is not None
    stamps, _ = load_tum(out / "trajectory.tum")
    assert len(stamps) == summary["keyframes_in_map"]
    with Image.open(out / "preview.png") as png:
        assert png.width == 1280 and png.height > 600
    _check_viewer_screenshot(out, summary, run.stdout)
    reader = open_reader(out / "outputs_bag")
    topics = set(reader.topics)
    reader.close()
    assert {"/reconstruct_node/map", "/reconstruct_node/path", "/reconstruct_node/stats",
            "/reconstruct_node/depth"} <= topics
    bag = summary["bag"]
    assert [t.name for t in image_topics(bag)] == ["/camera/image_raw"] and bag.startswith(str(cache))
