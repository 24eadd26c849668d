"""patch(): HTTM and the uniform baseline inside a tiny VGGT (httm_ros.httm.patch)."""

import pytest
import torch

from httm_ros.httm import HTTMConfig, UniformMergeConfig, merge_stats, patch
from httm_ros.vggt import VGGT, VGGTConfig


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).eval()
    y = torch.linspace(0, 1, 42)[:, None]
    x = torch.linspace(0, 1, 56)[None, :]
    frames = [torch.stack([0.5 + 0.5 * torch.sin(6 * (x + 0.05 * s) + 3 * y),
                           0.5 + 0.5 * torch.cos(5 * y - 4 * (x + 0.05 * s)),
                           (x + y + 0.1 * s) % 1.0]) for s in range(7)]
    return model, torch.stack(frames)                                     # [7, 3, 42, 56]: 3x4 patches


def run(model, images):
    with torch.no_grad():
        return model(images, heads=("camera", "depth"))


def test_none_is_bit_identical_to_the_unpatched_model(model_and_images):
    model, images = model_and_images
    before = run(model, images)
    patch(model, HTTMConfig(spatial_block=5, temporal_frames=3))
    run(model, images)
    stats = patch(model, None)
    assert all(b.attn.core is None for b in model.aggregator.global_blocks)
    after = run(model, images)
    assert not stats.records and merge_stats(model) is None
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("config", [
    HTTMConfig(q_merge=0.0, q_outlier=0.0, kv_merge=0.0, spatial_block=5, temporal_frames=3),
    UniformMergeConfig(merge_ratio=0.0),
])
def test_zero_ratios_match_dense(model_and_images, config):
    model, images = model_and_images
    patch(model, None)
    dense = run(model, images)
    patch(model, config)
    merged = run(model, images)
    patch(model, None)
    for key in dense:
        err = float((merged[key] - dense[key]).norm() / dense[key].norm())
        assert err < 1e-6, (key, err)


def test_httm_and_uniform_record_stats_per_layer(model_and_images):
    model, images = model_and_images
    n_tok = 7 * (5 + 12)
    stats = patch(model, HTTMConfig(spatial_block=6, temporal_frames=4, layers=[1, 3]))
    assert merge_stats(model) is stats
    out = run(model, images)
    assert torch.isfinite(out["depth"]).all()
    assert [r.layer for r in stats.records] == [1, 3]
    rec = stats.records[0]
    assert rec.method == "httm" and rec.tokens_in == n_tok and rec.kept_q.shape == (1, 4)
    assert int(rec.outliers.sum()) == round(0.1 * 4 * 7 * 12)
    assert set(rec.times_ms) >= {"match_q", "outliers_select", "attention", "unmerge"}
    assert stats.summary()["kept_kv"] < 0.6

    stats = patch(model, UniformMergeConfig())
    run(model, images)
    assert [r.layer for r in stats.records] == [0, 1, 2, 3]
    assert {r.method for r in stats.records} == {"uniform"}
    assert stats.records[0].as_dict()["kept_q"] == stats.records[0].as_dict()["kept_kv"]
    patch(model, None)


def test_layers_out_of_range_are_refused(model_and_images):
    model, _ = model_and_images
    with pytest.raises(ValueError, match="layers"):
        patch(model, HTTMConfig(layers=[4]))
    with pytest.raises(TypeError):
        patch(model, {"q_merge": 0.9})
