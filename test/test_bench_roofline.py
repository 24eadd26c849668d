"""httm_ros.bench.roofline: per-part FLOP and traffic of a VGGT forward, counted on the meta device,
against hand counts, and its table in the report (issue 14's "each part next to its bound")."""

import json

import pytest

from httm_ros.bench import report, roofline
from httm_ros.vggt import VGGTConfig


def _block_matmul_flop(tokens: int, d: int, mlp: float) -> float:
    """qkv (3d^2) + proj (d^2) + MLP (2 * mlp * d^2) multiply-adds per token, 2 FLOP each."""
    return 2.0 * tokens * (4 * d * d + 2 * mlp * d * d)


def test_counts_match_hand_counts_on_vggt_1b():
    cfg = VGGTConfig.vggt_1b()
    frames, (h, w) = 10, (392, 518)
    p = 5 + (h // 14) * (w // 14)                                # camera + 4 registers + patches
    costs = roofline.part_costs(frames, (h, w), cfg=cfg)
    other = costs["aggregator_other"]["matmul_flop"]
    assert other == pytest.approx(2 * cfg.depth * _block_matmul_flop(p * frames, 1024, 4.0), rel=1e-3)
    dino_attention = cfg.dino_depth * 4.0 * (p ** 2) * 1024 * frames       # DINO: cls + 4 registers + patches
    assert costs["dino"]["attention_flop"] == pytest.approx(dino_attention, rel=1e-3)
    assert costs["frame_attention"]["attention_flop"] == pytest.approx(cfg.depth * 4.0 * p * p * 1024 * frames)
    assert costs["global_attention"]["attention_flop"] == pytest.approx(cfg.depth * 4.0 * (p * frames) ** 2 * 1024)
    assert costs["heads_and_host"]["matmul_flop"] > 0 and all(c["bytes"] > 0 for c in costs.values())


def test_kept_fractions_scale_only_the_global_attention():
    dense = roofline.part_costs(20)
    merged = roofline.part_costs(20, kept_q=0.2, kept_kv=0.3)
    ratio = merged["global_attention"]["attention_flop"] / dense["global_attention"]["attention_flop"]
    assert ratio == pytest.approx(0.06)
    assert all(merged[p] == dense[p] for p in roofline.PARTS if p != "global_attention")


def test_bounds_take_the_slower_of_arithmetic_and_traffic():
    costs = {"a": {"matmul_flop": 790e12, "attention_flop": 400e12, "bytes": 4.3e12},
             "b": {"matmul_flop": 0.0, "attention_flop": 0.0, "bytes": 43e12}}
    b = roofline.bounds(costs)
    assert b["a"]["arithmetic_s"] == pytest.approx(2.0) and b["a"]["bound_s"] == pytest.approx(2.0)
    assert b["b"]["bound_s"] == pytest.approx(10.0) and b["b"]["arithmetic_s"] == 0.0


def test_report_puts_each_part_next_to_its_bound(tmp_path):
    breakdown = {"dino": 2.0, "frame_attention": 0.35, "global_attention": 17.5, "aggregator_other": 4.7,
                 "heads_and_host": 1.6}
    row = {"mode": "httm", "frames": 1000, "seconds": 26.3, "peak_gib": 28.4, "image_hw": [392, 518],
           "breakdown_s": breakdown, "merge": {"kept_q": 0.2, "kept_kv": 0.3}}
    path = tmp_path / "e2e.json"
    path.write_text(json.dumps({"kind": "e2e", "config": "1b", "compile_tokenwise": True, "rows": [row],
                                "env": {"commit": "abc", "device": "NVIDIA H100 80GB HBM3"}}))
    text = report.build_report([path])
    section = text.split("### Where the time goes against each part's bound")[1].split("##")[0]
    by_part = {line.split(" | ")[1]: line for line in section.splitlines() if line.startswith("| 1000 | ")}
    assert set(by_part) == set(roofline.PARTS)
    assert "| yes |" in by_part["global_attention"]           # 17.5 s against ~16.5 s of attention
    assert "| NO |" in by_part["heads_and_host"]              # 1.6 s against ~0.35 s
    assert "### Where the time goes against each part's bound" in report.build_report([])


def test_onboard_estimate_uses_the_same_counts(tmp_path):
    """bench/onboard_estimate.py (the Orin ESTIMATE) sums roofline's parts: HTTM changes only the
    global attention's share, and every bound is max(math, memory)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("onboard_estimate",
                                                  Path(__file__).resolve().parents[1] / "bench/onboard_estimate.py")
    onboard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(onboard)
    c = onboard.count(8, (392, 518))
    dense, merged = roofline.part_costs(8), roofline.part_costs(8, kept_q=0.2, kept_kv=0.3)
    assert c["flops_dense"] == int(sum(p["matmul_flop"] + p["attention_flop"] for p in dense.values()))
    cut = 0.94 * dense["global_attention"]["attention_flop"]
    assert c["flops_dense"] - c["flops_httm"] == pytest.approx(cut, rel=1e-6)
    assert c["bytes_httm"] < c["bytes_dense"] and c["params"] > 1e9
    out = tmp_path / "orin.json"
    assert onboard.main(["--frames", "8", "--overlap", "2", "--out", str(out)]) == 0
    for dev in json.loads(out.read_text())["devices"].values():
        for mode in ("dense", "httm"):
            e = dev[mode]
            assert e["seconds_lower_bound"] == max(e["seconds_math"], e["seconds_memory"])
