"""httm-bench windows: the latency statistics and one mode's whole flow on the tiny model (CPU)."""

import json

import pytest

from httm_ros.bench import windows


def test_latency_stats_excludes_the_first_window():
    seconds = [5.0] + [1.0] * 98 + [2.0]                      # first cold, one spike
    s = windows.latency_stats(seconds)
    assert s["first_window_s"] == 5.0 and s["p50_s"] == 1.0 and s["max_s"] == 2.0
    assert (s["spikes"], s["spikes_of"]) == (1, 99)
    assert s["first_over_p50"] == 5.0


def test_parse_sets_reads_json_values():
    assert windows.parse_sets(["a=1", "b=true", "c=flash"]) == {"a": 1, "b": True, "c": "flash"}


@pytest.mark.parametrize("mode", ["dense", "httm"])
def test_one_mode_tiny_cpu(tmp_path, mode):
    out = tmp_path / "row.json"
    argv = ["--mode", mode, "--config", "tiny", "--frames", "4", "--new", "2", "--windows", "3",
            "--image-size", "28", "42", "--device", "cpu", "--out", str(out)]
    assert windows.child_main(argv) == 0
    row = json.loads(out.read_text())
    assert row["windows_timed"] == 3 and len(row["windows_s"]) == 3 and row["warmup"]["forwards"] == 1
    assert row["p50_s"] > 0 and row["truncated"] is False


def test_window_slices_new_frames():
    video = windows.long_video(windows.total_frames(4, 2, 3), windows.pick_device("cpu"), (28, 42))
    assert video.shape[1] == 8
    w1 = windows.window(video, 1, 4, 2, windows.pick_device("cpu"))
    assert (w1 == video[:, 2:6]).all()


def test_run_windows_stops_before_the_deadline():
    import time

    cpu = windows.pick_device("cpu")
    video = windows.long_video(windows.total_frames(2, 1, 50), cpu, (14, 14))
    out = windows.run_windows(lambda x: time.sleep(0.02), video, 2, 1, 50, cpu, deadline=time.time() + 0.3)
    assert out["truncated"] is True and 2 <= out["windows_timed"] < 50
