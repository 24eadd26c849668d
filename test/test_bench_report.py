"""httm-bench (httm_ros.bench): the report only shows numbers from result files, target verdicts,
the time guard, and the e2e / layer commands end to end on a tiny model on the CPU."""

import json

import pytest
import torch

from httm_ros.bench import cli, e2e, report, results
from httm_ros.bench.targets import ANCHOR_DENSE
from httm_ros.bench.layer import table4_columns
from httm_ros.httm.regions import build_region_layout


def _e2e_file(tmp_path, rows, name="e2e.json", date="2026-11-21T10:00:00Z", config="1b", commit="abc"):
    path = tmp_path / name
    path.write_text(json.dumps({"kind": "e2e", "config": config, "rows": rows,
                                "env": {"date_utc": date, "commit": commit, "device": "H100",
                                        "command": "python -m httm_ros.bench e2e"}}))
    return path


def _row(mode, frames, seconds, peak, ga=None):
    row = {"mode": mode, "frames": frames, "tokens": frames * 1041, "seconds": seconds, "peak_gib": peak,
           "error": None, "image_hw": [392, 518]}
    if ga is not None:
        row["breakdown_s"] = {"dino": 1.0, "global_attention": ga, "frame_attention": 1.0,
                              "aggregator_other": 2.0, "heads_and_host": 1.0}
    return row


def test_report_without_results_says_not_measured(tmp_path):
    text = report.build_report([])
    assert "not measured yet" in text
    targets = [line for line in text.splitlines() if line.startswith("| HTTM speed-up")]
    assert len(targets) == 4 and all(line.endswith("| not measured yet |") for line in targets)
    for f, (s, gib) in ANCHOR_DENSE.items():                      # anchors are the only numbers
        assert f"{s} / {gib}" in text


def test_report_tables_and_verdicts(tmp_path):
    rows = [_row("dense", 100, 4.0, 6.0, ga=2.0), _row("httm", 100, 1.6, 5.0, ga=0.3),
            _row("uniform", 300, 10.0, 20.0), _row("httm", 300, 12.0, 30.0)]
    first = _e2e_file(tmp_path, rows, "a.json")
    later = _e2e_file(tmp_path, [_row("httm", 300, 9.0, 14.0)], "b.json", date="2026-11-22T10:00:00Z")
    layer = tmp_path / "layer.json"
    cols = table4_columns({"match_q": 2.0, "match_kv": 4.0, "aggregate_q": 2.0, "merge_kv": 8.0,
                           "outliers_select": 1.0, "attention": 600.0, "unmerge": 1.5})
    layer.write_text(json.dumps({"kind": "layer", "config": "1b", "env": {"date_utc": "2026-11-21T11:00:00Z"},
                                 "layer_result": {"frames": 1000, "input": "x", "httm": {
                                     "columns_ms": cols, "total_ms": 620.0, "kept_q": 0.2, "kept_kv": 0.3,
                                     "error": None}, "dense_attention_ms": 10700.0}}))
    png = tmp_path / "plot.png"
    text = report.build_report([later, first, layer], png=png)
    assert png.exists() and png.stat().st_size > 1000
    lines = {}
    for line in text.splitlines():                                        # first table row of each key
        if line.startswith("| "):
            lines.setdefault(line.split("|")[1].strip(), line)
    assert "2.50x" in lines["100"]                                         # 4.0 / 1.6
    assert "| 9.00 |" in lines["300"] and "1.11x" in lines["300"]          # the later file wins
    assert "met (-6.1%)" in lines["dense <= VGGT* anchor time @100"]
    assert "MISSED" in lines["HTTM speed-up over our dense >= 4.0x @300"] or "not measured" in lines[
        "HTTM speed-up over our dense >= 4.0x @300"]
    assert lines["HTTM speed-up over our dense >= 2.0x @100"].endswith("met (+25% of target) |")
    assert "3.1%" in lines["HTTM merge overhead <= 10% of its attention @1000 (one layer)"]
    assert "met" in lines["HTTM faster than uniform @300"]
    assert "not measured yet" in lines["HTTM speed-up over our dense >= 8.0x @1000"]
    assert "| httm | 600.0 | 6.0 | 11.0 | 1.5 | 0.0 | 18.5 |" in text
    # rows of other models or image sizes never reach the tables
    tiny = _e2e_file(tmp_path, [_row("dense", 500, 1.0, 1.0)], "tiny.json", config="tiny")
    assert "ignored" in report.build_report([tiny]) and "| 500 | 520500 | not measured yet" in report.build_report([tiny])


def test_report_cold_warm_and_memory_split(tmp_path):
    warm = {**_row("httm", 300, 5.5, 12.0), "row_warmup": True, "first_run_s": 9.75, "runs_s": [5.5],
            "peak_gib_by_part": {"dino": 7.0, "frame_attention": 11.5, "global_attention": 12.0,
                                 "aggregator_other": 11.0, "heads_and_host": 9.0, "total": 12.0}}
    cold = {**_row("dense", 300, 27.0, 13.0), "row_warmup": False, "runs_s": [27.0]}
    text = report.build_report([_e2e_file(tmp_path, [warm, cold])])
    assert "| httm | 300 | yes | 9.75 | 5.50 |" in text and "| dense | 300 | no | - | 27.00 |" in text
    assert "| httm | 300 | 12.00 | 7.00 | 11.50 | 12.00 | 11.00 | 9.00 |" in text


def test_ratios_come_from_one_run(tmp_path):
    """A newer file with only an HTTM row does not pair with an older run's dense row."""
    dense = _e2e_file(tmp_path, [_row("dense", 1000, 280.0, 30.0)], "dense.json", commit="a1")
    httm = _e2e_file(tmp_path, [_row("httm", 1000, 35.0, 30.5)], "httm.json", commit="a1")     # same run
    later = _e2e_file(tmp_path, [_row("httm", 1000, 33.0, 30.0)], "later.json", date="2026-11-22T10:00:00Z",
                      commit="b2")
    rows, _, _, _ = results.load([dense, httm, later])
    assert rows[("httm", 1000)]["seconds"] == 35.0 and rows[("httm", 1000)]["file"] == "httm.json"
    assert "| 1000 | 1041000 | 280.00 | not measured yet | 35.00 | 8.00x |" in report.build_report([dense, httm, later])


def test_time_guard_skips_rows(monkeypatch):
    seen = []
    e2e.run_rows(None, [("dense", 1000, 1), ("httm", 100, 3)], torch.device("cpu"), deadline=10.0,
                 on_row=seen.append, t0=0.0, clock=lambda: 0.0)
    assert [r.get("skipped") is not None for r in seen] == [True, True]
    assert "time guard" in seen[0]["skipped"] and seen[0]["seconds"] is None
    assert e2e.estimate_seconds("dense", 1000) > 250 and e2e.estimate_seconds("httm", 1000) < 100
    assert e2e.repeats_for(100) == 3 and e2e.repeats_for(300) == 1 and e2e.repeats_for(1000) == 1
    assert e2e.row_warmup("httm", 1000) and e2e.row_warmup("dense", 100) and not e2e.row_warmup("dense", 500)
    fits = 3 * e2e.estimate_seconds("httm", 100) + 6.0      # 3 repeats fit, a 4th (the warm-up) not
    monkeypatch.setattr(e2e, "run_row", lambda *a, warm, **k: {"warm": warm})
    for warm, skipped in (("always", True), ("never", False)):
        seen.clear()
        e2e.run_rows(None, [("httm", 100, 3)], torch.device("cpu"), deadline=fits, on_row=seen.append,
                     t0=0.0, clock=lambda: 0.0, warmups={"httm": warm})
        assert (seen[0].get("skipped") is not None) is skipped, warm
    assert seen == [{"warm": False}]


def test_e2e_and_layer_commands_tiny_cpu(tmp_path):
    out = tmp_path / "e2e.json"
    assert cli.main(["e2e", "--config", "tiny", "--device", "cpu", "--image-size", "28", "42", "--frames", "3",
                     "--modes", "httm", "uniform", "dense", "--repeats", "1", "--no-warmup",
                     "--row-warmup", "always", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["complete"] and [r["mode"] for r in data["rows"]] == ["httm", "uniform", "dense"]
    assert all(r["row_warmup"] and r["first_run_s"] > 0 for r in data["rows"])
    assert build_region_layout.cache_info().currsize == 0                  # no row keeps its regions
    assert all(r["error"] is None and r["seconds"] > 0 for r in data["rows"])
    assert data["rows"][0]["merge"]["calls"] > 0 and data["env"]["command"].startswith("python -m httm_ros.bench e2e")
    assert data["rows"][0]["merge_backends"] == {"torch": data["rows"][0]["merge"]["calls"]}  # auto on CPU
    lay = tmp_path / "layer.json"
    assert cli.main(["layer", "--config", "tiny", "--device", "cpu", "--image-size", "28", "42", "--frames", "4",
                     "--reps", "2", "--out", str(lay)]) == 0
    res = json.loads(lay.read_text())["layer_result"]
    assert res["error"] is None and res["httm"]["error"] is None and res["uniform"]["error"] is None
    assert res["httm"]["columns_ms"]["attention"] > 0 and res["dense_attention_ms"] > 0


def test_e2e_row_records_errors(monkeypatch):
    from httm_ros.bench import workload

    model = workload.build_model(torch.device("cpu"), "tiny")

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(e2e, "video_frames", boom)
    row = e2e.run_row(model, "httm", 2, 1, torch.device("cpu"))
    assert row["seconds"] is None and "simulated failure" in row["error"]
    assert all(b.attn.core is None for b in model.aggregator.global_blocks)   # merging removed again


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_e2e_row_tiny_cuda():
    from httm_ros.bench import workload

    model = workload.build_model(torch.device("cuda"), "tiny")
    for mode in ("httm", "uniform", "dense"):
        row = e2e.run_row(model, mode, 6, 1, torch.device("cuda"), image_hw=(56, 70))
        assert row["error"] is None, row["error"]
        assert row["peak_gib"] > 0 and set(row["breakdown_s"]) >= {"global_attention", "heads_and_host"}
        parts = row["peak_gib_by_part"]
        assert set(parts) >= {"global_attention", "frame_attention", "dino", "heads_and_host", "total"}
        assert parts["total"] == max(v for k, v in parts.items() if k != "total") == row["peak_gib"]
    assert row["sdpa_cudnn_first"] in (True, False)


def test_given_commit_wins_over_git(monkeypatch):
    """A copied tree may carry a stale .git (the GPU machine's did): $HTTM_GIT_COMMIT is what ran."""
    from httm_ros import provenance

    monkeypatch.setenv("HTTM_GIT_COMMIT", "0123abc")
    assert provenance.git_commit() == "0123abc"
    monkeypatch.delenv("HTTM_GIT_COMMIT")
    assert provenance.git_commit() != "0123abc"


def _windows_file(tmp_path, name, rows, frames=24, new=16, date="2026-12-05T18:00:00Z"):
    path = tmp_path / name
    path.write_text(json.dumps({"kind": "windows", "frames": frames, "new": new, "rows": rows,
                                "env": {"date_utc": date, "commit": "59d08c2abc", "device": "NVIDIA H100 80GB HBM3 (79 GiB)",
                                        "command": "python -m httm_ros.bench windows"}}))
    return path


def _wrow(mode, p50, first=None, p99=None, frames=24, sets=None, spikes=0, **kw):
    row = {"mode": mode, "frames": frames, "new": 16, "windows": 100, "windows_timed": 100, "sets": sets or {},
           "p50_s": p50, "p90_s": p50, "p99_s": p99 or p50, "max_s": p99 or p50, "first_window_s": first or p50,
           "spikes": spikes, "spikes_of": 99, "peak_gib": 7.1, "warmup": {"seconds": [2.0]}, "truncated": False, **kw}
    if mode == "httm":
        row["merge_config"] = {"attention_sdpa": (sets or {}).get("attention_sdpa", "flash")}
    return row


def test_report_windows_section_and_verdicts(tmp_path):
    """The node's regime: one row per mode from the windows files, verdicts against issue 14's
    targets (HTTM vs dense and vs the FastVGGT code from one run; p99 and first window vs p50)."""
    run = _windows_file(tmp_path, "k24.json", [_wrow("fastvggt", 0.46), _wrow("dense", 0.50), _wrow("httm", 0.40)])
    lever = _windows_file(tmp_path, "k24_cudnn.json", [_wrow("httm", 0.52, first=1.7, p99=1.16, spikes=20,
                                                             sets={"attention_sdpa": "cudnn"})])
    cut = _windows_file(tmp_path, "k64.json", [_wrow("dense", 2.0, frames=64, truncated=True, windows_timed=33, new=48),
                                               _wrow("httm", 1.5, frames=64, new=48)], frames=64)
    text = report.build_report([run, lever, cut])
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "H200" in text and "Not measured yet: 128-frame windows." in text
    assert "| ours HTTM, attention_sdpa=cudnn | 24 (16) | 100 | 2.00 | 1.700 | 0.520 |" in text
    assert "| 20 of 99 | 7.10 | NVIDIA H100 80GB HBM3 | 59d08c2 | k24_cudnn.json |" in text
    assert "| ours dense | 64 (48) | 33 of 100 (cut by the time limit) |" in text
    assert lines["HTTM p50 >= 1.2x faster than dense p50 @24 frames"].endswith(
        "| 1.25x (0.400 vs 0.500 s) | met (+4% of target) |")
    assert "MISSED (-11% of target)" in lines["HTTM p50 >= 1.5x faster than dense p50 @64 frames"]  # 1.33x
    assert lines["HTTM p50 below the FastVGGT code's p50 @24 frames"].endswith("| 1.15x (0.400 vs 0.460 s) | met |")
    assert lines["p99 <= 1.3x p50: ours HTTM, attention_sdpa=cudnn @24 frames"].endswith("| MISSED |")
    assert lines["first window <= 1.5x p50: ours HTTM, attention_sdpa=cudnn @24 frames"].startswith(
        "| first window <= 1.5x p50: ours HTTM, attention_sdpa=cudnn @24 frames | 3.27x (1.700 vs 0.520 s)")
    assert lines["p99 <= 1.3x p50: ours HTTM, attention_sdpa=flash (default) @24 frames"].endswith("| met |")
    assert "k24.json | windows |" in text                                   # provenance lists the files
    empty = report.build_report([])
    assert "| HTTM p50 >= 1.2x faster than dense p50 @24 frames | not measured yet | not measured yet |" in empty


def test_report_says_which_attention_ran_and_its_command(tmp_path):
    old = _e2e_file(tmp_path, [_row("dense", 100, 4.0, 8.0), _row("httm", 100, 1.8, 8.0)], "old.json")
    text = report.build_report([old])
    assert "| 2.22x | not measured yet | 8.0 | not measured yet | 8.0 | 4.26 / 6.5 | 2.56 / 8.3 | cudnn (before attention_sdpa) |" in text
    assert "the default is now `flash`, whose time at these sizes is not measured yet" in text
    flash = {**_row("httm", 100, 1.7, 8.0), "attention_grouping_last_layer": {"kernels": "flash"}}
    new = _e2e_file(tmp_path, [_row("dense", 100, 4.0, 8.0), flash], "new.json", date="2026-12-06T10:00:00Z",
                    commit="def")
    assert "flash`, measured at 100 frames" in report.build_report([old, new])
    md = tmp_path / "B.md"
    assert cli.main(["report", str(old), "--md", str(md)]) == 0
    assert f"Generated by `python -m httm_ros.bench report {old} --md {md}`" in md.read_text()
