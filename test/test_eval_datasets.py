"""Dataset readers of httm-eval on tiny fixture folders written in each real layout."""

import math

import numpy as np
import pytest
from PIL import Image

from httm_ros.eval.datasets import DatasetError, associate, detect_layout, open_dataset
from httm_ros.eval.reference import load_reference
from httm_ros.geometry import rotmat_to_quat
from httm_ros.io.ply import read_ply, save_ply
from httm_ros.synthetic import demo_sequence

W, H = 32, 24


@pytest.fixture(scope="module")
def seq():
    """4 rendered frames (32x24) with exact depth and poses: the content of every fixture."""
    return demo_sequence(num_frames=4, width=W, height=H, seed=3, speed=0.1)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _depth_u16(depth_m, scale):
    return np.clip(np.round(depth_m * scale), 0, 65535).astype(np.uint16)


def write_7scenes(root, seq):
    folder = root / "chess" / "seq-01"
    for k in range(len(seq)):
        stem = folder / f"frame-{k:06d}"
        _png(stem.with_name(stem.name + ".color.png"), seq.images[k])
        d = _depth_u16(seq.depth[k], 1000)
        d[0, 0], d[0, 1] = 65535, 0                                  # the two invalid codes
        _png(stem.with_name(stem.name + ".depth.png"), d)
        np.savetxt(stem.with_name(stem.name + ".pose.txt"), seq.cam_to_world[k])
    return folder


def write_nrgbd(root, seq, nan_frame=2):
    folder = root / "breakfast_room"
    lines = []
    for k in range(len(seq)):
        _png(folder / "images" / f"img{k}.png", seq.images[k])
        _png(folder / "depth" / f"depth{k}.png", _depth_u16(seq.depth[k], 1000))
        pose = seq.cam_to_world[k].copy()
        pose[:3, 1:3] *= -1                                          # OpenCV -> OpenGL camera axes
        rows = [" ".join("nan" if k == nan_frame else f"{v:.9f}" for v in r) for r in pose]
        lines += rows
    (folder / "poses.txt").write_text("\n".join(lines) + "\n")
    (folder / "focal.txt").write_text(f"{seq.intrinsics[0, 0, 0]:.9f}\n")
    (folder / "gt_mesh.ply").write_text("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                                        "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
                                        "end_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    return folder


def write_tum(root, seq):
    folder = root / "rgbd_dataset_freiburg1_xyz"
    rgb, dep, gt = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
    for k in range(len(seq)):
        t = 100.0 + k / 30.0
        _png(folder / "rgb" / f"{t:.6f}.png", seq.images[k])
        dt = 0.05 if k == 3 else 0.01                                # frame 3's depth is too far in time
        _png(folder / "depth" / f"{t + dt:.6f}.png", _depth_u16(seq.depth[k], 5000))
        rgb.append(f"{t:.6f} rgb/{t:.6f}.png")
        dep.append(f"{t + dt:.6f} depth/{t + dt:.6f}.png")
        q = rotmat_to_quat(seq.cam_to_world[k, :3, :3])
        gt.append(f"{t - 0.004:.4f} " + " ".join(f"{v:.9f}" for v in [*seq.cam_to_world[k, :3, 3], *q]))
        gt.append(f"{t + 0.015:.4f} 9 9 9 0 0 0 1")                  # a farther sample must not be picked
    for name, lines in (("rgb.txt", rgb), ("depth.txt", dep), ("groundtruth.txt", gt)):
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def write_folder(root, seq):
    folder = seq.save(root / "mine")
    save_ply(folder / "gt.ply", seq.world_points(0).reshape(-1, 3))
    return folder


def _check_geometry(index, seq, ids, depth_tol):
    loaded = index.load()
    np.testing.assert_allclose(loaded.cam_to_world, seq.cam_to_world[ids], atol=1e-6)
    np.testing.assert_array_equal(loaded.images, seq.images[ids])
    valid = loaded.depth > 0
    np.testing.assert_allclose(loaded.depth[valid], seq.depth[ids][valid], atol=depth_tol)
    return loaded


def test_7scenes(tmp_path, seq):
    folder = write_7scenes(tmp_path, seq)
    assert detect_layout(folder) == "7scenes"
    index = open_dataset(folder)
    assert (index.layout, len(index), index.name) == ("7scenes", 4, "7scenes/chess/seq-01")
    loaded = _check_geometry(index, seq, np.arange(4), 0.0005 + 1e-6)
    assert loaded.depth[0, 0, 0] == 0 and loaded.depth[0, 0, 1] == 0          # 65535 and 0 are invalid
    K = index.intrinsics[0]                                     # 585 / 320 / 240 at 640x480, scaled to 32x24
    assert K[0, 0] == pytest.approx(585 * W / 640) and K[1, 1] == pytest.approx(585 * H / 480)
    assert K[0, 2] == pytest.approx(320.5 * W / 640 - 0.5) and K[1, 2] == pytest.approx(240.5 * H / 480 - 0.5)
    assert index.timestamps[1] == pytest.approx(1 / 30)
    with pytest.raises(DatasetError, match="seq-01"):                     # the scene folder, not a sequence
        open_dataset(folder.parent)


def test_nrgbd_converts_opengl_poses_and_drops_nan_frames(tmp_path, seq):
    folder = write_nrgbd(tmp_path, seq)
    assert detect_layout(folder) == "nrgbd"
    index = open_dataset(folder)
    assert len(index) == 3 and [p.name for p in index.rgb] == ["img0.png", "img1.png", "img3.png"]
    assert any("non-finite" in n for n in index.notes)
    _check_geometry(index, seq, np.array([0, 1, 3]), 0.0005 + 1e-6)
    K = index.intrinsics[0]
    assert K[0, 0] == K[1, 1] == pytest.approx(seq.intrinsics[0, 0, 0]) and (K[0, 2], K[1, 2]) == (W / 2, H / 2)
    assert index.gt_file.name == "gt_mesh.ply"
    pts, desc = load_reference(index.gt_file, samples=500)
    assert pts.shape == (500, 3) and np.all((pts[:, :2] >= 0) & (pts[:, :2] <= 1)) and np.all(pts[:, 2] == 0)
    assert "2 triangles" in desc                                          # the quad was fan-triangulated


def test_tum_associates_by_nearest_stamp(tmp_path, seq):
    folder = write_tum(tmp_path, seq)
    assert detect_layout(folder) == "tum"
    index = open_dataset(folder)
    assert len(index) == 3 and index.depth_scale == 5000.0                # frame 3's depth is 0.05 s off
    _check_geometry(index, seq, np.arange(3), 0.5 / 5000 + 1e-6)
    assert index.intrinsics[0, 0, 0] == pytest.approx(517.3)              # freiburg1 from the folder name
    index = open_dataset(folder).with_intrinsics(10, 11, 12, 13)
    assert index.intrinsics[2, 1, 1] == 11 and index.intrinsics[2, 0, 2] == 12


def test_associate_respects_max_dt():
    ref = np.array([0.0, 1.0, 2.0])
    assert associate(np.array([0.01, 0.985, 1.5, 2.019, 5.0]), ref, 0.02).tolist() == [0, 1, -1, 2, -1]


def test_generic_folder_is_what_sequence_save_writes(tmp_path, seq):
    folder = write_folder(tmp_path, seq)
    assert detect_layout(folder) == "folder"
    index = open_dataset(folder)
    assert len(index) == 4 and index.gt_file.name == "gt.ply"
    loaded = _check_geometry(index, seq, np.arange(4), 0.0005 + 1e-6)
    np.testing.assert_allclose(loaded.intrinsics, seq.intrinsics, rtol=1e-6)
    np.testing.assert_allclose(index.timestamps, seq.timestamps, atol=1e-6)
    pts, desc = load_reference(index.gt_file)
    assert pts.shape == (W * H, 3) and desc.startswith("cloud")
    sub = index.load(index.select(stride=2))
    assert len(sub) == 2 and sub.info["frames"] == [0, 2]


def test_folder_without_intrinsics_needs_them_for_depth(tmp_path, seq):
    folder = write_folder(tmp_path, seq)
    (folder / "intrinsics.txt").unlink()
    with pytest.raises(DatasetError, match="intrinsics"):
        open_dataset(folder).load([0])
    assert open_dataset(folder).with_intrinsics(20, 20, 16, 12).load([0]).depth.max() > 0


def test_unknown_folder_is_one_clear_error(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DatasetError, match="7-Scenes"):
        open_dataset(tmp_path)


def test_binary_ply_mesh(tmp_path):
    verts = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0]], dtype="<f4")
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
              "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    face = np.zeros(1, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, [0, 1, 2]
    path = tmp_path / "m.ply"
    path.write_bytes(header.encode() + verts.tobytes() + face.tobytes())
    v, f = read_ply(path)
    assert v.shape == (3, 3) and f.tolist() == [[0, 1, 2]]
    pts, _ = load_reference(path, samples=2000)
    assert np.all(pts.sum(1) <= 2 + 1e-9) and pts[:, 0].mean() == pytest.approx(2 / 3, abs=0.05)
    assert math.isclose(float(np.abs(pts[:, 2]).max()), 0.0)
