"""Synthetic renderer: determinism, exact ground truth, conventions, trajectories, disk round trip."""

import numpy as np
import pytest
import torch

from httm_ros.io.images import load_image_folder
from httm_ros.synthetic import (SceneConfig, Sequence, demo_sequence, intrinsics_from_fov, make_scene,
                                make_trajectory, render_sequence)

W, H = 70, 56


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


@pytest.fixture(scope="module")
def seq():
    return demo_sequence(num_frames=12, width=W, height=H, seed=3, speed=0.05)


def test_shapes_dtypes_and_timestamps(seq):
    assert seq.images.shape == (12, H, W, 3) and seq.images.dtype == np.uint8
    assert seq.depth.shape == (12, H, W) and seq.depth.dtype == np.float32
    assert seq.intrinsics.shape == (12, 3, 3) and seq.intrinsics.dtype == np.float32
    assert seq.cam_to_world.shape == (12, 4, 4)
    np.testing.assert_allclose(np.diff(seq.timestamps), 1 / 30)
    assert np.isfinite(seq.depth).all() and seq.depth.min() > 0.1
    K = seq.intrinsics[0]
    assert K[0, 2] == W / 2 and K[1, 2] == H / 2 and K[0, 0] == K[1, 1]


def test_deterministic_and_seed_dependent():
    a = demo_sequence(num_frames=3, width=W, height=H, seed=5)
    b = demo_sequence(num_frames=3, width=W, height=H, seed=5)
    c = demo_sequence(num_frames=3, width=W, height=H, seed=6)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.depth, b.depth)
    assert not np.array_equal(a.images, c.images)


def test_batched_rendering_gives_the_per_view_frames(seq):
    """The accelerator path (render_batch, batch views per pass, a short last batch) gives the
    frames of the one-view-at-a-time path."""
    b = demo_sequence(num_frames=12, width=W, height=H, seed=3, speed=0.05, batch=5)
    assert np.array_equal(b.images, seq.images)
    np.testing.assert_allclose(b.depth, seq.depth, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(b.cam_to_world, seq.cam_to_world)


def test_images_are_colourful_and_textured(seq):
    img = seq.images.reshape(-1, 3)
    assert len(np.unique(img // 16, axis=0)) > 80            # many distinct colours
    grey = seq.images.mean(-1)
    assert np.abs(np.diff(grey, axis=2)).mean() > 4.0       # plenty of texture (gradients)


def test_poses_are_rigid_and_upright(seq):
    R = seq.cam_to_world[:, :3, :3]
    np.testing.assert_allclose(R.transpose(0, 2, 1) @ R, np.tile(np.eye(3), (12, 1, 1)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    assert (R[:, 2, 1] < 0).all()                            # camera y (down) points against world z (up)
    assert np.allclose(seq.cam_to_world[:, 3], [0, 0, 0, 1])


def test_depth_unprojects_onto_surfaces_exactly(seq):
    """Every pixel's ground-truth point lies on a scene surface (ray casting == distance function)."""
    pts = np.concatenate([seq.world_points(k).reshape(-1, 3) for k in range(0, 12, 3)])
    d = seq.scene.distance_to_surface(pts)
    assert np.percentile(d, 99.9) < 1e-4 and d.max() < 1e-3


def test_multiview_depth_is_consistent(seq):
    """Points of frame 0 reproject into frame 4 with matching depth where they are visible."""
    p = seq.world_points(0).reshape(-1, 3).astype(np.float64)
    w2c = np.linalg.inv(seq.cam_to_world[4])
    cam = p @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ seq.intrinsics[4].astype(np.float64).T
    u, v = np.round(uv[:, 0] / uv[:, 2]).astype(int), np.round(uv[:, 1] / uv[:, 2]).astype(int)
    inside = (cam[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    rel = np.abs(seq.depth[4][v[inside], u[inside]] - cam[inside, 2]) / cam[inside, 2]
    assert inside.mean() > 0.5                               # strong overlap at this speed
    assert np.mean(rel < 0.05) > 0.85                        # the rest: occlusions and edges


def test_fast_culled_cast_matches_brute_force():
    scene = make_scene(seed=1)
    K = intrinsics_from_fov(96, 72)
    for pose in make_trajectory(scene, 6, "random", seed=1):
        p = torch.tensor(pose, dtype=torch.float32)
        m = p[:3, :3] @ torch.tensor(np.linalg.inv(K), dtype=torch.float32)
        u = torch.arange(96.0)[None, :, None]
        v = torch.arange(72.0)[:, None, None]
        dirs = u * m[:, 0] + v * m[:, 1] + m[:, 2]
        t1, s1 = scene.cast(p[:3, 3], dirs, None)
        t2, s2 = scene.cast(p[:3, 3], dirs, scene.box_regions(pose, K, 96, 72))
        assert torch.equal(s1, s2) and torch.equal(t1, t2)


def test_distance_to_surface_known_values():
    scene = make_scene(SceneConfig(room_size=(8.0, 6.0, 3.0), num_inner_boxes=0, num_outer_boxes=0))
    pts = np.array([[0.0, 0.0, 1.0], [3.5, 0.0, 1.5], [0.0, 0.0, 2.9], [9.0, 0.0, 1.5]])
    np.testing.assert_allclose(scene.distance_to_surface(pts), [1.0, 0.5, 0.1, 5.0], atol=1e-12)
    scene = make_scene(seed=0)
    lo, hi = scene.boxes[0]
    centre = (lo + hi) / 2
    assert scene.distance_to_surface(centre[None])[0] == pytest.approx(min((hi - lo) / 2))


def test_sample_surface(seq):
    pts, nrm = seq.scene.sample_surface(5000, seed=0)
    assert pts.shape == (5000, 3) and nrm.shape == (5000, 3)
    assert seq.scene.distance_to_surface(pts).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0)
    assert seq.scene.is_free(pts + 0.01 * nrm).all()         # visible side, not hidden under boxes
    obs = seq.sample_observed_points(2000)
    assert seq.scene.distance_to_surface(obs).max() < 1e-3


@pytest.mark.parametrize("kind", ["orbit", "walk", "random"])
def test_trajectories_stay_clear_and_keep_speed(kind):
    scene = make_scene(seed=2)
    poses = make_trajectory(scene, 60, kind, speed=0.05, seed=2)
    assert scene.is_free(poses[:, :3, 3], margin=0.2).all()
    if kind != "random":
        steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
        np.testing.assert_allclose(steps, 0.05, rtol=0.02)
    with pytest.raises(ValueError, match="trajectory kind"):
        make_trajectory(scene, 5, "teleport")


def test_invalid_config_values():
    with pytest.raises(ValueError, match="num_inner_boxes"):
        SceneConfig(num_inner_boxes=-1)
    with pytest.raises(ValueError, match="box_size_range"):
        SceneConfig(box_size_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="hfov_deg"):
        render_sequence(make_scene(seed=0), 2, W, H, hfov_deg=200)


def test_save_load_round_trip(seq, tmp_path):
    folder = seq.save(tmp_path / "seq")
    names = sorted(p.name for p in (folder / "images").iterdir())
    assert names[0] == "000000.png" and len(names) == 12
    back = Sequence.load(folder)
    assert np.array_equal(back.images, seq.images)
    np.testing.assert_allclose(back.cam_to_world, seq.cam_to_world, atol=1e-6)
    np.testing.assert_allclose(back.intrinsics, seq.intrinsics, atol=1e-5)
    np.testing.assert_allclose(back.depth, seq.depth, atol=6e-4)
    np.testing.assert_allclose(back.timestamps, seq.timestamps, atol=1e-6)
    np.testing.assert_array_equal(back.scene.boxes, seq.scene.boxes)
    assert np.array_equal(load_image_folder(folder), seq.images)          # enters images/


def test_load_image_folder_errors(tmp_path):
    from PIL import Image
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="image sizes differ"):
        load_image_folder(tmp_path)
