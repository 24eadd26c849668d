"""Triton kernels of the HTTM fast path (httm_ros.httm.kernels) against the torch reference
(httm_ros.httm.merge), kernel by kernel and end to end.

CPU: the kernels really run, in Triton's interpreter (TRITON_INTERPRET=1 is set below, before
anything imports triton). CUDA (marker ``gpu``): the same tests on compiled kernels, plus
VGGT-sized ones. Every kernel output is allocated poisoned (NaN / -7) to catch unwritten entries.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from httm_ros.httm import HTTMConfig, httm_attention  # noqa: E402
from httm_ros.httm.kernels import triton_usable  # noqa: E402
from httm_ros.httm.kernels.ragged import round_rows  # noqa: E402
from httm_ros.httm.merge import (Matching, assignment, best_destination, deviation, group_sizes,  # noqa: E402
                                 group_sums, match_keys, match_regions, means, remove_outliers,
                                 select_outliers)
from httm_ros.httm.regions import build_region_layout, outlier_budget, reorder  # noqa: E402
from test_httm_merge import layout, smooth_qkv  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu-interpreter"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")]),
]
# (frames, grid, n_s, n_t, heads, dim, merge ratio, dst_ratio): ragged chunks and frame groups,
# a head dim that is no power of two, and regions where some sources stay unmerged
CASES = [
    pytest.param((7, (4, 5), 8, 3, 2, 16, 0.7, 1.0), id="ragged"),
    pytest.param((5, (3, 4), 5, 2, 2, 20, 0.9, 0.5), id="unmerged-d20"),
]


@pytest.fixture(params=DEVICES)
def device(request):
    dev = torch.device(request.param)
    reason = triton_usable(dev)
    if reason is not None:
        if dev.type == "cpu" and CUDA:
            pytest.skip(f"{reason}; the CUDA variants run the compiled kernels")
        pytest.fail(reason)
    return dev


@pytest.fixture(autouse=True)
def poisoned(monkeypatch):
    from httm_ros.httm.kernels import triton_ops

    def empty(*shape, dtype, device):
        fill = float("nan") if dtype.is_floating_point else -7
        return torch.full(shape, fill, dtype=dtype, device=device)

    monkeypatch.setattr(triton_ops, "_empty", empty)


def ops():
    from httm_ros.httm.kernels import ops as get

    return get()


def smooth(lay, heads, dim, seed, device, batch=1, dtype=torch.float32):
    """``smooth_qkv`` tokens (fresh for every seed) on ``device`` in ``dtype``."""
    return smooth_qkv(lay, heads, dim, batch, seed).to(device=device, dtype=dtype)


def setup(case, device, seed=0):
    frames, grid, n_s, n_t, heads, dim, ratio, dst_ratio = case
    lay = layout(frames, grid)
    regions = build_region_layout(lay, n_s, n_t, ratio, dst_ratio, True, str(device))
    from httm_ros.httm.kernels.tables import kernel_tables

    return lay, regions, kernel_tables(regions), smooth(lay, heads, dim, seed, device)


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("case", CASES)
def test_match(device, case):
    lay, regions, kt, x = setup(case, device, seed=1)
    b, h = x.shape[:2]
    from httm_ros.httm.kernels.fast import match

    assign = kt.base_assign.expand(b * h, -1).contiguous() if kt.all_merged else None
    score, best = ops().match(x, kt, assign=assign)
    tokens = reorder(x, regions)
    ref_score, _ = best_destination(tokens[..., regions.num_dst:, :], tokens[..., :regions.num_dst, :],
                                    regions.dst_valid, 1 << 20)
    valid = regions.src_valid.expand_as(ref_score)
    score, best = score.view_as(ref_score), best.view_as(ref_score)
    assert torch.isinf(score[~valid]).all() and (best[~valid] == -1).all()
    assert torch.allclose(score[valid], ref_score[valid], atol=1e-5)
    # the chosen destination is a most similar one (robust to exact ties)
    src = F.normalize(tokens[..., regions.num_dst:, :], dim=-1)
    dst = F.normalize(tokens[..., :regions.num_dst, :], dim=-1)
    sim = torch.einsum("bhksd,bhkjd->bhksj", src, dst).masked_fill(~regions.dst_valid[:, None, :], -2)
    chosen = sim.gather(-1, best.clamp_min(0).long()[..., None])[..., 0]
    assert (chosen[valid] >= sim.amax(-1)[valid] - 1e-5).all()
    # assignment (written by the kernel when every source merges, by the ranking otherwise)
    group, got = match(x, kt, regions, want_assign=True)
    ref = assignment(match_regions(tokens, regions, 1 << 20), regions).view(b * h, -1)
    assert torch.equal(got.long(), ref)


@pytest.mark.parametrize("case", CASES)
def test_aggregate_queries_and_deviation(device, case):
    lay, regions, kt, q = setup(case, device, seed=2)
    b, h, n, d = q.shape
    from httm_ros.httm.kernels.fast import match

    group, assign = match(q, kt, regions, want_assign=True)
    sums, _, counts = ops().aggregate(q, kt, group, mean=False)
    a = assign.long().view(b, h, n)
    ref_sums = group_sums(q, a, regions.num_merged).view(b * h, -1, d)
    ref_counts = group_sizes(a, regions.num_merged).view(b * h, -1)
    assert torch.equal(counts, ref_counts)
    assert torch.allclose(sums, ref_sums, atol=1e-5, rtol=1e-5)
    dev = ops().deviation(q, assign, sums, counts, kt.num_special)
    not_mergeable = torch.zeros(n, dtype=torch.bool, device=device)
    not_mergeable[regions.special_index] = True
    ref_dev = deviation(q, means(ref_sums.view(b, h, -1, d), ref_counts.view(b, h, -1)),
                        ref_counts.view(b, h, -1), a).masked_fill(not_mergeable, -1.0)
    assert torch.allclose(dev, ref_dev.view(b * h, n), atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_aggregate_keys_values(device, case):
    lay, regions, kt, k = setup(case, device, seed=3)
    v = smooth(lay, k.shape[1], k.shape[3], 4, device).transpose(2, 3).contiguous().transpose(2, 3)  # strided
    from httm_ros.httm.kernels.fast import match

    group, _ = match(k, kt, regions, want_assign=False)
    k_m, v_m, sizes = ops().aggregate(k, kt, group, y=v, mean=True)
    ref = match_keys(k, regions, 1 << 20)
    assert torch.equal(sizes, ref.sizes)
    assert rel(k_m, ref.merge(k)) < 1e-6 and rel(v_m, ref.merge(v)) < 1e-6


def test_split_outliers_and_unmerge(device):
    lay, regions, kt, q = setup((7, (4, 5), 8, 3, 3, 16, 0.9, 1.0), device, seed=5)
    b, h, n, d = q.shape
    from httm_ros.httm.kernels.fast import match
    from httm_ros.httm.kernels.select import positions, topk_mask

    group, assign = match(q, kt, regions, want_assign=True)
    sums, _, counts = ops().aggregate(q, kt, group, mean=False)
    dev = ops().deviation(q, assign, sums, counts, kt.num_special)
    budget = outlier_budget(0.1, h, regions.num_patch)
    # reference first (the kernel updates sums/counts in place)
    index, valid = select_outliers(dev.view(b, h * n), budget)
    ref_rows, ref_assign, ref_kept, ref_out = remove_outliers(
        q, sums.view(b, h, -1, d).clone(), counts.view(b, h, -1).clone(), assign.long().view(b, h, n), index, valid)
    pos, per_head = positions(topk_mask(dev.view(b, h * n), budget).view(b * h, n))
    assert per_head.tolist() == ref_out.view(-1).tolist()
    q_m, new_assign = ops().split_outliers(q, assign, pos, sums, counts, int(per_head.max()))
    assert q_m.shape == ref_rows.shape
    assert rel(q_m, ref_rows) < 1e-6
    assert torch.equal(new_assign.long().view(b, h, n), ref_assign)
    assert ((counts > 0.5).sum(1) + per_head).tolist() == ref_kept.view(-1).tolist()
    # unmerge from a strided attention output: [B, Mq, H, d] memory seen as [B, H, Mq, d]
    o = torch.randn(b, q_m.shape[2], h, d, device=device).transpose(1, 2)
    got = ops().unmerge(o, new_assign)
    assert torch.equal(got, Matching(ref_assign, q_m.shape[2]).unmerge(o))
    assert got.transpose(1, 2).is_contiguous()                             # proj input without a copy


# --------------------------------------------------------------------------- end to end

CONFIGS = [
    pytest.param(dict(spatial_block=8, temporal_frames=3), id="paper-ratios"),
    pytest.param(dict(spatial_block=5, temporal_frames=2, dst_ratio=0.5, proportional_attention=True,
                      q_merge=0.8, q_outlier=0.2), id="unmerged-proportional"),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_attention_matches_reference(device, cfg):
    from httm_ros.httm.kernels.fast import httm_attention_fast

    config = HTTMConfig(**cfg)
    lay = layout(6, (4, 5))
    q, k, v = (smooth(lay, 3, 16, s, device, batch=2) for s in (11, 12, 13))
    o, rec = httm_attention_fast(q, k, v, lay, config, profile=True)     # stage times (CUDA: opt-in)
    ref, ref_rec = httm_attention(q, k, v, lay, HTTMConfig(**cfg, impl="torch"))
    assert rel(o, ref) < 1e-5
    assert torch.equal(rec.kept_q, ref_rec.kept_q) and torch.equal(rec.outliers, ref_rec.outliers)
    assert torch.equal(rec.kept_kv, ref_rec.kept_kv) and rec.padded_q == round_rows(ref_rec.padded_q)
    assert set(rec.times_ms) >= {"match_q", "aggregate_q", "outliers_select", "match_kv", "merge_kv",
                                 "attention", "unmerge"}


@pytest.mark.parametrize("dst_ratio", [1.0, 0.6])
def test_fast_attention_many_tiles(device, monkeypatch, dst_ratio):
    """16-wide tiles, so every loop runs over several destination / source / group tiles."""
    import functools

    from httm_ros.httm.kernels import triton_ops
    from httm_ros.httm.kernels.fast import httm_attention_fast

    for name, sizes in (("match", dict(block_s=16, block_d=16, num_warps=1)),
                        ("aggregate", dict(block_g=16, block_s=16, num_warps=1)),
                        ("deviation", dict(block_n=16, num_warps=1)), ("split_outliers", dict(block_n=16, block_m=16, num_warps=1)),
                        ("unmerge", dict(block_n=16, num_warps=1))):
        monkeypatch.setattr(triton_ops, name, functools.partial(getattr(triton_ops, name), **sizes))
    config = HTTMConfig(spatial_block=21, temporal_frames=4, q_merge=0.8, kv_merge=0.6, dst_ratio=dst_ratio)
    lay = layout(9, (6, 7))
    q, k, v = (smooth(lay, 2, 16, s, device) for s in (41, 42, 43))
    o, rec = httm_attention_fast(q, k, v, lay, config)
    ref, ref_rec = httm_attention(q, k, v, lay, HTTMConfig(**{**config.__dict__, "impl": "torch"}))
    assert rel(o, ref) < 1e-5
    assert torch.equal(rec.kept_q, ref_rec.kept_q) and rec.padded_q == round_rows(ref_rec.padded_q)


def test_owned_inputs_are_released(device):
    import weakref

    from httm_ros.httm.kernels.fast import httm_attention_fast

    lay = layout(6, (4, 5))
    config = HTTMConfig(spatial_block=8, temporal_frames=3)
    q, k, v = (smooth(lay, 2, 16, s, device) for s in (51, 52, 53))
    ref, _ = httm_attention_fast(q, k, v, lay, config)
    owned = [q.clone(), k.clone(), v.clone()]
    alive = [weakref.ref(t) for t in owned]
    o, _ = httm_attention_fast(None, None, None, lay, config, owned=owned)
    assert owned == [None, None, None] and all(r() is None for r in alive)   # freed, not just dropped
    if device.type == "cpu":
        assert torch.equal(o, ref)
    else:                                     # cuDNN attention is not bitwise reproducible run to run
        assert rel(o, ref) < 1e-6


def test_region_tables_stay_on_the_host(device):
    """The fast path caches its region layouts and kernel tables on the host and copies them to
    the device per call, so between global attention calls no table occupies device memory."""
    from httm_ros.httm.attention import clear_region_caches
    from httm_ros.httm.kernels import tables as ktables
    from httm_ros.httm.kernels.fast import httm_attention_fast

    clear_region_caches()
    lay = layout(6, (4, 5))
    q, k, v = (smooth(lay, 2, 16, s, device) for s in (61, 62, 63))
    o, _ = httm_attention_fast(q, k, v, lay, HTTMConfig(spatial_block=8, temporal_frames=3))
    assert o.device.type == device.type
    cached = [kt for _, kt in ktables._CACHE.values()]
    assert len(cached) == 2 and all(kt.device.type == "cpu" for kt in cached)
    if device.type == "cuda":
        assert all(kt.token_index.is_pinned() for kt in cached)
    copy = ktables.kernel_tables(next(iter(ktables._CACHE.values()))[0], device)
    assert copy.device.type == device.type and torch.equal(copy.token_index.cpu(), cached[0].token_index)


def test_tiny_vggt_chunked_httm_triton_matches_torch(device, monkeypatch):
    """Whole tiny VGGT with HTTM in every global block: the chunked inference path hands q, k, v
    over to the Triton fast path (attend_owned); same outputs as the torch reference."""
    import httm_ros.vggt.layers as vlayers
    from httm_ros.httm import patch
    from httm_ros.vggt import VGGT, VGGTConfig

    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).to(device).eval()
    model.config = model.config.replace(cuda_autocast_dtype=None)          # fp32: same merges expected
    images = torch.rand(1, 6, 3, 56, 70, generator=torch.Generator().manual_seed(3)).to(device)
    cfg = dict(spatial_block=8, temporal_frames=3)
    monkeypatch.setattr(vlayers, "CHUNK_ROWS", 64)
    with torch.no_grad():
        patch(model, HTTMConfig(**cfg, impl="torch"))
        ref = model(images, heads=("camera", "depth"))
        stats = patch(model, HTTMConfig(**cfg, impl="triton"))
        got = model(images, heads=("camera", "depth"))
    assert len(stats.records) == model.config.depth
    tol = 1e-4 if device.type == "cpu" else 1e-3                            # sums in another order
    for key in ref:
        assert rel(got[key], ref[key]) < tol, key


# ------------------------------------------------------------------ VGGT-sized, CUDA only

@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("frames", [12, 31])
def test_fast_attention_vggt_sized_cuda(frames):
    """518x392 layout (28x37 patches), 16 heads of 64, the paper's ratios: fp32 must agree with
    the reference (same merges); bf16 merges may differ on near-ties, so only closeness."""
    from httm_ros.httm.kernels.fast import httm_attention_fast

    lay = layout(frames, (28, 37))
    config = HTTMConfig()
    q, k, v = (smooth(lay, 16, 64, s, "cuda") for s in (21, 22, 23))
    o, rec = httm_attention_fast(q, k, v, lay, config)
    ref, ref_rec = httm_attention(q, k, v, lay, HTTMConfig(impl="torch"))
    assert rel(o, ref) < 1e-3
    # a near-tie at the outlier threshold may swap one pick between heads (sums in another order)
    assert int(rec.outliers.sum()) == int(ref_rec.outliers.sum())
    assert (rec.outliers - ref_rec.outliers).abs().max() <= 2
    qb, kb, vb = (t.bfloat16() for t in (q, k, v))
    o16, rec16 = httm_attention_fast(qb, kb, vb, lay, config)
    assert o16.dtype == torch.bfloat16 and torch.isfinite(o16).all()
    assert rel(o16.float(), ref) < 5e-2
    assert int(rec16.outliers.sum()) == int(ref_rec.outliers.sum())


# --------------------------------------------------------------- implementation choice

def test_impl_choice_and_per_call_fallback(device, monkeypatch):
    import httm_ros.httm.attention as attention
    from httm_ros.httm.attention import httm_attention_owned
    from httm_ros.httm.kernels import resolve_impl
    from httm_ros.httm.records import MergeStats

    lay = layout(4, (3, 4))
    q, k, v = (smooth(lay, 2, 16, s, device) for s in (31, 32, 33))
    cfg = dict(spatial_block=6, temporal_frames=2)
    o, rec = httm_attention(q, k, v, lay, HTTMConfig(**cfg, impl="triton"))
    assert rec.impl == "triton"
    ref, ref_rec = httm_attention(q, k, v, lay, HTTMConfig(**cfg, impl="torch"))
    assert ref_rec.impl == "torch" and rel(o, ref) < 1e-5
    assert resolve_impl("auto", torch.device("cpu")) == "torch"            # auto: triton on CUDA only
    assert resolve_impl("auto", device) == ("triton" if device.type == "cuda" else "torch")

    # a failing kernel: "triton" raises; "auto" runs that call on torch, says so, and is counted
    def broken(*args, **kwargs):
        raise RuntimeError("simulated compile failure")

    monkeypatch.setattr(attention, "httm_attention_fast", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        httm_attention(q, k, v, lay, HTTMConfig(**cfg, impl="triton"))
    stats = MergeStats()
    for _ in range(2):                                                     # "auto" resolved to triton
        got, rec = httm_attention(q, k, v, lay, HTTMConfig(**cfg), impl="triton")
        stats.add(rec)
    got_owned, rec_owned = httm_attention_owned([q, k, v], lay, HTTMConfig(**cfg), impl="triton")
    stats.add(rec_owned)
    assert rec.impl == "torch-fallback" and rec.fallback_error.startswith("RuntimeError: simulated")
    assert torch.equal(got, ref) and torch.equal(got_owned, ref)
    assert stats.fallbacks() == 3 and stats.kernel_status()["fallbacks"] == 3
    monkeypatch.undo()                                 # the kernel works again: no process-wide switch
    _, rec = httm_attention(q, k, v, lay, HTTMConfig(**cfg), impl="triton")
    assert rec.impl == "triton"
