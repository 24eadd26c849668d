"""Training data of httm-train: batched rendering, scene/path variety, VGGT's normalisation, split."""

import numpy as np
import pytest
import torch

from httm_ros.synthetic.scene import SceneConfig, make_scene
from httm_ros.synthetic.sequence import intrinsics_from_fov
from httm_ros.synthetic.trajectory import KINDS, make_trajectory
from httm_ros.train.data import (TRAIN_SEED_BASE, ClipPool, heldout_specs, normalise_ground_truth,
                                 random_clip_spec, render_clip)


def test_render_batch_equals_per_frame_render():
    scene = make_scene(seed=3)
    poses = make_trajectory(scene, 5, "walk", 0.15, seed=1, shake=0.02)
    k = intrinsics_from_fov(56, 42, 70.0)
    images, depth = scene.render_batch(poses, k, 56, 42)
    for i, pose in enumerate(poses):
        img, d = scene.render(pose, k, 56, 42)
        np.testing.assert_array_equal(images[i].numpy(), img)
        np.testing.assert_allclose(depth[i].numpy(), d, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_every_path_kind_gives_valid_depth(kind):
    cfg = SceneConfig(room_size=(5.0, 4.0, 2.6), num_inner_boxes=8, num_outer_boxes=8, seed=5,
                      thin_box_prob=0.5, texture_scale=1.4, light_dir=(0.2, 0.1, 1.0), ambient=0.4, diffuse=0.6)
    scene = make_scene(cfg)
    poses = make_trajectory(scene, 6, kind, 0.08, seed=2, height=1.2, shake=0.03)
    assert scene.is_free(poses[:, :3, 3], margin=0.05).all()
    rot = poses[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    images, depth = scene.render_batch(poses, intrinsics_from_fov(56, 42, 80.0), 56, 42)
    assert torch.isfinite(depth).all() and (depth > 0.01).all()
    assert images.float().std() > 5                                        # textured, not flat


def test_random_specs_vary_and_render():
    specs = [random_clip_spec(np.random.default_rng([0, i]), TRAIN_SEED_BASE + i) for i in range(12)]
    assert len({s.kind for s in specs}) >= 3 and len({s.scene.room_size for s in specs}) == 12
    clip = render_clip(specs[0], 4, (42, 56), "cpu")
    assert clip["images"].shape == (4, 42, 56, 3) and torch.isfinite(clip["depth"]).all()


def test_heldout_split_never_uses_training_seeds():
    specs = heldout_specs(8)
    assert [s.scene.seed for s in specs] == list(range(8))
    assert all(s.kind in ("orbit", "walk", "forward") for s in specs)
    assert heldout_specs(8) == specs                                          # deterministic


def test_normalised_ground_truth_is_first_frame_and_unit_mean_distance():
    pool = ClipPool((42, 56), "cpu", seed=1, size=1, reuse=10, clip_frames=6)
    gt = pool.batch(np.random.default_rng(0), 4, 2)
    assert gt["images"].shape == (2, 4, 3, 42, 56) and gt["pose_enc"].shape == (2, 4, 9)
    np.testing.assert_allclose(gt["extrinsics"][:, 0].numpy(), np.broadcast_to(np.eye(3, 4), (2, 3, 4)), atol=1e-5)
    dist = gt["points"].norm(dim=-1)[gt["valid"]].reshape(2, -1).mean(dim=1)
    np.testing.assert_allclose(dist.numpy(), 1.0, rtol=1e-4)
    # depth is the points' z in their own camera: frame 0's points are its camera's points
    np.testing.assert_allclose(gt["points"][:, 0, ..., 2].numpy(), gt["depth"][:, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_accelerator_paths_of_the_renderer_give_the_cpu_pixels():
    """All boxes at once (no pixel regions) and every texture on every point (no host sync): the
    paths render_batch takes on a GPU give exactly the CPU path's depth, surfaces and colours."""
    scene = make_scene(SceneConfig(num_inner_boxes=9, num_outer_boxes=10, seed=11, thin_box_prob=0.3))
    poses = make_trajectory(scene, 4, "orbit", 0.2, seed=3)
    k = intrinsics_from_fov(56, 42, 75.0)
    regions = scene.box_regions_union(poses, np.broadcast_to(k, (4, 3, 3)), 56, 42)
    pose = torch.as_tensor(poses, dtype=torch.float32)
    m = (pose[:, :3, :3] @ torch.as_tensor(np.linalg.inv(k), dtype=torch.float32))[:, None, None]
    u, v = torch.arange(56.0)[None, None, :, None], torch.arange(42.0)[None, :, None, None]
    dirs, origin = u * m[..., 0] + v * m[..., 1] + m[..., 2], pose[:, None, None, :3, 3]
    t_loop, sid_loop = scene.cast(origin, dirs, regions)
    t_all, sid_all = scene.cast(origin, dirs)
    assert torch.equal(t_loop, t_all) and torch.equal(sid_loop, sid_all)
    assert (sid_all >= 6).float().mean() > 0.1                              # boxes are in view
    obj = torch.where(sid_all < 6, sid_all, 6 + (sid_all - 6) // 6).reshape(-1)
    uv = torch.rand(obj.shape[0], 2) * 5
    assert torch.equal(scene._texture_rgb(uv, obj, grouped=True), scene._texture_rgb(uv, obj, grouped=False))


def test_union_of_box_regions_holds_every_per_view_region():
    scene = make_scene(SceneConfig(num_inner_boxes=8, num_outer_boxes=8, seed=4))
    poses = make_trajectory(scene, 6, "walk", 0.3, seed=1)
    k = intrinsics_from_fov(56, 42, 70.0)
    union = scene.box_regions_union(poses, np.broadcast_to(k, (6, 3, 3)), 56, 42)
    per_view = [scene.box_regions(p, k, 56, 42) for p in poses]
    for b, rect in enumerate(union):
        views = [r[b] for r in per_view if r[b] is not None]
        assert (rect is None) == (not views)
        if views:
            r0, r1, c0, c1 = zip(*views)
            assert rect == (min(r0), max(r1), min(c0), max(c1))


def test_pool_with_worker_processes_cuts_the_same_batches():
    """Scenes and paths built in worker processes: the same clips, so the same batches."""
    inline = ClipPool((42, 56), "cpu", seed=2, size=2, reuse=1, clip_frames=6)
    ahead = ClipPool((42, 56), "cpu", seed=2, size=2, reuse=1, clip_frames=6, workers=1)
    try:
        for step in range(3):                                                # reuse=1: new clips each step
            a, b = (p.batch(np.random.default_rng(step), 5, 2) for p in (inline, ahead))
            assert torch.equal(a["images"], b["images"]) and torch.equal(a["pose_enc"], b["pose_enc"])
        assert inline.clips_made == ahead.clips_made > 2
    finally:
        ahead.close()


def test_first_frame_patch_targets_follow_the_ground_truth_geometry():
    """A copy of frame 0 maps every patch to itself; a moved camera maps a patch to the first-frame
    patch under the reprojected centre pixel (checked by projecting the centre's 3-D point by hand)."""
    from httm_ros.train.data import render_clip, training_clip
    from httm_ros.train.losses import first_frame_patch_targets

    hw, patch = (56, 84), 14
    clip = render_clip(None, 4, hw, "cpu", prepared=training_clip(5, 3, 4, hw))
    idx = torch.tensor([0, 0, 2])
    gt = normalise_ground_truth(clip["depth"][idx][None], clip["cam_to_world"][idx][None],
                                clip["intrinsics"][idx][None], hw)
    target = first_frame_patch_targets(gt["points"], gt["intrinsics"], gt["valid"], patch)[0]   # [3, 24]
    assert target[0].tolist() == list(range(24))
    assert target[1].tolist() == list(range(24))
    moved = target[2]
    assert (moved >= 0).sum() >= 12 and moved.tolist() != list(range(24))
    k = gt["intrinsics"][0, 0]
    for n in torch.nonzero(moved >= 0).flatten().tolist():
        r, c = divmod(n, 6)
        x, y, z = gt["points"][0, 2, r * patch + 7, c * patch + 7].tolist()
        u, v = k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]
        assert moved[n] == int(v // patch) * 6 + int(u // patch)


def test_first_frame_displacements_land_in_the_matched_patch():
    """The displacement of a patch points from its centre to the first-frame projection of its
    centre point: zero for a copy of frame 0, and centre + displacement falls inside the patch that
    first_frame_patch_targets names for a moved camera; the loss is zero for the truth."""
    from httm_ros.train.data import render_clip, training_clip
    from httm_ros.train.losses import displacement_loss, first_frame_displacement_targets, first_frame_patch_targets

    hw, patch = (56, 84), 14
    clip = render_clip(None, 4, hw, "cpu", prepared=training_clip(5, 3, 4, hw))
    idx = torch.tensor([0, 0, 2])
    gt = normalise_ground_truth(clip["depth"][idx][None], clip["cam_to_world"][idx][None],
                                clip["intrinsics"][idx][None], hw)
    geometry = (gt["points"], gt["intrinsics"], gt["valid"], patch)
    disp, ok = first_frame_displacement_targets(*geometry)                   # [1,3,24,2], [1,3,24]
    index = first_frame_patch_targets(*geometry)
    assert torch.equal(ok, index >= 0)
    assert disp[0, :2][ok[0, :2]].abs().max() < 1e-4
    moved = torch.nonzero(ok[0, 2]).flatten()
    assert len(moved) >= 12 and disp[0, 2, moved].abs().max() > 0.3
    for n in moved.tolist():
        r, c = divmod(n, 6)
        x, y = c + 0.5 + disp[0, 2, n, 0].item(), r + 0.5 + disp[0, 2, n, 1].item()
        assert index[0, 2, n] == int(y) * 6 + int(x)
    assert displacement_loss(disp, disp, ok) == 0.0
    assert displacement_loss(torch.zeros_like(disp), disp, ok) > 0.1
    assert displacement_loss(disp, disp, torch.zeros_like(ok)) == 0.0


def test_correspondence_loss_rewards_matching_tokens():
    from httm_ros.train.losses import correspondence_loss

    torch.manual_seed(0)
    first = torch.randn(1, 1, 24, 16)
    perm = torch.randperm(24)
    target = torch.stack((torch.arange(24), perm))[None]                   # frame 1 patch n sees perm[n]
    matching = torch.cat((first, first[:, :, perm]), dim=1)                 # [1,2,24,16]
    random = torch.cat((first, torch.randn(1, 1, 24, 16)), dim=1)
    assert correspondence_loss(matching, target) < 0.1 < correspondence_loss(random, target)
    none = torch.full_like(target, -1)
    assert correspondence_loss(random, none) == 0.0


def test_training_frames_agree_with_their_ground_truth_poses():
    """Frame 0's pixels moved into later frames with the ground-truth depth, intrinsics and poses
    land on the same colours (the images and the camera targets describe one geometry); without
    the motion they do not."""
    from httm_ros.train.data import render_clip, training_clip

    hw = (126, 168)
    clip = render_clip(None, 8, hw, "cpu", prepared=training_clip(5, 3, 8, hw))
    images, depth, k, c2w = clip["images"].float(), clip["depth"], clip["intrinsics"][0], clip["cam_to_world"]
    v, u = torch.meshgrid(torch.arange(hw[0]), torch.arange(hw[1]), indexing="ij")
    ok = torch.isfinite(depth[0]) & (depth[0] > 0)
    z = depth[0][ok]
    pts = torch.stack(((u[ok] - k[0, 2]) / k[0, 0] * z, (v[ok] - k[1, 2]) / k[1, 1] * z, z, torch.ones_like(z)))
    for j in (1, 3, 7):
        cam = torch.linalg.inv(c2w[j]) @ c2w[0] @ pts                              # [4, N] in camera j
        uj, vj = k[0, 0] * cam[0] / cam[2] + k[0, 2], k[1, 1] * cam[1] / cam[2] + k[1, 2]
        inside = (cam[2] > 0) & (uj >= 0) & (uj <= hw[1] - 1) & (vj >= 0) & (vj <= hw[0] - 1)
        assert inside.sum() > 0.3 * ok.sum()
        src = images[0][ok][inside]
        warped = (src - images[j][vj[inside].round().long(), uj[inside].round().long()]).abs().mean()
        unwarped = (src - images[j][ok][inside]).abs().mean()
        assert warped < 0.2 * unwarped, (j, float(warped), float(unwarped))
