"""httm-eval runs on a rendered sequence with exact ground truth: the oracle scores 0, known
perturbations score their expected values, the streaming pipeline runs end to end."""

import math

import numpy as np
import pytest
import torch

from httm_ros.eval import EvalOptions, depth_cloud, evaluate, model_inputs, run_offline, run_streaming
from httm_ros.eval.evaluate import initial_alignment
from httm_ros.geometry import depth_to_camera_points
from httm_ros.synthetic import Sequence, demo_sequence
from httm_ros.synthetic.oracle import OraclePredictor, PerturbedOracle


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


@pytest.fixture(scope="module")
def data():
    """10 frames at 126x98 (already a model input size: ground truth stays exact), GT cloud, options."""
    seq = demo_sequence(num_frames=10, width=126, height=98, seed=0, speed=0.05)
    opts = EvalOptions(size=126, conf_percentile=0.0, pixel_stride=2)
    images, seq_model = model_inputs(seq, opts.size)
    assert seq_model is seq and images.shape == (10, 3, 98, 126)
    return seq, images, depth_cloud(seq, opts), opts


def _score(data, predictor, streaming=None):
    seq, images, gt, opts = data
    if streaming:
        recon = run_streaming(predictor, images, *streaming, opts)
    else:
        recon = run_offline(predictor, images, opts)
    return recon, evaluate(recon, gt, seq.cam_to_world, opts)


def test_oracle_without_noise_scores_zero(data):
    seq = data[0]
    oracle = OraclePredictor(seq, noise=0.0, outlier_fraction=0.0, seed=4)
    recon, m = _score(data, oracle)
    size = seq.scene.size
    for key in ("acc_mean", "comp_mean", "acc_median", "comp_median"):
        assert m[key] < 1e-5 * size, key
    cams = m["cameras"]
    assert cams["ate"]["rmse"] < 1e-5 * size and cams["rpe"]["trans_rmse"] < 1e-5 * size
    assert cams["rpe"]["rot_rmse_deg"] < 1e-4
    # the oracle's window scale was absorbed by the Sim(3) from the cameras (both candidates exact)
    assert set(m["alignment"]["init_scores"]) == {"umeyama_camera_centres", "camera_orientations"}
    assert m["alignment"]["scale"] == pytest.approx(1.0 / oracle.calls[0]["scale"], rel=1e-5)
    assert m["frames"] == 10 and m["pred_points"] == m["gt_points"] == len(data[2])
    assert recon.memory["kind"].startswith(("cpu", "cuda")) and recon.time_s >= 0


def test_depth_noise_of_known_sigma_gives_the_expected_accuracy_and_completeness(data):
    # depth * (1 + sigma n): each point moves along its ray by sigma n |p_cam|, so the mean distance
    # to its own ground-truth point is sqrt(2/pi) sigma mean|p_cam|. sigma is small against the point
    # spacing (~0.015 x depth at pixel stride 2), so that point stays the nearest neighbour and
    # zero-mean noise leaves nothing for the alignment to absorb.
    seq, _, _, opts = data
    sigma, s = 3e-4, opts.pixel_stride
    cam = depth_to_camera_points(torch.from_numpy(seq.depth).double(), torch.from_numpy(seq.intrinsics).double())
    expected = math.sqrt(2 / math.pi) * sigma * float(cam[:, ::s, ::s].norm(dim=-1).mean())
    _, m = _score(data, PerturbedOracle(seq, depth_noise=sigma, seed=2))
    assert m["acc_mean"] == pytest.approx(expected, rel=0.03)
    assert m["comp_mean"] == pytest.approx(expected, rel=0.03)
    assert m["cameras"]["ate"]["rmse"] < 1e-5 * seq.scene.size            # cameras untouched


def test_known_rotation_drift_gives_the_expected_rpe(data):
    seq = data[0]
    _, m = _score(data, PerturbedOracle(seq, drift_deg=0.5, drift_axis=(0.3, 1.0, 0.0), seed=1))
    rpe = m["cameras"]["rpe"]
    assert rpe["rot_mean_deg"] == pytest.approx(0.5, abs=1e-4) and rpe["rot_rmse_deg"] == pytest.approx(0.5, abs=1e-4)
    assert rpe["pairs"] == 9
    assert m["cameras"]["ate"]["rmse"] > 1e-4 and m["acc_mean"] > 1e-4    # the drift bends the map too


def test_depth_scale_error_is_not_absorbed_when_cameras_are_exact(data):
    # all depths x1.01 with exact cameras: points move away from their own camera (not a global
    # similarity); the camera Sim(3) stays the identity, Acc grows with the error
    seq = data[0]
    _, m = _score(data, PerturbedOracle(seq, depth_scale=1.01, scale_range=(1.0, 1.0)))
    assert m["cameras"]["ate"]["rmse"] < 1e-5 and m["cameras"]["ate"]["scale"] == pytest.approx(1.0, abs=1e-6)
    _, m2 = _score(data, PerturbedOracle(seq, depth_scale=1.02, scale_range=(1.0, 1.0)))
    assert 1e-3 < m["acc_mean"] < m2["acc_mean"]


def test_streaming_with_the_oracle_end_to_end(data):
    seq = data[0]
    recon, m = _score(data, OraclePredictor(seq, noise=0.0, outlier_fraction=0.0, seed=1), streaming=(4, 2))
    assert recon.extra["windows"] == 4 and not recon.extra["rejected"] and m["frames"] == 10
    size = seq.scene.size
    assert m["cameras"]["ate"]["rmse"] < 1e-5 * size                      # window alignment is exact ...
    assert m["acc_mean"] < 2e-3 * size and m["comp_mean"] < 2e-3 * size   # ... the voxel map nearly
    assert recon.extra["map_points"] == m["pred_points"]
    recon, noisy = _score(data, OraclePredictor(seq, noise=0.01, seed=1), streaming=(4, 2))
    _, offline = _score(data, OraclePredictor(seq, noise=0.01, seed=1))
    assert noisy["acc_mean"] > m["acc_mean"] and all(math.isfinite(noisy[k]) for k in ("acc_mean", "comp_mean"))
    assert 0 < offline["acc_mean"] < 0.05 * size


def test_resampled_ground_truth_stays_on_the_surfaces():
    # frames that need VGGT preprocessing (resize + centre crop): the oracle's ground truth is
    # resampled with them (nearest neighbour: up to half a source pixel off) and stays on the
    # scene's surfaces; moving the principal point by half a pixel either way only makes it worse
    seq = demo_sequence(num_frames=2, width=112, height=168, seed=1)
    images, seq_model = model_inputs(seq, 126)
    assert images.shape == (2, 3, 126, 126) and seq_model.depth.shape == (2, 126, 126)

    def median_distance(shift):
        K = seq_model.intrinsics.copy()
        K[:, :2, 2] += shift
        moved = Sequence(seq_model.images, seq_model.depth, K, seq_model.cam_to_world, seq_model.timestamps)
        points = depth_cloud(moved, EvalOptions(size=126, pixel_stride=1))
        return float(np.median(seq.scene.distance_to_surface(points)))

    best = median_distance((0.0, 0.0))
    assert best < 2.5e-3 * float(np.median(seq.depth))
    assert all(median_distance(s) > best for s in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)))


def test_initial_alignment_falls_back_to_orientations_for_collinear_cameras():
    gt = np.tile(np.eye(4), (3, 1, 1))
    gt[:, 0, 3] = [0.0, 1.0, 2.0]                                         # cameras on a line
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    est = gt.copy()
    est[:, :3, :3] = rot.T @ gt[:, :3, :3]
    est[:, :3, 3] = 0.5 * gt[:, :3, 3] @ rot                              # world rotated by R^T, scaled 0.5
    sim, how, _ = initial_alignment(est, gt, np.zeros((0, 3)), None)
    assert how == "camera_orientations"
    np.testing.assert_allclose(sim[:3, :3], 2.0 * rot, atol=1e-12)
    np.testing.assert_allclose(est[:, :3, 3] @ sim[:3, :3].T + sim[:3, 3], gt[:, :3, 3], atol=1e-12)
