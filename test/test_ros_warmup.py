"""The node's start-up warm-up (``warmup_forwards``, issue 14): forwards of the tiny model at the
window size run in ``build_model_runner`` before the node reports ready; the ready line says so."""

import torch

from httm_ros.ros import params
from httm_ros.ros.model_runner import build_model_runner, warmup_text
from httm_ros.pipeline.stream import model_input_size


def _values(**kw):
    return {**params.defaults(), "allow_test_weights": True, "model_config": "tiny", "device": "cpu",
            "image_size": 56, "window_size": 4, "window_overlap": 2, **kw}


def test_warm_up_runs_at_the_window_size_before_ready():
    runner = build_model_runner(_values(warmup_forwards=2))
    w = runner.warmup
    assert w["forwards"] == 2 and len(w["seconds"]) == 2 and all(s > 0 for s in w["seconds"])
    assert w["frames"] == 4 and tuple(w["image_hw"]) == model_input_size(480, 640, 56) == (42, 56)
    assert "warm-up 2 x 4 frames 56x42 in" in runner.description          # the node's "ready: " line
    pred = runner.predictor.predict(torch.rand(4, 3, 42, 56), list(range(4)))            # the model still runs after it
    assert pred.stats["frames"] == 4 and "error" not in pred.stats


def test_warm_up_off_and_default():
    assert params.defaults()["warmup_forwards"] == 1
    runner = build_model_runner(_values(warmup_forwards=0))
    assert runner.warmup is None and runner.description.endswith("no warm-up")
    assert params.validate(_values(warmup_forwards=-1))                    # rejected
    assert warmup_text({"forwards": 1, "error": "RuntimeError: x"}) == ", warm-up failed"


def test_warm_up_failure_still_starts(monkeypatch):
    from httm_ros.ros import model_runner

    def boom(*a, **k):
        raise RuntimeError("simulated")

    seen = []
    monkeypatch.setattr(model_runner, "warm_up", boom)
    runner = build_model_runner(_values(), warn=seen.append)
    assert "simulated" in runner.warmup["error"] and any("warm-up failed" in s for s in seen)


def test_injected_predictor_has_no_warm_up():
    from httm_ros.synthetic import demo_sequence
    from httm_ros.synthetic.oracle import OraclePredictor

    seq = demo_sequence(num_frames=4, width=56, height=42)
    runner = build_model_runner(_values(), predictor=OraclePredictor(seq))
    assert runner.warmup is None


def test_default_windows_come_from_the_model_card():
    """window_size / window_overlap 0 and keyframe_policy / window_mode auto (the defaults): the shipped
    network runs the windows its card was measured with, and the ready line says so (also from the
    resolved values the node passes);
    without a card (test weights) VGGT-1B's 24/4, motion keyframes, anchored (issue 16)."""
    from httm_ros.weights import synth_weights

    synth = synth_weights()
    assert synth is not None
    values = {**params.defaults(), "checkpoint": str(synth), "device": "cpu", "warmup_forwards": 1}
    runner = build_model_runner(values)
    cfg = runner.reconstructor.config
    assert (cfg.window.size, cfg.window.overlap, cfg.window.mode, cfg.keyframes.enabled) == (16, 6, "anchored", False)
    assert runner.warmup["frames"] == 16
    assert "windows 16/6 anchored with keyframe_policy every as its model card was measured" in runner.description
    node = build_model_runner(params.resolved(values))     # the node's values: resolved in declare_all
    assert node.description.split(", warm-up")[0] == runner.description.split(", warm-up")[0]   # timing aside
    plain = build_model_runner({**params.defaults(), "allow_test_weights": True, "model_config": "tiny",
                                "device": "cpu", "image_size": 56, "warmup_forwards": 0})
    cfg = plain.reconstructor.config
    assert (cfg.window.size, cfg.window.overlap, cfg.window.mode, cfg.keyframes.enabled) == (24, 4, "anchored", True)


def test_core_warm_up_runs_two_windows_apart_from_the_node_core(caplog):
    """The streaming core's warm-up (CUDA only in the node: there its first alignment, filter and
    map update cost up to 0.2 s each): two windows of a scratch core through every stage, silent,
    and the node's own core untouched."""
    import logging

    from httm_ros.pipeline.stream_warmup import warm_up_core

    runner = build_model_runner(_values(warmup_forwards=1))
    assert "core" not in runner.warmup and "core warm-up" not in runner.description     # CPU: skipped
    with caplog.at_level(logging.INFO):
        core = warm_up_core(runner.predictor, runner.reconstructor.config)
    assert core["windows"] == 2 and core["accepted"] >= 1 and core["seconds"] > 0       # window 0 placed and mapped
    assert not [r for r in caplog.records if "tracking" in r.getMessage()]              # not the node's transitions
    rec = runner.reconstructor
    assert rec.counters.windows == 0 and rec.counters.frames_received == 0 and len(rec.trajectory) == 0
    assert rec.tracking_state.value == "INITIALISING"


def test_core_warm_up_failure_still_starts():
    from httm_ros.ros.model_runner import core_warmup_text, warm_up_stream

    class Broken:
        def predict(self, images, frame_ids):
            raise RuntimeError("simulated")

    seen = []
    runner = build_model_runner(_values(warmup_forwards=0))
    core = warm_up_stream(Broken(), runner.reconstructor.config, seen.append)
    assert "simulated" in core["error"] and any("streaming core failed" in s for s in seen)
    assert core_warmup_text(core) == ", core warm-up failed"
    assert core_warmup_text({"windows": 2, "accepted": 2, "seconds": 0.5}) == ", core warm-up 2 windows in 0.50 s"
