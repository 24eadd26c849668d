"""httm-eval merging: the accuracy cost of merging on trained attention, end to end on one short held-out clip."""

import json

import pytest

from httm_ros.eval import eval_cli
from httm_ros.weights import synth_weights

pytestmark = pytest.mark.skipif(synth_weights() is None, reason="the shipped httm-vggt-synth weights are absent")


def test_merging_cli_one_short_clip(tmp_path):
    out = tmp_path / "m.json"
    assert eval_cli.main(["merging", "--frames", "4", "--clips", "1", "--out", str(out)]) == 0   # a few seconds
    res = json.loads(out.read_text())
    assert res["kind"] == "merging_trained" and res["image_hw"] == [126, 168]
    assert res["environment"]["command"].startswith("httm-eval merging") and res["weights_sha256"]
    rows = {r["setting"]: r["summary"] for r in res["offline"]}
    assert list(rows) == ["dense", "uniform", "httm", "httm_matched"]
    assert rows["dense"]["kept_q"] == 1.0 and rows["httm"]["kept_q"] < rows["uniform"]["kept_q"]
    for key in ("kept_q", "kept_kv"):                      # the matched budget: measured, not nominal
        assert rows["httm_matched"][key] == pytest.approx(rows["uniform"]["kept_q"], abs=0.01)
    for s in rows.values():
        assert 0 < s["abs_rel"] < 1 and s["acc"] > 0 and s["rot_err_median_deg"] >= 0
    attention = {a["comparison"]: a for a in res["attention"]}
    assert set(attention) == {"paper_ratios", "matched_budget"}
    assert all(0 < r["httm_rel_err"] < 1 for a in attention.values() for r in a["layers"])


def test_merging_cli_usage_errors(tmp_path, capsys):
    assert eval_cli.main(["merging", "--frames", "1", "--out", str(tmp_path / "x.json")]) == 2
    assert eval_cli.main(["merging", "--streaming-frames", "10", "--window", "24", "--out", str(tmp_path / "x.json")]) == 2
    assert "merging:" in capsys.readouterr().err
