"""Evaluation helpers: trajectory error after similarity alignment, map accuracy and completeness."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.spatial import cKDTree

from .alignment import weighted_umeyama


def align_positions(est: np.ndarray, gt: np.ndarray, with_scale: bool = True) -> np.ndarray:
    """4x4 similarity (rigid if not with_scale) mapping est [N,3] onto gt [N,3] in least squares."""
    src = torch.as_tensor(np.asarray(est, dtype=np.float64))
    dst = torch.as_tensor(np.asarray(gt, dtype=np.float64))
    scale, rot, trans = weighted_umeyama(src, dst, torch.ones(len(src), dtype=torch.float64))
    if not with_scale:
        scale = torch.tensor(1.0, dtype=torch.float64)
        trans = dst.mean(0) - rot @ src.mean(0)
    out = np.eye(4)
    out[:3, :3] = float(scale) * rot.numpy()
    out[:3, 3] = trans.numpy()
    return out


def ate(est: np.ndarray, gt: np.ndarray, with_scale: bool = True) -> dict:
    """Absolute trajectory error of camera centres est [N,3] vs gt [N,3] after global alignment.

    Returns rmse, mean, max (gt units), the alignment (4x4, scale), the gt path length and
    rmse_rel = rmse / path length.
    """
    est, gt = np.asarray(est, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if est.shape != gt.shape or est.ndim != 2 or est.shape[1] != 3 or len(est) < 3:
        raise ValueError(f"ate needs matching [N>=3,3] arrays, got {est.shape} and {gt.shape}")
    sim = align_positions(est, gt, with_scale)
    moved = est @ sim[:3, :3].T + sim[:3, 3]
    err = np.linalg.norm(moved - gt, axis=1)
    length = float(np.linalg.norm(np.diff(gt, axis=0), axis=1).sum())
    rmse = float(np.sqrt(np.mean(err ** 2)))
    return {"rmse": rmse, "mean": float(err.mean()), "max": float(err.max()), "length": length,
            "rmse_rel": rmse / length if length > 0 else float("inf"),
            "scale": float(np.cbrt(np.linalg.det(sim[:3, :3]))), "transform": sim}


def map_accuracy(points_world_gt: np.ndarray, scene) -> dict:
    """Distances of map points (already in the ground-truth frame) to the scene surfaces.

    Returns median / mean / p90 distance and median relative to scene.size.
    """
    d = scene.distance_to_surface(points_world_gt)
    return {"median": float(np.median(d)), "mean": float(d.mean()), "p90": float(np.percentile(d, 90)),
            "median_rel": float(np.median(d)) / scene.size, "points": int(len(d))}


def completeness(points_world_gt: np.ndarray, reference: np.ndarray, threshold: float) -> float:
    """Share of reference points [M,3] with a map point within ``threshold``."""
    if len(points_world_gt) == 0:
        return 0.0
    dist, _ = cKDTree(np.asarray(points_world_gt, dtype=np.float64)).query(np.asarray(reference, dtype=np.float64))
    return float(np.mean(dist < threshold))


def transform_points(points: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """Apply a 4x4 (similarity) to points [N,3]."""
    p = np.asarray(points, dtype=np.float64)
    return p @ sim[:3, :3].T + sim[:3, 3]
