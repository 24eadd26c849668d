"""Issue 5 acceptance: the streaming pipeline with the oracle predictor on a synthetic sequence.

150 frames at 140x112, keyframe selection on, windows of 8 keyframes with 3 of overlap (>= 10
windows); every window is off by a random similarity (scale 0.5-2) plus noise and outliers.
"""

import numpy as np
import pytest
import torch

from httm_ros.eval.metrics import ate, completeness, map_accuracy, transform_points
from httm_ros.pipeline import StreamConfig, StreamingReconstructor, WindowConfig, WindowPrediction
from httm_ros.synthetic import demo_sequence
from httm_ros.synthetic.oracle import OraclePredictor

WINDOW = WindowConfig(size=8, overlap=3)


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


@pytest.fixture(scope="module")
def seq():
    return demo_sequence(num_frames=150, width=140, height=112, seed=0, speed=0.04)


def run(seq, predictor, config=None):
    rec = StreamingReconstructor(predictor, config or StreamConfig(window=WINDOW, image_width=None))
    results = []
    for img, t in zip(seq.images, seq.timestamps):
        results += rec.push(img, t)
    results += rec.flush()
    return rec, results


@pytest.fixture(scope="module")
def clean_run(seq):
    return run(seq, OraclePredictor(seq, noise=0.01, seed=0))


def test_trajectory_and_map_accuracy(seq, clean_run):
    rec, results = clean_run
    assert len(results) >= 10 and all(r.accepted for r in results), [r.alignment.reason for r in results]
    assert rec.counters.windows == len(results) and rec.counters.windows_rejected == 0
    ids = np.array(rec.trajectory.frame_ids)
    assert len(ids) == rec.counters.keyframes and len(set(ids.tolist())) == len(ids)     # each keyframe once
    err = ate(rec.trajectory.positions(), seq.cam_to_world[ids, :3, 3])
    length = seq.trajectory_length()
    print(f"windows {len(results)}, keyframes {len(ids)}, ATE RMSE {err['rmse']:.4f} m = "
          f"{100 * err['rmse'] / length:.3f} % of {length:.2f} m")
    assert err["rmse"] < 0.01 * length
    xyz, rgb = rec.map.points()
    xyz_gt = transform_points(xyz, err["transform"])                       # map into the GT frame
    acc = map_accuracy(xyz_gt, seq.scene)
    comp = completeness(xyz_gt, seq.sample_observed_points(4000), 0.01 * seq.scene.size)
    print(f"map {len(xyz)} points: median distance {acc['median']:.4f} m = {100 * acc['median_rel']:.3f} % of "
          f"scene size {seq.scene.size:.2f} m, p90 {acc['p90']:.4f} m, completeness@1% {comp:.3f}")
    assert acc["median"] < 0.01 * seq.scene.size
    assert comp > 0.9
    assert rgb.dtype == np.uint8 and rgb.std() > 20                        # coloured


def test_window_results_content(clean_run):
    rec, results = clean_run
    r = results[1]
    K = r.num_keyframes
    assert r.num_overlap == WINDOW.overlap and K == WINDOW.size
    assert r.cam_to_world.shape == (K, 4, 4) and r.intrinsics.shape == (K, 3, 3)
    assert r.depth.shape == (K, 112, 140) and r.conf.shape == (K, 112, 140)
    assert r.frame_ids[:WINDOW.overlap] == results[0].frame_ids[-WINDOW.overlap:]
    # The overlap keyframes land where the previous window put them.
    prev = results[0].cam_to_world[-WINDOW.overlap:]
    assert torch.linalg.norm(r.cam_to_world[:WINDOW.overlap, :3, 3] - prev[:, :3, 3], dim=1).max() < 0.05
    xyz, rgb = r.points_numpy()
    assert xyz.shape[1] == 3 and len(xyz) == len(rgb) > 1000
    for stage in ("preprocess", "predict", "align", "filter", "unproject", "map_update", "post", "total"):
        assert r.timings[stage] >= 0
    assert r.stats["oracle"]["call"] == 1 and 0.5 <= r.stats["oracle"]["scale"] <= 2
    assert 0.5 / 2 <= r.alignment.scale <= 2 / 0.5
    assert results[0].alignment.accepted and results[0].num_overlap == 0


@pytest.mark.parametrize("kind", ["random_depth", "flipped_depth", "wrong_poses"])
def test_corrupted_window_is_rejected_and_reported(seq, kind):
    rec, results = run(seq, OraclePredictor(seq, noise=0.01, seed=0, corrupt={3: kind}))
    bad = results[3]
    assert not bad.accepted and bad.alignment.reason, kind
    print(kind, "->", bad.alignment.reason)
    assert bad.cam_to_world is None and bad.points_xyz is None
    assert rec.counters.windows_rejected == 1 and rec.counters.keyframes_dropped == bad.num_keyframes - bad.num_overlap
    assert all(r.accepted for i, r in enumerate(results) if i != 3)
    new_bad = set(bad.frame_ids[bad.num_overlap:])
    assert not new_bad & set(rec.trajectory.frame_ids)                      # never applied
    # The next window restarts from the last accepted anchor keyframes.
    assert results[4].frame_ids[:results[4].num_overlap] == results[2].frame_ids[-WINDOW.overlap:]
    ids = np.array(rec.trajectory.frame_ids)
    err = ate(rec.trajectory.positions(), seq.cam_to_world[ids, :3, 3])
    assert err["rmse"] < 0.01 * seq.trajectory_length()
    acc = map_accuracy(transform_points(rec.map.points()[0], err["transform"]), seq.scene)
    assert acc["median"] < 0.01 * seq.scene.size


class NoConfidentOverlap:
    """Wraps the oracle: window 2's overlap frames come back with VGGT's floor confidence (1)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def predict(self, images, frame_ids) -> WindowPrediction:
        pred = self.inner.predict(images, frame_ids)
        if self.calls == 2:
            pred.depth_conf[:WINDOW.overlap] = 1.0
        self.calls += 1
        return pred


def test_window_without_usable_overlap_is_rejected(seq):
    rec, results = run(seq, NoConfidentOverlap(OraclePredictor(seq, noise=0.01, seed=0)))
    assert not results[2].accepted
    assert "too little overlap" in results[2].alignment.reason
    assert results[2].alignment.num_points == 0
    assert results[3].accepted and rec.counters.windows_rejected == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_results_on_cuda(seq, clean_run):
    """The core is device-agnostic: on CUDA the stream gives the same trajectory (to float noise)."""
    config = StreamConfig(window=WINDOW, image_width=None, device="cuda")
    rec, results = run(seq, OraclePredictor(seq, noise=0.01, seed=0), config)
    assert all(r.accepted for r in results) and results[1].points_xyz.device.type == "cuda"
    cpu_rec = clean_run[0]
    assert rec.trajectory.frame_ids == cpu_rec.trajectory.frame_ids
    np.testing.assert_allclose(rec.trajectory.positions(), cpu_rec.trajectory.positions(), atol=1e-3)
    assert abs(len(rec.map) - len(cpu_rec.map)) < 0.01 * len(cpu_rec.map)
