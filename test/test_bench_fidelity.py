"""Fidelity proxy: per-layer error of merged vs dense global attention, VGGT-1B golden weights.

Shares ``fidelity_proxy`` with ``httm-bench fidelity --out bench/fidelity_proxy.json``.
"""

import pytest

from httm_ros.bench.fidelity import COMPARISONS, fidelity_proxy, format_table


@pytest.mark.slow
def test_fidelity_proxy_httm_beats_uniform_at_matched_budget():
    result = fidelity_proxy(comparisons=COMPARISONS[:2])  # 8 frames of 126x168, ~45 s on 2 idle cores
    print("\n" + format_table(result))
    comp = result["comparisons"]["matched_budget"]
    for row in comp["layers"]:
        # the uniform baseline keeps at least as many query and key/value tokens as HTTM ...
        assert row["uniform_kept"] >= row["httm_kept_q"] and row["uniform_kept"] >= row["httm_kept_kv"]
    # ... and still strays further from dense attention on average
    assert comp["mean"]["httm_rel_err"] < comp["mean"]["uniform_rel_err"]
    for comp in result["comparisons"].values():
        assert all(0 < r["httm_rel_err"] < 1 and 0 < r["uniform_rel_err"] < 1 for r in comp["layers"])
