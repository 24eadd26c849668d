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
    h100 = ", NVIDIA H100 80GB HBM3"
    assert lines["HTTM p50 >= 1.2x faster than dense p50 @24 frames" + h100].endswith(
        "| 1.25x (0.400 vs 0.500 s: ours HTTM, attention_sdpa=flash (default) vs ours dense) | met (+4% of target) |")
    assert "MISSED (-11% of target)" in lines["HTTM p50 >= 1.5x faster than dense p50 @64 frames" + h100]  # 1.33x
    assert lines["HTTM p50 below the FastVGGT code's p50 @24 frames" + h100].endswith("| 1.15x (0.400 vs 0.460 s) | met |")
    assert lines["p99 <= 1.3x p50: ours HTTM, attention_sdpa=cudnn @24 frames"].endswith("| MISSED |")
    assert lines["first window <= 1.5x p50: ours HTTM, attention_sdpa=cudnn @24 frames"].startswith(
        "| first window <= 1.5x p50: ours HTTM, attention_sdpa=cudnn @24 frames | 3.27x (1.700 vs 0.520 s)")
    assert lines["p99 <= 1.3x p50: ours HTTM, attention_sdpa=flash (default) @24 frames"].endswith("| met |")
    assert "k24.json | windows |" in text                                   # provenance lists the files
    empty = report.build_report([])
    assert "| HTTM p50 >= 1.2x faster than dense p50 @24 frames | not measured yet | not measured yet |" in empty


def test_window_targets_keep_each_devices_newest_run(tmp_path):
    """The speed-up targets are judged per device on its newest same-run pair: a newer H100 run
    does not hide the H200 row the issue names."""
    h100 = _windows_file(tmp_path, "h100.json", [_wrow("dense", 0.50), _wrow("httm", 0.40)], date="2026-12-07T00:00:00Z")
    h200 = _windows_file(tmp_path, "h200.json", [_wrow("dense", 0.45), _wrow("httm", 0.30)], date="2026-12-06T00:00:00Z")
    data = json.loads(h200.read_text())
    data["env"]["device"] = "NVIDIA H200 (140 GiB, 132 SMs)"
    h200.write_text(json.dumps(data))
    lines = {line.split("|")[1].strip(): line for line in report.build_report([h100, h200]).splitlines()
             if line.startswith("| HTTM p50 >=")}
    assert "1.50x (0.300 vs 0.450 s" in lines["HTTM p50 >= 1.2x faster than dense p50 @24 frames, NVIDIA H200"]
    assert "1.25x (0.400 vs 0.500 s" in lines["HTTM p50 >= 1.2x faster than dense p50 @24 frames, NVIDIA H100 80GB HBM3"]


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


# ----------------------------------------------------------------------- issues 15-19: one section per kind
CPU_ENV = {"commit": "abc1234def", "device": "CPU test (x86_64, 2 torch threads)",
           "command": "python -m httm_ros.bench x", "date_utc": "2026-12-05T20:00:00Z"}


def _json(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _lines(text):
    """First table row of each first-cell key."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| "):
            out.setdefault(line.split("|")[1].strip(), line)
    return out


def _stream_row(frames, mode, ate, states=("INITIALISING", "TRACKING"), **kw):
    return {"frames": frames, "mode": mode, "windows": 24, "accepted": 24, "partial": 0, "rejected": 0,
            "keyframes_dropped": 0, "relocalisations": 0, "states": list(states), "ate_pct": ate,
            "final_drift_pct": 1.0, "scale_drift": 0.01, "wall_s": 2.0, **kw}


def _streaming(tmp_path, compare, failure=(), predictor="oracle", name="streaming.json"):
    return _json(tmp_path, name, {"environment": CPU_ENV, "compare": list(compare), "failure": list(failure),
                                  "config": {"predictor": predictor, "window": 8, "overlap": 3, "noise": 0.02,
                                             "corrupt_every": 25, "seed": 0}})


def test_report_sections_without_files_say_not_measured(tmp_path):
    text = report.build_report([tmp_path / "missing.json"])                 # a path that is no file: skipped
    for heading in ("(issue 15)", "relocalisation (issue 16)", "Window sizes where HTTM pays (issue 16)", "(issue 17)",
                    "(issue 18)", "(issue 19)"):
        section = next(line for line in text.splitlines() if line.startswith("## ") and heading in line)
        body = text.split(section)[1].split("\n## ")[0]
        assert "not measured yet" in body, heading
    lines = _lines(text)
    assert lines["depth AbsRel <= 0.08"].endswith("| not measured yet | not measured yet |")
    assert "GPU run" in lines["VGGT-1B at 518x392 on the H200: >= 1.5x the new keyframes/s of dense 24/8"]
    assert "no GPU row" in text and "needs CUDA" in text


def test_report_streaming_section_and_verdicts(tmp_path):
    lost = ("INITIALISING", "TRACKING") + ("LOST", "RELOCALISED", "TRACKING") * 3
    f = _streaming(tmp_path, [_stream_row(300, "chained", 0.30), _stream_row(300, "anchored", 0.15),
                              _stream_row(1000, "chained", 0.20, states=lost), _stream_row(1000, "anchored", 0.25)],
                   [{**_stream_row(390, "anchored", 0.15, states=("INITIALISING", "TRACKING", "LOST", "RELOCALISED",
                                                                  "TRACKING")),
                     "scenario": "back_after_3s", "segments": [{"keyframes": 119, "other_room_keyframes": 0}]},
                    {**_stream_row(400, "anchored", 0.4, states=("INITIALISING", "TRACKING", "LOST", "TRACKING")),
                     "scenario": "never_back", "segments": [{"keyframes": 40, "other_room_keyframes": 0}]}])
    text = report.build_report([f])
    lines = _lines(text)
    assert lines["anchored ATE <= chained ATE @300 frames, orbit (oracle)"].endswith("| 0.150 vs 0.300 % | met |")
    assert lines["anchored ATE <= chained ATE @1000 frames, orbit (oracle)"].endswith("| MISSED |")
    lost = _streaming(tmp_path, [{**_stream_row(300, "anchored", 0.1), "accepted": 8, "windows": 22},
                                 _stream_row(300, "chained", 0.3)], name="lost_anchored.json")
    assert _lines(report.build_report([lost]))["anchored ATE <= chained ATE @300 frames, orbit (oracle)"].endswith(
        "| 0.100 vs 0.300 % (anchored: 8 of 22 windows accepted) | MISSED |")   # a low ATE over a lost stream
    assert "INITIALISING -> TRACKING -> (LOST -> RELOCALISED -> TRACKING) x3" in text
    back = next(v for k, v in lines.items() if k.startswith("3 s of another room"))
    never = next(v for k, v in lines.items() if k.startswith("never back"))
    assert back.endswith("| met |") and never.endswith("| MISSED |")          # no NEW_SEGMENT, one segment
    assert "needs `--predictor checkpoint`" in text and "at commit abc1234 on CPU test" in text
    assert "| streaming.json | streaming | abc1234def |" in text                 # provenance
    partial = report.build_report([_streaming(tmp_path, [_stream_row(300, "chained", 0.3)], name="p.json")])
    assert _lines(partial)["anchored ATE <= chained ATE @300 frames, orbit (oracle)"].endswith(
        "| not measured yet | not measured yet |")
    assert "not measured yet: the another-room scenarios" in partial


def test_report_trained_model_section(tmp_path):
    card = _json(tmp_path, "card.json", {
        "name": "httm-vggt-synth", "statement": "Synthetic rooms only.", "image_hw": [126, 168], "dtype": "float16",
        "parameters": 5, "training": {"command": "httm-train --smoke", "commit": "e460dae", "device": "cuda",
                                      "steps": 10, "schedule_steps": 100, "complete": False,
                                      "loss": {"loss": {"first": 1.0, "last": 0.5, "min": 0.4}}},
        "heldout": {"summary": {"abs_rel": 0.05, "delta_1_25": 0.5, "rot_err_median_deg": 1.5},
                    "targets": {"abs_rel": "<= 0.08", "delta_1_25": ">= 0.93", "rot_err_median_deg": "<= 2.0",
                                "ate_percent": "<= 3.0"},
                    "clips": [{"scene_seed": 0, "kind": "walk", "abs_rel": 0.05}]}})
    log = _json(tmp_path, "log.json", {"meta": {"training": {"commit": "e460dae"}},
                                       "entries": [{"step": 10, "loss": 1.2}, {"step": 20, "loss": 0.6}]})
    checkpoint = _streaming(tmp_path, [{**_stream_row(300, "anchored", 6.0), "accepted": 23}], predictor="checkpoint")
    lines = _lines(report.build_report([card, log, checkpoint]))
    assert lines["depth AbsRel <= 0.08"].endswith("| 0.050 | met |")
    assert lines["depth delta<1.25 >= 0.93"].endswith("| 0.500 | MISSED |")
    ate = lines["ATE (% of trajectory, Sim(3)) <= 3.0"]                     # not in the card's summary
    assert ate.endswith("| not measured yet | not measured yet |")
    where = "streaming, 300 frames, orbit, K=8/O=3, min_motion 0.03, seed 0, library checks, anchored"  # old files
    assert lines[f"{where}: windows accepted >= 95 %"].endswith("| 95.8 % | met |")
    assert lines[f"{where}: ATE <= 5 %"].endswith("| 6.000 % | MISSED |")
    lost = {**_stream_row(300, "chained", 4.0), "accepted": 2, "windows": 5, "keyframes": 40}
    short = _streaming(tmp_path, [lost], predictor="checkpoint", name="lost.json")
    row = _lines(report.build_report([card, short]))[
        "streaming, 300 frames, orbit, K=8/O=3, min_motion 0.03, seed 0, library checks, chained: ATE <= 5 %"]
    assert row.endswith("| 4.000 % (segment 0 only: 40 keyframes) | MISSED |")     # a low ATE over a lost stream
    node = {**_stream_row(300, "anchored", 4.0), "trajectory": "walk"}          # the node's VGGT-1B windows
    default = _json(tmp_path, "node_default.json", {"environment": CPU_ENV, "compare": [node], "failure": [], "config": {
        "predictor": "checkpoint", "window": 24, "overlap": 4, "min_motion": 0.03, "seed": 2},
        "stream_profile": {"align": {"max_residual": 0.1}}})
    text = report.build_report([card, default])
    lines = _lines(text)
    assert lines["streaming, 300 frames, walk, K=24/O=4, min_motion 0.03 (node default), seed 2, card checks, anchored: "
                 "ATE <= 5 %"].endswith("| 4.000 % | met |")
    assert 'seed 2; checks from the card\'s stream_profile {"align": {"max_residual": 0.1}}' in text
    assert "not measured yet" in lines["accuracy cost of merging on trained attention (dense vs uniform vs HTTM)"]
    text = report.build_report([card, log, checkpoint])
    assert "| loss | 1.0000 | 0.5000 | 0.4000 |" in text and "| 0 | walk | - | 0.050 | - | - | - |" in text
    text = report.build_report([card, log])
    assert "Training log `log.json`: 2 entries, steps 10 to 20, loss 1.200 -> 0.600." in text
    assert "no `httm-bench streaming --predictor checkpoint` file" in text


def _ws_row(mode, frames, seconds, overlap=8):
    return {"mode": mode, "frames": frames, "seconds": seconds, "runs_s": [seconds, seconds * 0.9], "repeats": 2,
            "layout": "anchored", "image_hw": [126, 168], "new_keyframes_per_s": (frames - overlap) / seconds,
            "merge": {"kept_q": 0.24, "kept_kv": 0.33}}


def test_report_window_size_section(tmp_path):
    rows = [_ws_row("dense", 24, 0.32), _ws_row("httm", 24, 0.16), _ws_row("dense", 64, 1.4), _ws_row("httm", 64, 1.0)]
    f = _json(tmp_path, "ws.json", {"kind": "e2e", "config": "synth", "overlap": 8, "weights_dtype": "float32",
                                    "rows": rows, "env": CPU_ENV})
    text = report.build_report([f])
    lines = _lines(text)
    assert lines["24 (16)"] == "| 24 (16) | 0.320 (0.288) | 50.00 | 0.160 (0.144) | 100.00 | 2.00x | 0.24 / 0.33 |"
    assert lines["64 (56)"].startswith("| 64 (56) | 1.400 (1.260) | 40.00 | 1.000 (0.900) | 56.00 | 1.40x |")
    default = next(v for k, v in lines.items() if "dense 24/8: HTTM, K=24" in k)
    assert default.endswith("| 2.00x | met |") and "(synth, CPU test)" in default
    assert "| ws.json | window_size | abc1234def |" in text and "ignored" not in text   # not an issue-4 e2e file
    assert "not measured yet (`python bench/window_accuracy.py`)" in text


def _wa_row(seed, trajectory, layout, ate, accepted, rate):
    k, o, mode, merge = layout
    return {"seed": seed, "trajectory": trajectory, "window": k, "overlap": o, "mode": mode, "merge": merge,
            "windows": 30, "accepted": accepted, "ate_pct": ate, "new_kf_per_model_s": rate}


def test_report_window_accuracy_table_and_targets(tmp_path):
    """bench/window_accuracy.py files: one row per layout over the same streams, coverage and ATE
    against the first layout (the baseline), and the 1.5x-at-equal-ATE verdict per layout."""
    base, fast, lossy = (24, 8, "chained", "none"), (24, 4, "anchored", "none"), (24, 4, "anchored", "httm")
    rows = [_wa_row(0, "walk", base, 4.0, 30, 10.0), _wa_row(0, "orbit", base, 5.0, 30, 10.0),
            _wa_row(0, "walk", fast, 3.0, 30, 16.0), _wa_row(0, "orbit", fast, 4.0, 30, 16.0),
            _wa_row(0, "walk", lossy, 2.0, 30, 20.0), _wa_row(0, "orbit", lossy, 9.0, 10, 20.0)]
    f = _json(tmp_path, "wa.json", {"kind": "window_accuracy", "environment": CPU_ENV, "rows": rows})
    lines = _lines(report.build_report([f]))
    assert lines["24/8 chained, dense"] == \
        "| 24/8 chained, dense | 2 of 2 | 60/60 | 4.50 % | 5.00 % | 4.50 % | 2 of 2 | 10.0 | 1.00x |"
    assert lines["24/4 anchored, dense"] == \
        "| 24/4 anchored, dense | 2 of 2 | 60/60 | 3.50 % | 4.00 % | 3.50 % | 2 of 2 | 16.0 | 1.60x |"
    assert lines["24/4 anchored, httm"] == \
        "| 24/4 anchored, httm | 1 of 2 | 40/60 | 2.00 % | 2.00 % | 5.50 % | 1 of 1 | 20.0 | 2.00x |"
    verdicts = {k: v for k, v in lines.items() if "at equal or better ATE" in k}
    fast_row = next(v for k, v in verdicts.items() if "24/4 anchored, dense (synth, CPU)" in k)
    lossy_row = next(v for k, v in verdicts.items() if "24/4 anchored, httm (synth, CPU)" in k)
    assert fast_row.endswith("| 1.60x; ATE 3.50 vs 4.50 % on the 2 streams the baseline covers | met |")
    assert "not all covered" in lossy_row and lossy_row.endswith("| MISSED |")      # faster, but loses a stream
    one_b = _json(tmp_path, "ws1b.json", {"kind": "e2e", "config": "1b", "overlap": 8, "env": CPU_ENV, "rows": [
        {**_ws_row(m, 100, 1.0), "image_hw": [392, 518], "tokens": 104100} for m in ("dense", "httm")]})
    assert "| 100 | 104100 | not measured yet | not measured yet | not measured yet |" in report.build_report([one_b])
    no_base = _json(tmp_path, "ws2.json", {"kind": "e2e", "config": "synth", "overlap": 8, "env": CPU_ENV,
                                           "rows": [_ws_row("httm", 32, 0.4)]})
    assert "(no dense 24/8 row)" in report.build_report([no_base])


def test_report_groups_networks_and_judges_the_node_default(tmp_path, monkeypatch):
    """window_accuracy files of two networks (by weights_sha256): one table each, the ATE baseline the
    first network's first layout; the node's default layout (24/4 anchored, HTTM) is judged with the
    GPU's new keyframes/s (httm 24 with 20 new against dense 24 with 16 new, one group) and the mean
    ATE and windows of the last shipped network in that layout over the same streams."""
    monkeypatch.setattr(report, "shipped_networks", lambda: {"a" * 64: "net-a", "b" * 64: "net-b"})
    base, default = (24, 8, "chained", "none"), (24, 4, "anchored", "httm")

    def network(name, sha, rows):
        return _json(tmp_path, name, {"kind": "window_accuracy", "environment": CPU_ENV, "rows": rows,
                                      "config": {"weights": "x.safetensors", "weights_sha256": sha}})

    a = network("a.json", "a" * 64, [_wa_row(0, "walk", base, 4.0, 29, 10.0), _wa_row(0, "orbit", base, 5.0, 30, 10.0),
                                     _wa_row(0, "walk", default, 7.0, 20, 14.0), _wa_row(0, "orbit", default, 8.0, 30, 14.0)])
    b = network("b.json", "b" * 64, [_wa_row(0, "walk", default, 3.0, 30, 14.0), _wa_row(0, "orbit", default, 4.0, 30, 14.0)])
    c = network("c.json", "c" * 64, [_wa_row(0, "walk", default, 1.0, 30, 14.0), _wa_row(0, "orbit", default, 1.0, 30, 14.0)])
    gpu = [_windows_file(tmp_path, "kf16.json", [_wrow("dense", 0.32), _wrow("httm", 0.25)]),
           _windows_file(tmp_path, "kf20.json", [{**_wrow("httm", 0.24), "new": 20}], new=20)]
    text = report.build_report([a, b, c, *gpu])
    assert "**net-a** (`a.json`;" in text and "**net-b** (`b.json`;" in text and "**network cccccccccccc (not shipped)**" in text
    row = next(v for k, v in _lines(text).items() if k.startswith("the node's default (24/4 anchored, httm)"))
    assert row.endswith("| 1.67x on NVIDIA H100 80GB HBM3 (`kf20.json`, VGGT-1B random weights); ATE 3.50 vs 4.50 %, "
                        "windows accepted 100 vs 98 % over 2 held-out streams (net-b in the default layout, net-a in the "
                        "baseline's) | met |"), row                              # c is not shipped: not the one judged
    worse = network("b.json", "b" * 64, [_wa_row(0, "walk", default, 3.0, 30, 14.0),
                                         _wa_row(0, "orbit", default, 6.5, 30, 14.0)])
    row = next(v for k, v in _lines(report.build_report([a, worse, *gpu])).items() if k.startswith("the node's default"))
    assert "ATE 4.75 vs 4.50 %" in row and row.endswith("| MISSED |")
    assert not any(k.startswith("the node's default") for k in _lines(report.build_report([a, b])))   # no GPU side


def _dtype_file(tmp_path, dtypes, device="CPU test"):
    return _json(tmp_path, "dtype.json", {
        "environment": {**CPU_ENV, "device": device}, "model": "VGGT-1B, golden weights", "images": [3, 3, 126, 168],
        "reference": "float32, same device",
        "float32": {"weight_bytes": 4 * 2**20, "forward_s": 2.0, "vs_public_code": {"pose_enc": 1e-6, "depth": 1e-6,
                                                                                    "depth_conf": 1e-6}},
        "dtypes": dtypes})


def test_report_dtype_section(tmp_path):
    bf16 = {"weight_bytes": 2 * 2**20, "forward_s": 1.0, "weight_ratio": 0.5,
            "rel_error_vs_float32": {"pose_enc": 0.02, "depth": 0.015, "depth_conf": 0.006}}
    text = report.build_report([_dtype_file(tmp_path, {"bfloat16": bf16})])
    lines = _lines(text)
    assert lines["bfloat16"] == "| bfloat16 | 2 | 0.50 | 1.00 | 2.0e-02 | 1.5e-02 | 6.0e-03 |"
    assert lines["bfloat16 weights: half the memory of float32 (CPU test)"].endswith("| 0.50x | met |")
    assert lines["bfloat16 weights: pose_enc relative error < 3e-02 (CPU test)"].endswith("| met |")
    assert lines["bfloat16 weights: depth relative error < 1e-02 (CPU test)"].endswith("| 1.5e-02 | MISSED |")
    assert "needs CUDA" in text
    gpu = report.build_report([_dtype_file(tmp_path, {"bfloat16": bf16}, device="NVIDIA H100")])
    assert "needs CUDA" not in gpu
    assert "no reduced-precision row in this file" in report.build_report([_dtype_file(tmp_path, {})])


def _loop_row(drift, ate, loops=True, knobs="default", wrong=True, **kw):
    row = {"loop_closure": loops, "knobs": knobs if loops else None, "drift_deg": drift, "ate_pct": ate, **kw}
    if loops:
        row.update(loops_accepted=3, loops_rejected={"gate": 1}, update_s_mean=0.002, update_s_max=0.01,
                   batch_solves=0, map_rebuild_s_mean=float("nan"))
        if wrong:
            row["wrong_loop"] = {"rejected": True, "map_unchanged": True, "trajectory_unchanged": True}
    return row


def test_report_loops_section(tmp_path):
    data = {"environment": CPU_ENV, "config": {"frames": 920, "seed": 0}, "knobs": {"default": {}},
            "stream": [_loop_row(0.3, 2.0, loops=False), _loop_row(0.3, 0.5), _loop_row(1.0, 8.0, loops=False),
                       _loop_row(1.0, 7.9, wrong=False)],
            "no_loop": [_loop_row(0.3, 2.0, loops=False), _loop_row(0.3, 2.1, wrong=False)],
            "graph_wrong_loop": [{"knobs": "default", "rejected": False, "reasons": {}}],
            "scale": {"loop_every": 200, "knobs": "default", "rows": [
                {"keyframes": 1000, "updates": 200, "update_s_mean_last": 0.004, "update_s_p95_last": 0.01,
                 "update_s_max": 0.2, "rss_mib": 500.0, "rss_growth_mib": 10.0, "loops_accepted": 3,
                 "loops_rejected": {"a": 1, "b": 2}, "batch_solves": 0, "batch_solve_s_max": float("nan")}]},
            "not_measured": ["trained model (not here)"]}
    text = report.build_report([_json(tmp_path, "loops.json", data)])
    lines = _lines(text)
    assert lines["ATE with loops <= 50% of ATE without @0.3 deg (default)"].endswith("| 0.500 vs 2.000 % | met |")
    assert lines["ATE with loops <= 50% of ATE without @1.0 deg (default)"].endswith("| MISSED |")
    assert lines["no increase without a loop @0.3 deg (default, within 0.1 %)"].endswith("| MISSED |")
    assert lines["graph-only wrong loop rejected (default)"].endswith("| accepted | MISSED |")
    assert lines["wrong loop injected into the stream: rejected, map unchanged @0.3 deg (default)"].endswith("| met |")
    assert ("| loop | 0.3 | default | 2.000 | 0.500 | 0.25 | - / - | 3 / 1 (gate: 1) | 2.0 / 10.0 | 0 | - | "
            "rejected, map unchanged |") in text
    assert "| default | 1000 | 200 | 4.0 / 10.0 | 200 | 500 (+10) | 3 / 3 | 0 (-) |" in text
    assert lines["trained model (not here)"].endswith("| not measured yet (listed as not measured in loops.json) |")
    partial = {k: v for k, v in data.items() if k != "scale"}
    assert "not measured yet: the 10k-keyframe graph run" in report.build_report([_json(tmp_path, "l2.json", partial)])
    assert "not measured yet: the asynchronous-vs-synchronous runs" in text


def test_report_loops_timing_table(tmp_path):
    timing = [_loop_row(0.5, 0.20, synchronous=True, paced_s=0.0, wall_s=1.0),
              _loop_row(0.5, 0.30, synchronous=False, paced_s=0.0, wall_s=1.0),
              _loop_row(0.5, 0.40, synchronous=False, paced_s=0.0, wall_s=3.0),
              _loop_row(0.5, 0.21, synchronous=False, paced_s=0.05, wall_s=4.0)]
    data = {"environment": CPU_ENV, "config": {"frames": 920, "seed": 0}, "knobs": {"default": {}},
            "stream": [], "no_loop": [], "timing": timing}
    text = report.build_report([_json(tmp_path, "loops.json", data)])
    assert "| 0.5 | synchronous | 0.0 | 1 | 0.200 | 3 | 1.0 |" in text
    assert "| 0.5 | asynchronous | 0.0 | 2 | 0.300, 0.400 | 3, 3 | 2.0 |" in text
    assert "| 0.5 | asynchronous | 0.05 | 1 | 0.210 | 3 | 4.0 |" in text


def test_report_distributed_section(tmp_path):
    share = lambda x: {"pose_enc": x, "depth": x, "depth_conf": x}                # noqa: E731
    fid = _json(tmp_path, "fid.json", {"kind": "distributed_fidelity", "env": CPU_ENV, "model": "synth",
                                       "image_hw": [126, 168], "merge": {"spatial_block": 36, "temporal_frames": 4},
                                       "rows": [{"frames": 24, "processes": 2, "merging_vs_dense": share(0.01),
                                                 "global_share_of_merging": share(0.002),
                                                 "rank_share_of_merging": share(0.15)},
                                                {"frames": 48, "processes": 4, "merging_vs_dense": share(0.01),
                                                 "global_share_of_merging": share(0.3),
                                                 "rank_share_of_merging": share(0.1)}]})
    gpu = _json(tmp_path, "gpu.json", {"kind": "distributed", "env": {**CPU_ENV, "device": "NVIDIA H100"}, "rows": [
        {"gpus": g, "frames": 1000, "mode": "httm", "seconds": s, "speedup": 30.0 / s, "efficiency": 30.0 / (g * s),
         "peak_memory_gib_max": 20.0, "all_gather_bytes_per_rank": 2e9} for g, s in ((1, 30.0), (2, 20.0))]
        + [{"gpus": 4, "frames": 1000, "mode": "httm", "error": "CUDA out of memory\nmore"}]})
    text = report.build_report([fid, gpu])
    lines = _lines(text)
    assert "| 24 | 2 | 0.01 / 0.01 / 0.01 | 0.2% / 0.2% / 0.2% | 15% / 15% / 15% |" in text
    worst = next(v for k, v in lines.items() if k.startswith("HTTM over 2-4 processes"))
    assert worst.endswith("| worst 30% of the merging error | met |")
    assert "`global` closer in 1 of 2 (frames, processes) rows" in text
    assert "| 2 | 1000 | httm | 20.00 | 1.50x | 0.75 | 20.0 | 2000 | - |" in text
    assert "| 4 | 1000 | httm | - | - | - | - | - | CUDA out of memory |" in text
    gpu_target = next(v for k, v in lines.items() if k.startswith("GPU: 1000 / 2000 / 4000"))
    assert "| 2 of 9 rows |" in gpu_target and "1000 frames on 4 GPU(s), 2000 frames on 1 GPU(s)" in gpu_target


def test_report_renders_the_real_result_files():
    """Every issue-15..19 file in the repository is recognised and rendered with its verdicts."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "bench" / "results"
    files = {"train_synth/run2/httm-vggt-synth.json": "model_card", "train_synth/run2/train_log.json": "train_log",
             "streaming/streaming_oracle.json": "streaming", "window_size/cpu_synth.json": "window_size",
             "dtype/cpu_bf16.json": "dtype", "loops/loops_oracle.json": "loops",
             "distributed/fidelity_cpu.json": "distributed_fidelity"}
    for name, kind in files.items():
        assert report.extra_kind(json.loads((root / name).read_text())) == kind, name
    text = report.build_report([root / name for name in files])
    for name, kind in files.items():
        assert f"| {Path(name).name} | {kind} |" in text                       # provenance of every file
    lines = _lines(text)
    judged = ("anchored ATE <= chained ATE @5000 frames, orbit (oracle)", "ATE with loops <= 50% of ATE without @0.3 deg "
              "(default)", "depth AbsRel <= 0.08")                        # a verdict, whichever way a rerun goes
    assert all(lines[k].endswith(("| met |", "| MISSED |")) for k in judged)
    assert "| 128 (120) |" in text and "`global` closer in 6 of 6" in text
    assert any(k.startswith("bfloat16 weights: half the memory") and v.endswith("| met |") for k, v in lines.items())


def test_report_flash_vs_cudnn_table(tmp_path):
    env = {"commit": "abc1234def", "device": "NVIDIA H100 80GB HBM3"}
    row = lambda sdpa, first, warm: {"mode": "httm", "frames": 100, "tokens": 104100, "image_hw": [392, 518],  # noqa: E731
                                     "seconds": warm, "first_run_s": first, "attention_sdpa": sdpa,
                                     "breakdown_s": {"global_attention": warm / 4}}
    flash = _json(tmp_path, "flash.json", {"kind": "e2e", "config": "1b", "env": env, "rows": [row("flash", 2.0, 1.9)]})
    cudnn = _json(tmp_path, "cudnn.json", {"kind": "e2e", "config": "1b", "env": env, "rows": [row("cudnn", 6.6, 1.8)]})
    text = report.build_report([flash, cudnn])
    assert "| 100 | cudnn | 6.600 | 1.800 | 0.450 | NVIDIA H100 80GB HBM3 | abc1234 | cudnn.json |" in text
    assert "| 100 | flash | 2.000 | 1.900 | 0.475 | NVIDIA H100 80GB HBM3 | abc1234 | flash.json |" in text
    assert ("the default is now `flash`, measured against cuDNN at 100 frames in the table "
            "\"HTTM's attention kernels\" below") in text
    assert "HTTM's attention kernels: flash (the default) vs cuDNN, one run\n\nRows" in text
    bare = report.build_report([])
    assert "whose time at these sizes is not measured yet" in bare


def test_report_compile_lever_section(tmp_path):
    """e2e files that record --compile-tokenwise go to their own section: every row, and the speed-up
    where one commit on one device measured a (mode, frames, attention) eager and compiled."""
    env = {"commit": "91468b2abc", "device": "NVIDIA H100 80GB HBM3", "date_utc": "2026-12-06T03:40:00Z"}

    def e2e(name, compiled, rows):
        return _json(tmp_path, name, {"kind": "e2e", "config": "1b", "env": env, "compile_tokenwise": compiled,
                                      "attention_sdpa": None, "rows": rows})

    def row(mode, frames, seconds, other):
        return {**_row(mode, frames, seconds, 7.1, ga=0.1), "first_run_s": seconds + 1,
                "breakdown_s": {"global_attention": 0.1, "aggregator_other": other}}

    eager = e2e("eager.json", False, [row("dense", 24, 0.478, 0.227), row("httm", 24, 0.412, 0.227)])
    compiled = e2e("compiled.json", True, [row("dense", 24, 0.343, 0.096), row("httm", 24, 0.279, 0.100),
                                           row("httm", 100, 1.281, 0.449)])
    assert report.extra_kind(json.loads(compiled.read_text())) == "compile"
    text = report.build_report([eager, compiled])
    assert "| httm | 24 | flash | passes | float32 | float32 | 1.279 | 0.279 | - | 0.100 | 0.100 | - | 7.10 |" in text
    assert "| httm | 24 | flash | 0.412 | 0.279 | 1.48x | 0.227 -> 0.100 |" in text
    assert "| dense | 24 | sdpa | 0.478 | 0.343 | 1.39x | 0.227 -> 0.096 |" in text
    assert "| httm | 100 | flash | 1.281" not in text.split("| eager s |")[1]      # no eager row: no speed-up
    assert "| 24 | httm |" not in text.split("## Long sequences")[1].split("##")[0]  # kept out of issue 4's tables
    assert "## Issue 14's levers, each measured alone" in report.build_report([])
    assert "| DPT float32 s |" not in text                        # no file has bf16 heads: no table
    assert "| weights float32 s |" not in text


def test_report_pairs_the_dpt_heads_lever_at_equal_compile_setting(tmp_path):
    """--dpt-dtype bfloat16 files are paired with float32-heads files of the same compile setting,
    commit and device; the compile lever is paired at equal DPT dtype."""
    env = {"commit": "abcdef0123", "device": "NVIDIA H200", "date_utc": "2026-12-07T03:40:00Z"}

    def e2e(name, compiled, dpt, seconds, heads):
        row = {**_row("httm", 100, seconds, 8.6, ga=0.4), "attention_sdpa": "cudnn", "first_run_s": seconds + 1,
               "breakdown_s": {"aggregator_other": 0.45, "heads_and_host": heads}}
        return _json(tmp_path, name, {"kind": "e2e", "config": "1b", "env": env, "compile_tokenwise": compiled,
                                      "dpt_dtype": dpt, "attention_sdpa": "cudnn", "rows": [row]})

    files = [e2e("c32.json", True, "float32", 1.20, 0.195), e2e("c16.json", True, "bfloat16", 1.10, 0.090),
             e2e("e32.json", False, "float32", 1.80, 0.196)]
    text = report.build_report(files)
    assert "| httm | 100 | cudnn | 1.200 | 1.100 | 1.09x | 0.195 -> 0.090 |" in text     # DPT lever, compiled
    assert "| httm | 100 | cudnn | 1.800 | 1.200 | 1.50x | 0.450 -> 0.450 |" in text     # compile lever, fp32 heads
    assert "| httm | 100 | cudnn | passes | bfloat16 |" in text


def test_report_weights_lever_and_targets_against_the_fastvggt_code(tmp_path):
    """bf16-weights files pair with float32-weights files of the same compile and DPT settings; the
    FastVGGT code's one-shot rows (windows files, no new frames) pair with our e2e rows of the same
    commit and device: uniform within 10% of its time, and at 1000 frames HTTM's speed-up, peak
    memory share and seconds."""
    env = {"commit": "167cea1abc", "device": "NVIDIA H100 80GB HBM3", "date_utc": "2026-12-06T12:30:00Z"}

    def e2e(name, weights, rows, compiled=True):
        return _json(tmp_path, name, {"kind": "e2e", "config": "1b", "env": env, "compile_tokenwise": compiled,
                                      "dpt_dtype": "bfloat16", "weights_dtype": weights, "attention_sdpa": "cudnn",
                                      "rows": rows})

    def row(mode, frames, seconds, peak, **kw):
        return {**_row(mode, frames, seconds, peak, ga=1.0), "first_run_s": seconds + 9, "attention_sdpa": "cudnn",
                "breakdown_s": {"aggregator_other": seconds / 5}, **kw}

    w32 = e2e("w32.json", "float32", [row("httm", 1000, 27.18, 30.6)])
    wbf16 = e2e("wbf16.json", "bfloat16", [row("httm", 1000, 26.31, 28.4)])
    uniform = e2e("u.json", "bfloat16", [row("uniform", 1000, 66.28, 35.1, row_warmup=False)], compiled=False)
    peer = _windows_file(tmp_path, "peer.json", [_wrow("fastvggt", None, first=66.91, frames=1000, new=0,
                                                       peak_gib=65.9)], frames=1000, new=0)
    peer_json = json.loads(peer.read_text())
    peer_json["env"].update(commit=env["commit"], device=env["device"])
    peer.write_text(json.dumps(peer_json))
    text = report.build_report([w32, wbf16, uniform, peer])
    assert "| httm | 1000 | cudnn | 27.180 | 26.310 | 1.03x | 5.436 -> 5.262 |" in text          # weights lever
    assert "| 66.280 (cold: no row warm-up) |" in text
    verdicts = {k: line.rstrip(" |").rsplit("| ", 1)[1] for k, line in _lines(text).items()}
    assert verdicts["our uniform within 10% of the FastVGGT code's time @1000 frames"] == "met"
    assert verdicts["HTTM >= 2.6x faster than the FastVGGT code @1000 frames"] == "MISSED"     # 66.91 / 26.31
    assert verdicts["HTTM peak <= 50% of the FastVGGT code's @1000 frames"] == "met"           # 28.4 / 65.9
    assert verdicts["HTTM <= 25 s @1000 frames (named for the H200)"] == "MISSED"
    # another commit's peer row is not paired with these rows
    peer_json["env"]["commit"] = "0000000"
    peer.write_text(json.dumps(peer_json))
    text = report.build_report([w32, wbf16, uniform, peer])
    assert "| our uniform within 10% of the FastVGGT code's time @1000 frames | not measured yet |" in text


def test_report_pairs_the_pytorch_path_with_the_triton_path(tmp_path):
    """Issue 14's onboard target: a windows row with impl=torch (no Triton) against the Triton row
    of the same size, setting, commit and device; its peak within 1.1x, its p50 beside it."""
    triton = _windows_file(tmp_path, "t.json", [_wrow("httm", 0.40, peak_gib=4.0, frames=64)], frames=64)
    torch_ok = _windows_file(tmp_path, "f.json", [_wrow("httm", 0.55, peak_gib=4.2, frames=64, sets={"impl": "torch"})],
                             frames=64)
    torch_big = _windows_file(tmp_path, "g.json", [_wrow("httm", 0.20, peak_gib=9.0, sets={"impl": "torch"}),
                                                   _wrow("httm", 0.19, peak_gib=7.0)])
    lines = _lines(report.build_report([triton, torch_ok, torch_big]))
    ok = next(v for k, v in lines.items() if k.startswith("PyTorch path peak <= 1.1x") and "@64 frames" in k)
    big = next(v for k, v in lines.items() if k.startswith("PyTorch path peak <= 1.1x") and "@24 frames" in k)
    assert "1.05x (4.20 vs 4.00 GiB; p50 0.550 vs 0.400 s)" in ok and ok.endswith("| met |")
    assert "1.29x" in big and big.endswith("| MISSED |")


def _merging_row(frames, setting, abs_rel, ate, kept=(1.0, 1.0)):
    summary = {"abs_rel": abs_rel, "delta_1_25": 0.9, "rot_err_median_deg": 2.0, "ate_percent": ate, "acc": 0.03,
               "comp": 0.5, "kept_q": kept[0], "kept_kv": kept[1], "model_s": 0.5}
    return {"frames": frames, "setting": setting, "summary": summary,
            "clips": [{"scene_seed": 0, "abs_rel": abs_rel, "ate_percent": ate, "acc": 0.03, "comp": 0.5},
                      {"scene_seed": 1, "abs_rel": abs_rel, "ate_percent": ate, "acc": 0.03, "comp": 0.5},
                      {"scene_seed": 2, "abs_rel": abs_rel, "ate_percent": ate, "acc": 9.0, "comp": 9.0}]}


def test_report_merging_on_trained_attention_section(tmp_path):
    """httm-eval merging files: the headline accuracy section, above the random-weight proxy."""
    layers = lambda h, u: [{"layer": i, "httm_rel_err": h, "uniform_rel_err": u} for i in range(2)]  # noqa: E731
    data = {"kind": "merging_trained", "image_hw": [126, 168], "clips": 2, "frames": [16], "split": "held-out seeds",
            "model": "trained VGGT x", "weights": "x.safetensors", "eval_options": {"conf_percentile": 50.0},
            "offline": [_merging_row(16, "dense", 0.05, 4.0), _merging_row(16, "uniform", 0.07, 7.0, (0.4, 0.4)),
                        _merging_row(16, "httm", 0.08, 6.0, (0.24, 0.33)),
                        _merging_row(16, "httm_matched", 0.06, 5.0, (0.4, 0.4))],
            "attention": [{"frames": 16, "comparison": "paper_ratios", "layers": layers(0.25, 0.2),
                           "mean": {"httm_rel_err": 0.25, "uniform_rel_err": 0.2}},
                          {"frames": 16, "comparison": "matched_budget", "layers": layers(0.15, 0.2),
                           "mean": {"httm_rel_err": 0.15, "uniform_rel_err": 0.2}}],
            "environment": {"commit": "abc1234def", "device": "CPU test", "command": "httm-eval merging --frames 16"}}
    f = _json(tmp_path, "merging.json", data)
    assert report.extra_kind(data) == "merging_trained"
    fid = _json(tmp_path, "fid.json", {"setup": {"model": "golden"}, "comparisons": {}, "command": "x"})
    text = report.build_report([f, fid])
    assert text.index("## The accuracy cost of merging on trained attention") < text.index("## Fidelity proxy")
    assert "| 16 | HTTM, uniform's budget | 0.400 | 0.400 | 0.0600 |" in text
    assert "| 16 | uniform (FastVGGT) | 0.400 | 0.400 | 0.0700 | 0.9000 | 2.00 | 7.00 | 0.0300 | 0.5000 | 0.2000 |" in text
    assert "| 16 | 1 | 0.2000 | 0.2500 | 0.1500 |" in text                        # per-layer table
    findings = [line for line in text.splitlines() if line.startswith("- 16 frames")]
    assert "better than uniform on 2 of 6 metrics (AbsRel, ATE)" in findings[0]     # the same budget
    assert "AbsRel +0.0100 vs +0.0200" in findings[0] and "lower AbsRel than uniform on 3 of 3 clips" in findings[0]
    assert "attention error 0.1500 vs 0.2000" in findings[0]
    assert "better than uniform on 1 of 6 metrics (ATE)" in findings[1]             # the paper's ratios
    assert "not measured yet: the streaming pipeline" in text
    data["streaming"] = [{"scene_seed": 0, "frames": 40, "setting": "dense", "windows": 2, "rejected": 1, "ate_percent": 4.0}]
    streamed = report.build_report([_json(tmp_path, "s.json", data)])
    assert "| 0 | 40 | dense | - | - | 2 | 1 |" in streamed and "(dense 1 of 2): their rows rest on the accepted" in streamed
    assert "at commit abc1234 on CPU test" in text and "| merging.json | merging_trained |" in text
    assert _lines(text)["accuracy cost of merging on trained attention (dense vs uniform vs HTTM)"].endswith(
        "| `merging.json` | measured (section \"The accuracy cost of merging on trained attention\"; no numeric target) |")
    assert "not measured yet: no `httm-eval merging` file" in report.build_report([])


def test_report_loops_with_the_trained_network(tmp_path):
    """bench/loops_trained.py files: one row per seed (ATE off / on), a verdict per seed against
    issue 18's 50 %; files from before the "kind" field are recognised by their fields."""
    rows = [{"seed": 1, "loop_closure": False, "ate_pct": 2.0, "final_drift_pct": 6.0, "windows": 92, "accepted": 90},
            {"seed": 1, "loop_closure": True, "ate_pct": 0.8, "final_drift_pct": 1.5, "windows": 92, "accepted": 90,
             "loops_accepted": 5,
             "loops_rejected": {"verification: too few": 2}},
            {"seed": 2, "loop_closure": False, "ate_pct": 2.0, "windows": 92, "accepted": 92},
            {"seed": 2, "loop_closure": True, "ate_pct": 1.5, "windows": 92, "accepted": 92, "loops_accepted": 1}]
    env = {"commit": "abc", "device": "CPU", "command": "python bench/loops_trained.py --seeds 1 2"}
    path = tmp_path / "loops_trained.json"
    path.write_text(json.dumps({"kind": "loops_trained", "environment": env, "stream_profile": {},
                                "config": {"frames": 920, "window": 16, "overlap": 6}, "rows": rows}))
    old = {"environment": env, "stream_profile": {}, "config": {}, "rows": rows}
    assert report.extra_kind(old) == "loops_trained"
    text = report.build_report([path])
    assert "| 1 | 2.000 | 0.800 | 0.40 | 6.000 / 1.500 | 90/92 / 90/92 | 5 |" in text          # loop-closing error
    assert "held-out seed 1: ATE with loops <= 50% of ATE without (loops_trained.json) | 0.40 | met |" in text
    assert "held-out seed 2: ATE with loops <= 50% of ATE without (loops_trained.json) | 0.75 | MISSED |" in text


def test_report_loops_trained_without_a_loop_checks_no_increase(tmp_path):
    """A sequence shorter than a lap revisits nothing: its target is "no increase", not 50 %."""
    rows = [{"seed": 0, "loop_closure": False, "ate_pct": 2.0}, {"seed": 0, "loop_closure": True, "ate_pct": 2.0},
            {"seed": 1, "loop_closure": False, "ate_pct": 2.0}, {"seed": 1, "loop_closure": True, "ate_pct": 2.1}]
    path = tmp_path / "one_lap.json"
    path.write_text(json.dumps({"kind": "loops_trained", "environment": {"commit": "abc"}, "stream_profile": {},
                                "config": {"frames": 400, "window": 16, "overlap": 6}, "rows": rows}))
    text = report.build_report([path])
    assert "held-out seed 0, no loop in the sequence: no increase (within 0.1%; one_lap.json) | 1.000 | met |" in text
    assert "held-out seed 1, no loop in the sequence: no increase (within 0.1%; one_lap.json) | 1.050 | MISSED |" in text
