"""The keyframe store: bounded memory over 100k keyframes, eviction, pinning, retrieval, covisibility."""

import time

import pytest
import torch

from httm_ros.pipeline.keyframe_store import (KeyframeStore, StoredKeyframe, global_descriptor, make_stored,
                                              visible_fraction, visible_fractions)
from httm_ros.pipeline.stream_config import StoreConfig


_Z = torch.zeros(14, 14)
_PARTS = (torch.zeros(3, 14, 14, dtype=torch.uint8), _Z, _Z.half(), torch.eye(4, dtype=torch.float64), torch.eye(3),
          torch.zeros(8), torch.zeros(4, 3))


def tiny(fid, segment=0):
    """A 14x14 keyframe (the store does not look at the content; the tensors are shared)."""
    return StoredKeyframe(fid, fid / 30.0, segment, *_PARTS)


@pytest.mark.parametrize("policy", ["thin_oldest", "drop_oldest"])
def test_store_stays_bounded_over_100k_keyframes(policy):
    store = KeyframeStore(StoreConfig(max_keyframes=500, max_bytes=10 ** 9, eviction=policy))
    t0 = time.perf_counter()
    for i in range(100_000):
        store.add(tiny(i, segment=i // 50_000))
        if i % 997 == 0:
            assert len(store) <= 500
    assert len(store) <= 500 and time.perf_counter() - t0 < 60          # ~3 s on an idle core
    ids = [k.frame_id for k in store.keyframes()]
    assert 0 in ids and 50_000 in ids                                       # first of each segment pinned
    assert store.evicted == 100_000 - len(store) and store.nbytes() == sum(k.nbytes() for k in store.keyframes())
    assert max(ids) == 99_999 and ids == sorted(ids)
    if policy == "thin_oldest":                    # older keyframes stay, at a spacing growing with age
        free = [i for i in ids if i not in (0, 1, 50_000)]
        assert free[0] < 100_000 - 2 * len(ids) and free[1] - free[0] > 8 * (free[-1] - free[-2])
    else:
        assert ids[2:] == list(range(100_000 - len(ids) + 2, 100_000))   # the newest, contiguous


def test_store_byte_bound():
    one = tiny(0).nbytes()
    store = KeyframeStore(StoreConfig(max_keyframes=10 ** 6, max_bytes=100 * one))
    for i in range(5000):
        store.add(tiny(i))
    assert store.nbytes() <= 100 * one and len(store) <= 100


def test_retrieval_and_covisibility():
    torch.manual_seed(0)
    store = KeyframeStore(StoreConfig())
    images = [torch.randint(0, 255, (3, 42, 56), dtype=torch.uint8) for _ in range(5)]
    K = torch.tensor([[40.0, 0, 28], [0, 40.0, 21], [0, 0, 1]])
    for i, img in enumerate(images):
        pose = torch.eye(4, dtype=torch.float64)
        pose[0, 3] = 0.1 * i
        store.add(make_stored(i, i / 30, 0, img, torch.full((42, 56), 2.0), torch.full((42, 56), 3.0), pose, K,
                              store.config))
    best = store.retrieve(global_descriptor(images[3], 16), 0, 2)
    assert best[0].frame_id == 3 and len(best) == 2
    alike = store.retrieve(global_descriptor(images[3], 16), 0, 2, min_similarity=0.99)   # random images: only itself
    assert [k.frame_id for k in alike] == [3]
    kf = store[0]
    assert kf.points.shape[1] == 3 and len(kf.points) > 10
    assert visible_fraction(kf.points, store[1].cam_to_world, K, (42, 56)) > 0.8
    away = torch.eye(4, dtype=torch.float64)
    away[:3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64))   # looking backwards
    assert visible_fraction(kf.points, away, K, (42, 56)) == 0.0


def test_covisibility_of_many_keyframes_in_one_pass_equals_each_alone():
    """visible_fractions (the anchored window's covisibility over the whole store, one projection)
    gives every keyframe's visible_fraction, for keyframes with different point counts, none, and
    points partly behind the camera."""
    torch.manual_seed(1)
    K = torch.tensor([[40.0, 0, 28], [0, 40.0, 21], [0, 0, 1]])
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 3] = torch.tensor([0.2, -0.1, 0.0], dtype=torch.float64)
    kfs = [StoredKeyframe(i, 0.0, 0, *_PARTS[:6], torch.randn(n, 3) * 2 + torch.tensor([0.0, 0.0, 1.0]))
           for i, n in enumerate([64, 0, 7, 64, 1, 33])]
    got = visible_fractions(kfs, pose, K, (42, 56))
    assert list(got) == [k.frame_id for k in kfs]
    want = [visible_fraction(k.points, pose, K, (42, 56)) for k in kfs]
    assert got[1] == 0.0 and 0.0 < min(want[i] for i in (0, 2, 3, 5)) and max(want) < 1.0
    assert list(got.values()) == pytest.approx(want, abs=1e-12)
    assert visible_fractions([], pose, K, (42, 56)) == {}
