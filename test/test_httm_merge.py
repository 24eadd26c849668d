"""HTTM's merge path against a slow per-head / per-token reference (httm_ros.httm.merge)."""

import math

import pytest
import torch
import torch.nn.functional as F

from httm_ros.httm import HTTMConfig, httm_attention
from httm_ros.httm.merge import match_keys, merge_queries
from httm_ros.httm.regions import outlier_budget, region_layouts
from httm_ros.vggt import TokenLayout

CASES = [  # (frames, grid, n_s, n_t, heads)
    (5, (3, 4), 5, 2, 3),
    (7, (4, 5), 8, 3, 2),
]


def layout(frames, grid):
    return TokenLayout(frames, 5 + grid[0] * grid[1], 5, grid)


def smooth_qkv(lay, heads, dim=8, batch=1, seed=0):
    """Random tokens with spatial/temporal correlation, so merging has structure to find."""
    g = torch.Generator().manual_seed(seed)
    h, w = lay.grid
    base = torch.randn(batch, heads, 1, h, w, dim, generator=g)
    drift = torch.randn(batch, heads, lay.frames, 1, 1, dim, generator=g).cumsum(2) * 0.2
    patch = base + drift + 0.3 * torch.randn(batch, heads, lay.frames, h, w, dim, generator=g)
    special = torch.randn(batch, heads, lay.frames, 5, dim, generator=g)
    return torch.cat((special, patch.flatten(3, 4)), dim=3).flatten(2, 3)  # [B, H, N, d]


# --------------------------------------------------------------- slow, obvious reference

def slow_groups(x, regions):
    """x [N, d] (one head) -> list of merged groups (lists of token indices), special first."""
    groups = [[int(i)] for i in regions.special_index]
    for blk in range(regions.num_regions):
        dsts = [int(t) for t, ok in zip(regions.token_index[blk, :regions.num_dst], regions.dst_valid[blk]) if ok]
        srcs = [int(t) for t, ok in zip(regions.token_index[blk, regions.num_dst:], regions.src_valid[blk]) if ok]
        best = []
        for s in srcs:
            sims = [float(F.cosine_similarity(x[s], x[d], dim=0)) for d in dsts]
            j = max(range(len(dsts)), key=lambda i: sims[i])
            best.append((sims[j], s, dsts[j]))
        best.sort(key=lambda e: -e[0])
        r = int(regions.merge_count[blk])
        members = {d: [d] for d in dsts}
        for _, s, d in best[:r]:
            members[d].append(s)
        groups += list(members.values()) + [[s] for _, s, _ in best[r:]]
    return groups


def slow_outliers(q, groups_per_head, budget):
    """Deviation of every merged query from its group mean; the top ``budget`` over all heads
    leave their group. -> new groups per head, outliers per head."""
    devs = []
    for h, groups in enumerate(groups_per_head):
        for g in groups:
            if len(g) > 1:
                mean = q[h, g].mean(0)
                devs += [(float((q[h, t] - mean).norm()), h, t) for t in g]
    devs.sort(key=lambda e: -e[0])
    out = {(h, t) for _, h, t in devs[:budget]}
    new = []
    for h, groups in enumerate(groups_per_head):
        kept = [[t for t in g if (h, t) not in out] for g in groups]
        new.append([g for g in kept if g] + [[t] for (hh, t) in sorted(out) if hh == h])
    return new, [sum(1 for hh, _ in out if hh == h) for h in range(len(groups_per_head))]


def slow_attention(q, k, v, q_groups, k_groups, proportional=False):
    """One head: merge by groups (means), softmax attention (+ log group size per key when
    proportional), each token gets its group's output."""
    qm = torch.stack([q[g].mean(0) for g in q_groups])
    km = torch.stack([k[g].mean(0) for g in k_groups])
    vm = torch.stack([v[g].mean(0) for g in k_groups])
    logits = qm @ km.T / math.sqrt(q.shape[-1])
    if proportional:
        logits = logits + torch.tensor([math.log(len(g)) for g in k_groups])
    om = torch.softmax(logits, dim=-1) @ vm
    out = torch.empty_like(q)
    for row, g in enumerate(q_groups):
        for t in g:
            out[t] = om[row]
    return out


def slow_httm(q, k, v, lay, cfg):
    """q, k, v [H, N, d] -> (o [H, N, d], kept_q, kept_kv, outliers per head)."""
    regions_q, regions_kv = region_layouts(lay, cfg, q.device)
    q_groups = [slow_groups(q[h], regions_q) for h in range(q.shape[0])]
    budget = outlier_budget(cfg.q_outlier, q.shape[0], regions_q.num_patch)
    q_groups, n_out = slow_outliers(q, q_groups, budget)
    k_groups = [slow_groups(k[h], regions_kv) for h in range(k.shape[0])]
    o = torch.stack([slow_attention(q[h], k[h], v[h], q_groups[h], k_groups[h], cfg.proportional_attention)
                     for h in range(q.shape[0])])
    return o, [len(g) for g in q_groups], [len(g) for g in k_groups], n_out


# ------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("frames,grid,n_s,n_t,heads", CASES)
@pytest.mark.parametrize("anchor,dst_ratio,proportional", [
    (True, 1.0, False), (False, 1.0, False), (True, 0.5, False), (False, 0.5, True),
])
def test_matches_slow_reference(frames, grid, n_s, n_t, heads, anchor, dst_ratio, proportional):
    lay = layout(frames, grid)
    cfg = HTTMConfig(spatial_block=n_s, temporal_frames=n_t, anchor_first_frame=anchor,
                     dst_ratio=dst_ratio, proportional_attention=proportional)
    q, k, v = (smooth_qkv(lay, heads, seed=s) for s in range(3))
    o, rec = httm_attention(q, k, v, lay, cfg)
    ref, kept_q, kept_kv, n_out = slow_httm(q[0], k[0], v[0], lay, cfg)
    assert rec.kept_q[0].tolist() == kept_q
    assert rec.kept_kv[0].tolist() == kept_kv
    assert rec.outliers[0].tolist() == n_out
    torch.testing.assert_close(o[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dst_ratio,proportional", [(1.0, False), (0.5, True)])
def test_zero_ratios_equal_dense_attention(dst_ratio, proportional):
    lay = layout(7, (4, 5))
    q, k, v = (smooth_qkv(lay, 4, dim=16, seed=s) for s in range(3))
    cfg = HTTMConfig(q_merge=0.0, q_outlier=0.0, kv_merge=0.0, spatial_block=8, temporal_frames=3,
                     dst_ratio=dst_ratio, proportional_attention=proportional)
    o, rec = httm_attention(q, k, v, lay, cfg)
    dense = F.scaled_dot_product_attention(q, k, v)
    assert float((o - dense).norm() / dense.norm()) < 1e-6
    assert rec.kept_q.tolist() == [[lay.num_tokens] * 4]


def test_kept_lengths_and_outlier_budget_are_exact():
    lay = layout(12, (8, 10))                                             # 80 positions, 2 chunks
    heads, n_patch = 4, 12 * 80
    cfg = HTTMConfig(spatial_block=40, temporal_frames=6)                 # 4 regions of 240
    q, k, v = (smooth_qkv(lay, heads, batch=2, seed=s) for s in range(3))
    o, rec = httm_attention(q, k, v, lay, cfg)
    n_sp = 12 * 5
    # K/V: every region keeps exactly n - round(0.7 n) = 72 of 240 (the 40 anchors fit)
    assert rec.kept_kv.tolist() == [[n_sp + 4 * 72] * heads] * 2
    # Q: 10% kept per region, then exactly round(0.1 * heads * patches) outliers per sample
    budget = round(0.1 * heads * n_patch)
    assert rec.outliers.sum(1).tolist() == [budget, budget]
    # 24 = 240 - round(0.9 * 240) per region, except the two first-frame regions: their 40
    # anchors must all stay destinations, so they keep 40 (the documented clip)
    merged_q = n_sp + 2 * 40 + 2 * 24 + rec.outliers
    assert torch.all(rec.kept_q <= merged_q) and torch.all(rec.kept_q >= merged_q - rec.outliers // 2)
    assert rec.padded_q == int(merged_q.max())
    assert len(set(rec.outliers.flatten().tolist())) > 1                  # budget shared unevenly


def test_heads_merge_differently_and_special_tokens_pass_through():
    lay = layout(6, (4, 5))
    cfg = HTTMConfig(spatial_block=10, temporal_frames=3)
    regions_q, regions_kv = region_layouts(lay, cfg, torch.device("cpu"))
    q, k = smooth_qkv(lay, 3, seed=1), smooth_qkv(lay, 3, seed=2)
    special = torch.zeros(lay.num_tokens, dtype=torch.bool)
    special[regions_q.special_index] = True
    q_m, q_matching, _ = merge_queries(q, regions_q, 10, cfg.tile_elements, special)
    assign = q_matching.assign[0]                                         # [H, N]
    assert not torch.equal(assign[0], assign[1]) and not torch.equal(assign[1], assign[2])
    n_sp = regions_q.num_special
    assert torch.equal(q_m[:, :, :n_sp], q[:, :, regions_q.special_index])   # rows of their own
    assert torch.equal(assign[:, regions_q.special_index], torch.arange(n_sp).expand(3, -1))
    kv_matching = match_keys(k, regions_kv, cfg.tile_elements)
    k_assign = kv_matching.assign
    assert torch.equal(kv_matching.merge(k)[:, :, :n_sp], k[:, :, regions_kv.special_index])
    assert not torch.equal(k_assign[0, 0], k_assign[0, 1])
    # anchoring: first-frame patch tokens are destinations, so never two in one group
    first = torch.arange(5, lay.tokens_per_frame)
    for a in (assign, k_assign[0]):
        for h in range(3):
            assert a[h, first].unique().numel() == first.numel()


def test_bfloat16_runs_and_stays_close():
    lay = layout(6, (4, 5))
    cfg = HTTMConfig(spatial_block=10, temporal_frames=3)
    q, k, v = (smooth_qkv(lay, 2, dim=16, seed=s) for s in range(3))
    o32, _ = httm_attention(q, k, v, lay, cfg)
    o16, _ = httm_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), lay, cfg)
    assert o16.dtype == torch.bfloat16 and o16.shape == o32.shape
    assert float((o16.float() - o32).norm() / o32.norm()) < 0.1


def test_chunked_region_matching_equals_one_tile():
    from httm_ros.httm.merge import match_regions
    from httm_ros.httm.regions import reorder

    lay = layout(7, (4, 5))
    cfg = HTTMConfig(spatial_block=8, temporal_frames=3)
    regions, _ = region_layouts(lay, cfg, torch.device("cpu"))
    tokens = reorder(smooth_qkv(lay, 3, batch=2, seed=5), regions)
    one = match_regions(tokens, regions, 1 << 28)
    for tile in (regions.num_dst * regions.num_src * 5, 7):                     # 5 regions / a few rows
        assert torch.equal(match_regions(tokens, regions, tile), one)
