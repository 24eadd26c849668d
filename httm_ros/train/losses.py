"""The VGGT training losses (Wang et al. 2025, Sec. 3.3/4) on normalised ground truth.

camera : L1 (or Huber) loss between every camera-head iteration's pose encoding and the ground
         truth (translation, quaternion, FoV x 0.5), later iterations weighted more (gamma^(n-1-i)).
depth  : aleatoric-uncertainty loss  sum conf * |d - d_gt| + conf * |grad(d - d_gt)| - alpha log conf
         over valid pixels (mean), gradients by finite differences along x and y.
points : the same loss on the point map (optional; weight 0 skips the point head).
match  : (optional) InfoNCE of later frames' patch tokens against their first-frame match.
flow   : (optional) L1 of two channels of later frames' patch tokens against their displacement
         to the first-frame match, in patches (a read-out with no parameters of its own).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

CAMERA_GAMMA = 0.6
CONF_ALPHA = 0.2
FOV_WEIGHT = 0.5        # the released VGGT code's weight of the focal/FoV term


def camera_loss(history: List[Tensor], target: Tensor, delta: float = 0.1, kind: str = "l1") -> Dict[str, Tensor]:
    """history: pose encodings [B,S,9] per iteration; target [B,S,9] -> dict total, t, q, fov.

    kind "l1" (the released VGGT training code's choice) or "huber" (smooth L1 with ``delta``). Huber
    with delta 0.1 is quadratic for almost every error on this data (relative quaternion
    components are mostly < 0.1): its gradient vanishes near the dataset mean, and the first run
    learned a constant pose (identity rotation) for every frame.
    """
    if kind not in ("l1", "huber"):
        raise ValueError(f"camera loss kind must be 'l1' or 'huber', got {kind!r}")

    def err(a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs().mean() if kind == "l1" else F.huber_loss(a, b, delta=delta)

    n = len(history)
    parts = {"t": 0.0, "q": 0.0, "fov": 0.0}
    norm = sum(CAMERA_GAMMA ** (n - 1 - i) for i in range(n))
    for i, pred in enumerate(history):
        w = CAMERA_GAMMA ** (n - 1 - i) / norm
        parts["t"] = parts["t"] + w * err(pred[..., :3], target[..., :3])
        parts["q"] = parts["q"] + w * err(pred[..., 3:7], target[..., 3:7])
        parts["fov"] = parts["fov"] + w * FOV_WEIGHT * err(pred[..., 7:], target[..., 7:])
    parts["total"] = parts["t"] + parts["q"] + parts["fov"]
    return parts


def rotation_error_deg(pred: Tensor, target: Tensor) -> Tensor:
    """Mean angle (degrees) between predicted and target camera rotations of pose encodings
    [B,S,9] over the frames after the first (the first is the identity by construction)."""
    q1 = F.normalize(pred[:, 1:, 3:7].float(), dim=-1)
    q2 = F.normalize(target[:, 1:, 3:7].float(), dim=-1)
    cos = (q1 * q2).sum(-1).abs().clamp(max=1.0)
    return torch.rad2deg(2 * torch.acos(cos)).mean()


def identity_rotation_error_deg(target: Tensor) -> Tensor:
    """``rotation_error_deg`` of a network that predicts no rotation ([B,S,9] targets): the bar a
    camera head has to get under to have learned anything about rotation."""
    identity = torch.zeros_like(target)
    identity[..., 6] = 1.0
    return rotation_error_deg(identity, target)


def _grad_error(err: Tensor, conf: Tensor, valid: Tensor) -> Tensor:
    """Sum of conf-weighted |finite differences| of err [N,H,W,C] where both pixels are valid."""
    total = err.new_zeros(())
    for dim in (1, 2):                                                     # y, x
        n = err.shape[dim] - 1
        d = (err.narrow(dim, 1, n) - err.narrow(dim, 0, n)).abs().sum(-1)
        ok = valid.narrow(dim, 1, n) & valid.narrow(dim, 0, n)
        total = total + (conf.narrow(dim, 0, n) * d * ok).sum()
    return total


def confidence_loss(pred: Tensor, conf: Tensor, target: Tensor, valid: Tensor,
                    alpha: float = CONF_ALPHA) -> Dict[str, Tensor]:
    """pred/target [B,S,H,W,C], conf [B,S,H,W] (> 1), valid [B,S,H,W] -> dict total, reg, grad, conf."""
    b, s, h, w, c = pred.shape
    err = (pred - target).reshape(b * s, h, w, c)
    conf_f, valid_f = conf.reshape(b * s, h, w), valid.reshape(b * s, h, w)
    count = valid_f.sum().clamp_min(1)
    reg = (conf_f * err.abs().sum(-1) * valid_f).sum() / count
    grad = _grad_error(err, conf_f, valid_f) / count
    log_conf = (torch.log(conf_f) * valid_f).sum() / count
    return {"total": reg + grad - alpha * log_conf, "reg": reg, "grad": grad, "conf": log_conf}


def _patch_centres(h: int, w: int, patch: int, device) -> Tuple[Tensor, Tensor]:
    """Pixel rows [h] and columns [w] of the patch centres (int64)."""
    return (torch.arange(h, device=device) * patch + patch // 2,
            torch.arange(w, device=device) * patch + patch // 2)


def _first_frame_projection(points: Tensor, intrinsics: Tensor, valid: Tensor, patch: int):
    """Where the 3-D point at each patch's centre pixel lands in the first frame.

    points [B,S,H,W,3] (first-camera coordinates), intrinsics [B,S,3,3], valid [B,S,H,W] ->
    (u, v, ok), each [B,S,h,w]: first-frame pixel coordinates and whether the point has depth,
    lies in front of the first camera and inside its image. Occlusion is not tested.
    """
    height, width = points.shape[2:4]
    h, w = height // patch, width // patch
    rows, cols = _patch_centres(h, w, patch, points.device)
    centre = points[:, :, rows][:, :, :, cols]                                  # [B,S,h,w,3]
    ok = valid[:, :, rows][:, :, :, cols] & (centre[..., 2] > 1e-6)
    k0 = intrinsics[:, :1, None, None]                                          # [B,1,1,1,3,3]
    z = centre[..., 2].clamp_min(1e-6)
    u = k0[..., 0, 0] * centre[..., 0] / z + k0[..., 0, 2]
    v = k0[..., 1, 1] * centre[..., 1] / z + k0[..., 1, 2]
    ok = ok & (u >= 0) & (u < w * patch) & (v >= 0) & (v < h * patch)
    return u, v, ok


def first_frame_patch_targets(points: Tensor, intrinsics: Tensor, valid: Tensor, patch: int) -> Tensor:
    """Ground-truth correspondences to the first frame at patch resolution.

    points [B,S,H,W,3] (first-camera coordinates), intrinsics [B,S,3,3], valid [B,S,H,W] ->
    target [B,S,h*w] (int64): the first-frame patch that sees the 3-D point at the centre pixel of
    each patch, or -1 (no depth, behind the first camera, or outside its image). Occlusion is
    not tested: a point hidden in the first frame still gets the patch it projects into.
    """
    b, s, height, width, _ = points.shape
    h, w = height // patch, width // patch
    u, v, ok = _first_frame_projection(points, intrinsics, valid, patch)
    index = (v.clamp(0, h * patch - 1) // patch).long() * w + (u.clamp(0, w * patch - 1) // patch).long()
    return torch.where(ok, index, torch.full_like(index, -1)).reshape(b, s, h * w)


def first_frame_displacement_targets(points: Tensor, intrinsics: Tensor, valid: Tensor,
                                     patch: int) -> Tuple[Tensor, Tensor]:
    """How far each patch's content moved since the first frame, in patches.

    points [B,S,H,W,3] (first-camera coordinates), intrinsics [B,S,3,3], valid [B,S,H,W] ->
    (displacement [B,S,h*w,2] = (x, y) of the first-frame projection of the patch-centre point
    minus the patch centre, divided by the patch size; ok [B,S,h*w] as in
    ``first_frame_patch_targets``). Zero for the first frame itself.
    """
    b, s, height, width, _ = points.shape
    h, w = height // patch, width // patch
    u, v, ok = _first_frame_projection(points, intrinsics, valid, patch)
    rows, cols = _patch_centres(h, w, patch, points.device)
    disp = torch.stack(((u - cols.to(u.dtype)) / patch, (v - rows.to(u.dtype)[:, None]) / patch), dim=-1)  # [B,S,h,w,2]
    return disp.reshape(b, s, h * w, 2), ok.reshape(b, s, h * w)


def displacement_loss(pred: Tensor, target: Tensor, ok: Tensor) -> Tensor:
    """L1 between predicted and true displacements to the first frame over the later frames.

    pred / target [B,S,N,2] (patches), ok [B,S,N] -> mean over the valid (b, s >= 1, n) and both
    axes. The dense form of what the camera needs from the matches: a token that found its
    first-frame match must also say where it is (httm_ros/weights/README.md, run 4).
    """
    keep = ok[:, 1:]
    if not bool(keep.any()):
        return pred.sum() * 0.0
    return (pred[:, 1:].float() - target[:, 1:])[keep].abs().mean()


def correspondence_loss(tokens: Tensor, target: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE of every later frame's patch tokens against the first frame's patch tokens.

    tokens [B,S,N,D] (patch tokens, N = h*w), target [B,S,N] (first-frame patch index or -1) ->
    mean cross-entropy over the valid (b, s >= 1, n). Teaches the aggregator to match image
    content across frames, which relative pose needs and which the camera loss alone did not
    teach a network trained from scratch (httm_ros/weights/README.md, run 2).
    """
    f = F.normalize(tokens.float(), dim=-1)
    logits = torch.einsum("bsnd,bmd->bsnm", f[:, 1:], f[:, 0]) / temperature      # [B,S-1,N,N]
    tgt = target[:, 1:]
    ok = tgt >= 0
    if not bool(ok.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[ok], tgt[ok])


def training_loss(out: Dict, gt: Dict, camera_weight: float = 5.0, depth_weight: float = 1.0,
                  point_weight: float = 0.0, huber_delta: float = 0.1, camera_kind: str = "l1",
                  match_weight: float = 0.0, flow_weight: float = 0.0) -> Dict[str, Tensor]:
    """Weighted sum of the parts -> dict loss (to minimise) and float-able parts for the log."""
    cam = camera_loss(out["pose_history"], gt["pose_enc"], huber_delta, camera_kind)
    dep = confidence_loss(out["depth"], out["depth_conf"], gt["depth"][..., None], gt["valid"])
    loss = camera_weight * cam["total"] + depth_weight * dep["total"]
    parts = {"camera": cam["total"], "cam_t": cam["t"], "cam_q": cam["q"], "cam_fov": cam["fov"],
             "depth": dep["total"], "depth_reg": dep["reg"], "depth_grad": dep["grad"], "depth_logconf": dep["conf"]}
    if point_weight > 0:
        pts = confidence_loss(out["world_points"], out["world_points_conf"], gt["points"], gt["valid"])
        loss = loss + point_weight * pts["total"]
        parts["points"] = pts["total"]
    if match_weight > 0:
        match = correspondence_loss(out["match_tokens"], gt["match_target"])
        loss = loss + match_weight * match
        parts["match"] = match
    if flow_weight > 0:
        flow = displacement_loss(out["flow"], gt["flow_target"], gt["flow_valid"])
        loss = loss + flow_weight * flow
        parts["flow"] = flow
        parts["flow_zero"] = displacement_loss(torch.zeros_like(out["flow"]), gt["flow_target"], gt["flow_valid"])
    parts["loss"] = loss
    return parts
