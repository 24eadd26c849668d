"""Ground-truth points for evaluation: point clouds as they are, triangle meshes sampled by area.

The PLY files are read by :mod:`httm_ros.io.ply`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np

from ..io.ply import PLYError, read_ply


def sample_mesh(vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points drawn uniformly (by area) on the triangles -> float64 [n,3]."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]              # [F,3,3]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    if not area.sum() > 0:
        raise PLYError("mesh has no area")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(v), n, p=area / area.sum())
    a, b = rng.random(n), rng.random(n)
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    t = v[tri]
    return t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])


def load_reference(path: Union[str, Path], samples: int = 1_000_000, seed: int = 0) -> Tuple[np.ndarray, str]:
    """Ground-truth points from a PLY: mesh -> ``samples`` area-uniform points; cloud -> its vertices.

    Returns (points float64 [N,3], description).
    """
    verts, faces = read_ply(path)
    if faces is not None and len(faces):
        return sample_mesh(verts, faces, samples, seed), f"mesh {path} ({len(faces)} triangles, {samples} samples)"
    return verts, f"cloud {path} ({len(verts)} points)"
