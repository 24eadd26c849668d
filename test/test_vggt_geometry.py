"""Pose encoding, rigid inverses, depth unprojection, and preprocessing sizes."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from httm_ros.geometry import (depth_to_camera_points, invert_rigid, quaternion_to_rotation, rotation_to_quaternion,
                               unproject_depth)
from httm_ros.vggt.pose_encoding import extrinsics_intrinsics_to_pose_encoding, pose_encoding_to_extrinsics_intrinsics
from httm_ros.vggt.preprocess import model_input_size, preprocess_images


def _random_pose_enc(*lead, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*lead, 3, generator=g, dtype=torch.float64)
    q = torch.randn(*lead, 4, generator=g, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., 3:] < 0, -q, q)
    fov = 0.4 + 1.2 * torch.rand(*lead, 2, generator=g, dtype=torch.float64)
    return torch.cat((t, q, fov), dim=-1)


def test_pose_encoding_round_trip():
    enc = _random_pose_enc(2, 5)
    ext, intr = pose_encoding_to_extrinsics_intrinsics(enc, (392, 518))
    assert ext.shape == (2, 5, 3, 4) and intr.shape == (2, 5, 3, 3)
    rot = ext[..., :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3, dtype=enc.dtype).expand_as(rot))
    torch.testing.assert_close(torch.det(rot), torch.ones(2, 5, dtype=enc.dtype))
    assert torch.allclose(intr[..., 0, 2], torch.tensor(259.0, dtype=enc.dtype))
    assert torch.allclose(intr[..., 1, 2], torch.tensor(196.0, dtype=enc.dtype))
    torch.testing.assert_close(intr[..., 1, 1], 196.0 / torch.tan(enc[..., 7] / 2))
    torch.testing.assert_close(intr[..., 0, 0], 259.0 / torch.tan(enc[..., 8] / 2))
    back = extrinsics_intrinsics_to_pose_encoding(ext, intr, (392, 518))
    torch.testing.assert_close(back, enc)


def test_quaternion_conversion_edge_cases():
    # identity and 180-degree turns about each axis (w = 0) exercise every branch
    quats = torch.tensor([[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                          [0.5, 0.5, 0.5, 0.5], [0, 0, math.sin(0.3), math.cos(0.3)]], dtype=torch.float64)
    back = rotation_to_quaternion(quaternion_to_rotation(quats))
    torch.testing.assert_close(back, quats)
    # rotation by +90 deg about z maps x to y (right-handed)
    rz = quaternion_to_rotation(torch.tensor([0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)]))
    torch.testing.assert_close(rz @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6, rtol=0)


def test_invert_rigid():
    ext, _ = pose_encoding_to_extrinsics_intrinsics(_random_pose_enc(4), (10, 10))
    inv = invert_rigid(ext)
    assert inv.shape == (4, 4, 4)
    full = torch.cat((ext, torch.tensor([0, 0, 0, 1.0], dtype=ext.dtype).expand(4, 1, 4)), dim=1)
    torch.testing.assert_close(inv @ full, torch.eye(4, dtype=ext.dtype).expand(4, 4, 4))
    torch.testing.assert_close(invert_rigid(full), inv)
    with pytest.raises(ValueError):
        invert_rigid(torch.eye(3))


def test_unproject_depth_matches_loop():
    enc = _random_pose_enc(2, 3, seed=1)
    h, w = 4, 6
    ext, intr = pose_encoding_to_extrinsics_intrinsics(enc, (h, w))
    depth = 0.5 + torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pts = unproject_depth(depth, invert_rigid(ext), intr)
    cam = depth_to_camera_points(depth, intr)
    assert pts.shape == (2, 3, h, w, 3) and cam.shape == (2, 3, h, w, 3)
    for b in range(2):
        for s in range(3):
            k = intr[b, s].numpy()
            full = np.vstack([ext[b, s].numpy(), [0, 0, 0, 1]])
            world_from_cam = np.linalg.inv(full)
            for v in range(h):
                for u in range(w):
                    d = depth[b, s, v, u].item()
                    p_cam = np.array([(u - k[0, 2]) * d / k[0, 0], (v - k[1, 2]) * d / k[1, 1], d, 1.0])
                    np.testing.assert_allclose(cam[b, s, v, u].numpy(), p_cam[:3], rtol=1e-12)
                    np.testing.assert_allclose(pts[b, s, v, u].numpy(), (world_from_cam @ p_cam)[:3], rtol=1e-9)


def test_first_camera_at_origin_reprojects():
    # identity extrinsics: world points equal camera points and project back to their pixels
    h, w = 5, 7
    enc = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1.0, 1.2], dtype=torch.float64)
    ext, intr = pose_encoding_to_extrinsics_intrinsics(enc, (h, w))
    depth = torch.full((h, w), 2.0, dtype=torch.float64)
    pts = unproject_depth(depth, invert_rigid(ext), intr)
    pix = (intr @ pts[..., None]).squeeze(-1)
    pix = pix[..., :2] / pix[..., 2:]
    vv, uu = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    torch.testing.assert_close(pix, torch.stack((uu, vv), -1).to(pix.dtype))


@pytest.mark.parametrize("hw,mode,expected", [
    ((480, 640), "crop", (392, 518)),
    ((1080, 1920), "crop", (294, 518)),
    ((640, 480), "crop", (518, 518)),     # portrait: 518 x 690 centre-cropped
    ((518, 518), "crop", (518, 518)),
    ((480, 640), "pad", (518, 518)),
    ((640, 480), "pad", (518, 518)),
])
def test_model_input_size(hw, mode, expected):
    assert model_input_size(*hw, mode=mode) == expected


def test_preprocess_crop_and_pad():
    rng = np.random.default_rng(0)
    land = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = preprocess_images([land, Image.fromarray(land)], mode="crop")
    assert out.dtype == torch.float32 and out.shape == (2, 3, 392, 518)
    assert torch.equal(out[0], out[1]) and 0 <= out.min() and out.max() <= 1
    ref = np.asarray(Image.fromarray(land).resize((518, 392), Image.Resampling.BICUBIC), np.float32) / 255
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), ref)

    padded = preprocess_images([land], mode="pad")
    assert padded.shape == (1, 3, 518, 518)
    assert (padded[0, :, :63] == 1).all() and (padded[0, :, -63:] == 1).all()  # (518 - 392) / 2 rows
    np.testing.assert_array_equal(padded[0, :, 63:-63].permute(1, 2, 0).numpy(), ref)

    tall = np.zeros((700, 500, 3), np.uint8)
    tall[:, :, 1] = 255
    cropped = preprocess_images([tall], mode="crop")
    assert cropped.shape == (1, 3, 518, 518)                                  # 518 x 728 centre-cropped
    assert torch.allclose(cropped[0, 1], torch.ones(518, 518))


def test_preprocess_mixed_sizes_padded_white():
    a = np.zeros((480, 640, 3), np.uint8)
    b = np.zeros((300, 640, 3), np.uint8)
    out = preprocess_images([a, b], mode="crop")
    assert out.shape == (2, 3, 392, 518)
    # 300x640 -> 238x518, padded with 77 white rows above and below
    assert (out[1, :, :77] == 1).all() and (out[1, :, -77:] == 1).all()
    assert (out[1, :, 77:-77] == 0).all() and (out[0] == 0).all()


def test_preprocess_errors():
    with pytest.raises(ValueError, match="at least one"):
        preprocess_images([])
    with pytest.raises(ValueError, match="mode"):
        preprocess_images([np.zeros((10, 10, 3), np.uint8)], mode="stretch")
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images([np.zeros((10, 10, 3), np.float32)])
