"""Streaming API behaviour: windows, flush, frame sizes, bad predictions, keyframes, configs, model."""

import numpy as np
import pytest
import torch

from httm_ros.pipeline import (AlignConfig, FilterConfig, FrameSizeError, KeyframeConfig, KeyframeSelector,
                               MapConfig, ModelPredictor, StreamConfig, StreamingReconstructor, WindowConfig,
                               WindowPrediction)
from httm_ros.synthetic import demo_sequence
from httm_ros.synthetic.oracle import OraclePredictor


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


@pytest.fixture(scope="module")
def seq():
    return demo_sequence(num_frames=24, width=56, height=42, seed=1, speed=0.05)


def every_frame(size=4, overlap=2, **kw):
    return StreamConfig(keyframes=KeyframeConfig(enabled=False), window=WindowConfig(size, overlap),
                        align=AlignConfig(min_points=100), **kw)


def test_windows_flush_and_counters(seq):
    rec = StreamingReconstructor(OraclePredictor(seq, seed=1), every_frame(image_width=None))
    completed = [len(rec.push(seq.images[i], seq.timestamps[i])) for i in range(11)]
    assert completed == [0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0]                   # K=4, then every 2
    last = rec.flush()
    assert len(last) == 1 and last[0].num_keyframes == 3 and last[0].num_overlap == 2
    assert rec.flush() == []                                               # nothing new queued
    c = rec.counters
    assert (c.frames_received, c.keyframes, c.windows, c.windows_accepted) == (11, 11, 5, 5)
    assert rec.trajectory.frame_ids == list(range(11)) and len(rec.map) > 0
    assert rec.model_hw == (42, 56) and rec.last_result is last[0]
    rec.reset()
    assert rec.counters.frames_received == 0 and len(rec.map) == 0 and len(rec.trajectory) == 0


@pytest.mark.parametrize("mode", ["chained", "anchored"])
def test_a_window_that_raises_drops_its_new_keyframes_and_the_next_one_runs(seq, monkeypatch, mode):
    """An error inside a window (here: the alignment raises once) goes to the caller, but the window's
    new keyframes are dropped and counted, so the next window runs on new keyframes instead of
    raising again on every later frame (the node's log showed one error per frame, session 16)."""
    from httm_ros.pipeline import stream

    cfg = StreamConfig(keyframes=KeyframeConfig(enabled=False), window=WindowConfig(4, 2, mode),
                       align=AlignConfig(min_points=100), image_width=None)
    rec = StreamingReconstructor(OraclePredictor(seq, seed=1), cfg)
    for i in range(4):
        rec.push(seq.images[i], seq.timestamps[i])                         # window 0: the world
    calls = []
    original = stream.StreamingReconstructor._align

    def fail_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated alignment bug")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(stream.StreamingReconstructor, "_align", fail_once)
    rec.push(seq.images[4], seq.timestamps[4])
    with pytest.raises(RuntimeError, match="simulated"):
        rec.push(seq.images[5], seq.timestamps[5])                         # window 1 raises
    assert (rec.counters.windows_errored, rec.counters.keyframes_dropped) == (1, 2)
    assert rec.push(seq.images[6], seq.timestamps[6]) == []                # one new keyframe: not a window yet
    done = rec.push(seq.images[7], seq.timestamps[7])
    assert len(done) == 1 and done[0].accepted and done[0].frame_ids[-2:] == [6, 7]
    assert rec.trajectory.frame_ids == [0, 1, 2, 3, 6, 7]


def test_anchored_windows_store_their_new_keyframes_as_the_window_saw_them(seq):
    """Every new keyframe of an accepted anchored window is stored with the window's depth,
    confidence, pose and intrinsics, each in its own host tensor (not a view that keeps the whole
    window alive); the timings name the context and store stages and add up to total."""
    cfg = StreamConfig(keyframes=KeyframeConfig(enabled=False), window=WindowConfig(4, 2, "anchored"),
                       align=AlignConfig(min_points=100), image_width=None)
    rec = StreamingReconstructor(OraclePredictor(seq, seed=1), cfg)
    results = [r for i in range(12) for r in rec.push(seq.images[i], seq.timestamps[i])]
    assert len(results) >= 3 and all(r.accepted for r in results)
    for r in results:
        for k in range(r.num_overlap, r.num_keyframes):
            kf = rec.store[r.frame_ids[k]]
            assert torch.equal(kf.depth, r.depth[k].float().cpu()) and torch.equal(kf.conf, r.conf[k].cpu().half())
            assert torch.equal(kf.cam_to_world, r.cam_to_world[k].cpu().double())
            assert torch.equal(kf.intrinsics, r.intrinsics[k].cpu().float())
            assert kf.depth.untyped_storage().nbytes() == kf.depth.numel() * 4          # its own copy
        t = r.timings
        assert {"context", "store"} <= set(t) and min(t.values()) >= 0.0
        assert t["total"] == pytest.approx(t["preprocess"] + t["context"] + t["predict"] + t["post"])
    assert len(rec.store) == len(rec.trajectory)


def test_frames_are_resized_to_model_width_and_size_changes_are_explicit(seq):
    rec = StreamingReconstructor(OraclePredictor(seq, seed=1), every_frame(image_width=56))
    rec.push(seq.images[0])
    big = np.repeat(np.repeat(seq.images[1], 2, axis=0), 2, axis=1)       # 112x84: same aspect
    rec.push(big)
    assert rec.model_hw == (42, 56)
    with pytest.raises(FrameSizeError, match="reset"):
        rec.push(np.zeros((56, 56, 3), np.uint8))                          # another aspect ratio
    with pytest.raises(FrameSizeError, match="multiples of 14"):
        StreamingReconstructor(OraclePredictor(seq), every_frame(image_width=None)).push(np.zeros((40, 56, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rec.push(np.zeros((42, 56, 3), np.float32))


class Broken:
    """Oracle whose first call returns NaN cameras, and optionally wrong shapes."""

    def __init__(self, seq, wrong_shape=False):
        self.inner, self.wrong_shape, self.calls = OraclePredictor(seq, seed=2), wrong_shape, 0

    def predict(self, images, frame_ids) -> WindowPrediction:
        pred = self.inner.predict(images, frame_ids)
        self.calls += 1
        if self.wrong_shape:
            pred.depth = pred.depth[:, :-1]
        elif self.calls == 1:
            pred.extrinsics[1] = float("nan")
        return pred


def test_failed_first_window_leaves_the_world_to_the_next(seq):
    rec = StreamingReconstructor(Broken(seq), every_frame(image_width=None))
    results = [r for i in range(8) for r in rec.push(seq.images[i])]
    assert not results[0].accepted and "non-finite" in results[0].alignment.reason
    assert results[1].accepted and results[1].num_overlap == 0            # defines the world
    assert rec.trajectory.frame_ids[0] == 4
    with pytest.raises(ValueError, match="depth has shape"):
        r2 = StreamingReconstructor(Broken(seq, wrong_shape=True), every_frame(image_width=None))
        for i in range(4):
            r2.push(seq.images[i])


def test_keyframe_selection():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    base = np.asarray(torch.nn.functional.avg_pool2d(torch.as_tensor(base).permute(2, 0, 1).float()[None], 3, 1, 1)[0]
                      .permute(1, 2, 0).byte())
    sel = KeyframeSelector(KeyframeConfig(min_motion=0.03, max_gap=5))
    static = [sel.select(base)[0] for _ in range(12)]
    assert static == [True, False, False, False, False, True, False, False, False, False, True, False]
    sel.reset()
    moving = [sel.select(np.roll(base, 4 * k, axis=1))[0] for k in range(6)]   # 5 % of the width per frame
    assert all(moving)
    sel = KeyframeSelector(KeyframeConfig(min_motion=0.03, max_gap=50))
    bright = [sel.select(np.clip(base.astype(int) + 10 * k, 0, 255).astype(np.uint8))[0] for k in range(4)]
    assert bright == [True, False, False, False]                              # exposure is not motion
    assert KeyframeSelector(KeyframeConfig(enabled=False)).select(base)[0]


@pytest.mark.parametrize("make, match", [
    (lambda: WindowConfig(size=24, overlap=24), r"WindowConfig.overlap must be an int in \[1, 23\]"),
    (lambda: WindowConfig(size=1), r"WindowConfig.size"),
    (lambda: KeyframeConfig(min_motion=-0.1), r"KeyframeConfig.min_motion must be a number in \[0.0, 1.0\]"),
    (lambda: FilterConfig(conf_percentile=100), r"FilterConfig.conf_percentile"),
    (lambda: FilterConfig(pixel_stride=0), r"FilterConfig.pixel_stride"),
    (lambda: AlignConfig(min_inlier_fraction=1.5), r"AlignConfig.min_inlier_fraction"),
    (lambda: AlignConfig(scale_range=(2.0, 1.0)), r"AlignConfig.scale_range"),
    (lambda: MapConfig(overflow="drop"), r"MapConfig.overflow must be one of"),
    (lambda: MapConfig(voxel_size=0.0), r"MapConfig.voxel_size"),
    (lambda: StreamConfig(image_width=500), r"StreamConfig.image_width must be a multiple of 14"),
    (lambda: StreamConfig(device="tpu"), r"StreamConfig.device"),
    (lambda: StreamConfig(window=WindowConfig(4, 1), align=AlignConfig(min_overlap_frames=2)), r"overlap \(1\)"),
])
def test_config_validation_names_field_and_range(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_model_predictor_runs_in_the_stream(seq):
    """The tiny VGGT (random weights: geometry meaningless) through the full streaming path."""
    from httm_ros.httm import HTTMConfig
    from httm_ros.vggt import VGGT, VGGTConfig

    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny())
    pred = ModelPredictor(model, device="cpu", merge=HTTMConfig())
    out = pred.predict(torch.rand(3, 3, 42, 56), [0, 1, 2])
    assert out.extrinsics.shape == (3, 3, 4) and out.intrinsics.shape == (3, 3, 3)
    assert out.depth.shape == (3, 42, 56) and out.depth_conf.shape == (3, 42, 56)
    assert (out.depth_conf >= 1).all() and out.stats["merge_mode"] == "httm" and out.stats["merge"]["calls"] > 0
    assert out.intrinsics[0, 0, 2] == 28 and out.intrinsics[0, 1, 2] == 21
    rec = StreamingReconstructor(ModelPredictor(model), every_frame(image_width=56))
    results = [r for i in range(6) for r in rec.push(seq.images[i])] + rec.flush()
    assert len(results) == 2 and results[0].depth.shape == (4, 42, 56)
    for r in results:                     # random weights (e.g. infinite focal lengths): decided and reported
        assert r.accepted or r.alignment.reason
    assert results[0].stats["merge_mode"] == "none" and results[0].stats["model_s"] > 0
