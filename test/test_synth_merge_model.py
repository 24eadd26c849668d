"""The shipped httm-vggt-synth-merge (issue 16): httm-vggt-synth fine-tuned with HTTM merging
(httm_ros/weights/README.md, runs 7-8). Its card runs it merged in anchored 24/4 windows, the
node's VGGT-1B default layout, and there it tracks a held-out stream at least as well as the
shipped network in issue 16's baseline layout (dense, chained 24/8).

The numbers are the ones of bench/results/window_size/synth_ft8_merge_accuracy_s01.json and
synth_b_accuracy_s01.json on scene seed 1, walking (2.82 % against 4.10 %); over all eight
held-out streams the means are 3.92 % against 4.41 % (better on 5 of 8, BENCHMARKS.md).
"""

import logging
import math

import pytest

from httm_ros.vggt.checkpoint import checkpoint_image_hw, checkpoint_stream_profile, read_model_card
from httm_ros.weights import synth_merge_weights, synth_weights

MERGE, BASE = synth_merge_weights(), synth_weights()
pytestmark = pytest.mark.skipif(MERGE is None or BASE is None, reason="the shipped networks are not in httm_ros/weights/")


def test_card_runs_it_merged_in_the_node_default_layout():
    from httm_ros.ros import params
    from httm_ros.ros.core_config import merge_config

    card = read_model_card(MERGE)
    assert card["name"] == "httm-vggt-synth-merge" and checkpoint_image_hw(MERGE) == (126, 168)
    assert card["training"]["options"]["merge"] == "httm" and card["lineage"]["base"]["name"] == "httm-vggt-synth"
    values = {**params.defaults(), "checkpoint": str(MERGE)}
    resolved = params.resolved(values)                     # what the node runs with everything left at auto
    assert {k: resolved[k] for k in ("window_size", "window_overlap", "window_mode", "merge_mode")} == \
        {"window_size": 24, "window_overlap": 4, "window_mode": "anchored", "merge_mode": "httm"}
    assert type(merge_config(resolved)).__name__ == "HTTMConfig"
    assert checkpoint_stream_profile(MERGE)["tracking"] == checkpoint_stream_profile(BASE)["tracking"]


def test_merged_24_4_anchored_tracks_at_most_at_the_baselines_ate(one_torch_thread):
    """Held-out scene seed 1, walking, 300 frames, every frame a keyframe, the card's checks: the
    merge-aware network with HTTM in anchored 24/4 windows against the shipped network dense in
    chained 24/8 windows (issue 16's baseline). A merge-intolerant network fails here: the shipped
    network itself, merged in 24/4, ends this stream at 7.57 % against its 4.10 % dense and chained."""
    from httm_ros.bench.streaming import make_predictor, run_stream, sequence, stream_config, summary

    logging.getLogger("httm_ros.pipeline.tracking").setLevel(logging.ERROR)
    seq = sequence(300, 1, checkpoint_image_hw(MERGE), "walk")
    rows = {}
    for name, weights, (k, o, mode, merge) in (("baseline", BASE, (24, 8, "chained", "none")),
                                               ("merged", MERGE, (24, 4, "anchored", "httm"))):
        cfg = stream_config(mode, k, o, min_motion=0.0, profile=checkpoint_stream_profile(weights))
        rec, results, wall = run_stream(seq, make_predictor("checkpoint", seq, 0, 0, 0, str(weights), merge=merge), cfg)
        rows[name] = summary(seq, rec, results, wall)
    merged, base = rows["merged"], rows["baseline"]
    assert merged["accepted"] >= 0.95 * merged["windows"] and len(merged["segments"]) == 1, merged
    assert math.isfinite(merged["ate_pct"]) and merged["ate_pct"] <= base["ate_pct"], rows
