"""Anchored windows: window -> world from the anchor's known pose and one robust scale, and the
checks on a window's new keyframes (both window modes).

A window whose first frame is a map keyframe (the anchor) is predicted in the anchor's camera
frame, so window -> world is the anchor's cam_to_world and one scale ``s`` (x_w = s R_a x + t_a).
``s`` is the weighted median of log(map depth / predicted depth) over confident pixels of the
anchor and context frames (same frame, same pixel: no pose involved); the residual is the spread
of that log ratio; the context cameras, once in the world, are compared with their map poses.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .alignment import AlignmentReport, FrameGeometry, camera_verdict, per_camera_errors, scale_verdict
from .stream_config import AlignConfig, TrackingConfig


def _weighted_median(x: torch.Tensor, w: torch.Tensor) -> float:
    order = torch.argsort(x)
    cw = torch.cumsum(w[order], 0)
    return float(x[order][int(torch.searchsorted(cw, 0.5 * cw[-1]).clamp_max(len(x) - 1))])


def anchored_alignment(local: FrameGeometry, known: FrameGeometry, align: AlignConfig,
                       tracking: TrackingConfig, context_agreement: float = 1.0) -> AlignmentReport:
    """local: the window's known frames (anchor first) in the window frame; known: the same frames
    in the world (map poses, world depth). context_agreement: share of the context cameras that
    must match their map poses (1.0: all; relocalisation windows pass
    ``tracking.min_context_agreement``). Returns the checked report (scale, anchor R/t)."""
    O, H, W = local.depth.shape
    stride = max(1, math.ceil(math.sqrt(O * H * W / align.max_points)))
    dl, dk = local.depth[:, ::stride, ::stride].double(), known.depth[:, ::stride, ::stride].double()
    conf = torch.minimum(local.conf[:, ::stride, ::stride], known.conf[:, ::stride, ::stride].to(local.conf)).double()
    w = torch.log(conf.clamp_min(1.0))
    ok = torch.isfinite(dl) & torch.isfinite(dk) & (dl > 0) & (dk > 0) & (w > 0)
    n = int(ok.sum())
    if n < align.min_points:
        return AlignmentReport(False, f"too little overlap: {n} valid anchor/context pixels < min_points="
                                      f"{align.min_points}", num_points=n, num_frames=O)
    r, wv = torch.log(dk[ok] / dl[ok]), w[ok]                                  # [n]
    log_s = _weighted_median(r, wv)
    log_b = _baseline_log_scale(local.cam_to_world, known.cam_to_world, float(dk[ok].median()))
    if log_b is not None and abs(log_b - log_s) < tracking.anchor_scale_inlier:
        log_s = log_b                        # long anchor-context baselines fix the scale best
    dev = (r - log_s).abs()
    inlier = dev < tracking.anchor_scale_inlier
    frac = float(inlier.double().mean())
    resid = float(torch.sqrt((wv[inlier] * dev[inlier] ** 2).sum() / wv[inlier].sum())) if bool(inlier.any()) else math.inf
    scale = torch.tensor(math.exp(log_s), dtype=torch.float64)
    pose = known.cam_to_world[0].double().cpu()
    rot, trans = pose[:3, :3], pose[:3, 3]
    median = float(dk[ok].median())
    rep = AlignmentReport(True, "", float(scale), rot.numpy(), trans.numpy(), resid * median, resid, frac, n, O, 0)
    rot_err, centre_err = per_camera_errors(
        FrameGeometry(local.cam_to_world.cpu(), local.intrinsics, local.depth, local.conf),
        FrameGeometry(known.cam_to_world.cpu(), known.intrinsics, known.depth, known.conf), scale, rot, trans, median)
    agree = (rot_err <= align.max_rotation_deg) & (centre_err <= align.max_center_error)     # [O], anchor first
    rep.context_disagreeing = int((~agree[1:]).sum())
    enough = _context_agrees(agree, context_agreement) and bool(agree.any())
    use = agree if enough else torch.ones_like(agree)          # too few (or none, the anchor too): the worst
    rep.rotation_error_deg, rep.center_error_rel = float(rot_err[use].max()), float(centre_err[use].max())
    rep.reason = _anchored_verdict(rep, align, tracking)
    rep.accepted = rep.reason == ""
    return rep


def _baseline_log_scale(local_poses: torch.Tensor, world_poses: torch.Tensor, median_depth: float):
    """Median log(map baseline / window baseline) of the context cameras from the anchor, over
    those at least 0.2 median depths away; None when there are none."""
    cw = local_poses[1:, :3, 3].double().cpu()
    ck = (world_poses[1:, :3, 3] - world_poses[:1, :3, 3]).double().cpu()
    bw, bk = torch.linalg.norm(cw, dim=1), torch.linalg.norm(ck, dim=1)
    use = (bk > 0.2 * median_depth) & (bw > 0) & torch.isfinite(bw)
    if not bool(use.any()):
        return None
    return float(torch.log(bk[use] / bw[use]).median())


def _context_agrees(agree: torch.Tensor, share: float) -> bool:
    """At least ``share`` of the context cameras (agree [O] bool, anchor first) match their map
    poses. In a relocalisation window the context keyframes chosen by covisibility come from another
    time: they may lie beyond the baseline the network places well, or be held elsewhere by a
    pose-graph correction, and one of them must not reject a window whose other known frames agree."""
    context = agree[1:]
    return context.numel() == 0 or float(context.double().mean()) >= share


def _anchored_verdict(rep: AlignmentReport, align: AlignConfig, tracking: TrackingConfig) -> str:
    if not (math.isfinite(rep.scale) and rep.scale > 0):
        return "non-finite anchor scale"
    if (why := scale_verdict(rep.scale, align)):
        return why
    if rep.inlier_fraction < tracking.min_depth_agreement:
        return (f"anchor/context depth disagrees with the map: {rep.inlier_fraction:.2f} of the pixels within "
                f"{tracking.anchor_scale_inlier} (log) < min_depth_agreement={tracking.min_depth_agreement}")
    return camera_verdict(rep, align, "context cameras disagree with the map")


# ---------------------------------------------------------------------------- new keyframes
def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = ((torch.trace(a.T @ b) - 1) / 2).clamp(-1, 1)
    return float(torch.rad2deg(torch.arccos(cos)))


def depth_agreement(points: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                    depth: torch.Tensor, tolerance: float) -> Tuple[int, float]:
    """Map points [M,3] seen by a camera: (how many land in its image, share whose depth agrees
    with ``depth`` [h,w] there within |log ratio| < tolerance)."""
    if points.shape[0] == 0:
        return 0, math.nan
    pose = cam_to_world.cpu().double()
    cam = (points.double() - pose[:3, 3]) @ pose[:3, :3]
    K = intrinsics.cpu().double()
    z = cam[:, 2]
    u = (K[0, 0] * cam[:, 0] / z.clamp_min(1e-12) + K[0, 2]).floor().long()
    v = (K[1, 1] * cam[:, 1] / z.clamp_min(1e-12) + K[1, 2]).floor().long()
    H, W = depth.shape
    inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    n = int(inside.sum())
    if not n:
        return 0, math.nan
    d = depth.cpu().double()[v[inside], u[inside]]
    agree = torch.isfinite(d) & (d > 0) & ((torch.log(d.clamp_min(1e-12) / z[inside])).abs() < tolerance)
    return n, float(agree.double().mean())


def check_new_frames(frame_ids: Sequence[int], cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                     depth: torch.Tensor, conf: torch.Tensor, previous: Optional[List[torch.Tensor]],
                     map_points: torch.Tensor, median_depth: float, cfg: TrackingConfig,
                     require_overlap: bool = False,
                     look_alike: Optional[Sequence[float]] = None) -> Tuple[int, List[Tuple[int, str]]]:
    """Check a window's new keyframes in order (world poses [n,4,4], depth [n,h,w], conf [n,h,w]).

    previous: the last two accepted world poses before them (None: no constant-velocity check).
    require_overlap: the map must be visible in each frame (relocalisation). look_alike: per frame,
    its descriptor similarity to the frame it follows (checked against ``cfg.min_new_similarity``;
    None: not checked). Returns (frames kept =
    the prefix before the first failure, [(frame_id, reason)] of the dropped ones).
    """
    prev = list(previous) if previous is not None else None
    for k, fid in enumerate(frame_ids):
        reason = "" if look_alike is None or look_alike[k] >= cfg.min_new_similarity else (
            f"does not look like the frame before it: descriptor similarity {look_alike[k]:.2f} < "
            f"min_new_similarity={cfg.min_new_similarity}")
        reason = reason or _frame_problem(cam_to_world[k], intrinsics[k], depth[k], conf[k], prev, map_points,
                                median_depth, cfg, require_overlap)
        if reason:
            dropped = [(int(fid), reason)] + [(int(f), f"after dropped keyframe {fid}") for f in frame_ids[k + 1:]]
            return k, dropped
        if prev is not None:
            prev = [prev[-1], cam_to_world[k].cpu().double()]
    return len(frame_ids), []


def _frame_problem(pose, K, depth, conf, prev, map_points, median_depth, cfg: TrackingConfig,
                   require_overlap: bool) -> str:
    if not bool(torch.isfinite(pose).all()):
        return "non-finite pose"
    c = conf[torch.isfinite(conf)]
    med_conf = float(c.median()) if c.numel() else math.nan
    if not med_conf >= cfg.min_confidence:
        return f"low confidence: median {med_conf:.2f} < min_confidence={cfg.min_confidence}"
    pose = pose.cpu().double()
    if prev is not None and len(prev) == 2:
        a, b = prev
        step = b[:3, 3] - a[:3, 3]
        pred_c = b[:3, 3] + step
        allowed = cfg.max_jump * median_depth + float(torch.linalg.norm(step))
        jump = float(torch.linalg.norm(pose[:3, 3] - pred_c))
        if jump > allowed:
            return (f"pose jump: centre {jump / median_depth:.2f} of depth from the constant-velocity prediction "
                    f"(allowed {allowed / median_depth:.2f})")
        pred_r = b[:3, :3] @ (a[:3, :3].T @ b[:3, :3])
        ang = _angle_deg(pred_r, pose[:3, :3])
        if ang > cfg.max_jump_deg:
            return f"pose jump: rotation {ang:.1f} deg from the constant-velocity prediction > max_jump_deg={cfg.max_jump_deg}"
    if cfg.depth_check or require_overlap:
        seen, share = depth_agreement(map_points, pose, K, depth, cfg.new_depth_tolerance)
        if seen >= cfg.min_visible_points and not share >= cfg.min_depth_agreement:
            return f"depth disagrees with the map: {share:.2f} of {seen} map points agree < {cfg.min_depth_agreement}"
        if require_overlap and seen < cfg.min_visible_points:
            return f"does not see the map: {seen} map points < min_visible_points={cfg.min_visible_points}"
    return ""
