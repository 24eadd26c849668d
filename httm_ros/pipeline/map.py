"""Global coloured point map: a voxel grid of running means with a hard bound on its size.

Each occupied voxel stores the mean position (float32 x3), mean colour (float32 x3), the number of
points merged into it and the index of the last window that touched it: 40 bytes per voxel with
its int64 key, so ``max_points`` bounds the memory (``nbytes()``). Updates are a sort-based merge
(``torch.unique``) on the map's device. When the bound is exceeded, ``overflow`` decides:
"coarsen" doubles the voxel size and re-merges until the map fits; "evict_oldest" drops the
voxels whose last update is oldest (fewest points first among equals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

from ..io.ply import save_ply
from .stream_config import MapConfig

_BITS = 21
_OFFSET = 1 << (_BITS - 1)          # voxel coordinates in [-2^20, 2^20) fit the 63-bit key
_COUNT_CAP = 1.0e6                  # running means keep adapting a little beyond this


class GlobalMap:
    """Voxel-downsampled coloured points. ``insert`` per window; ``points()`` / ``save_ply`` to read."""

    def __init__(self, config: Optional[MapConfig] = None, device="cpu") -> None:
        self.config = config or MapConfig()
        self.device = torch.device(self.config.device or device)
        self.voxel_size: Optional[float] = self.config.voxel_size
        self.dropped_out_of_range = 0
        self.coarsenings = 0
        self.evicted = 0
        self._keys = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._xyz = torch.zeros(0, 3, dtype=torch.float32, device=self.device)
        self._rgb = torch.zeros(0, 3, dtype=torch.float32, device=self.device)
        self._count = torch.zeros(0, dtype=torch.float32, device=self.device)
        self._stamp = torch.zeros(0, dtype=torch.int32, device=self.device)

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    def nbytes(self) -> int:
        """Bytes held by the map's arrays."""
        return sum(t.element_size() * t.numel() for t in (self._keys, self._xyz, self._rgb, self._count, self._stamp))

    def set_voxel_size(self, size: float) -> None:
        """Fix the voxel size (only while the map is empty)."""
        if len(self):
            raise RuntimeError("GlobalMap.set_voxel_size: the map is not empty")
        if not size > 0 or not np.isfinite(size):
            raise ValueError(f"voxel size must be a finite number > 0, got {size}")
        self.voxel_size = float(size)

    # ------------------------------------------------------------------ update
    def insert(self, xyz: torch.Tensor, rgb: torch.Tensor, stamp: int = 0) -> None:
        """Merge points xyz [N,3] (float) with colours rgb [N,3] (uint8 or float 0..255)."""
        if self.voxel_size is None:
            raise RuntimeError("GlobalMap.insert: voxel size not set (MapConfig.voxel_size or set_voxel_size)")
        xyz = xyz.to(self.device, torch.float32).reshape(-1, 3)
        rgb = rgb.to(self.device, torch.float32).reshape(-1, 3)
        ok = torch.isfinite(xyz).all(1)
        keys, in_range = self._keys_of(xyz)
        self.dropped_out_of_range += int((ok & ~in_range).sum())
        ok &= in_range
        if not bool(ok.all()):
            xyz, rgb, keys = xyz[ok], rgb[ok], keys[ok]
        if keys.numel():
            n = keys.shape[0]
            self._merge(torch.cat([self._keys, keys]), torch.cat([self._xyz, xyz]), torch.cat([self._rgb, rgb]),
                        torch.cat([self._count, torch.ones(n, device=self.device)]),
                        torch.cat([self._stamp, torch.full((n,), int(stamp), dtype=torch.int32, device=self.device)]))
        self._enforce_bound()

    def _keys_of(self, xyz: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Voxel keys [N] int64 and in-range mask [N] of points [N,3]."""
        c = torch.floor(xyz / self.voxel_size)
        in_range = ((c >= -_OFFSET) & (c < _OFFSET)).all(1) & torch.isfinite(c).all(1)
        c = torch.where(in_range[:, None], c, torch.zeros_like(c)).long() + _OFFSET
        return (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2], in_range

    def _merge(self, keys, xyz, rgb, count, stamp) -> None:
        """Replace the map by the per-key weighted means of the given (possibly repeated) entries."""
        uniq, inv = torch.unique(keys, return_inverse=True)
        m = uniq.shape[0]
        cnt = torch.zeros(m, device=self.device).index_add_(0, inv, count)
        self._xyz = torch.zeros(m, 3, device=self.device).index_add_(0, inv, xyz * count[:, None]) / cnt[:, None]
        self._rgb = torch.zeros(m, 3, device=self.device).index_add_(0, inv, rgb * count[:, None]) / cnt[:, None]
        self._stamp = torch.full((m,), -(2 ** 31), dtype=torch.int32, device=self.device).scatter_reduce(
            0, inv, stamp, reduce="amax")
        self._count = cnt.clamp_max(_COUNT_CAP)
        self._keys = uniq

    def _enforce_bound(self) -> None:
        cap = self.config.max_points
        if len(self) <= cap:
            return
        if self.config.overflow == "coarsen":
            while len(self) > cap:
                self.voxel_size *= 2.0
                self.coarsenings += 1
                keys, _ = self._keys_of(self._xyz)
                self._merge(keys, self._xyz, self._rgb, self._count, self._stamp)
            return
        # evict_oldest: keep the cap newest voxels (more points first among equal stamps)
        score = self._stamp.long() * (1 << 24) + self._count.long().clamp_max((1 << 24) - 1)
        keep = torch.topk(score, cap, sorted=False).indices
        self.evicted += len(self) - cap
        keep = keep.sort().values
        self._keys, self._xyz, self._rgb = self._keys[keep], self._xyz[keep], self._rgb[keep]
        self._count, self._stamp = self._count[keep], self._stamp[keep]

    # ------------------------------------------------------------------ read
    def points(self) -> Tuple[np.ndarray, np.ndarray]:
        """(xyz float32 [N,3], rgb uint8 [N,3]) on the CPU."""
        rgb = self._rgb.round().clamp(0, 255).to(torch.uint8)
        return self._xyz.cpu().numpy().astype(np.float32), rgb.cpu().numpy()

    def counts(self) -> np.ndarray:
        """Points merged into each voxel, float32 [N] (capped at 1e6)."""
        return self._count.cpu().numpy()

    def save_ply(self, path: Union[str, Path]) -> Path:
        """Write the map as a binary coloured PLY."""
        return save_ply(path, *self.points())
