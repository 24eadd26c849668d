"""httm-eval end to end: tiny model (test weights) and oracle runs writing results.json / results.md."""

import json
import subprocess
import sys

import numpy as np
import pytest

from httm_ros.eval.eval_cli import main
from httm_ros.io.ply import save_ply
from httm_ros.synthetic import demo_sequence

from test_eval_datasets import write_7scenes

SMALL = ["--frames", "6", "--width", "126", "--height", "98"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


def _strict_json(path):
    def bad(value):
        raise ValueError(f"non-standard JSON constant {value}")
    return json.loads(path.read_text(), parse_constant=bad)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A generic-folder sequence (Sequence.save) of 8 frames at 126x98 with a gt.ply cloud."""
    seq = demo_sequence(num_frames=8, width=126, height=98, seed=2, speed=0.05)
    root = seq.save(tmp_path_factory.mktemp("data") / "seq")
    save_ply(root / "gt.ply", np.concatenate([seq.world_points(k, stride=2).reshape(-1, 3) for k in range(8)]))
    return root


def test_synthetic_tiny_model_three_modes_and_streaming(tmp_path):
    out = tmp_path / "out"
    code = main(["synthetic", *SMALL, "--config", "tiny", "--allow-test-weights", "--modes", "none,uniform,httm",
                 "--streaming", "--window", "4", "--overlap", "2", "--out", str(out)])
    assert code == 0
    result = _strict_json(out / "results.json")
    rows = result["rows"]
    assert [(r["method"], r["pipeline"]) for r in rows] == [
        (m, p) for m in ("none", "uniform", "httm") for p in ("offline", "streaming K=4 O=2")]
    offline = [r for r in rows if r["pipeline"] == "offline"]
    for r in offline:
        assert r["frames"] == 6 and r["time_s"] > 0 and r["peak_mib"] >= 0 and r["acc"] is not None
        assert r["memory_kind"] == "cpu_rss_delta_sampled"
    assert offline[0]["q_ratio"] == 1.0 and 0 < offline[1]["q_ratio"] < 1 and 0 < offline[2]["kv_ratio"] < 1
    assert "TEST WEIGHTS" in result["predictor"] and any("meaningless" in n for n in result["notes"])
    assert result["dataset"]["model_input_hw"] == [98, 126] and result["command"].startswith("httm-eval synthetic")
    md = (out / "results.md").read_text()
    assert "| Method | Pipeline | Q ratio | K/V ratio | Acc. ↓ | Comp. ↓" in md and "| httm | offline |" in md


def test_run_folder_with_oracle_offline_and_streaming(tmp_path, folder):
    out = tmp_path / "out"
    code = main(["run", str(folder), "--oracle", "--oracle-noise", "0", "--oracle-outliers", "0", "--size", "126",
                 "--conf-percentile", "0", "--stride", "1", "--streaming", "--window", "4", "--overlap", "2",
                 "--save-clouds", "--out", str(out)])
    assert code == 0
    result = _strict_json(out / "results.json")
    assert result["dataset"]["layout"] == "folder" and result["ground_truth"].startswith("back-projected GT depth")
    offline, stream = result["rows"]
    assert offline["acc"] < 1e-5 and offline["comp"] < 1e-5 and offline["ate_rmse"] < 1e-5
    assert stream["pipeline"] == "streaming K=4 O=2" and stream["frames"] == 8 and stream["ate_rmse"] < 1e-5
    assert stream["acc"] < 0.02 and stream["details"]["run"]["windows"] == 3
    assert (out / "clouds" / "gt.ply").exists() and len(list((out / "clouds").glob("*.ply"))) == 3


def test_run_folder_against_its_gt_ply(tmp_path, folder):
    out = tmp_path / "out"
    assert main(["run", str(folder), "--oracle", "--oracle-noise", "0", "--oracle-outliers", "0", "--stride", "2",
                 "--size", "126", "--gt", "file", "--out", str(out)]) == 0
    result = _strict_json(out / "results.json")
    (row,) = result["rows"]
    assert result["ground_truth"].startswith("cloud") and row["frames"] == 4
    assert row["acc"] < 1e-3                                   # every predicted point lies on the GT cloud's surface
    assert row["comp"] > row["acc"]                            # the cloud also covers frames that were skipped


def test_run_7scenes_with_the_tiny_model_and_merge_knobs(tmp_path):
    seq = demo_sequence(num_frames=4, width=32, height=24, seed=3, speed=0.1)
    data = write_7scenes(tmp_path, seq)
    out = tmp_path / "out"
    code = main(["run", str(data), "--config", "tiny", "--allow-test-weights", "--stride", "1", "--size", "28",
                 "--modes", "none,httm:q_merge=0.8:q_outlier=0.0:kv_merge=0.5", "--out", str(out)])
    assert code == 0
    result = _strict_json(out / "results.json")
    assert [r["method"] for r in result["rows"]] == ["none", "httm:q_merge=0.8:q_outlier=0.0:kv_merge=0.5"]
    assert result["dataset"]["native_hw"] == [24, 32] and result["dataset"]["model_input_hw"] == [28, 28]
    assert result["dataset"]["layout"] == "7scenes"


def test_missing_checkpoint_is_one_clear_error(tmp_path, folder, capsys):
    assert main(["run", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint given" in err and "VGGT-1B" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--modes", "none,fast"], "unknown mode 'fast'"),
    (["--modes", "httm:q_mrge=0.5"], "bad knob"),
    (["--modes", "none:q_merge=0.5"], "'none' takes no knobs"),
    (["--streaming", "--window", "4", "--overlap", "4"], "--overlap (4) must be < --window (4)"),
    (["--size", "100"], "multiple of 14"),
])
def test_bad_options_are_reported(tmp_path, capsys, argv, message):
    code = main(["synthetic", *SMALL, "--config", "tiny", "--allow-test-weights", *argv, "--out", str(tmp_path)])
    assert code == 2 and message in capsys.readouterr().err


def test_merge_option_points_to_modes(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["synthetic", "--merge", "httm", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_fidelity_subcommand_smoke(tmp_path):
    out = tmp_path / "fid"
    assert main(["fidelity", "--model", "tiny", "--frames", "4", "--width", "56", "--height", "42",
                 "--no-ablations", "--out", str(out)]) == 0
    result = _strict_json(out / "fidelity.json")
    assert set(result["comparisons"]) == {"paper_ratios", "matched_budget", "matched_budget_proportional"}
    assert "smoke test only" in result["setup"]["model"]
    assert "| matched_budget |" in (out / "fidelity.md").read_text()


def test_fidelity_rejects_sizes_off_the_patch_grid(tmp_path, capsys):
    assert main(["fidelity", "--model", "tiny", "--width", "50", "--out", str(tmp_path)]) == 2
    assert "multiples of 14" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "httm_ros.eval", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "synthetic" in proc.stdout and "fidelity" in proc.stdout
