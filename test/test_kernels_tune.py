"""Launch-configuration tuner of the matching and aggregation kernels (httm_ros.httm.kernels.tune).

CPU: every candidate configuration runs in Triton's interpreter (TRITON_INTERPRET=1 is set below,
before anything imports triton) and must give the default's results; the tuner's logic (timing,
skipped candidates, cache, off switches) runs with a fake CUDA device and an injected timer.
CUDA (marker ``gpu``): the same comparisons on compiled kernels, and a real tuning run.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import inspect  # noqa: E402

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from httm_ros.httm import HTTMConfig, httm_attention  # noqa: E402
from httm_ros.httm.regions import reorder  # noqa: E402
from httm_ros.httm.kernels import tune  # noqa: E402
from test_httm_merge import layout  # noqa: E402
from test_kernels_ops import device, ops, poisoned, rel, setup, smooth  # noqa: E402,F401

CUDA = torch.cuda.is_available()
FAKE_CUDA = torch.device("cuda", 0)             # a device object only: nothing runs on it
# (frames, grid, n_s, n_t, heads, dim, merge ratio, dst_ratio), as test_kernels_ops.CASES; the
# large regions (100-250 destinations / sources / groups) span several 64- and 128-wide tiles, so
# the candidates really split the work differently (and group the aggregation's sums differently)
CASES = [
    pytest.param((7, (4, 5), 8, 3, 2, 16, 0.7, 1.0), id="ragged"),
    pytest.param((4, (12, 14), 168, 2, 1, 16, 0.7, 1.0), id="large"),
    pytest.param((4, (10, 13), 130, 2, 1, 20, 0.9, 0.5), id="large-unmerged-d20"),
]


@pytest.fixture(autouse=True)
def fresh_tuner(monkeypatch):
    monkeypatch.delenv("HTTM_TUNE", raising=False)
    tune.reset()
    yield
    tune.reset()


def chosen_similarity(x, regions, best):
    """Cosine similarity of every source to the destination in ``best`` [BH, nblk, S], and the
    best possible one (to compare choices robustly to near-ties)."""
    tokens = reorder(x, regions)
    src = F.normalize(tokens[..., regions.num_dst:, :], dim=-1)
    dst = F.normalize(tokens[..., :regions.num_dst, :], dim=-1)
    sim = torch.einsum("bhksd,bhkjd->bhksj", src, dst).masked_fill(~regions.dst_valid[:, None, :], -2)
    best = best.view(sim.shape[:-1])
    return sim.gather(-1, best.clamp_min(0).long()[..., None])[..., 0], sim.amax(-1)


# ------------------------------------------------------------ every candidate: same function

def test_launcher_defaults_are_the_first_candidates():
    """Tuning off runs ``launch({})``: the launchers' defaults must be CANDIDATES[name][0]."""
    from httm_ros.httm.kernels import triton_ops

    for name, cands in tune.CANDIDATES.items():
        params = inspect.signature(getattr(triton_ops, name)).parameters
        assert {k: params[k].default for k in cands[0]} == cands[0], name
        assert "num_stages" in params and params["num_stages"].default is None
        assert len(cands) >= 6 and len({tuple(sorted(c.items())) for c in cands}) == len(cands)
        for cfg in cands:
            assert set(cfg) <= set(params), cfg
            for k, v in cfg.items():
                if k.startswith("block_"):
                    assert v >= 16 and v & (v - 1) == 0, cfg


@pytest.mark.parametrize("case", CASES)
def test_match_candidates_agree(device, case):
    lay, regions, kt, x = setup(case, device, seed=1)
    b, h = x.shape[:2]
    write = kt.all_merged
    base = kt.base_assign.expand(b * h, -1).contiguous() if write else None
    ref_score, ref_best = ops().match(x, kt, assign=base)
    valid = regions.src_valid.expand(b * h, -1, -1)
    for cfg in tune.CANDIDATES["match"][1:]:
        assign = kt.base_assign.expand(b * h, -1).contiguous() if write else None
        score, best = ops().match(x, kt, assign=assign, **cfg)
        assert torch.isinf(score[~valid]).all() and (best[~valid] == -1).all(), cfg
        assert torch.allclose(score[valid], ref_score[valid], atol=1e-6, rtol=1e-6), cfg
        chosen, top = chosen_similarity(x, regions, best)
        assert (chosen.view_as(best)[valid] >= top.view_as(best)[valid] - 1e-5).all(), cfg
        same = torch.equal(best, ref_best)
        if write and same:
            assert torch.equal(assign, base), cfg


@pytest.mark.parametrize("case", CASES)
def test_aggregate_candidates_agree(device, case):
    """Q sums and K+V means: the same within fp32 rounding (block_s regroups the sums)."""
    lay, regions, kt, q = setup(case, device, seed=2)
    from httm_ros.httm.kernels.fast import match

    group, _ = match(q, kt, regions, want_assign=False)
    v = smooth(lay, q.shape[1], q.shape[3], 4, device).transpose(2, 3).contiguous().transpose(2, 3)  # strided
    ref_sums, _, ref_counts = ops().aggregate(q, kt, group, mean=False)
    ref_k, ref_v, ref_sizes = ops().aggregate(q, kt, group, y=v, mean=True)
    for cfg in tune.CANDIDATES["aggregate"][1:]:
        sums, _, counts = ops().aggregate(q, kt, group, mean=False, **cfg)
        assert torch.equal(counts, ref_counts), cfg
        assert torch.allclose(sums, ref_sums, atol=1e-5, rtol=1e-5), cfg
        k_m, v_m, sizes = ops().aggregate(q, kt, group, y=v, mean=True, **cfg)
        assert torch.equal(sizes, ref_sizes), cfg
        assert rel(k_m, ref_k) < 1e-6 and rel(v_m, ref_v) < 1e-6, cfg


# ------------------------------------------------------------------------- tuner logic (CPU)

class Fake:
    """Candidates {"id": i}; launch returns its id (or raises); the timer reads a table."""

    def __init__(self, ms, fail=None):
        self.ms, self.fail, self.calls = ms, fail or {}, []

    def launch(self, cfg):
        i = cfg.get("id", 0)                        # {} = the launcher's defaults = candidate 0
        self.calls.append(i)
        if i in self.fail:
            raise self.fail[i]
        return f"out{i}"

    def timer(self, fn, device):
        assert device == FAKE_CUDA
        return self.ms[int(fn()[3:])]


@pytest.fixture
def fake_candidates(monkeypatch):
    monkeypatch.setitem(tune.CANDIDATES, "fake", [{"id": i} for i in range(4)])


def test_fastest_candidate_wins_and_is_cached(fake_candidates):
    fake = Fake([3.0, 2.5, 1.0, 4.0])
    out = tune.run_tuned("fake", ("k",), fake.launch, FAKE_CUDA, timer=fake.timer)
    assert out == "out2"
    per = 1 + tune.REPEATS                          # warm-up + timed launches per candidate
    assert fake.calls == [i for i in range(4) for _ in range(per)] + [2]
    rep = tune.report()
    (entry,) = rep.values()
    assert entry["chosen"] == {"id": 2} and entry["chosen_index"] == 2 and entry["key"] == ["k"]
    assert [c["ms"] for c in entry["candidates"]] == [3.0, 2.5, 1.0, 4.0]
    fake.calls.clear()
    assert tune.run_tuned("fake", ("k",), fake.launch, FAKE_CUDA, timer=fake.timer) == "out2"
    assert fake.calls == [2]                        # cache hit: one launch, no timing
    # another key (or device) tunes again
    tune.run_tuned("fake", ("other",), fake.launch, FAKE_CUDA, timer=fake.timer)
    assert len(tune.report()) == 2
    tune.reset()
    assert tune.report() == {}


def test_median_of_the_timed_launches(fake_candidates):
    times = iter([9.0, 1.0, 1.0,   2.0, 2.0, 2.0,   0.5, 9.0, 9.0,   3.0, 3.0, 3.0])
    fake = Fake(None)
    out = tune.run_tuned("fake", (), fake.launch, FAKE_CUDA, timer=lambda fn, dev: (fn(), next(times))[1])
    assert out == "out0"                            # medians 1.0, 2.0, 9.0, 3.0
    (entry,) = tune.report().values()
    assert [c["ms"] for c in entry["candidates"]] == [1.0, 2.0, 9.0, 3.0]


def test_failing_candidates_are_skipped_and_recorded(fake_candidates):
    fake = Fake([3.0, 0.1, 2.0, 4.0], fail={1: RuntimeError("out of resources: shared memory")})
    assert tune.run_tuned("fake", (1,), fake.launch, FAKE_CUDA, timer=fake.timer) == "out2"
    (entry,) = tune.report().values()
    assert "ms" not in entry["candidates"][1]
    assert entry["candidates"][1]["error"] == "RuntimeError: out of resources: shared memory"
    assert entry["chosen"] == {"id": 2}


def test_out_of_memory_propagates(fake_candidates):
    fake = Fake([3.0, 2.0, 1.0, 4.0], fail={1: torch.OutOfMemoryError("CUDA out of memory")})
    with pytest.raises(torch.OutOfMemoryError):
        tune.run_tuned("fake", (), fake.launch, FAKE_CUDA, timer=fake.timer)
    assert tune.report() == {}


def test_all_failing_raises_the_first_error(fake_candidates):
    errors = {i: ValueError(f"bad {i}") for i in range(4)}
    fake = Fake([1.0] * 4, fail=errors)
    with pytest.raises(ValueError, match="bad 0"):
        tune.run_tuned("fake", (), fake.launch, FAKE_CUDA, timer=fake.timer)
    assert tune.report() == {}


@pytest.mark.parametrize("off", ["env", "cpu"])
def test_defaults_without_tuning(fake_candidates, monkeypatch, off):
    fake = Fake([3.0, 2.0, 1.0, 4.0])
    dev = FAKE_CUDA
    if off == "env":
        monkeypatch.setenv("HTTM_TUNE", "0")
    else:
        dev = torch.device("cpu")

    def no_timer(fn, device):
        raise AssertionError("timed without tuning")

    for _ in range(2):
        assert tune.run_tuned("fake", (), fake.launch, dev, timer=no_timer) == "out0"
    assert fake.calls == [0, 0] and tune.report() == {}


def test_fast_path_is_tuned_per_block_shape(device, monkeypatch):
    """The fast path's four launches go through the tuner (forced on here, with a wall-clock timer
    on CPU): four keys, every candidate timed, same output as the reference."""
    import time

    from httm_ros.httm.kernels.fast import httm_attention_fast

    if device.type == "cpu":
        monkeypatch.setattr(tune, "enabled", lambda dev: True)

        def timer(fn, dev):
            t = time.perf_counter()
            fn()
            return 1e3 * (time.perf_counter() - t)
        monkeypatch.setattr(tune, "cuda_timer", timer)
        monkeypatch.setattr(tune, "REPEATS", 1)
    config = HTTMConfig(spatial_block=8, temporal_frames=3)
    lay = layout(4, (3, 4))
    q, k, v = (smooth(lay, 2, 16, s, device) for s in (61, 62, 63))
    o, _ = httm_attention_fast(q, k, v, lay, config)
    ref, _ = httm_attention(q, k, v, lay, HTTMConfig(spatial_block=8, temporal_frames=3, impl="torch"))
    assert rel(o, ref) < 1e-5
    rep = tune.report()
    assert sorted(e["name"] for e in rep.values()) == ["aggregate", "aggregate", "match", "match"]
    for e in rep.values():
        assert len(e["candidates"]) == len(tune.CANDIDATES[e["name"]])
        assert all("ms" in c for c in e["candidates"]), e
    o2, _ = httm_attention_fast(q, k, v, lay, config)                    # cached: no new keys
    assert len(tune.report()) == 4 and rel(o2, ref) < 1e-5


# ---------------------------------------------------------------------------- CUDA only

@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_tuning_on_cuda_bf16_vggt_heads():
    """Real tuning of the K+V aggregation on compiled kernels (bf16, 16 heads of 64): every
    candidate timed (or its error recorded), the tuned output equals the chosen candidate's."""
    from httm_ros.httm.kernels.fast import _tuned, match
    from httm_ros.httm.regions import build_region_layout
    from httm_ros.httm.kernels.tables import kernel_tables

    lay = layout(12, (28, 37))
    regions = build_region_layout(lay, 16, 4, 0.7, 1.0, True, "cuda")
    kt = kernel_tables(regions)
    k, v = (smooth(lay, 16, 64, s, "cuda", dtype=torch.bfloat16) for s in (71, 72))
    group, _ = match(k, kt, regions, want_assign=False)
    k_m, v_m, sizes = _tuned("aggregate", k, kt, group, y=v, mean=True)
    (entry,) = [e for e in tune.report().values() if e["name"] == "aggregate"]   # (match was tuned too)
    assert entry["device"].startswith("cuda")
    assert len(entry["candidates"]) == len(tune.CANDIDATES["aggregate"])
    assert all(("ms" in c) != ("error" in c) for c in entry["candidates"])
    assert "ms" in entry["candidates"][0]                                  # the default always runs
    ck, cv, cs = ops().aggregate(k, kt, group, y=v, mean=True, **entry["chosen"])
    assert torch.equal(k_m, ck) and torch.equal(v_m, cv) and torch.equal(sizes, cs)
    dk, dv, ds = ops().aggregate(k, kt, group, y=v, mean=True)              # default: close
    assert torch.equal(sizes, ds) and rel(k_m.float(), dk.float()) < 1e-2 and rel(v_m.float(), dv.float()) < 1e-2
