"""The Triton kernels compile for the H100 (sm_90) on this machine, no GPU needed, and the
compiler's report shows what the cost model assumes: no register spills, 16-byte (or cp.async)
row loads and no 2-byte scalar loads, wgmma (HGMMA) for every tl.dot kernel. Runs in a
subprocess because the other kernel tests put Triton in interpreter mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "import json; from httm_ros.bench.compile_check import check; print(json.dumps(check()))"


@pytest.fixture(scope="module")
def reports():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_kernel_compiles_for_sm90(reports):
    names = {r["kernel"] for r in reports}
    assert names == {"_match_kernel", "_aggregate_kernel", "_deviation_kernel", "_outlier_kernel",
                     "_means_kernel", "_unmerge_kernel"}


def test_no_spills_and_vector_loads(reports):
    for r in reports:
        assert r["spill_bytes"] == 0, r
        assert r["scalar_b16_loads"] == 0 and r["vector_loads"] > 0, r
        assert r["registers"] <= 192, r                                    # >= 1 CTA of 8 warps per SM


def test_dot_kernels_use_wgmma(reports):
    for r in reports:
        assert (r["hgmma"] > 0) == r["uses_dot"], r
