"""httm-reconstruct --gpus N --device cpu (N gloo processes) and the torchrun entry give the
one-process reconstruction (dense: the same trajectory within float tolerance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from httm_ros.tools.reconstruct import main, parse_args

COMMON = ["--config", "tiny", "--allow-test-weights", "--frames", "5", "--size", "70", "--merge", "none"]


def trajectory(out) -> np.ndarray:
    return np.loadtxt(out / "trajectory.tum")


def test_gpus_on_cpu_processes_match_one_process(tmp_path):
    assert main([*COMMON, "--out", str(tmp_path / "one")]) == 0
    assert main([*COMMON, "--gpus", "2", "--device", "cpu", "--out", str(tmp_path / "two")]) == 0
    np.testing.assert_allclose(trajectory(tmp_path / "two"), trajectory(tmp_path / "one"), atol=1e-5, rtol=1e-4)
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    dist = report["distributed"]
    assert dist["processes"] == 2 and dist["backend"] == "gloo"
    assert [r["frames"] for r in dist["ranks"]] == [[0, 2], [2, 5]]
    assert all(r["all_gather"]["bytes_sent"] > 0 for r in dist["ranks"])
    assert report["frames"] == 5


def test_torchrun_entry_matches_the_spawned_processes(tmp_path):
    assert main([*COMMON, "--gpus", "2", "--device", "cpu", "--out", str(tmp_path / "spawn")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "httm_ros.distributed", *COMMON, "--device", "cpu", "--out", str(tmp_path / "torchrun")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(trajectory(tmp_path / "torchrun"), trajectory(tmp_path / "spawn"))


def test_gpus_argument_checks(capsys):
    for bad in (["--gpus", "0"], ["--gpus", "2", "--merge", "uniform"], ["--gpus", "2", "--device", "cuda:1"]):
        with pytest.raises(SystemExit):
            parse_args([*COMMON[:-2], *bad])
    assert "--gpus" in capsys.readouterr().err


def test_module_entry_outside_torchrun_says_how_to_start_it(capsys, monkeypatch):
    from httm_ros.tools.reconstruct import main_torchrun

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main_torchrun(COMMON) == 2
    assert "torchrun" in capsys.readouterr().err
