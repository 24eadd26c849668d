"""Reconstruction and camera metrics of one predictor on one sequence, offline or streaming.

    images, seq_model = model_inputs(seq, size=518)          # keyframes -> model input (+ resized GT)
    gt = depth_cloud(seq, EvalOptions())                     # ground-truth points (or a mesh sample)
    recon = run_offline(predictor, images, opts, device)     # one forward over all keyframes
    recon = run_streaming(predictor, images, 24, 8, opts, device)   # StreamingReconstructor map + trajectory
    row = evaluate(recon, gt, seq.cam_to_world, opts)        # acc / comp / ATE / RPE (+ alignment info)

Alignment of the prediction (arbitrary similarity frame) to the ground truth: a Sim(3) from the
cameras - Umeyama on the camera centres, or the rotation of the camera orientations with scale
and translation from the centres, whichever puts the prediction closer to the ground truth (a
short, nearly straight path fixes the rotation badly by its centres alone) - then point-to-point ICP
(:func:`httm_ros.eval.metrics.icp_refine`: rigid by default, pairs farther apart than
``icp_threshold`` x the ground-truth bounding-box diagonal ignored). Accuracy / completeness are
then the mean (and median) nearest-neighbour distances pred -> GT and GT -> pred. ATE is the
RMSE of camera centres after their own Sim(3) alignment; RPE compares consecutive keyframes'
relative poses (translations scaled by the ATE scale). See docs/EVALUATION.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..geometry import invert_rigid, unproject_depth
from ..pipeline import (AlignConfig, FilterConfig, KeyframeConfig, StreamConfig, StreamingReconstructor,
                        WindowConfig, WindowPrediction)
from ..synthetic import Sequence
from ..timing import StageTimer
from ..vggt.preprocess import model_input_size, preprocess_images, resized_size
from .metrics import (align_positions, ate, cloud_distances, icp_refine, rpe, transform_points,
                      voxel_downsample)
from .resources import PeakMemory


@dataclass
class EvalOptions:
    """How predictions become clouds and how they are compared (lengths in ground-truth units).

    size: model input width (VGGT "crop" preprocessing). conf_percentile: drop predicted points
    below this percentile of depth confidence (0 = keep all; VGGT's demo uses 50). pixel_stride:
    every n-th pixel of predicted and ground-truth depth. max_points: random cap per cloud (fixed
    seed). voxel: voxel-downsample both clouds (0 = off). icp_iterations: 0 = Sim(3) from cameras
    only. icp_threshold: ICP pair cut-off relative to the ground-truth bounding-box diagonal
    (0 = no cut-off). icp_scale: let ICP refine the scale too. warmup: untimed forward passes
    first (recommended on CUDA).
    """

    size: int = 518
    conf_percentile: float = 50.0
    pixel_stride: int = 2
    max_points: int = 1_000_000
    voxel: float = 0.0
    icp_iterations: int = 20
    icp_threshold: float = 0.05
    icp_scale: bool = False
    seed: int = 0
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.size < 14 or self.size % 14:
            raise ValueError(f"EvalOptions.size must be a positive multiple of 14, got {self.size}")
        if not 0.0 <= self.conf_percentile < 100.0:
            raise ValueError(f"EvalOptions.conf_percentile must be in [0, 100), got {self.conf_percentile}")
        for name in ("pixel_stride", "max_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalOptions.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("voxel", "icp_threshold", "icp_iterations", "warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"EvalOptions.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Reconstruction:
    """What one run produced, in the prediction's own frame and unit.

    points [N,3] float64; cam_to_world [S,4,4] float64 of the reconstructed keyframes; frame_ids
    [S] their indices among the keyframes; time_s: synchronised model time (all windows);
    total_s: wall time of the whole run; memory: :class:`PeakMemory` result; merge: mean kept
    fractions of the merge statistics ({} when dense); extra: free-form (stream counters ...).
    """

    points: np.ndarray
    cam_to_world: np.ndarray
    frame_ids: np.ndarray
    time_s: float
    total_s: float
    memory: dict
    merge: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- inputs and clouds
def model_inputs(seq: Sequence, size: int) -> Tuple[torch.Tensor, Sequence]:
    """Keyframes -> (model images float32 [S,3,H,W] in [0,1], the sequence at that resolution).

    Frames already at the model size are used untouched (so the ground truth stays exact);
    otherwise images go through VGGT's crop preprocessing and ground-truth depth / intrinsics are
    resampled (nearest neighbour) and cropped the same way (for the oracle predictor).
    """
    hw = model_input_size(seq.height, seq.width, "crop", size)
    if hw == (seq.height, seq.width):
        return torch.from_numpy(seq.images).permute(0, 3, 1, 2).float().div_(255.0), seq
    images = preprocess_images(list(seq.images), "crop", size)
    return images, _resample_ground_truth(seq, images)


def _resample_ground_truth(seq: Sequence, images: torch.Tensor) -> Sequence:
    """Depth (nearest) and intrinsics of ``seq`` at the crop-preprocessed size of ``images``."""
    h, w = seq.height, seq.width
    new_h, new_w = resized_size(h, w, "crop", images.shape[-1])
    rows = np.minimum(((np.arange(new_h) + 0.5) * h / new_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * w / new_w).astype(np.int64), w - 1)
    top = (new_h - images.shape[-2]) // 2
    rows = rows[top:top + images.shape[-2]]
    depth = seq.depth[:, rows][:, :, cols]
    K = seq.intrinsics.astype(np.float64).copy()
    sx, sy = new_w / w, new_h / h
    K[:, 0, 0] *= sx
    K[:, 1, 1] *= sy
    K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
    K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5 - top
    rgb = (images.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
    return Sequence(rgb, np.ascontiguousarray(depth), K.astype(np.float32), seq.cam_to_world,
                    seq.timestamps, seq.scene, dict(seq.info, resampled_from=[h, w]))


def finish_cloud(points: np.ndarray, voxel: float, max_points: int, seed: int) -> np.ndarray:
    """Voxel-downsample (voxel > 0) then randomly cap a cloud [N,3] at max_points (seeded)."""
    pts = voxel_downsample(points, voxel) if voxel > 0 else np.asarray(points, dtype=np.float64)
    if len(pts) > max_points:
        pts = pts[np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))]
    return pts


def depth_cloud(seq: Sequence, opts: EvalOptions) -> np.ndarray:
    """Ground-truth points [N,3] float64 from the sequence's depth (> 0) and poses (world frame)."""
    s, pts = opts.pixel_stride, []
    for k in range(len(seq)):
        p = unproject_depth(torch.from_numpy(seq.depth[k:k + 1]).double(),
                            torch.from_numpy(seq.cam_to_world[k:k + 1]).double(),
                            torch.from_numpy(seq.intrinsics[k:k + 1]).double(), s)[0].numpy()
        pts.append(p[seq.depth[k, ::s, ::s] > 0])
    cloud = np.concatenate(pts) if pts else np.zeros((0, 3))
    if len(cloud) == 0:
        raise ValueError("the ground-truth depth of the selected frames is empty (all invalid)")
    return finish_cloud(cloud, opts.voxel, opts.max_points, opts.seed)


def prediction_cloud(pred: WindowPrediction, conf_percentile: float, stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """Confident, finite points of a prediction -> (points [N,3] float64, cam_to_world [S,4,4] float64).

    Keeps pixels (every ``stride``-th) with finite depth > 0 and confidence >= the
    ``conf_percentile`` percentile of those pixels (over all frames).
    """
    cam_to_world = invert_rigid(pred.extrinsics.detach().double().cpu())                  # [S,4,4]
    depth = pred.depth.detach().double().cpu()
    pts = unproject_depth(depth, cam_to_world, pred.intrinsics.detach().double().cpu(), stride)  # [S,h,w,3]
    d = depth[:, ::stride, ::stride]
    c = pred.depth_conf.detach().double().cpu()[:, ::stride, ::stride]
    keep = torch.isfinite(d) & (d > 0) & torch.isfinite(c) & torch.isfinite(pts).all(-1)
    if conf_percentile > 0 and bool(keep.any()):
        vals = c[keep]
        k = max(1, int(math.ceil(conf_percentile / 100.0 * vals.numel())))
        keep &= c >= torch.kthvalue(vals, k).values
    return pts[keep].numpy(), cam_to_world.numpy()


def merge_summary(stats: List[dict]) -> dict:
    """Mean kept fractions over the predictions' ``stats["merge"]`` ({} when none merged)."""
    merged = [s.get("merge") or {} for s in stats]
    merged = [m for m in merged if m.get("calls")]
    if not merged:
        return {}
    return {k: float(np.mean([m[k] for m in merged])) for k in ("kept_q", "kept_kv", "outliers")}


# ---------------------------------------------------------------------------- runs
def run_offline(predictor, images: torch.Tensor, opts: EvalOptions, device="cpu") -> Reconstruction:
    """All keyframes in one forward pass (the paper's setting)."""
    ids = list(range(images.shape[0]))
    for _ in range(opts.warmup):
        predictor.predict(images, ids)
    timer = StageTimer(mode="wall")
    with PeakMemory(device) as mem:
        pred = predictor.predict(images, ids)
    total = timer.lap("run")
    points, cam_to_world = prediction_cloud(pred, opts.conf_percentile, opts.pixel_stride)
    return Reconstruction(points, cam_to_world, np.arange(len(ids)), float(pred.stats.get("model_s", total)),
                          total, mem.result(), merge_summary([pred.stats]))


def run_streaming(predictor, images: torch.Tensor, window: int, overlap: int, opts: EvalOptions,
                  device="cpu") -> Reconstruction:
    """The keyframes through :class:`StreamingReconstructor` (windows of ``window`` with ``overlap``).

    Every keyframe is pushed as a keyframe (selection off); the result is the stream's global
    (voxel) map and its trajectory of accepted keyframes.
    """
    frames = (images.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8)               # [S,H,W,3]
    cfg = StreamConfig(keyframes=KeyframeConfig(enabled=False), window=WindowConfig(window, overlap),
                       filter=FilterConfig(conf_percentile=opts.conf_percentile, pixel_stride=opts.pixel_stride),
                       align=AlignConfig(min_overlap_frames=min(2, overlap)),
                       image_width=int(images.shape[-1]), device=str(torch.device(device)))
    for _ in range(opts.warmup):
        predictor.predict(images[:window], list(range(min(window, len(images)))))
    rec = StreamingReconstructor(predictor, cfg)
    results = []
    timer = StageTimer(mode="wall")
    with PeakMemory(device) as mem:
        for k, frame in enumerate(frames):
            results += rec.push(frame, float(k))
        results += rec.flush()
    total = timer.lap("run")
    points = rec.map.points()[0].astype(np.float64) if len(rec.map) else np.zeros((0, 3))
    extra = {"windows": len(results), "rejected": [{"window": r.index, "reason": r.alignment.reason}
                                                   for r in results if not r.accepted],
             "counters": rec.counters.as_dict(), "map_points": len(rec.map), "voxel_size": rec.map.voxel_size,
             "window": window, "overlap": overlap}
    return Reconstruction(points, rec.trajectory.cam_to_world(), np.asarray(rec.trajectory.frame_ids, dtype=np.int64),
                          float(sum(r.timings.get("predict", 0.0) for r in results)), total, mem.result(),
                          merge_summary([r.stats for r in results]), extra)


# ---------------------------------------------------------------------------- metrics
def _spread(centres: np.ndarray) -> np.ndarray:
    """Singular values of the centred camera centres [N,3] -> [3] (descending)."""
    return np.linalg.svd(centres - centres.mean(0), compute_uv=False)


def _planar_enough(centres: np.ndarray) -> bool:
    sv = _spread(centres)
    return len(centres) >= 3 and np.isfinite(sv).all() and sv[0] > 0 and sv[1] > 1e-2 * sv[0]


def _orientation_alignment(est: np.ndarray, gt: np.ndarray, pred_points: np.ndarray,
                           gt_points: Optional[np.ndarray]) -> np.ndarray:
    """Rotation = chordal mean of R_gt R_est^T; scale and translation by least squares on the
    centres given that rotation (spread of the clouds with a single camera)."""
    est_c, gt_c = est[:, :3, 3], gt[:, :3, 3]
    u, _, vh = np.linalg.svd((gt[:, :3, :3] @ est[:, :3, :3].transpose(0, 2, 1)).sum(0))
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vh))]) @ vh
    de, dg = est_c - est_c.mean(0), gt_c - gt_c.mean(0)
    den = float((de * de).sum())
    scale = float((dg * (de @ rot.T)).sum()) / den if den > 0 else 0.0
    if not scale > 0 and gt_points is not None and len(pred_points):
        scale = float(gt_points.std(0).sum()) / max(float(pred_points.std(0).sum()), 1e-300)
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    sim = np.eye(4)
    sim[:3, :3] = scale * rot
    sim[:3, 3] = gt_c.mean(0) - scale * rot @ est_c.mean(0)
    return sim


def start_score(sim: np.ndarray, points: np.ndarray, gt_tree: cKDTree, threshold: Optional[float]) -> float:
    """Mean nearest-neighbour distance of the moved points, each clipped at ``threshold``."""
    dist = gt_tree.query(transform_points(points, sim), workers=-1)[0]
    return float(np.minimum(dist, threshold).mean() if threshold else dist.mean())


def initial_alignment(est: np.ndarray, gt: np.ndarray, pred_points: np.ndarray,
                      gt_points: Optional[np.ndarray], gt_tree: Optional[cKDTree] = None,
                      threshold: Optional[float] = None, seed: int = 0) -> Tuple[np.ndarray, str, dict]:
    """4x4 similarity prediction -> ground truth from the cameras est / gt [S,4,4] (camera-to-world).

    Candidates: Umeyama on the camera centres (when >= 3 keyframes not (nearly) on one line) and
    the camera orientations (:func:`_orientation_alignment`; the rotation of a short, nearly
    straight trajectory is poorly fixed by its centres). With a ground-truth tree the candidate
    whose moved prediction (20k random points) lies closer to the ground truth (clipped mean
    distance) wins, else the centres'. Returns (4x4, name, {name: score}).
    """
    est_c, gt_c = est[:, :3, 3], gt[:, :3, 3]
    candidates = {}
    if _planar_enough(est_c) and _planar_enough(gt_c):
        candidates["umeyama_camera_centres"] = align_positions(est_c, gt_c, with_scale=True)
    candidates["camera_orientations"] = _orientation_alignment(est, gt, pred_points, gt_points)
    if gt_tree is None or len(pred_points) == 0 or len(candidates) == 1:
        name = next(iter(candidates))
        return candidates[name], name, {}
    sample = pred_points
    if len(sample) > 20000:
        sample = sample[np.random.default_rng(seed).choice(len(sample), 20000, replace=False)]
    scores = {name: start_score(sim, sample, gt_tree, threshold) for name, sim in candidates.items()}
    name = min(scores, key=scores.get)
    return candidates[name], name, scores


def camera_metrics(est: np.ndarray, gt: np.ndarray) -> dict:
    """ATE (Sim(3)-aligned centres) and RPE (consecutive keyframes) of est vs gt [S,4,4]."""
    if len(est) < 3:
        return {"note": f"{len(est)} keyframes: ATE/RPE need >= 3"}
    if not np.isfinite(est).all() or not _spread(est[:, :3, 3])[0] > 0:
        return {"note": "degenerate predicted trajectory (all camera centres equal or non-finite)"}
    a = ate(est[:, :3, 3], gt[:, :3, 3], with_scale=True)
    a["transform"] = a["transform"].tolist()
    return {"ate": a, "rpe": rpe(est, gt, scale=a["scale"])}


def bbox_diagonal(points: np.ndarray) -> float:
    return float(np.linalg.norm(points.max(0) - points.min(0))) if len(points) else 0.0


def evaluate(recon: Reconstruction, gt_points: Optional[np.ndarray], gt_cam_to_world: np.ndarray,
             opts: EvalOptions, gt_tree: Optional[cKDTree] = None) -> dict:
    """Metrics of a reconstruction against ground truth.

    gt_points [M,3] (None: cameras only); gt_cam_to_world [K,4,4]: ground-truth poses of all
    keyframes (indexed by ``recon.frame_ids``). Returns a dict with the cloud metrics (acc_*,
    comp_*, chamfer, point counts), "cameras" (ATE / RPE), "alignment" (how, scale, ICP) and frames.
    """
    gt_poses = np.asarray(gt_cam_to_world, dtype=np.float64)[recon.frame_ids]
    out = {"frames": int(len(recon.frame_ids)), "cameras": camera_metrics(recon.cam_to_world, gt_poses)}
    if gt_points is None:
        return out
    pred = recon.points[np.isfinite(recon.points).all(1)]
    if len(pred) == 0 or len(recon.frame_ids) == 0:
        out["note"] = "no predicted points"
        return out
    gt_tree = gt_tree or cKDTree(gt_points)
    thr = opts.icp_threshold * bbox_diagonal(gt_points) if opts.icp_threshold > 0 else None
    init, how, scores = initial_alignment(recon.cam_to_world, gt_poses, pred, gt_points, gt_tree, thr, opts.seed)
    sim, icp = init, {"iterations": 0}
    if opts.icp_iterations:
        sim, icp = icp_refine(pred, gt_points, init, opts.icp_iterations, thr, opts.icp_scale,
                              seed=opts.seed, dst_tree=gt_tree)
    aligned = finish_cloud(transform_points(pred, sim), opts.voxel, opts.max_points, opts.seed)
    out.update(cloud_distances(aligned, gt_points, gt_tree=gt_tree))
    out["alignment"] = {"init": how, "init_scores": scores, "scale": float(np.cbrt(np.linalg.det(sim[:3, :3]))), "icp": icp,
                        "transform": sim.tolist()}
    out["aligned_points"] = aligned                       # dropped before JSON; kept for --save-clouds
    return out


def row(label: str, pipeline: str, recon: Reconstruction, metrics: dict, ratios: Tuple) -> dict:
    """One line of the results table (JSON-able apart from ``aligned_points``)."""
    cams = metrics.get("cameras", {})
    q, kv = ratios
    merge = recon.merge
    return {
        "method": label, "pipeline": pipeline,
        "q_ratio": merge.get("kept_q", q), "kv_ratio": merge.get("kept_kv", kv),
        "acc": metrics.get("acc_mean"), "comp": metrics.get("comp_mean"),
        "acc_median": metrics.get("acc_median"), "comp_median": metrics.get("comp_median"),
        "chamfer": metrics.get("chamfer"),
        "ate_rmse": cams.get("ate", {}).get("rmse"), "rpe_trans": cams.get("rpe", {}).get("trans_rmse"),
        "rpe_rot_deg": cams.get("rpe", {}).get("rot_rmse_deg"),
        "time_s": recon.time_s, "total_s": recon.total_s,
        "peak_mib": recon.memory.get("peak_mib"), "memory_kind": recon.memory.get("kind"),
        "frames": metrics.get("frames"), "pred_points": metrics.get("pred_points"),
        "gt_points": metrics.get("gt_points"), "merge": merge,
        "details": {k: v for k, v in metrics.items() if k not in ("aligned_points",)} | {"run": recon.extra},
        "aligned_points": metrics.get("aligned_points"),
    }
