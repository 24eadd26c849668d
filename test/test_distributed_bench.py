"""httm-bench distributed on the CPU (gloo processes, tiny model): the JSON has what the GPU run
needs (command, commit, device, per-rank peak memory field, all-gather bytes and seconds per
layer, efficiency) and a second run resumes instead of repeating rows."""

from __future__ import annotations

import json

from httm_ros.bench.cli import main


def test_distributed_bench_rows_and_resume(tmp_path):
    out = tmp_path / "dist.json"
    argv = ["distributed", "--device", "cpu", "--config", "tiny", "--gpus", "1", "2", "--frames", "6",
            "--modes", "dense", "--image-size", "56", "70", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "distributed"
    assert data["env"]["command"].startswith("python -m httm_ros.bench distributed")
    assert data["env"]["commit"] and data["env"]["device"]
    rows = {r["gpus"]: r for r in data["rows"]}
    assert set(rows) == {1, 2} and all("error" not in r for r in rows.values())
    two = rows[2]
    assert [r["frames"] for r in two["ranks"]] == [[0, 3], [3, 6]]
    assert "efficiency" in two and two["efficiency"] > 0
    layers = {(r["layer"], r["name"]) for r in two["ranks"][0]["all_gather_per_layer"]}
    assert {(i, "kv") for i in range(4)} <= layers and (-1, "camera_tokens") in layers
    per_layer = [r for r in two["ranks"][0]["all_gather_per_layer"] if r["name"] == "kv"]
    assert all(r["bytes_sent"] == 2 * 4 * 3 * 25 * 16 * 4 for r in per_layer)  # K+V, 4 heads, 3 frames x 25 tokens, d=16
    assert all(r["seconds"] > 0 for r in per_layer)
    assert all("peak_memory_gib" in r for r in two["ranks"])
    mtime = out.stat().st_mtime_ns
    assert main(argv) == 0                                                # resume: every row is done
    assert json.loads(out.read_text())["rows"] == data["rows"] and out.stat().st_mtime_ns == mtime
