"""Global voxel map: merging, bounded memory over many windows, PLY and TUM export."""

import numpy as np
import pytest
import torch

from httm_ros.io.ply import load_ply, save_ply
from httm_ros.io.tum import load_tum
from httm_ros.pipeline import GlobalMap, MapConfig, Trajectory


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.py)."""


def test_voxel_merging_averages_points_and_colours():
    m = GlobalMap(MapConfig(voxel_size=1.0))
    xyz = torch.tensor([[0.1, 0.1, 0.1], [0.3, 0.5, 0.9], [1.5, 0.5, 0.5]])
    rgb = torch.tensor([[0, 0, 0], [100, 200, 50], [7, 7, 7]], dtype=torch.uint8)
    m.insert(xyz, rgb, stamp=0)
    m.insert(torch.tensor([[0.2, 0.3, 0.2]]), torch.tensor([[50, 100, 25]], dtype=torch.uint8), stamp=1)
    pts, col = m.points()
    assert len(m) == 2 and pts.dtype == np.float32 and col.dtype == np.uint8
    first = np.argmin(pts[:, 0])
    np.testing.assert_allclose(pts[first], [0.2, 0.3, 0.4], atol=1e-6)
    np.testing.assert_array_equal(col[first], [50, 100, 25])
    assert sorted(m.counts().tolist()) == [1.0, 3.0]


def test_non_finite_and_out_of_range_points_are_dropped():
    m = GlobalMap(MapConfig(voxel_size=1e-6))
    m.insert(torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 0, 0], [1e3, 0, 0]]), torch.zeros(3, 3, dtype=torch.uint8))
    assert len(m) == 1 and m.dropped_out_of_range == 1


def test_voxel_size_must_be_known():
    m = GlobalMap(MapConfig())
    with pytest.raises(RuntimeError, match="voxel size"):
        m.insert(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.uint8))
    m.set_voxel_size(0.1)
    m.insert(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="not empty"):
        m.set_voxel_size(0.2)


@pytest.mark.parametrize("policy", ["coarsen", "evict_oldest"])
def test_memory_stays_bounded_over_1000_windows(policy):
    cap = 3000
    m = GlobalMap(MapConfig(voxel_size=0.01, max_points=cap, overflow=policy))
    rng = np.random.default_rng(0)
    bound = cap * 40                                     # 40 bytes per voxel (see GlobalMap)
    peak = 0
    for w in range(1000):
        centre = rng.uniform(-50, 50, 3)                 # the "robot" wanders over a large area
        xyz = torch.as_tensor(centre + rng.normal(scale=2.0, size=(400, 3)), dtype=torch.float32)
        rgb = torch.as_tensor(rng.integers(0, 256, (400, 3)), dtype=torch.uint8)
        m.insert(xyz, rgb, stamp=w)
        assert len(m) <= cap
        peak = max(peak, m.nbytes())
    assert peak <= bound
    if policy == "coarsen":
        assert m.coarsenings > 0 and m.voxel_size > 0.01
    else:
        assert m.evicted > 0 and m.voxel_size == 0.01
        assert m._stamp.min() >= 1000 - 2 * cap // 400  # only recent windows survive


def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (100, 3)).astype(np.uint8)
    save_ply(tmp_path / "a.ply", xyz, rgb)
    x2, c2 = load_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(x2, xyz)
    np.testing.assert_array_equal(c2, rgb)
    m = GlobalMap(MapConfig(voxel_size=1e-4))
    m.insert(torch.as_tensor(xyz), torch.as_tensor(rgb))
    x3, c3 = load_ply(m.save_ply(tmp_path / "map.ply"))
    assert x3.shape == (100, 3) and c3.shape == (100, 3)


def test_trajectory_tum_round_trip(tmp_path):
    from scipy.spatial.transform import Rotation

    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :3] = Rotation.random(5, random_state=0).as_matrix()
    poses[:, :3, 3] = np.arange(15).reshape(5, 3)
    tr = Trajectory()
    tr.append([0, 3], [0.0, 0.1], poses[:2])
    tr.append([7, 9, 12], [0.2, 0.3, 0.4], poses[2:])
    stamps, back = load_tum(tr.save_tum(tmp_path / "t.tum"))
    np.testing.assert_allclose(stamps, [0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(back, poses, atol=1e-8)
    np.testing.assert_allclose(tr.positions(), poses[:, :3, 3])
