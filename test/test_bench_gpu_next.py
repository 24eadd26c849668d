"""httm-bench e2e's anchored layout and attention_sdpa options, the onboard preset, and the guard of
bench/gpu_next.sh (CPU, tiny model)."""

import json
import os
import subprocess
from pathlib import Path

import yaml

from httm_ros.bench import cli, workload

ROOT = Path(__file__).resolve().parents[1]


def test_anchored_indices_anchor_then_consecutive():
    idx = workload.anchored_indices(8, 3)
    assert idx[0] == 0 and len(idx) == 8 and idx[1:] == list(range(4, 11))


def test_merge_config_attention_sdpa():
    assert workload.merge_config("httm", attention_sdpa="cudnn").attention_sdpa == "cudnn"
    assert workload.merge_config("httm").attention_sdpa == "flash"


def test_e2e_overlap_rows_report_new_keyframes_per_s(tmp_path):
    out = tmp_path / "e2e.json"
    argv = ["e2e", "--config", "tiny", "--device", "cpu", "--image-size", "28", "42", "--frames", "4",
            "--modes", "dense", "httm", "--overlap", "2", "--attention-sdpa", "cudnn", "--repeats", "1",
            "--no-warmup", "--out", str(out)]
    assert cli.main(argv) == 0
    data = json.loads(out.read_text())
    httm = next(r for r in data["rows"] if r["mode"] == "httm")
    assert httm["attention_sdpa"] == "cudnn" and httm["new_frames"] == 2
    assert httm["new_keyframes_per_s"] == round(2 / httm["seconds"], 3)


def test_gpu_next_refuses_without_commit():
    env = {k: v for k, v in os.environ.items() if k != "HTTM_GIT_COMMIT"}
    run = subprocess.run(["bash", str(ROOT / "bench/gpu_next.sh")], env={**env, "PART": "1"},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "HTTM_GIT_COMMIT" in run.stderr


def test_onboard_preset_uses_node_parameters_only():
    preset = yaml.safe_load((ROOT / "config/onboard_16gb.yaml").read_text())["/**"]["ros__parameters"]
    defaults = yaml.safe_load((ROOT / "config/reconstruct.yaml").read_text())["/**"]["ros__parameters"]
    assert set(preset) <= set(defaults)
    assert preset["window_overlap"] < preset["window_size"]
