"""Sharded VGGT forward (httm_ros.distributed) on 2 and 4 gloo processes against one process.

Tiny model (``VGGTConfig.preset("tiny")``, deterministic test weights), 56x70 frames (4x5
patches), HTTM regions scaled down (n_s = 8, n_t = 2). Every launch runs dense and both HTTM
outlier modes in one set of processes; rank 0 returns the gathered outputs.

The CUDA case (2 GPUs, NCCL; skipped without them) compares against one process on cuda:0.
Tolerances: dense sharded vs dense one-process: |diff| <= 1e-5 + 1e-4 |ref| (float32; the
attention sums run in another order). HTTM: the merging itself moves the outputs by
err_merge = ||httm_1p - dense_1p|| / ||dense_1p|| (~5e-2 pose, ~6e-3 depth here); the sharded
HTTM with the global outlier budget must stay within 1% of that from the one-process HTTM,
the per-rank budget within 50% (it picks other outliers), and farther than the global one.
"""

from __future__ import annotations

import pytest
import torch

from httm_ros.distributed import GatherLog, launch, shard_frames, sharded_forward, gather_outputs
from httm_ros.distributed.collectives import RowCounts
from httm_ros.httm import HTTMConfig, patch
from httm_ros.httm.regions import build_region_layout, shard_groups
from httm_ros.vggt.config import VGGTConfig
from httm_ros.vggt.factory import build_model
from httm_ros.vggt.layers import TokenLayout

HEADS = ("camera", "depth")
OUTPUTS = ("pose_enc", "depth", "depth_conf")
MERGE = HTTMConfig(spatial_block=8, temporal_frames=2)
MODES = {"dense": (None, "global"), "httm_global": (MERGE, "global"), "httm_rank": (MERGE, "rank")}


def tiny_case(frames: int, device: str = "cpu"):
    """Tiny model (fp32 also on CUDA, no TF32) and frames [S, 3, 56, 70] on ``device``."""
    torch.backends.cudnn.allow_tf32 = False
    model = build_model(VGGTConfig.preset("tiny", cuda_autocast_dtype=None), allow_test_weights=True, device="cpu")
    images = torch.rand(frames, 3, 56, 70, generator=torch.Generator().manual_seed(frames))
    return model.to(device), images.to(device)


def forward_rank(ctx, frames: int):
    """Rank function: every mode's gathered outputs on the CPU (+ the gathered K/V bytes per mode)."""
    model, images = tiny_case(frames, str(ctx.device))
    result = {}
    for name, (merge, outliers) in MODES.items():
        shard = shard_frames(frames, ctx.world, MERGE.temporal_frames)[ctx.rank]
        log = GatherLog()
        with torch.inference_mode():
            out = sharded_forward(model, images[shard.start:shard.stop], shard, merge, HEADS, outliers, log=log)
            full = {k: v.cpu() for k, v in gather_outputs(out).items()}
        kv_bytes = sum(r["bytes_sent"] for r in log.per_layer() if r["name"] in ("kv", "merged_kv"))
        result[name] = {"outputs": full, "kv_bytes": kv_bytes, "frames": shard.frames}
    return result


@pytest.fixture(scope="module")
def one_process():
    """(dense, HTTM) outputs of the one-process forward on ``device`` (returned on the CPU)."""
    cache = {}

    def get(frames: int, device: str = "cpu"):
        if (frames, device) not in cache:
            model, images = tiny_case(frames, device)
            with torch.inference_mode():
                dense = model(images, heads=HEADS)
                patch(model, MERGE)
                httm = model(images, heads=HEADS)
                patch(model, None)
            cache[frames, device] = ({k: v.cpu() for k, v in dense.items()}, {k: v.cpu() for k, v in httm.items()})
        return cache[frames, device]
    return get


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("world,frames,device", [
    (2, 7, "cpu"), (4, 9, "cpu"),
    pytest.param(2, 7, "cuda", marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (NCCL)")),
])
def test_sharded_forward_matches_one_process(one_process, world, frames, device):
    dense, httm = one_process(frames, device if device == "cpu" else "cuda:0")
    ranks = launch(forward_rank, world, device, args=(frames,), timeout_s=120)
    got = ranks[0]
    assert len({r["dense"]["frames"] for r in ranks}) > 1                 # ragged split
    for key in OUTPUTS:
        assert got["dense"]["outputs"][key].shape == dense[key].shape
        torch.testing.assert_close(got["dense"]["outputs"][key], dense[key], atol=1e-5, rtol=1e-4)
        merging = rel(httm[key], dense[key])
        assert merging > 1e-3                                             # merging really moves it
        err_global = rel(got["httm_global"]["outputs"][key], httm[key])
        err_rank = rel(got["httm_rank"]["outputs"][key], httm[key])
        assert err_global < 0.01 * merging, (key, err_global, merging)
        assert err_rank < 0.5 * merging, (key, err_rank, merging)
        assert err_global < err_rank, (key, err_global, err_rank)
    for r in ranks:                                                       # merged K/V: less to move
        assert r["httm_global"]["kv_bytes"] < 0.6 * r["dense"]["kv_bytes"]


def test_shards_fall_on_temporal_groups_and_rank0_holds_frame0():
    for total, world, n_t in [(7, 2, 2), (1000, 4, 30), (9, 4, 2), (4000, 8, 30), (5, 5, None)]:
        shards = shard_frames(total, world, n_t)
        assert shards[0].start == 0 and shards[-1].stop == total
        assert all(a.stop == b.start and a.frames >= 1 for a, b in zip(shards, shards[1:]))
        for s in shards:                                                  # no group straddles ranks
            layout = TokenLayout(s.frames, 1 + 4, 1, (2, 2), s.start, total)
            assert int(shard_groups(layout, n_t or 1).sum()) == s.frames
    with pytest.raises(ValueError, match="too few"):
        shard_frames(8, 4, 4)
    with pytest.raises(ValueError, match="temporal groups"):
        shard_groups(TokenLayout(3, 5, 1, (2, 2), 3, 7), 2)


def test_shard_regions_are_the_whole_sequence_regions():
    """A shard's merging regions (tokens, destinations, anchors) are exactly those of the
    one-process layout for its frames, shifted by its first token."""
    total, grid, ps = 7, (3, 4), 2
    per_frame = ps + grid[0] * grid[1]
    whole = build_region_layout(TokenLayout(total, per_frame, ps, grid), 5, 2, 0.7, 1.0, True)

    def regions(lay, offset):
        out = []
        for blk in range(lay.num_regions):
            idx = lay.token_index[blk]
            dst = {int(t) + offset for t in idx[:lay.num_dst][lay.dst_valid[blk]]}
            src = {int(t) + offset for t in idx[lay.num_dst:][lay.src_valid[blk]]}
            out.append((dst, src, int(lay.merge_count[blk])))
        return out

    full = regions(whole, 0)
    seen = []
    for s in shard_frames(total, 2, 2):
        part = build_region_layout(TokenLayout(s.frames, per_frame, ps, grid, s.start, total), 5, 2, 0.7, 1.0, True)
        seen += regions(part, s.start * per_frame)
    assert seen == full


def row_counts_rank(ctx):
    """Rank function: counts found once, reused, and a changed count is an error."""
    counts = RowCounts()
    first = counts.get("kv", 3 + ctx.rank, ctx.device)
    assert counts.get("kv", 3 + ctx.rank, ctx.device) == first
    try:
        counts.get("kv", 99, ctx.device)
    except RuntimeError as err:
        return first, str(err)
    return first, None


def test_row_counts_are_gathered_once_per_forward():
    ranks = launch(row_counts_rank, 2, "cpu", timeout_s=60)
    assert [r[0] for r in ranks] == [[3, 4], [3, 4]]
    assert all("99 rows on this rank" in r[1] for r in ranks)
