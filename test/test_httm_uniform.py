"""The uniform baseline (httm_ros.httm.uniform) is FastVGGT's merging: its properties against slow
references here, and, where the FastVGGT checkout is present (.peers/FastVGGT, not in CI), the
same outputs as FastVGGT's own code on the same weights and inputs."""

import math
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from httm_ros.bench.peers import cpu_shim
from httm_ros.httm import UniformMergeConfig, patch, uniform_attention
from httm_ros.httm.uniform import (block_metric, build_uniform_partition, cell_destinations, keys_metric,
                                   uniform_matching)
from httm_ros.vggt import VGGT, VGGTConfig, TokenLayout
from httm_ros.vggt.layers import Block, RotaryEmbedding2D, grid_positions

from test_httm_merge import layout, smooth_qkv

PEER = Path(__file__).resolve().parents[1] / ".peers" / "FastVGGT"


def unit_bf16(x):
    """[B, N, C] -> unit-length rows in bf16 (what the matching sees)."""
    return (x / x.norm(dim=-1, keepdim=True)).to(torch.bfloat16)


def smooth_metric(lay, dim=24, seed=0):
    """[1, N, dim] bf16 metric with spatial/temporal structure."""
    x = smooth_qkv(lay, 1, dim=dim, seed=seed)[:, 0]
    return unit_bf16(x)


# --------------------------------------------------------------- slow, obvious reference

def slow_rows(metric, part):
    """metric [N, C] bf16 -> (rows: list of member lists, reads: row of every token). Each source
    finds its most similar destination (bf16 products; the first in ``part.dst`` order on ties);
    the ``merge_count`` most similar unprotected ones join it; protected tokens get a row alone
    (a protected destination keeps its group row too) and read their lone row."""
    dsts, srcs, prot = part.dst.tolist(), part.src.tolist(), set(part.protected.tolist())
    m = metric.double()
    best = []
    for s in srcs:
        if s in prot:
            continue
        sims = [float(torch.tensor(float(m[s] @ m[d])).to(torch.bfloat16)) for d in dsts]
        j = max(range(len(dsts)), key=lambda i: sims[i])                  # first maximum
        best.append((sims[j], s, dsts[j]))
    best.sort(key=lambda e: -e[0])
    members = {d: [d] for d in dsts}
    for _, s, d in best[:part.merge_count]:
        members[d].append(s)
    rows = list(members.values()) + [[s] for _, s, _ in best[part.merge_count:]]
    reads = {t: i for i, g in enumerate(rows) for t in g}
    for t in sorted(prot):
        reads[t] = len(rows)
        rows.append([t])
    return rows, [reads[t] for t in range(metric.shape[0])]


def slow_attention(q, k, v, rows, reads, proportional=False):
    """One head [N, d]: mean of each row's members, softmax attention, each token reads its row."""
    qm, km, vm = (torch.stack([x[g].mean(0) for g in rows]) for x in (q, k, v))
    logits = qm @ km.T / math.sqrt(q.shape[-1])
    if proportional:
        logits = logits + torch.tensor([math.log(len(g)) for g in rows])
    return (torch.softmax(logits, dim=-1) @ vm)[reads]


# ------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("frames,grid,proportional", [(5, (4, 5), False), (6, (4, 6), True), (3, (5, 7), False)])
def test_matches_slow_reference_with_one_matching_for_all_heads(frames, grid, proportional):
    lay = layout(frames, grid)
    q, k, v = (smooth_qkv(lay, 3, seed=s) for s in range(3))
    metric = smooth_metric(lay, seed=7)
    cfg = UniformMergeConfig(proportional_attention=proportional)
    o, rec = uniform_attention(q, k, v, lay, cfg, metric=metric)
    part = build_uniform_partition(lay, cfg.merge_ratio)
    rows, reads = slow_rows(metric[0], part)
    ref = torch.stack([slow_attention(q[0, h], k[0, h], v[0, h], rows, reads, proportional) for h in range(3)])
    torch.testing.assert_close(o[0], ref, rtol=1e-5, atol=1e-5)
    assert rec.kept_q.tolist() == [[len(rows)] * 3] and rec.kept_kv.tolist() == [[len(rows)] * 3]


@pytest.mark.parametrize("frames,grid", [(40, (8, 10)), (5, (4, 5)), (1000, (28, 37))])
def test_protected_fraction_and_stride(frames, grid):
    lay = layout(frames, grid)
    n = lay.num_tokens
    part = build_uniform_partition(lay, 0.9)
    count = int(n * 0.1)
    assert torch.equal(part.protected, torch.arange(0, n, n // count)[:count])
    # FastVGGT's ratio 0.9 merges every unprotected source; nothing else is left alone
    assert part.merge_count == part.src.numel() - int(part.src_protected.sum()) and part.unmerged == 0
    assert part.num_merged == part.dst.numel() + count


def test_protected_tokens_are_never_merged_and_read_their_own_row():
    lay = layout(6, (4, 6))
    part = build_uniform_partition(lay, 0.9)
    matching = uniform_matching(smooth_metric(lay), part, None)
    eye = torch.eye(lay.num_tokens)[None, None]                          # token t = unit vector t
    rows = matching.merge(eye)[0, 0]                                      # [M, N]: members' weights
    reads = matching.out_row[0, 0]
    for t in part.protected.tolist():
        assert torch.equal(rows[reads[t]], eye[0, 0, t])                  # alone in the row it reads
    is_dst = torch.zeros(lay.num_tokens, dtype=torch.bool)
    is_dst[part.dst] = True
    copies = [t for t in part.protected.tolist() if is_dst[t]]
    assert copies and all(int((rows[:, t] > 0).sum()) == 2 for t in copies)  # its group row + its copy


def test_destinations_one_per_2x2_cell_drawn_with_seed_33():
    lay = layout(5, (4, 6))                                               # even grid: 2 x 3 cells
    part = build_uniform_partition(lay, 0.9)
    is_dst = torch.zeros(lay.num_tokens, dtype=torch.bool)
    is_dst[part.dst] = True
    frames = is_dst.view(5, lay.tokens_per_frame)
    assert frames[0].all()                                                # first frame: every token
    assert frames[1:, :5].all()                                           # special tokens of frames >= 1
    patches = frames[1:, 5:].view(4, 2, 2, 3, 2)                          # [S-1, cell row, dy, cell col, dx]
    cells = patches.permute(0, 1, 3, 2, 4).reshape(4, 2, 3, 4)            # [S-1, cell row, cell col, corner]
    assert (cells.sum(-1) == 1).all()                                     # one destination per 2x2 cell
    corner = torch.randint(4, (4, 2, 3), generator=torch.Generator().manual_seed(33))
    assert torch.equal(cells.int().argmax(-1), corner)                    # FastVGGT's draw, seed 33
    again = build_uniform_partition.__wrapped__(lay, 0.9)                 # rebuilt, not cached
    assert torch.equal(again.dst, part.dst)
    other = build_uniform_partition(lay, 0.9, seed=34)
    assert not torch.equal(other.dst.sort().values, part.dst.sort().values)


def test_odd_grid_width_places_cells_as_fastvggt():
    """FastVGGT writes the even grid's pattern in raster order into the first positions."""
    g = torch.Generator().manual_seed(33)
    got = cell_destinations(3, (5, 7), g)                                 # 2 x 3 cells in a 5 x 7 grid
    corner = torch.randint(4, (3, 2, 3), generator=torch.Generator().manual_seed(33))
    even = torch.zeros(3, 4, 6, dtype=torch.bool)
    for f in range(3):
        for i in range(2):
            for j in range(3):
                even[f, 2 * i + corner[f, i, j] // 2, 2 * j + corner[f, i, j] % 2] = True
    assert torch.equal(got[:, :24], even.view(3, 24)) and not got[:, 24:].any()


def test_merge_is_on_the_block_input():
    """patch() hands each merging global block's attention input norm1(x) to its core."""
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).eval()
    images = torch.rand(6, 3, 56, 84, generator=torch.Generator().manual_seed(3))  # 4 x 6 patches
    cfg = UniformMergeConfig(layers=[1])
    patch(model, cfg)
    block = model.aggregator.global_blocks[1]
    seen = {}
    handle = block.register_forward_pre_hook(lambda mod, args: seen.__setitem__("x", args[0]))
    core = block.attn.core

    def spy(q, k, v, layout):
        seen.update(q=q, k=k, v=v, layout=layout, metric=core.input_metric.metric)
        seen["o"] = type(core).__call__(core, q, k, v, layout)
        return seen["o"]

    block.attn.core = spy
    with torch.no_grad():
        model(images, heads=("camera",))
        expected = unit_bf16(block.norm1(seen["x"]))
        o, _ = uniform_attention(seen["q"], seen["k"], seen["v"], seen["layout"], cfg, metric=expected)
    block.attn.core = core
    assert torch.equal(seen["metric"], expected)
    assert torch.equal(seen["o"], o)
    assert core.input_metric.metric is None                               # taken by the call
    keyed, _ = uniform_attention(seen["q"], seen["k"], seen["v"], seen["layout"], cfg,
                                 metric=keys_metric(seen["k"]))
    assert not torch.equal(keyed, o)                                      # the keys would match otherwise
    handle.remove()
    patch(model, None)
    assert not block._forward_pre_hooks                                   # patch(None) removed its hook


def test_block_metric_in_chunks_equals_whole(monkeypatch):
    import httm_ros.httm.uniform as uniform

    norm = nn.LayerNorm(16)
    x = torch.randn(2, 50, 16, generator=torch.Generator().manual_seed(0))
    whole = block_metric(x, norm)
    monkeypatch.setattr(uniform, "METRIC_ROWS", 7)
    assert torch.equal(block_metric(x, norm), whole)
    assert torch.equal(whole, unit_bf16(norm(x)))


def test_kept_fraction_at_518x392():
    lay = TokenLayout(1000, 1041, 5, (28, 37))
    part = build_uniform_partition(lay, 0.9)
    kept = part.num_merged / lay.num_tokens
    assert abs(kept - 0.348) < 0.002, kept                                # documented in MERGING.md


def test_chunked_global_matching_equals_one_chunk():
    lay = layout(4, (4, 6))
    metric = smooth_metric(lay, seed=4)
    part = build_uniform_partition(lay, 0.9)
    big = uniform_matching(metric, part, None)
    small = uniform_matching(metric, part, 97)                            # many small chunks
    assert torch.equal(big.out_row, small.out_row) and torch.equal(big.groups.assign, small.groups.assign)


def test_batch_elements_are_matched_on_their_own():
    lay = layout(4, (4, 5))
    q, k, v = (smooth_qkv(lay, 2, batch=2, seed=s) for s in range(3))
    metric = unit_bf16(smooth_qkv(lay, 1, dim=24, batch=2, seed=9)[:, 0])
    o, _ = uniform_attention(q, k, v, lay, UniformMergeConfig(), metric=metric)
    for i in range(2):
        oi, _ = uniform_attention(q[i:i + 1], k[i:i + 1], v[i:i + 1], lay, UniformMergeConfig(), metric=metric[i:i + 1])
        torch.testing.assert_close(o[i:i + 1], oi, rtol=1e-6, atol=1e-6)


def test_zero_ratio_equals_dense():
    lay = layout(3, (3, 4))
    q, k, v = (smooth_qkv(lay, 2, dim=16, seed=s) for s in range(3))
    o, rec = uniform_attention(q, k, v, lay, UniformMergeConfig(merge_ratio=0.0))
    dense = F.scaled_dot_product_attention(q, k, v)
    assert float((o - dense).norm() / dense.norm()) < 1e-6 and rec.padded_q == lay.num_tokens


# ------------------------------------------------------------ against FastVGGT's own code

def import_peer():
    """FastVGGT's packages (``vggt``, ``merging``) from the checkout; stand-ins for two imports
    the model does not use here (the hub mixin, einops for the track head)."""
    if not PEER.is_dir():
        pytest.skip(f"FastVGGT checkout absent ({PEER}); the parity test needs it")
    for name, attrs in (("huggingface_hub", {"PyTorchModelHubMixin": type("PyTorchModelHubMixin", (), {})}),
                        ("einops", {"rearrange": None, "repeat": None})):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.__dict__.update(attrs)
            sys.modules[name] = stub
    if str(PEER) not in sys.path:
        sys.path.insert(0, str(PEER))
    import vggt.layers.block
    import vggt.models.aggregator
    import vggt.models.vggt
    return vggt


def video(frames, h, w, seed=0):
    """[S, 3, h, w] smooth frames of a slow pan."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 8 + 2, (w + 4 * frames) // 8 + 2, generator=g)
    canvas = F.interpolate(low, size=(h, w + 4 * frames), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    return torch.stack([canvas[:, :, 4 * s:4 * s + w] for s in range(frames)])


def max_rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("frames,grid", [(4, (4, 6)), (5, (4, 5)), (8, (6, 8)), (6, (4, 37))])
def test_one_global_block_equals_fastvggt(frames, grid):
    """One global block (attention + MLP), small width, float32: ours patched uniform vs
    FastVGGT's block with merging on, same weights, same x."""
    peer = import_peer()
    h, w = grid
    torch.manual_seed(0)
    theirs = peer.layers.block.Block(64, 4, init_values=0.01, qk_norm=True,
                                     rope=sys.modules["vggt.layers.rope"].RotaryPositionEmbedding2D(100)).eval()
    theirs.attn.patch_width, theirs.attn.patch_height = w, h
    ours = Block(64, 4, 4.0, 0.01, qk_norm=True, rope=RotaryEmbedding2D(100)).eval()
    ours.load_state_dict(theirs.state_dict())
    holder = nn.Module()
    holder.global_blocks = nn.ModuleList([ours])
    patch(holder, UniformMergeConfig())
    lay = TokenLayout(frames, 5 + h * w, 5, grid)
    x = smooth_qkv(lay, 1, dim=64, seed=frames)[:, 0]                     # [1, N, 64]
    pos = grid_positions(h, w, 5).repeat(frames, 1)[None]
    with torch.no_grad():
        want = theirs(x, pos=pos, global_merging=0)
        got = ours(x, pos, lay)
    assert max_rel(got, want) < 1e-6


@pytest.mark.slow
def test_vggt_1b_uniform_equals_fastvggt(capsys):
    """VGGT-1B, FastVGGT's random weights (seed 0) copied into ours, 4 frames of 56x70 (4x5
    patches), float32 on the CPU: depth and pose encoding of our uniform mode against FastVGGT's
    merging mode (merging=0, its evaluation default: every global block)."""
    peer = import_peer()
    torch.manual_seed(0)
    theirs = peer.models.vggt.VGGT(merging=0).eval()
    theirs.update_patch_dimensions(5, 4)                                  # width, height in patches
    # its image normalisation constants are stored in bf16 (0.484375 for 0.485): the exact ones
    # here, as ours, so that dense agrees bit for bit and only merging is compared
    agg = theirs.aggregator
    agg._resnet_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    agg._resnet_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    with torch.device("meta"):
        ours = VGGT()
    ours.load_state_dict(theirs.state_dict(), strict=False, assign=True)  # same tensors
    ours.point_head.to_empty(device="cpu")                                # not run
    ours.eval()
    images = video(4, 56, 70)
    tokens = []
    agg.register_forward_hook(lambda mod, args, out: tokens.append(out[0][-1]))  # block 23's
    with torch.no_grad():
        with cpu_shim(torch.device("cpu"), bf16_as_fp32=True):        # the peer's bf16 casts as fp32
            want = theirs(images)
            agg.merging = None
            want_dense = theirs(images)
        stats = patch(ours, UniformMergeConfig())
        got = ours(images, heads=("camera", "depth"), return_aggregator_layers=[23])
        patch(ours, None)
        got_dense = ours(images, heads=("camera", "depth"), return_aggregator_layers=[23])
    assert [r.layer for r in stats.records] == list(range(24))
    for out, theirs_out in ((got, want), (got_dense, want_dense)):
        out["tokens"] = out["aggregator_layers"][23]
        theirs_out["tokens"] = tokens.pop(0)
    keys = ("tokens", "pose_enc", "depth", "depth_conf")
    diffs = {key: max_rel(got[key], want[key]) for key in keys}
    dense = {key: max_rel(got_dense[key], want_dense[key]) for key in keys}
    effect = {key: max_rel(want[key], want_dense[key]) for key in keys}
    with capsys.disabled():
        print(f"\nuniform vs FastVGGT merging, max rel diff: {diffs}\n dense vs dense: {dense}\n"
              f" merging effect (FastVGGT merged vs dense): {effect}")
    for key in keys:
        assert diffs[key] < 1e-5, (key, diffs[key])
    for key in ("tokens", "pose_enc"):                                    # merging did act
        assert effect[key] > 1000 * diffs[key], (key, effect[key])
