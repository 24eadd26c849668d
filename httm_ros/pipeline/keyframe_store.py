"""The keyframe store: what the stream remembers of every accepted keyframe, with bounded memory.

Per keyframe (:class:`StoredKeyframe`), all on the host: the model-input image uint8 [3,h,w],
depth float32 [h,w] (world units) and confidence float16 [h,w], cam_to_world float64 [4,4],
intrinsics float32 [3,3], a global descriptor float32 [D] (L2-normalised grey thumbnail,
``StoreConfig.descriptor_width`` wide: retrieval by cosine similarity) and ``sample_points``
world points float32 [P,3] (a pixel grid of confident depths: covisibility by projection).

Bound: ``max_keyframes`` entries and ``max_bytes`` (whichever is hit first). Eviction
"thin_oldest": every other keyframe of the oldest half goes (older places stay reachable for a
while, at a spacing that grows geometrically with age: a bound, not a spatial memory);
"drop_oldest": the oldest go (1/16 of them at a time). The first keyframe of every segment is pinned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .keyframes import thumbnail
from .stream_config import StoreConfig


@dataclass
class StoredKeyframe:
    frame_id: int
    stamp: float
    segment: int
    image: torch.Tensor          # uint8 [3,h,w]
    depth: torch.Tensor          # float32 [h,w], world units
    conf: torch.Tensor           # float16 [h,w]
    cam_to_world: torch.Tensor   # float64 [4,4]
    intrinsics: torch.Tensor     # float32 [3,3]
    descriptor: torch.Tensor     # float32 [D]
    points: torch.Tensor         # float32 [P,3] world sample points

    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.image, self.depth, self.conf, self.cam_to_world,
                                                           self.intrinsics, self.descriptor, self.points))


def global_descriptor(image: torch.Tensor, width: int) -> torch.Tensor:
    """uint8 [3,h,w] (or float [3,h,w] in [0,1]) -> L2-normalised grey thumbnail float32 [D]."""
    img = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    d = thumbnail(img.cpu(), width).flatten()
    return d / (torch.linalg.norm(d) + 1e-12)


def sample_points(depth: torch.Tensor, conf: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                  count: int) -> torch.Tensor:
    """World points float32 [<=count,3] on a pixel grid of one frame (valid depth, conf above median)."""
    H, W = depth.shape
    n = max(2, int(math.ceil(math.sqrt(count))))
    v, u = torch.meshgrid(torch.linspace(0.5, H - 0.5, n), torch.linspace(0.5, W - 0.5, n), indexing="ij")
    vi, ui = v.long().flatten(), u.long().flatten()
    z = depth.cpu().double()[vi, ui]
    c = conf.cpu().float()[vi, ui]
    ok = torch.isfinite(z) & (z > 0) & (c >= c.median())
    K = intrinsics.cpu().double()
    x = (u.flatten().double() - K[0, 2]) / K[0, 0] * z
    y = (v.flatten().double() - K[1, 2]) / K[1, 1] * z
    cam = torch.stack([x, y, z], -1)[ok]                                        # [P,3]
    pose = cam_to_world.cpu().double()
    return (cam @ pose[:3, :3].T + pose[:3, 3]).float()[:count]


def in_view(points: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor, hw) -> torch.Tensor:
    """bool [P]: which world points [P,3] are in front of a camera and inside its image."""
    pose = cam_to_world.cpu().double()
    cam = (points.double() - pose[:3, 3]) @ pose[:3, :3]                        # world -> camera
    K = intrinsics.cpu().double()
    z = cam[:, 2]
    u = K[0, 0] * cam[:, 0] / z.clamp_min(1e-12) + K[0, 2]
    v = K[1, 1] * cam[:, 1] / z.clamp_min(1e-12) + K[1, 2]
    return (z > 0) & (u >= 0) & (u < hw[1]) & (v >= 0) & (v < hw[0])


def visible_fraction(points: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor, hw) -> float:
    """Share of world points [P,3] in front of a camera and inside its image (0 when none)."""
    if points.shape[0] == 0:
        return 0.0
    return float(in_view(points, cam_to_world, intrinsics, hw).double().mean())


def visible_fractions(keyframes: Sequence[StoredKeyframe], cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                      hw) -> Dict[int, float]:
    """{frame_id: visible_fraction of its sample points} for many keyframes in one projection (the
    covisibility of a whole store: one pass over every point, not one small pass per keyframe)."""
    if not keyframes:
        return {}
    counts = torch.tensor([k.points.shape[0] for k in keyframes])
    inside = in_view(torch.cat([k.points for k in keyframes]), cam_to_world, intrinsics, hw)    # [sum P]
    owner = torch.repeat_interleave(torch.arange(len(keyframes)), counts)
    hits = torch.bincount(owner, weights=inside.double(), minlength=len(keyframes))
    share = torch.where(counts > 0, hits / counts.clamp_min(1), torch.zeros_like(hits))
    return {k.frame_id: f for k, f in zip(keyframes, share.tolist())}


class KeyframeStore:
    """Bounded store of accepted keyframes, by frame id, in insertion order."""

    def __init__(self, config: Optional[StoreConfig] = None) -> None:
        self.config = config or StoreConfig()
        self._items: Dict[int, StoredKeyframe] = {}
        self._bytes = 0
        self.evicted = 0
        self._first: Dict[int, int] = {}             # segment -> its first keyframe's id (pinned)
        self._pinned: set = set()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, frame_id: int) -> bool:
        return frame_id in self._items

    def __getitem__(self, frame_id: int) -> StoredKeyframe:
        return self._items[frame_id]

    def nbytes(self) -> int:
        return self._bytes

    def add(self, kf: StoredKeyframe) -> None:
        """Store a keyframe (replacing one with the same id); the first of its segment is pinned."""
        if kf.frame_id in self._items:
            self._bytes -= self._items.pop(kf.frame_id).nbytes()
        if kf.segment not in self._first:
            self._first[kf.segment] = kf.frame_id
            self._pinned.add(kf.frame_id)
        self._items[kf.frame_id] = kf
        self._bytes += kf.nbytes()
        self._enforce_bound()

    def keyframes(self, segment: Optional[int] = None) -> List[StoredKeyframe]:
        """Stored keyframes (of one segment), oldest first."""
        return [k for k in self._items.values() if segment is None or k.segment == segment]

    def first(self, segment: int) -> Optional[StoredKeyframe]:
        """The pinned first keyframe of a segment."""
        return self._items.get(self._first.get(segment, -1))

    def retrieve(self, descriptor: torch.Tensor, segment: Optional[int], count: int,
                 exclude: Sequence[int] = (), min_similarity: float = -1.0) -> List[StoredKeyframe]:
        """The ``count`` keyframes (of ``segment``) most similar to ``descriptor`` [D], best first,
        those with a cosine similarity >= ``min_similarity`` only."""
        pool = [k for k in self.keyframes(segment) if k.frame_id not in set(exclude)]
        if not pool:
            return []
        sims = torch.stack([k.descriptor for k in pool]) @ descriptor.float()           # [n]
        order = torch.argsort(sims, descending=True)[:count].tolist()
        return [pool[i] for i in order if float(sims[i]) >= min_similarity]

    def _over(self) -> bool:
        return len(self._items) > self.config.max_keyframes or self._bytes > self.config.max_bytes

    def _enforce_bound(self) -> None:
        while self._over():
            free = [fid for fid in self._items if fid not in self._pinned]                # oldest first
            if not free:
                return
            if self.config.eviction == "drop_oldest":
                victims = free[:max(1, len(free) // 16)]        # in batches: O(1) amortised per add
            else:
                oldest = free[:max(2, len(free) // 2)]
                victims = oldest[1::2] if len(oldest) > 1 else oldest
            for fid in victims:
                self._bytes -= self._items.pop(fid).nbytes()
                self.evicted += 1


def make_stored(frame_id: int, stamp: float, segment: int, image: torch.Tensor, depth: torch.Tensor,
                conf: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                config: StoreConfig) -> StoredKeyframe:
    """Host copies of one keyframe's world geometry (+ descriptor and sample points)."""
    depth, conf = depth.detach().float().cpu().clone(), conf.detach().cpu().to(torch.float16)
    pose, K = cam_to_world.detach().cpu().double().clone(), intrinsics.detach().cpu().float().clone()
    return StoredKeyframe(int(frame_id), float(stamp), int(segment), image.detach().cpu().clone(), depth, conf,
                          pose, K, global_descriptor(image, config.descriptor_width),
                          sample_points(depth, conf, pose, K, config.sample_points))
