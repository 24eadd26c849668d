"""The shipped httm-vggt-synth (issue 15): it loads like any checkpoint at its card's size, it has
learned depth and relative pose on held-out scenes, and the streaming core keeps tracking with it.

Bounds are set from measurements of the shipped file with a margin (httm_ros/weights/README.md, run
6; bench/results/streaming/trained6_*/): they fail if the file is replaced by an untrained network
(test weights score like the baselines) or if loading, resizing or the pipeline break.
"""

import logging
import math

import pytest
import torch

from httm_ros.vggt import VGGT
from httm_ros.vggt.checkpoint import checkpoint_image_hw
from httm_ros.weights import synth_weights

WEIGHTS = synth_weights()
pytestmark = pytest.mark.skipif(WEIGHTS is None, reason="httm-vggt-synth.safetensors is not in httm_ros/weights/")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VGGT.from_checkpoint(WEIGHTS).eval()


def test_card_names_the_input_size_and_the_network_carries_its_config(model):
    assert checkpoint_image_hw(WEIGHTS) == (126, 168)
    assert model.config.embed_dim == 128 and model.config.depth == 6


def test_held_out_clips_beat_the_image_blind_baselines(model, one_torch_thread):
    """Held-out scene seeds 0..3 (training used >= 1000), 16 frames: measured abs_rel 0.05-0.35 and
    rotation error 1.7-13.6 deg per clip against 0.36-0.51 and 9.8-34.9 deg for constant depth and
    identity rotations."""
    from httm_ros.train.heldout import evaluate_heldout

    out = evaluate_heldout(model, checkpoint_image_hw(WEIGHTS), n=4, frames=16)
    rows = out["clips"]
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert mean("abs_rel") < 0.6 * mean("abs_rel_constant_depth"), rows
    assert mean("rot_err_median_deg") < 0.5 * mean("rot_err_identity_deg"), rows
    assert mean("delta_1_25") > 0.7, rows


def test_anchored_stream_keeps_tracking_a_held_out_walk_at_most_at_chaineds_ate(one_torch_thread):
    """300 frames of a held-out room (scene seed 0), walking, every frame a keyframe, windows of 16
    with 6 known, the checks of the card's stream_profile: measured 30/30 windows in both modes,
    ATE 4.82% anchored (anchor_policy last_window) against 5.13% chained (issue 16's criterion;
    seeds 0-3 and orbits in bench/results/streaming/trained_*)."""
    from httm_ros.bench.streaming import make_predictor, run_stream, sequence, stream_config, summary
    from httm_ros.vggt.checkpoint import checkpoint_stream_profile

    seq = sequence(300, 0, checkpoint_image_hw(WEIGHTS), "walk")
    logging.getLogger("httm_ros.pipeline.tracking").setLevel(logging.ERROR)
    profile = checkpoint_stream_profile(WEIGHTS)
    rows = {}
    for mode in ("chained", "anchored"):
        rec, results, wall = run_stream(seq, make_predictor("checkpoint", seq, 0, 0, 0, str(WEIGHTS)),
                                        stream_config(mode, 16, 6, min_motion=0.0, profile=profile))
        rows[mode] = row = summary(seq, rec, results, wall)
        assert row["accepted"] >= 29 and row["windows"] == 30 and len(row["segments"]) == 1, row
        assert row["keyframes"] >= 290 and rec.tracker.state.value == "TRACKING", row
        assert math.isfinite(row["ate_pct"]) and row["ate_pct"] < 6.0, row
    assert rows["anchored"]["ate_pct"] <= rows["chained"]["ate_pct"], rows


@pytest.mark.parametrize("come_back", [True, False])
def test_another_room_is_lost_and_kept_out_of_the_map(one_torch_thread, come_back):
    """Issue 16's failure scenarios with the network (card checks, anchored, every frame a keyframe,
    16/6), held-out scene seed 1 walking: 3 s of another room then back goes TRACKING -> LOST ->
    RELOCALISED -> TRACKING in one map (measured ATE 2.9%); never coming back starts a NEW_SEGMENT.
    No keyframe of the other room enters segment 0 either way (with the library checks the network
    maps the other room as if it were this one: docs/STREAMING.md)."""
    from httm_ros.bench.streaming import make_predictor, other_room, run_stream, sequence, stream_config, summary
    from httm_ros.vggt.checkpoint import checkpoint_stream_profile

    hw = checkpoint_image_hw(WEIGHTS)
    seq = other_room(sequence(300, 1, hw, "walk"), 1, come_back, hw)
    logging.getLogger("httm_ros.pipeline.tracking").setLevel(logging.ERROR)
    rec, results, wall = run_stream(seq, make_predictor("checkpoint", seq, 0, 0, 0, str(WEIGHTS)),
                                    stream_config("anchored", 16, 6, min_motion=0.0,
                                                  profile=checkpoint_stream_profile(WEIGHTS)))
    row = summary(seq, rec, results, wall)
    assert row["segments"][0]["other_room_keyframes"] == 0, row["segments"]
    states = row["states"]
    assert states[:3] == ["INITIALISING", "TRACKING", "LOST"], states
    if come_back:
        assert states[3:] == ["RELOCALISED", "TRACKING"] and len(row["segments"]) == 1, states
        assert row["ate_pct"] < 5.0, row
    else:
        assert "NEW_SEGMENT" in states and len(row["segments"]) == 2, states
