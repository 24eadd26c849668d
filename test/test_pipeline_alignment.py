"""Similarity alignment: exact recovery, robustness, and checked rejections with reasons."""

import math

import numpy as np
import pytest
import torch

from httm_ros.geometry import transform_cam_to_world, unproject_depth
from httm_ros.pipeline import AlignConfig, FrameGeometry, align_overlap, robust_similarity, weighted_umeyama
from httm_ros.synthetic import demo_sequence


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q * np.linalg.det(q)


@pytest.fixture(scope="module")
def seq():
    return demo_sequence(num_frames=6, width=84, height=70, seed=4, speed=0.05)


def world_geometry(seq, frames):
    f = list(frames)
    return FrameGeometry(torch.as_tensor(seq.cam_to_world[f]), torch.as_tensor(seq.intrinsics[f]),
                         torch.as_tensor(seq.depth[f]), torch.full(seq.depth[f].shape, 5.0))


def moved(geom, scale, rot, trans):
    """The same frames expressed in a frame where x_local = (R^T (x_w - t)) / s."""
    rot_t = torch.as_tensor(rot)
    inv_rot = rot_t.T
    inv_t = -(inv_rot @ torch.as_tensor(trans)) / scale
    return FrameGeometry(transform_cam_to_world(geom.cam_to_world, 1.0 / scale, inv_rot, inv_t),
                         geom.intrinsics, geom.depth / scale, geom.conf.clone())


def test_weighted_umeyama_exact():
    rng = np.random.default_rng(0)
    src = torch.as_tensor(rng.normal(size=(500, 3)))
    R, s, t = random_rotation(rng), 2.7, rng.normal(size=3)
    dst = s * src @ torch.as_tensor(R).T + torch.as_tensor(t)
    scale, rot, trans = weighted_umeyama(src, dst, torch.as_tensor(rng.uniform(0.1, 1, 500)))
    assert float(scale) == pytest.approx(s, rel=1e-10)
    np.testing.assert_allclose(rot.numpy(), R, atol=1e-10)
    np.testing.assert_allclose(trans.numpy(), t, atol=1e-10)


def test_irls_ignores_gross_outliers():
    rng = np.random.default_rng(1)
    src = torch.as_tensor(rng.normal(size=(4000, 3)))
    R, s, t = random_rotation(rng), 0.4, rng.normal(size=3)
    dst = s * src @ torch.as_tensor(R).T + torch.as_tensor(t) + 0.001 * torch.as_tensor(rng.normal(size=(4000, 3)))
    bad = rng.uniform(size=4000) < 0.3                                         # 30 % garbage
    dst[bad] = torch.as_tensor(rng.normal(scale=3.0, size=(int(bad.sum()), 3)))
    scale, rot, trans, res, iters = robust_similarity(src, dst, torch.ones(4000, dtype=torch.float64), 20)
    assert float(scale) == pytest.approx(s, rel=2e-3)
    assert np.degrees(np.arccos((np.trace(rot.numpy().T @ R) - 1) / 2)) < 0.2
    assert iters >= 2


def test_align_overlap_recovers_similarity(seq):
    anchor = world_geometry(seq, [1, 2, 3])
    rng = np.random.default_rng(2)
    R, s, t = random_rotation(rng), 1.9, rng.normal(size=3)
    local = moved(anchor, s, R, t)
    rep = align_overlap(local, anchor, AlignConfig())
    assert rep.accepted, rep.reason
    assert rep.scale == pytest.approx(s, rel=1e-6)
    np.testing.assert_allclose(rep.rotation, R, atol=1e-6)
    np.testing.assert_allclose(rep.translation, t, atol=1e-5)
    assert rep.inlier_fraction > 0.999 and rep.residual_rel < 1e-6
    assert rep.rotation_error_deg < 1e-3 and rep.center_error_rel < 1e-6
    assert rep.num_frames == 3 and rep.num_points >= AlignConfig().min_points


def test_too_little_overlap_is_rejected(seq):
    anchor = world_geometry(seq, [2])
    rep = align_overlap(moved(anchor, 1.0, np.eye(3), np.zeros(3)), anchor, AlignConfig(min_overlap_frames=2))
    assert not rep.accepted and "too little overlap" in rep.reason and "1 keyframe" in rep.reason
    # Two frames, but almost nothing confident in common.
    anchor = world_geometry(seq, [2, 3])
    local = moved(anchor, 1.0, np.eye(3), np.zeros(3))
    local.conf[:] = 1.0                                                        # VGGT's floor: weight 0
    local.conf[:, :5, :5] = 4.0
    rep = align_overlap(local, anchor, AlignConfig())
    assert not rep.accepted and "valid correspondences" in rep.reason and rep.num_points < 500


def test_corrupted_window_is_rejected_with_numbers(seq):
    anchor = world_geometry(seq, [1, 2, 3])
    local = moved(anchor, 1.3, np.eye(3), np.zeros(3))
    rng = np.random.default_rng(3)
    local.depth = torch.as_tensor(rng.uniform(0.5, 4.0, tuple(local.depth.shape)))
    rep = align_overlap(local, anchor, AlignConfig())
    assert not rep.accepted
    assert "inconsistent" in rep.reason or "disagree" in rep.reason
    assert rep.inlier_fraction < 0.5 and math.isfinite(rep.residual)


def test_wrong_cameras_are_rejected(seq):
    """Consistent points but overlap cameras far from their world poses -> rejected."""
    anchor = world_geometry(seq, [1, 2, 3])
    local = moved(anchor, 1.0, np.eye(3), np.zeros(3))
    bad = local.cam_to_world.clone()
    bad[1, :3, 3] += 2.0                                                       # camera moved, depth unchanged
    local = FrameGeometry(bad, local.intrinsics, local.depth, local.conf)
    rep = align_overlap(local, anchor, AlignConfig())
    assert not rep.accepted and "overlap cameras disagree" in rep.reason, rep.reason
    assert rep.center_error_rel > AlignConfig().max_center_error


def test_collinear_points_are_degenerate():
    n = 2000
    line = torch.linspace(1, 3, n, dtype=torch.float64)
    # One row of pixels with a huge focal length: all points on (almost) the optical axis.
    depth = line.reshape(1, 1, n)
    K = torch.tensor([[[1e9, 0, n / 2], [0, 1.0, 0.0], [0, 0, 1]]], dtype=torch.float64)
    geom = FrameGeometry(torch.eye(4, dtype=torch.float64)[None], K, depth, torch.full((1, 1, n), 3.0))
    rep = align_overlap(geom, geom, AlignConfig(min_overlap_frames=1))
    assert not rep.accepted and "degenerate" in rep.reason


def test_report_as_dict_is_json_friendly(seq):
    import json

    anchor = world_geometry(seq, [1, 2])
    rep = align_overlap(moved(anchor, 1.0, np.eye(3), np.zeros(3)), anchor)
    d = json.loads(json.dumps(rep.as_dict()))
    assert d["accepted"] and len(d["rotation"]) == 3
    np.testing.assert_allclose(rep.matrix(), np.eye(4), atol=1e-6)


def test_unproject_stride_matches_full_resolution(seq):
    d, T, K = (torch.as_tensor(seq.depth[:2]).double(), torch.as_tensor(seq.cam_to_world[:2]),
               torch.as_tensor(seq.intrinsics[:2]))
    full = unproject_depth(d, T, K)
    np.testing.assert_allclose(unproject_depth(d, T, K, stride=3).numpy(), full[:, ::3, ::3].numpy(), atol=1e-9)
