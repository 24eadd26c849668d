"""Metric functions of httm-eval (httm_ros.eval.metrics) on inputs with known answers."""

import math

import numpy as np
import pytest

from httm_ros.eval.metrics import (ate, cloud_distances, icp_refine, rotation_angle_deg, rpe, transform_points,
                                   voxel_downsample)
from httm_ros.geometry import axis_angle_rotation


def axis_angle_matrix(axis, degrees):
    """Rotation [3,3] of ``degrees`` about ``axis``."""
    return axis_angle_rotation(axis, math.radians(degrees))


def _similarity(scale=1.7, axis=(1.0, 2.0, 0.5), deg=40.0, trans=(0.3, -2.0, 5.0)) -> np.ndarray:
    sim = np.eye(4)
    sim[:3, :3] = scale * axis_angle_matrix(axis, deg)
    sim[:3, 3] = trans
    return sim


def _circle_poses(n: int, radius: float) -> np.ndarray:
    """Cameras on a horizontal circle (uniform angles), each looking at the centre."""
    poses = np.tile(np.eye(4), (n, 1, 1))
    for k in range(n):
        phi = 2 * math.pi * k / n
        poses[k, :3, 3] = radius * np.array([math.cos(phi), math.sin(phi), 0.0])
        poses[k, :3, :3] = axis_angle_matrix((0, 0, 1), math.degrees(phi)) @ axis_angle_matrix((0, 1, 0), -90)
    return poses


def _moved_poses(poses: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """Camera-to-world poses after a world similarity (rigid poses, centres scaled)."""
    s = np.cbrt(np.linalg.det(sim[:3, :3]))
    out = poses.copy()
    out[:, :3, :3] = (sim[:3, :3] / s) @ poses[:, :3, :3]
    out[:, :3, 3] = transform_points(poses[:, :3, 3], sim)
    return out


def test_rotation_angle_is_exact_for_tiny_and_large_angles():
    for deg in (1e-6, 0.5, 90.0, 179.0):
        assert rotation_angle_deg(axis_angle_matrix((1, -1, 2), deg)) == pytest.approx(deg, rel=1e-9)


def test_trajectory_metrics_vanish_under_a_similarity():
    gt = _circle_poses(12, 2.0)
    est = _moved_poses(gt, np.linalg.inv(_similarity()))
    a = ate(est[:, :3, 3], gt[:, :3, 3])
    assert a["rmse"] < 1e-12 and a["scale"] == pytest.approx(1.7, rel=1e-12)
    r = rpe(est, gt, scale=a["scale"])
    assert r["trans_rmse"] < 1e-12 and r["rot_rmse_deg"] < 1e-6 and r["pairs"] == 11


def test_ate_of_alternating_vertical_offsets_matches_closed_form():
    # centres on a circle of radius r, moved up/down by +-d alternately (N even): the Sim(3) fit keeps
    # the rotation, shrinks by s = r^2 / (r^2 + d^2), and leaves ATE = r d / sqrt(r^2 + d^2)
    r, d, n = 2.0, 0.1, 16
    gt = _circle_poses(n, r)
    est = gt.copy()
    est[:, 2, 3] += d * (-1.0) ** np.arange(n)
    a = ate(est[:, :3, 3], gt[:, :3, 3])
    assert a["scale"] == pytest.approx(r * r / (r * r + d * d), rel=1e-10)
    assert a["rmse"] == pytest.approx(r * d / math.sqrt(r * r + d * d), rel=1e-10)


def test_ate_of_isotropic_centre_noise_matches_the_least_squares_expectation():
    # Gaussian noise sigma on every coordinate: a 7-dof fit absorbs 7 of the 3N dimensions
    rng = np.random.default_rng(0)
    n, sigma = 400, 0.02
    gt = rng.uniform(-3, 3, (n, 3))
    est = gt + rng.normal(0, sigma, (n, 3))
    expected = sigma * math.sqrt(3 - 7 / n)
    assert ate(est, gt)["rmse"] == pytest.approx(expected, rel=0.05)


def test_rpe_of_a_known_rotation_drift_is_the_drift_per_step():
    gt = _circle_poses(10, 1.5)
    drift = np.eye(4)
    drift[:3, :3] = axis_angle_matrix((0.2, 1.0, 0.0), 0.7)
    est = gt.copy()
    for k in range(1, len(gt)):                               # P_{k+1} = P_k (G_k^-1 G_{k+1}) D
        est[k] = est[k - 1] @ np.linalg.inv(gt[k - 1]) @ gt[k] @ drift
    r = rpe(est, gt, scale=1.0)
    assert r["rot_mean_deg"] == pytest.approx(0.7, rel=1e-9) and r["rot_rmse_deg"] == pytest.approx(0.7, rel=1e-9)
    assert r["trans_rmse"] < 1e-12                             # a rotation-only drift keeps relative translations


def test_rpe_of_a_known_translation_drift_and_scale():
    gt = _circle_poses(8, 1.0)
    tau = np.array([0.01, 0.0, 0.02])
    step = np.eye(4)
    step[:3, 3] = tau
    est = gt.copy()
    for k in range(1, len(gt)):
        est[k] = est[k - 1] @ np.linalg.inv(gt[k - 1]) @ gt[k] @ step
    est_scaled = est.copy()
    est_scaled[:, :3, 3] /= 3.0                               # the estimate's unit is 3x the ground truth's
    r = rpe(est_scaled, gt, scale=3.0)
    assert r["trans_mean"] == pytest.approx(np.linalg.norm(tau), rel=1e-9) and r["rot_rmse_deg"] < 1e-6


def test_cloud_distances_of_a_known_offset():
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), [0.0]), -1).reshape(-1, 3)
    off = grid + [0.0, 0.0, 0.3]                                # a parallel plane 0.3 away
    m = cloud_distances(off, grid)
    assert m["acc_mean"] == pytest.approx(0.3) and m["comp_mean"] == pytest.approx(0.3)
    extra = np.vstack([grid, [[100.0, 0, 0]]])                  # one far outlier in the prediction
    m = cloud_distances(extra, grid)
    assert m["comp_mean"] == 0.0 and m["acc_mean"] == pytest.approx(91.0 / 101)  # NN of (100,0,0) is (9,0,0)
    assert m["acc_median"] == 0.0 and m["pred_points"] == 101 and m["gt_points"] == 100


def test_voxel_downsample_means_per_voxel():
    pts = np.array([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [1.5, 0.2, 0.2]])
    out = voxel_downsample(pts, 1.0)
    assert sorted(map(tuple, np.round(out, 6))) == [(0.2, 0.2, 0.2), (1.5, 0.2, 0.2)]
    assert len(voxel_downsample(pts, 0.0)) == 3


def test_icp_recovers_a_small_rigid_offset_and_never_worsens_an_exact_start():
    rng = np.random.default_rng(1)
    # three orthogonal planes (a room corner): ICP is well constrained
    a, b = rng.uniform(0, 2, (2, 3000))
    cloud = np.concatenate([np.stack([a, b, 0 * a], 1), np.stack([a, 0 * a, b], 1), np.stack([0 * a, a, b], 1)])
    truth = np.eye(4)
    truth[:3, :3] = axis_angle_matrix((1, 1, 0), 2.0)
    truth[:3, 3] = [0.03, -0.02, 0.04]
    src = transform_points(cloud, np.linalg.inv(truth))
    sim, info = icp_refine(src, cloud, iterations=50, threshold=0.5)
    assert np.abs(sim - truth).max() < 1e-3 and info["score_after"] < 0.01 * info["score_before"]
    sim, info = icp_refine(cloud[::2], cloud[1::2], iterations=20, threshold=0.5)   # exact but resampled
    assert info["score_after"] <= info["score_before"]
