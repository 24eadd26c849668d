"""Evaluation helpers: trajectory error after similarity alignment, map accuracy and completeness."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..pipeline.alignment import weighted_umeyama


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


# ---------------------------------------------------------------------------- evaluation (httm-eval)
def rotation_angle_deg(rot: np.ndarray) -> np.ndarray:
    """Angle (degrees) of rotation matrices [...,3,3]; atan2 form, accurate for tiny angles too."""
    r = np.asarray(rot, dtype=np.float64)
    skew = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arctan2(0.5 * np.linalg.norm(skew, axis=-1), cos))


def rpe(est: np.ndarray, gt: np.ndarray, scale: float = 1.0, delta: int = 1) -> dict:
    """Relative pose error of consecutive poses (``delta`` apart), camera-to-world [N,4,4] each.

    The estimated translations are multiplied by ``scale`` first (the Sim(3) scale from :func:`ate`:
    rotation and translation of a global alignment cancel in relative poses, the scale does not).
    Per pair: E = (G_i^-1 G_j)^-1 (P_i^-1 P_j); translation error |t_E| (gt units), rotation error
    angle(R_E) (degrees). Returns trans_rmse / trans_mean / trans_median, rot_rmse_deg /
    rot_mean_deg / rot_median_deg and the number of pairs.
    """
    est, gt = np.asarray(est, dtype=np.float64).copy(), np.asarray(gt, dtype=np.float64)
    if est.shape != gt.shape or est.ndim != 3 or est.shape[1:] != (4, 4) or len(est) <= delta:
        raise ValueError(f"rpe needs matching [N>{delta},4,4] poses, got {est.shape} and {gt.shape}")
    est[:, :3, 3] *= scale
    rel_e = np.linalg.inv(est[:-delta]) @ est[delta:]
    rel_g = np.linalg.inv(gt[:-delta]) @ gt[delta:]
    err = np.linalg.inv(rel_g) @ rel_e
    t = np.linalg.norm(err[:, :3, 3], axis=1)
    r = rotation_angle_deg(err[:, :3, :3])
    return {"trans_rmse": float(np.sqrt(np.mean(t ** 2))), "trans_mean": float(t.mean()),
            "trans_median": float(np.median(t)), "rot_rmse_deg": float(np.sqrt(np.mean(r ** 2))),
            "rot_mean_deg": float(r.mean()), "rot_median_deg": float(np.median(r)), "pairs": int(len(t))}


def cloud_distances(pred: np.ndarray, gt: np.ndarray, pred_tree: Optional[cKDTree] = None,
                    gt_tree: Optional[cKDTree] = None) -> dict:
    """Accuracy and completeness of a point cloud pred [N,3] against gt [M,3] (same frame, gt units).

    Accuracy: distance of each predicted point to its nearest ground-truth point; completeness:
    distance of each ground-truth point to its nearest predicted point (the HTTM / FastVGGT / CUT3R
    definitions). Returns acc_mean, acc_median, comp_mean, comp_median, chamfer = (acc_mean +
    comp_mean) / 2 and the point counts. Trees of either cloud may be passed in to save building them.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if len(pred) == 0 or len(gt) == 0:
        raise ValueError(f"cloud_distances needs non-empty clouds, got {len(pred)} and {len(gt)} points")
    acc = (gt_tree or cKDTree(gt)).query(pred, workers=-1)[0]
    comp = (pred_tree or cKDTree(pred)).query(gt, workers=-1)[0]
    return {"acc_mean": float(acc.mean()), "acc_median": float(np.median(acc)),
            "comp_mean": float(comp.mean()), "comp_median": float(np.median(comp)),
            "chamfer": float(0.5 * (acc.mean() + comp.mean())),
            "pred_points": int(len(pred)), "gt_points": int(len(gt))}


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """Mean point of each occupied voxel of edge ``voxel``: [N,3] -> [M,3] float64 (voxel <= 0: copy)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if voxel <= 0 or len(p) == 0:
        return p.copy()
    keys = np.floor(p / voxel).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out = np.zeros((len(counts), 3))
    for k in range(3):
        out[:, k] = np.bincount(inverse, weights=p[:, k], minlength=len(counts))
    return out / counts[:, None]


def icp_refine(src: np.ndarray, dst: np.ndarray, init: Optional[np.ndarray] = None, iterations: int = 20,
               threshold: Optional[float] = None, with_scale: bool = False, max_points: int = 100_000,
               seed: int = 0, dst_tree: Optional[cKDTree] = None, tol: float = 1e-6, patience: int = 3) -> tuple:
    """Point-to-point ICP of src [N,3] onto dst [M,3], starting from ``init`` (4x4 similarity).

    Each iteration pairs (at most ``max_points`` random) moved source points with their nearest
    destination points, drops pairs farther apart than ``threshold`` (None: keep all), and
    composes the least-squares rigid transform (similarity if ``with_scale``) of the pairs, until
    a step moves by less than ``tol`` (rotation / scale entries, and translation relative to the
    destination's bounding-box diagonal) or ``patience`` iterations bring no better score. Every
    transform visited is scored by the mean nearest-neighbour distance clipped at ``threshold``
    and the best one is returned, so ICP never worsens that score
    of the start (point-to-point ICP between differently sampled clouds can drift off an exact
    start). Returns (4x4 transform src -> dst, info: iterations, best_iteration, inliers,
    score_before / score_after = the score of ``init`` / of the result).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if len(src) > max_points:
        src = src[np.random.default_rng(seed).choice(len(src), max_points, replace=False)]
    tree = dst_tree or cKDTree(dst)
    sim = np.eye(4) if init is None else np.asarray(init, dtype=np.float64).copy()
    extent = float(np.linalg.norm(dst.max(0) - dst.min(0))) or 1.0
    best, info = None, {"iterations": 0, "best_iteration": 0, "inliers": 0}
    for it in range(iterations + 1):
        moved = transform_points(src, sim)
        dist, idx = tree.query(moved, workers=-1)
        keep = dist < threshold if threshold is not None else np.ones(len(dist), bool)
        score = float(np.minimum(dist, threshold).mean() if threshold is not None else dist.mean())
        if it == 0:
            info["score_before"] = score
        if best is None or score < best[0]:
            best = (score, sim.copy())
            info.update(best_iteration=it, inliers=int(keep.sum()), score_after=score)
        if keep.sum() < 3 or it == iterations or it - info["best_iteration"] >= patience:
            break
        step = align_positions(moved[keep], dst[idx[keep]], with_scale)
        sim = step @ sim
        info["iterations"] = it + 1
        if max(np.abs(step[:3, :3] - np.eye(3)).max(), np.abs(step[:3, 3]).max() / extent) < tol:
            break
    return best[1], info
