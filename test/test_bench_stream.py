"""httm-bench stream: the real command on the tiny model (CPU, 60 frames, 4/2 windows) and its JSON;
the node's validation of --set values; the oracle's frame-size requirement."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from httm_ros.bench import cli
from httm_ros.bench.node_stream import STAGES, parse_sets, stream_table

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["stream", "--config", "tiny", "--device", "cpu", "--frames", "60", "--set", "image_size=56",
        "--set", "window_size=4", "--set", "window_overlap=2"]


#: runs ``python -m httm_ros.bench`` with every ROS package unimportable, as on the GPU machines (no ROS)
WITHOUT_ROS = """
import importlib.abc, runpy, sys
ROS = {"rclpy", "geometry_msgs", "sensor_msgs", "std_msgs", "nav_msgs", "tf2_msgs", "diagnostic_msgs",
       "builtin_interfaces", "rosbag2_py", "launch", "launch_ros"}
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ROS:
            raise ModuleNotFoundError(f"No module named {name!r} (ROS blocked by the test)")
sys.meta_path.insert(0, NoRos())
sys.argv[0] = "httm-bench"
runpy.run_module("httm_ros.bench", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """The command as a GPU machine without ROS runs it (httm-bench must not import ROS)."""
    out = tmp_path_factory.mktemp("stream") / "stream.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-c", WITHOUT_ROS, *ARGS, "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout, out


def test_provenance_settings_and_geometry(result):
    data, _, out = result
    assert data["kind"] == "stream" and data["complete"] is True and data["truncated"] is False
    env = data["env"]
    assert env["commit"] and env["commit"] != "unknown" and env["device"].startswith("CPU")
    assert env["command"] == " ".join(["python -m httm_ros.bench", *ARGS, "--out", str(out)])
    s = data["settings"]                           # the node's values, resolved as declare_all does
    assert (s["model_config"], s["device"], s["image_size"]) == ("tiny", "cpu", 56)
    assert (s["window_size"], s["window_overlap"], s["window_mode"], s["keyframe_policy"], s["merge_mode"]) \
        == (4, 2, "anchored", "motion", "httm")
    assert s["allow_test_weights"] is True and s["checkpoint"] == "" and s["flush_on_shutdown"] is False
    assert data["overrides"] == {"model_config": "tiny", "device": "cpu", "image_size": 56, "window_size": 4,
                                 "window_overlap": 2}
    assert data["geometry"] == "oracle" and data["test_weights"] is True
    assert data["sequence"]["image_hw"] == data["sequence"]["model_input_hw"] == [42, 56]
    assert data["warmup"]["forwards"] == 1 and data["warmup"]["frames"] == 4 and data["warmup_s"] > 0


def test_windows_accepted_and_keyframes_add_up(result):
    data, _, _ = result
    windows, summ = data["windows"], data["summary"]
    assert len(windows) >= 4 and summ["windows"] == len(windows)
    assert all(w["accepted"] for w in windows), [w["reason"] for w in windows]
    assert all(w["model_s"] > 0 and w["oracle_s"] > 0 and w["merge"]["calls"] > 0 for w in windows)
    assert windows[0]["overlap"] == 0 and all(w["overlap"] == 2 for w in windows[1:])
    new = sum(w["new_keyframes"] for w in windows)
    assert new == summ["new_keyframes"] == summ["keyframes_in_map"] > 0
    in_map, dropped, pending = summ["keyframes_in_map"], summ["keyframes_dropped"], summ["keyframes_pending"]
    assert in_map + dropped + pending == summ["keyframes_selected"]
    assert summ["frames_pushed"] == 60 and summ["segments"] == 1 and summ["gpu_memory"] is None
    assert summ["new_keyframes_per_s"] == pytest.approx(new / sum(w["latency_s"] for w in windows))
    assert 0 < summ["new_keyframes_per_stream_s"] < summ["new_keyframes_per_s"]
    assert 0 < summ["trajectory"]["ate_pct"] < 5.0                      # oracle geometry: close to the truth


def test_latencies_and_stages(result):
    data, _, _ = result
    windows, lat = data["windows"], data["summary"]["latency"]
    assert all(0 < w["latency_s"] < w["wall_s"] for w in windows)       # the oracle's time is left out
    assert lat["first_window_s"] == windows[0]["latency_s"] and lat["windows_after_first"] == len(windows) - 1
    assert 0 < lat["p50_s"] <= lat["p90_s"] <= lat["p99_s"] <= lat["max_s"]
    assert lat["max_s"] == max(w["latency_s"] for w in windows[1:])
    for w in windows:
        assert set(STAGES) <= set(w["timings"]) and all(w["timings"][k] >= 0 for k in STAGES)
        assert w["timings"]["predict"] >= w["model_s"] * 0.9
    stages = data["summary"]["stages"]
    assert set(STAGES) | {"model", "oracle"} <= set(stages)
    assert all(stages[k]["median_s"] > 0 and stages[k]["windows"] == len(windows)
               for k in ("predict", "align", "total"))


def test_table(result):
    data, stdout, _ = result
    lines = stream_table(data)
    assert lines[0].startswith("| geometry |") and lines[2].startswith("| oracle | CPU")
    assert "tiny (test weights) httm" in lines[2] and "4/2 anchored" in lines[2]
    assert any(line.startswith("| predict |") for line in lines) and "\n".join(lines) in stdout


def test_set_values_are_read_and_validated_as_the_node_does(tmp_path):
    assert parse_sets(["conf_threshold=2", "compile_tokenwise=off", "loop_closure=true"]) == \
        {"conf_threshold": 2.0, "compile_tokenwise": "off", "loop_closure": True}
    assert isinstance(parse_sets(["conf_threshold=2"])["conf_threshold"], float)
    assert parse_sets(["checkpoint=", "merge_layers=0,4-23"]) == {"checkpoint": "", "merge_layers": "0,4-23"}
    out = tmp_path / "never.json"
    for bad, reason in ((["--set", "window_size=2"], "window_size must be 0"),
                        (["--set", "no_such=1"], "no_such"),
                        (["--set", "loop_closure=1"], "loop_closure must be a bool"),
                        (["--image-size", "42", "60"], "model input size")):
        with pytest.raises(SystemExit, match=reason):
            cli.main(ARGS + bad + ["--out", str(out)])
    assert not out.exists()
