"""HTTM / uniform configuration, validation and command-line options."""

import argparse

import pytest

from httm_ros.httm import HTTMConfig, UniformMergeConfig, add_merge_arguments, merge_config_from_args


def test_paper_defaults():
    c = HTTMConfig()
    assert (c.q_merge, c.q_outlier, c.kv_merge) == (0.9, 0.1, 0.7)
    assert (c.spatial_block, c.temporal_frames, c.anchor_first_frame, c.layers) == (128, 30, True, None)
    assert abs(c.q_kept - 0.2) < 1e-12 and abs(c.kv_kept - 0.3) < 1e-12
    assert UniformMergeConfig().merge_ratio == 0.9


@pytest.mark.parametrize("field,value", [
    ("q_merge", 1.0), ("q_merge", -0.1), ("kv_merge", 1.0), ("q_outlier", 0.95),
    ("spatial_block", 0), ("temporal_frames", 2.5), ("layers", [-1]), ("layers", []),
    ("dst_ratio", 0.0), ("impl", "cuda"), ("anchor_first_frame", 1), ("tile_elements", 0),
    ("proportional_attention", "yes"), ("profile", None),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"HTTMConfig.{field}"):
        HTTMConfig(**{field: value})


def test_uniform_validation_and_layers_normalised():
    with pytest.raises(ValueError, match="UniformMergeConfig.merge_ratio must be in"):
        UniformMergeConfig(merge_ratio=1.5)
    assert HTTMConfig(layers=[5, 1, 5]).layers == (1, 5)


def parse(*argv):
    return merge_config_from_args(add_merge_arguments(argparse.ArgumentParser()).parse_args(list(argv)))


def test_cli_builds_the_configs():
    assert parse() == HTTMConfig()
    assert parse("--merge", "none") is None
    assert parse("--merge", "uniform", "--uniform-ratio", "0.8", "--no-anchor") == \
        UniformMergeConfig(merge_ratio=0.8, anchor_first_frame=False)
    c = parse("--q-merge", "0.85", "--q-outlier", "0.05", "--kv-merge", "0.6", "--spatial-block", "64",
              "--temporal-frames", "8", "--merge-layers", "0,4-6")
    assert c == HTTMConfig(q_merge=0.85, q_outlier=0.05, kv_merge=0.6, spatial_block=64,
                           temporal_frames=8, layers=(0, 4, 5, 6))
    with pytest.raises(ValueError, match="HTTMConfig.q_merge"):
        parse("--q-merge", "2")
    with pytest.raises(SystemExit):
        parse("--merge-layers", "x")
