"""How close the demo's published result is to the synthetic sequence's ground truth.

``demo_accuracy(stamps, cam_to_world, xyz, frames)``: the published path (keyframe stamps [N] in
bag time, camera-to-world [N, 4, 4] in the node's world) against the true camera centres of the
demo sequence (httm_ros.synthetic.sequence.demo_path: demo_sequence's scene and orbit, not rendered),
Sim(3)-aligned on the camera centres (httm_ros.eval.metrics.ate): ATE RMSE as % of the true path
length; then the map points [M, 3] moved by the same alignment and measured against the scene's
true surfaces (Scene.distance_to_surface): median and 90th percentile distance.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

MAX_MAP_POINTS = 50_000          # map points measured (an even subsample of the map beyond this)


def ground_truth(frames: int, seed: int = 0):
    """(scene, true camera-to-world [frames, 4, 4], stamps [frames] in bag time) of the demo bag."""
    from httm_ros.synthetic.sequence import FPS, demo_path

    from .demo_bag import BAG_START

    scene, poses = demo_path(frames, seed)
    return scene, poses, BAG_START + np.arange(frames, dtype=np.float64) / FPS


def _aligned(stamps: np.ndarray, cam_to_world: np.ndarray, frames: int, seed: int):
    """(scene, true camera-to-world [frames, 4, 4], ATE result with the Sim(3) ``transform`` from the
    node's world to the true one) of a published path (stamps [N], cam_to_world [N, 4, 4]); None
    with fewer than 3 keyframes."""
    from httm_ros.eval.metrics import ate
    from httm_ros.synthetic.sequence import FPS

    from .demo_bag import BAG_START

    stamps = np.asarray(stamps, np.float64)
    if len(stamps) < 3:
        return None
    scene, gt_poses, gt_stamps = ground_truth(frames, seed)
    index = np.clip(np.round((stamps - BAG_START) * FPS).astype(np.int64), 0, frames - 1)
    if np.abs(gt_stamps[index] - stamps).max() > 0.25 / FPS:      # bag stamps: exact to the ns
        raise ValueError("published path stamps do not match the demo bag's frames")
    return scene, gt_poses, ate(np.asarray(cam_to_world)[:, :3, 3], gt_poses[index, :3, 3])


def true_path_in_world(stamps: np.ndarray, cam_to_world: np.ndarray, frames: int, seed: int = 0) -> Optional[np.ndarray]:
    """The true camera centres of every frame [frames, 3], moved into the node's world by the inverse
    of the Sim(3) that ``demo_accuracy`` fits (what the preview draws beside the published path);
    None with fewer than 3 published keyframes."""
    from httm_ros.eval.metrics import transform_points

    aligned = _aligned(stamps, cam_to_world, frames, seed)
    if aligned is None:
        return None
    _, gt_poses, err = aligned
    return transform_points(gt_poses[:, :3, 3], np.linalg.inv(np.asarray(err["transform"], np.float64)))


def demo_accuracy(stamps: np.ndarray, cam_to_world: np.ndarray, xyz: np.ndarray, frames: int,
                  seed: int = 0) -> Optional[dict]:
    """ATE (% of the path, m) and map distances (m) after Sim(3) alignment; None with fewer than 3
    published keyframes (no alignment)."""
    from httm_ros.eval.metrics import transform_points

    aligned = _aligned(stamps, cam_to_world, frames, seed)
    if aligned is None:
        return None
    scene, _, err = aligned
    out = {"keyframes": int(len(stamps)), "ate_percent": round(100.0 * err["rmse_rel"], 2),
           "ate_rmse_m": round(err["rmse"], 4), "path_length_m": round(err["length"], 3),
           "scale": round(err["scale"], 4), "map_points_measured": 0}
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    xyz = xyz[np.isfinite(xyz).all(1)]
    if len(xyz):
        step = max(1, -(-len(xyz) // MAX_MAP_POINTS))
        dist = scene.distance_to_surface(transform_points(xyz[::step], err["transform"]))
        out.update(map_points_measured=int(len(dist)), map_median_m=round(float(np.median(dist)), 4),
                   map_p90_m=round(float(np.percentile(dist, 90)), 4), scene_size_m=round(scene.size, 2))
    return out
