"""FastVGGT-style uniform baseline (httm_ros.httm.uniform) against a slow reference."""

import pytest
import torch
import torch.nn.functional as F

from httm_ros.httm import UniformMergeConfig, uniform_attention
from httm_ros.httm.uniform import build_uniform_partition, uniform_assignment

from test_httm_merge import layout, slow_attention, smooth_qkv


def slow_uniform_groups(metric, part):
    """metric [N, C] -> groups: special alone, each dst with the r most similar sources."""
    dsts, srcs = part.dst.tolist(), part.src.tolist()
    best = []
    for s in srcs:
        sims = [float(F.cosine_similarity(metric[s], metric[d], dim=0)) for d in dsts]
        j = max(range(len(dsts)), key=lambda i: sims[i])
        best.append((sims[j], s, dsts[j]))
    best.sort(key=lambda e: -e[0])
    members = {d: [d] for d in dsts}
    for _, s, d in best[:part.merge_count]:
        members[d].append(s)
    return [[t] for t in part.special.tolist()] + list(members.values()) + [[s] for _, s, _ in best[part.merge_count:]]


@pytest.mark.parametrize("proportional", [False, True])
def test_matches_slow_reference_with_one_matching_for_all_heads(proportional):
    lay = layout(5, (4, 5))
    q, k, v = (smooth_qkv(lay, 3, seed=s) for s in range(3))
    cfg = UniformMergeConfig(proportional_attention=proportional)
    o, rec = uniform_attention(q, k, v, lay, cfg)
    part = build_uniform_partition(lay, cfg.merge_ratio, True)
    metric = k[0].transpose(0, 1).flatten(1)                              # keys of all heads [N, H*d]
    groups = slow_uniform_groups(metric, part)
    ref = torch.stack([slow_attention(q[0, h], k[0, h], v[0, h], groups, groups, proportional) for h in range(3)])
    torch.testing.assert_close(o[0], ref, rtol=1e-5, atol=1e-5)
    assert rec.kept_q.tolist() == [[len(groups)] * 3] and rec.kept_kv.tolist() == [[len(groups)] * 3]


def test_kept_ratio_and_destinations():
    lay = layout(40, (8, 10))
    part = build_uniform_partition(lay, 0.9, True)
    n_patch = 40 * 80
    first = part.dst < lay.tokens_per_frame
    assert int(first.sum()) == 80 and not bool((part.src < lay.tokens_per_frame).any())
    assert part.dst.numel() == 80 + 39 * 20                               # one per 2x2 cell
    kept = (part.num_merged - part.special.numel()) / n_patch
    assert abs(kept - 0.34) < 0.02                                        # "about 34%"
    assert part.merge_count == round(0.9 * part.src.numel())


def test_chunked_global_matching_equals_one_tile():
    lay = layout(4, (4, 6))
    k = smooth_qkv(lay, 2, seed=4)
    metric = k.transpose(1, 2).flatten(2)
    part = build_uniform_partition(lay, 0.9, True)
    big = uniform_assignment(metric, part, 1 << 28)
    small = uniform_assignment(metric, part, 97)                          # many small tiles
    assert torch.equal(big, small)


def test_zero_ratio_equals_dense():
    lay = layout(3, (3, 4))
    q, k, v = (smooth_qkv(lay, 2, dim=16, seed=s) for s in range(3))
    o, _ = uniform_attention(q, k, v, lay, UniformMergeConfig(merge_ratio=0.0))
    dense = F.scaled_dot_product_attention(q, k, v)
    assert float((o - dense).norm() / dense.norm()) < 1e-6
