"""HTTM temporal reordering: merging regions, destinations, ragged sizes (httm_ros.httm.regions)."""

import pytest
import torch

from httm_ros.httm.regions import RegionLayout, balanced_chunks, build_region_layout, reorder
from test_httm_merge import layout


def inverse_reorder(tokens: torch.Tensor, special: torch.Tensor, regions: RegionLayout) -> torch.Tensor:
    """Reference: regions [B, H, nblk, L, d] + special tokens [B, H, n_sp, d] -> [B, H, N, d]."""
    flat = torch.cat((tokens.flatten(2, 3), special), dim=2)              # [B, H, nblk*L + n_sp, d]
    return flat.index_select(2, regions.slot_of_token)

RAGGED = [  # (frames, grid, n_s, n_t): none of the sizes divides evenly
    (7, (5, 7), 8, 3),
    (5, (3, 4), 5, 2),
    (1, (2, 3), 4, 30),
    (4, (28, 37), 128, 30),   # a 518x392 grid
]


def test_balanced_chunks():
    assert balanced_chunks(1036, 128).tolist() == [116] * 1 + [115] * 8
    assert balanced_chunks(1000, 30).tolist() == [30] * 14 + [29] * 20
    assert balanced_chunks(7, 30).tolist() == [7]
    assert balanced_chunks(12, 4).tolist() == [4, 4, 4]


@pytest.mark.parametrize("frames,grid,n_s,n_t", RAGGED)
def test_reorder_is_a_permutation_and_inverse_restores_order(frames, grid, n_s, n_t):
    lay = layout(frames, grid)
    regions = build_region_layout(lay, n_s, n_t, 0.7, 0.5, True)
    valid = torch.cat((regions.dst_valid, regions.src_valid), dim=1)            # [nblk, L]
    patch_tokens = regions.token_index[valid]
    assert patch_tokens.numel() == frames * grid[0] * grid[1]
    everything = torch.cat((patch_tokens, regions.special_index)).sort().values
    assert torch.equal(everything, torch.arange(lay.num_tokens))         # no token dropped or doubled

    x = torch.randn(2, 3, lay.num_tokens, 4)
    tokens = reorder(x, regions)                                          # [B, H, nblk, L, d]
    special = x[:, :, regions.special_index]
    assert torch.equal(inverse_reorder(tokens, special, regions), x)


@pytest.mark.parametrize("frames,grid,n_s,n_t", RAGGED)
def test_regions_are_spatial_chunks_of_consecutive_frames(frames, grid, n_s, n_t):
    lay = layout(frames, grid)
    regions = build_region_layout(lay, n_s, n_t, 0.7, 0.5, True)
    valid = torch.cat((regions.dst_valid, regions.src_valid), dim=1)
    for blk in range(regions.num_regions):
        tok = regions.token_index[blk][valid[blk]]
        frame, pos = tok // lay.tokens_per_frame, tok % lay.tokens_per_frame - 5
        fs, ps = frame.unique(), pos.unique()
        assert len(fs) <= n_t and torch.equal(fs, torch.arange(fs[0], fs[-1] + 1))
        assert len(ps) <= n_s and torch.equal(ps, torch.arange(ps[0], ps[-1] + 1))  # raster run
        assert tok.numel() == len(fs) * len(ps)                          # full frames x chunk


@pytest.mark.parametrize("frames,grid,n_s,n_t", RAGGED)
@pytest.mark.parametrize("ratio", [0.0, 0.7, 0.9])
def test_merge_counts_follow_the_ratio(frames, grid, n_s, n_t, ratio):
    lay = layout(frames, grid)
    regions = build_region_layout(lay, n_s, n_t, ratio, 0.5, True)
    n = regions.dst_valid.sum(1) + regions.src_valid.sum(1)
    first = torch.stack([(regions.token_index[b][:regions.num_dst][regions.dst_valid[b]] < lay.tokens_per_frame).sum()
                         for b in range(regions.num_regions)])
    wanted = torch.floor(ratio * n + 0.5).long()
    # exact unless the first frame (or the one destination every region needs) is more than kept
    n_dst = regions.dst_valid.sum(1)
    assert torch.equal(regions.merge_count, torch.minimum(wanted, n - n_dst))
    assert torch.all((regions.merge_count == wanted) | (n_dst == first.clamp_min(1)))
    assert regions.num_merged == lay.frames * 5 + int((n - regions.merge_count).sum())


def test_first_frame_tokens_are_destinations_only_when_anchoring():
    lay = layout(6, (4, 5))
    for anchor in (True, False):
        regions = build_region_layout(lay, 7, 3, 0.9, 0.5, anchor)
        src = regions.token_index[:, regions.num_dst:][regions.src_valid]
        assert bool((src < lay.tokens_per_frame).any()) is (not anchor)
        if anchor:
            dst = regions.token_index[:, :regions.num_dst][regions.dst_valid]
            assert int((dst < lay.tokens_per_frame).sum()) == 20


def test_destinations_are_spread_over_frames_and_positions():
    lay = layout(12, (8, 16))
    regions = build_region_layout(lay, 128, 12, 0.9, 1.0, False)            # one region, 10% kept
    dst = regions.token_index[0, :regions.num_dst][regions.dst_valid[0]]
    frame, pos = dst // lay.tokens_per_frame, dst % lay.tokens_per_frame - 5
    assert dst.numel() == round(0.1 * 12 * 128)
    per_frame = torch.bincount(frame, minlength=12)
    assert per_frame.min() >= 12 and per_frame.max() <= 14               # ~12.8 per frame
    assert len(pos.unique()) > 100                                        # positions vary by frame
