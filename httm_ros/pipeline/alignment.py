"""Similarity alignment of a window onto the world frame from its overlap keyframes.

The overlap keyframes of a new window were already reconstructed (in world coordinates) by the
previous accepted window. The same pixel of the same frame is the same surface point, so both
depth maps give point correspondences without any matching: ``dst`` = world points of the anchor,
``src`` = points of the new window in its own frame. We estimate ``x_w = s R x + t`` by weighted
Umeyama (closed form), started from the best of several hypotheses (all points, each overlap
frame alone, random 8-point subsets; least median of residuals) and refined by iteratively
reweighted least squares (Cauchy weights), weighting each pixel by ``log(min(conf_src,
conf_dst))`` (0 for VGGT's floor confidence of 1).

The estimate is *checked* before anyone uses it; every failure is a rejection with its reason:
too little overlap / too few valid correspondences, degenerate (collinear) geometry, non-finite
or implausible scale, low inlier fraction, high robust residual, or overlap cameras that disagree
with their world poses after alignment. Everything here is torch and runs on the inputs' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch

from .stream_config import AlignConfig
from ..geometry import transform_cam_to_world, unproject_depth


@dataclass
class FrameGeometry:
    """Depth-based geometry of a few frames in one coordinate frame.

    cam_to_world [O,4,4] (to that frame), intrinsics [O,3,3], depth [O,H,W], conf [O,H,W].
    """

    cam_to_world: torch.Tensor
    intrinsics: torch.Tensor
    depth: torch.Tensor
    conf: torch.Tensor

    def __len__(self) -> int:
        return int(self.depth.shape[0])


@dataclass
class AlignmentReport:
    """Outcome of aligning one window. ``accepted`` False means the transform was NOT applied.

    scale, rotation [3,3], translation [3]: window -> world (x_w = s R x + t). residual: robust RMS
    of the inlier residuals (world units); residual_rel: the same over the median overlap depth.
    inlier_fraction: share of correspondences with residual < inlier_threshold x median depth.
    rotation_error_deg / center_error_rel: worst overlap camera after alignment vs. its world pose
    (anchored windows: worst of the context cameras that agree; context_disagreeing: how many
    context cameras were outside the limits).
    """

    accepted: bool
    reason: str = ""
    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    residual: float = math.nan
    residual_rel: float = math.nan
    inlier_fraction: float = math.nan
    num_points: int = 0
    num_frames: int = 0
    iterations: int = 0
    rotation_error_deg: float = math.nan
    center_error_rel: float = math.nan
    context_disagreeing: int = 0

    def matrix(self) -> np.ndarray:
        """4x4 similarity window -> world."""
        out = np.eye(4)
        out[:3, :3] = self.scale * np.asarray(self.rotation)
        out[:3, 3] = self.translation
        return out

    def as_dict(self) -> dict:
        """JSON-friendly copy (lists instead of arrays)."""
        d = dict(self.__dict__)
        d["rotation"] = np.asarray(self.rotation).tolist()
        d["translation"] = np.asarray(self.translation).tolist()
        return d


# ---------------------------------------------------------------------------- estimation
def weighted_umeyama(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity dst ~ s R src + t. src, dst [N,3] (or batched [...,N,3]); weights
    [N] or a batch [B,N] (one fit per row; each row >= 0 with a positive sum).

    Returns (scale [] | [B], R [3,3] | [B,3,3], t [3] | [B,3]) in the inputs' dtype and device.
    The 3x3 SVDs run on the CPU in one batch (no solver start-up cost, one transfer on CUDA).
    """
    w = weights / weights.sum(-1, keepdim=True)                             # [...,N]
    c_s, c_d = src.mean(-2, keepdim=True), dst.mean(-2, keepdim=True)      # shift for precision
    xs, xd = src - c_s, dst - c_d
    mu_s, mu_d = (w[..., None, :] @ xs)[..., 0, :], (w[..., None, :] @ xd)[..., 0, :]     # [...,3]
    cov = (w[..., None] * xd).transpose(-1, -2) @ xs - mu_d[..., :, None] * mu_s[..., None, :]
    var_s = (w * (xs * xs).sum(-1)).sum(-1) - (mu_s * mu_s).sum(-1)
    mu_s, mu_d = mu_s + c_s[..., 0, :], mu_d + c_d[..., 0, :]
    u, d, vh = torch.linalg.svd(cov.detach().cpu().double())
    sign = torch.ones(d.shape, dtype=torch.float64)
    sign[..., 2] = torch.where(torch.det(u) * torch.det(vh) < 0, -1.0, 1.0)
    rot = (u * sign[..., None, :]) @ vh
    scale = (d * sign).sum(-1) / var_s.detach().cpu().double().clamp_min(1e-300)
    rot, scale = rot.to(src), scale.to(src)
    return scale, rot, mu_d - scale[..., None] * (rot @ mu_s[..., None])[..., 0]


def _residuals(src: torch.Tensor, dst: torch.Tensor, scale, rot, trans) -> torch.Tensor:
    """|dst - (s R src + t)| for one transform ([N]) or a batch ([B,N])."""
    moved = scale[..., None, None] * (src @ rot.transpose(-1, -2)) + trans[..., None, :]
    return torch.linalg.norm(dst - moved, dim=-1)


def robust_similarity(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor, iterations: int = 10,
                      floor: float = 0.0, groups: Optional[torch.Tensor] = None, subsets: int = 16
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Robust similarity dst ~ s R src + t: best start by least median of residuals, then IRLS.

    Start hypotheses (batched fits): the weighted fit of all points, one fit per group (``groups``
    [N] int, e.g. the overlap frame of each point: one bad frame cannot pull the start), and
    ``subsets`` fits of 8 random points (fixed seed). The one with the smallest median residual
    (over up to 2000 random points) starts the IRLS around :func:`weighted_umeyama` with Cauchy
    weights 1 / (1 + (r/c)^2), c = 2.5 x 1.4826 x median residual (never below ``floor``), until
    the transform changes by < 1e-7 (relative). Returns (scale, R, t, residuals [N], iterations).
    """
    n = src.shape[0]
    rows = [weights]
    if groups is not None:
        for g in torch.unique(groups).tolist():
            rows.append(torch.where(groups == g, weights, torch.zeros_like(weights)))
    rows = torch.stack(rows)                                                    # [B,N]
    hyps = list(weighted_umeyama(src, dst, rows[rows.sum(1) > 0]))
    gen = torch.Generator().manual_seed(0)
    if subsets and n >= 16:
        idx = torch.randint(0, n, (subsets, 8), generator=gen).to(src.device)
        ws = weights[idx]
        ok = ws.sum(1) > 0
        sub = weighted_umeyama(src[idx][ok], dst[idx][ok], ws[ok])             # [b,8,3] batches
        hyps = [torch.cat([a, b]) for a, b in zip(hyps, sub)]
    probe = torch.randperm(n, generator=gen)[:2000].to(src.device)         # LMedS scoring sample
    med = _residuals(src[probe], dst[probe], *hyps).median(dim=1).values
    best = int(torch.argmin(torch.where(torch.isfinite(med), med, torch.full_like(med, math.inf))))
    scale, rot, trans = hyps[0][best], hyps[1][best], hyps[2][best]
    spread = float(torch.linalg.norm(dst - dst.mean(0), dim=1).mean()) + 1e-30
    used = 0
    for used in range(1, iterations + 1):
        res = _residuals(src, dst, scale, rot, trans)
        c = torch.clamp(2.5 * 1.4826 * res.median(), min=max(floor, 1e-30))
        new = weighted_umeyama(src, dst, weights / (1.0 + (res / c) ** 2))
        change = float(torch.abs(new[0] / scale - 1.0) + torch.linalg.norm(new[1] - rot)
                       + torch.linalg.norm(new[2] - trans) / spread)
        scale, rot, trans = new
        if change < 1e-7:
            break
    return scale, rot, trans, _residuals(src, dst, scale, rot, trans), used


# ---------------------------------------------------------------------------- the checked alignment
def align_overlap(local: FrameGeometry, anchor: FrameGeometry, config: Optional[AlignConfig] = None
                  ) -> AlignmentReport:
    """Align a window (``local``: its overlap frames in the window frame) onto ``anchor`` (the
    same frames, same resolution, in the world frame). Returns the checked report."""
    cfg = config or AlignConfig()
    O = len(local)
    if len(anchor) != O or tuple(local.depth.shape) != tuple(anchor.depth.shape):
        raise ValueError(f"overlap geometry mismatch: local depth {tuple(local.depth.shape)} vs anchor "
                         f"{tuple(anchor.depth.shape)}")
    if O < cfg.min_overlap_frames:
        return AlignmentReport(False, f"too little overlap: {O} keyframe(s) < min_overlap_frames="
                                      f"{cfg.min_overlap_frames}", num_frames=O)
    src, dst, w, frame, median_depth = _correspondences(local, anchor, cfg.max_points)
    n = int(w.shape[0])
    if n < cfg.min_points:
        return AlignmentReport(False, f"too little overlap: {n} valid correspondences < min_points="
                                      f"{cfg.min_points}", num_points=n, num_frames=O)
    degenerate = _degeneracy(src, w) or _degeneracy(dst, w)
    if degenerate:
        return AlignmentReport(False, f"degenerate overlap geometry: {degenerate}", num_points=n, num_frames=O)
    scale, rot, trans, res, iters = robust_similarity(src, dst, w, cfg.irls_iterations,
                                                      floor=1e-6 * median_depth, groups=frame)
    inlier = res < cfg.inlier_threshold * median_depth
    frac = float(inlier.double().mean())
    wi = w[inlier]
    residual = float(torch.sqrt((wi * res[inlier] ** 2).sum() / wi.sum())) if bool(inlier.any()) else math.inf
    rep = AlignmentReport(True, "", float(scale), rot.cpu().numpy(), trans.cpu().numpy(), residual,
                          residual / median_depth, frac, n, O, iters)
    rep.rotation_error_deg, rep.center_error_rel = camera_errors(local, anchor, scale, rot, trans, median_depth)
    rep.reason = _verdict(rep, cfg)
    rep.accepted = rep.reason == ""
    return rep


def _correspondences(local: FrameGeometry, anchor: FrameGeometry, max_points: int
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Grid-sampled valid pixel pairs -> (src [N,3], dst [N,3], weights [N], frame index [N],
    median anchor depth)."""
    O, H, W = local.depth.shape
    stride = max(1, math.ceil(math.sqrt(O * H * W / max_points)))
    src = unproject_depth(local.depth, local.cam_to_world, local.intrinsics, stride).double()
    dst = unproject_depth(anchor.depth, anchor.cam_to_world, anchor.intrinsics, stride).double()
    dl, da = local.depth[:, ::stride, ::stride], anchor.depth[:, ::stride, ::stride]
    conf = torch.minimum(local.conf[:, ::stride, ::stride], anchor.conf[:, ::stride, ::stride]).double()
    w = torch.log(conf.clamp_min(1.0))
    valid = (torch.isfinite(src).all(-1) & torch.isfinite(dst).all(-1) & (dl > 0) & (da > 0)
             & torch.isfinite(w) & (w > 0))
    median = float(da[valid].double().median()) if bool(valid.any()) else 1.0
    frame = torch.arange(O, device=valid.device)[:, None, None].expand_as(valid)
    return src[valid], dst[valid], w[valid], frame[valid], median


def _degeneracy(points: torch.Tensor, w: torch.Tensor) -> str:
    """'' if the weighted point cloud spans at least a plane, else a description."""
    wn = w / w.sum()
    x = points - wn @ points
    ev = torch.linalg.eigvalsh(((x * wn[:, None]).T @ x).cpu().double())          # ascending
    if not bool(torch.isfinite(ev).all()) or float(ev[2]) <= 1e-24:
        return "points collapse to a single location"
    if float(ev[1]) / float(ev[2]) < 1e-6:
        return f"points are (nearly) collinear (eigenvalue ratio {float(ev[1]) / float(ev[2]):.1e})"
    return ""


def camera_errors(local: FrameGeometry, anchor: FrameGeometry, scale, rot, trans,
                   median_depth: float) -> Tuple[float, float]:
    """Worst rotation (deg) and centre (relative) error of the aligned overlap cameras."""
    rot_err, center_err = per_camera_errors(local, anchor, scale, rot, trans, median_depth)
    return float(rot_err.max()), float(center_err.max())


def per_camera_errors(local: FrameGeometry, anchor: FrameGeometry, scale, rot, trans,
                      median_depth: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per known camera [O]: rotation (deg) and centre (relative to the median depth) error of its
    aligned pose against its world pose."""
    moved = transform_cam_to_world(local.cam_to_world.double(), scale.double(), rot.double(), trans.double())
    ref = anchor.cam_to_world.double()
    rel = ref[:, :3, :3].transpose(1, 2) @ moved[:, :3, :3]
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)), torch.linalg.norm(moved[:, :3, 3] - ref[:, :3, 3], dim=1) / median_depth


def _verdict(rep: AlignmentReport, cfg: AlignConfig) -> str:
    """'' when every check passes, else the first failed check."""
    if not (math.isfinite(rep.scale) and np.all(np.isfinite(rep.rotation)) and np.all(np.isfinite(rep.translation))):
        return "non-finite transform"
    if (why := scale_verdict(rep.scale, cfg)):
        return why
    if rep.inlier_fraction < cfg.min_inlier_fraction:
        return (f"inconsistent window: inlier fraction {rep.inlier_fraction:.2f} < min_inlier_fraction="
                f"{cfg.min_inlier_fraction}")
    if not rep.residual_rel <= cfg.max_residual:
        return f"inconsistent window: residual {rep.residual_rel:.3f} of depth > max_residual={cfg.max_residual}"
    return camera_verdict(rep, cfg, "overlap cameras disagree")


def scale_verdict(scale: float, cfg: AlignConfig) -> str:
    """'' when ``scale`` lies in ``cfg.scale_range``, else the reason."""
    lo, hi = cfg.scale_range
    return "" if lo <= scale <= hi else f"implausible scale {scale:.3g} outside scale_range [{lo:g}, {hi:g}]"


def camera_verdict(rep: AlignmentReport, cfg: AlignConfig, what: str) -> str:
    """'' when the known cameras agree with their aligned poses (rotation, centre), else the reason
    starting with ``what`` (e.g. "overlap cameras disagree")."""
    if not rep.rotation_error_deg <= cfg.max_rotation_deg:
        return f"{what}: rotation error {rep.rotation_error_deg:.1f} deg > max_rotation_deg={cfg.max_rotation_deg}"
    if not rep.center_error_rel <= cfg.max_center_error:
        return f"{what}: centre error {rep.center_error_rel:.3f} of depth > max_center_error={cfg.max_center_error}"
    return ""
