"""Ground-truth predictors for tests, evaluation checks and benchmarks (never used by the node's runtime path).

:class:`OraclePredictor`: the ground truth of a synthetic :class:`~httm_ros.synthetic.Sequence`,
distorted like VGGT output (random similarity per window, pose and depth noise, outliers, optional
corruptions). :class:`PerturbedOracle`: exact ground truth with separately controlled, known errors,
for checking that the evaluation metrics measure them. Both have the predictor interface
``predict(images [S,3,H,W], frame_ids) -> WindowPrediction`` (:mod:`httm_ros.pipeline.predictor`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..geometry import axis_angle_rotation, invert_rigid
from ..pipeline.predictor import WindowPrediction
from ..timing import StageTimer

if TYPE_CHECKING:  # pragma: no cover
    from .sequence import Sequence as SyntheticSequence

CORRUPTIONS = ("random_depth", "flipped_depth", "wrong_poses")


class OraclePredictor:
    """Ground truth of a synthetic :class:`~httm_ros.synthetic.Sequence`, distorted like VGGT output.

    Frame ids are indices into the sequence; images are only checked for their size (they must
    be the sequence's resolution: the oracle does not resample ground truth). Per call (window):

    * geometry is expressed in the window's first camera (its extrinsics = identity) and scaled by
      a random factor from ``scale_range`` (log-uniform): the similarity a window is "off" by;
    * each non-first camera gets a random rotation error (sigma ``10 * noise`` degrees) and a
      translation error (sigma ``0.2 * noise`` x the median depth); depth gets a per-frame scale
      error (sigma ``noise / 2``, not on frame 0) and per-pixel relative noise (sigma ``noise``):
      with noise = 0.01, 0.1 deg, 0.2 % of the depth, 0.5 % and 1 % respectively;
    * ``outlier_fraction`` of the pixels get a wrong depth (x0.3 .. x3) and a low confidence;
    * confidence is 1 + (up to ~6) decreasing with each pixel's drawn noise (informative, like VGGT).

    ``corrupt`` maps a call index (0-based window count) to one of :data:`CORRUPTIONS`, to test
    rejection: random_depth (depth replaced by random values), flipped_depth (every depth map
    upside down), wrong_poses (cameras other than the first replaced by random poses).
    Deterministic in ``seed`` and the call index. ``calls`` records (frame_ids, scale) per call.

    Rooms: when the sequence's ``info["room"]`` (int [S], see :func:`with_other_room`) gives a frame
    another room than the window's first frame, no geometry relates them: the oracle returns such a
    frame with a random pose (normal confidence), as a model that cannot place it would.
    """

    def __init__(self, sequence: "SyntheticSequence", noise: float = 0.01, seed: int = 0,
                 scale_range: Tuple[float, float] = (0.5, 2.0), outlier_fraction: float = 0.02,
                 corrupt: Optional[Mapping[int, str]] = None) -> None:
        if not 0.0 <= noise <= 0.5:
            raise ValueError(f"OraclePredictor.noise must be in [0, 0.5], got {noise}")
        if not 0.0 <= outlier_fraction < 1.0:
            raise ValueError(f"OraclePredictor.outlier_fraction must be in [0, 1), got {outlier_fraction}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"OraclePredictor.scale_range must satisfy 0 < lo <= hi, got {scale_range}")
        bad = {k: v for k, v in (corrupt or {}).items() if v not in CORRUPTIONS}
        if bad:
            raise ValueError(f"OraclePredictor.corrupt kinds must be in {CORRUPTIONS}, got {bad}")
        self.sequence = sequence
        self.noise, self.seed = float(noise), int(seed)
        self.scale_range, self.outlier_fraction = scale_range, float(outlier_fraction)
        self.corrupt: Dict[int, str] = dict(corrupt or {})
        self.calls: List[dict] = []

    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        """images [S,3,H,W] (size checked only) -> distorted ground truth on images.device."""
        seq, ids = self.sequence, np.asarray(list(frame_ids), dtype=np.int64)
        S, _, H, W = images.shape
        if (H, W) != (seq.height, seq.width):
            raise ValueError(f"OraclePredictor: images are {H}x{W} but the sequence is {seq.height}x{seq.width}; "
                             "run the stream with image_width=None or the sequence's width")
        if len(ids) != S or ids.min() < 0 or ids.max() >= len(seq):
            raise ValueError(f"OraclePredictor: frame_ids {ids.tolist()} do not index {S} frames of a "
                             f"{len(seq)}-frame sequence")
        call = len(self.calls)
        rng = np.random.default_rng([self.seed, call])
        timer = StageTimer(mode="wall")
        scale = float(math.exp(rng.uniform(math.log(self.scale_range[0]), math.log(self.scale_range[1]))))
        depth_gt = seq.depth[ids].astype(np.float64)                               # [S,H,W]
        median = float(np.median(depth_gt[0]))
        cam_to_local = np.linalg.inv(seq.cam_to_world[ids[0]]) @ seq.cam_to_world[ids]   # [S,4,4]
        cam_to_local = self._perturb_poses(cam_to_local, median, rng)
        cam_to_local[:, :3, 3] *= scale
        depth, conf = self._noisy_depth(depth_gt, rng)
        depth *= scale
        kind = self.corrupt.get(call)
        if kind:
            depth, cam_to_local = self._corrupt(kind, depth, cam_to_local, rng, scale * median)
        rooms = seq.info.get("room") if isinstance(seq.info, dict) else None
        if rooms is not None:
            foreign = np.asarray(rooms)[ids] != np.asarray(rooms)[ids[0]]
            for k in np.flatnonzero(foreign):
                cam_to_local[k, :3, :3] = _rotation(rng.normal(0.0, 1.0, 3))
                cam_to_local[k, :3, 3] = rng.normal(0.0, scale * median, 3)
        extr = np.linalg.inv(cam_to_local)[:, :3, :]
        self.calls.append({"frame_ids": ids.tolist(), "scale": scale, "corrupt": kind})
        dev = images.device
        pred = WindowPrediction(
            torch.as_tensor(extr, dtype=torch.float32, device=dev),
            torch.as_tensor(seq.intrinsics[ids], dtype=torch.float32, device=dev),
            torch.as_tensor(depth, dtype=torch.float32, device=dev),
            torch.as_tensor(conf, dtype=torch.float32, device=dev),
            stats={"model_s": timer.lap("model"), "merge_mode": "oracle", "merge": {},
                   "oracle": {"call": call, "scale": scale, "corrupt": kind}})
        pred.check(S, H, W)
        return pred

    def _perturb_poses(self, cam_to_local: np.ndarray, median: float, rng: np.random.Generator) -> np.ndarray:
        """Small rotation (sigma noise*10 deg) and translation (sigma noise*0.2*median) errors, not on frame 0."""
        out = cam_to_local.copy()
        for k in range(1, len(out)):
            axis_angle = rng.normal(0.0, math.radians(10.0 * self.noise), 3)
            out[k, :3, :3] = _rotation(axis_angle) @ out[k, :3, :3]
            out[k, :3, 3] += rng.normal(0.0, 0.2 * self.noise * median, 3)
        return out

    def _noisy_depth(self, depth: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Per-frame scale error, per-pixel relative noise, outliers; confidence from the noise drawn."""
        S = depth.shape[0]
        frame_scale = 1.0 + rng.normal(0.0, 0.5 * self.noise, (S, 1, 1))
        frame_scale[0] = 1.0
        z = rng.standard_normal(depth.shape)
        out = depth * frame_scale * (1.0 + self.noise * z)
        conf = 1.0 + 5.0 * np.exp(-0.5 * z * z) + rng.uniform(0.0, 1.0, depth.shape)
        bad = rng.uniform(size=depth.shape) < self.outlier_fraction
        out[bad] *= np.exp(rng.uniform(math.log(0.3), math.log(3.0), int(bad.sum())))
        conf[bad] = 1.0 + rng.uniform(0.0, 0.3, int(bad.sum()))
        return out, conf

    @staticmethod
    def _corrupt(kind: str, depth: np.ndarray, cam_to_local: np.ndarray, rng: np.random.Generator,
                 typical_depth: float) -> Tuple[np.ndarray, np.ndarray]:
        if kind == "random_depth":
            return rng.uniform(0.2, 3.0, depth.shape) * typical_depth, cam_to_local
        if kind == "flipped_depth":
            return np.ascontiguousarray(depth[:, ::-1, :]), cam_to_local
        out = cam_to_local.copy()                                   # wrong_poses
        for k in range(1, len(out)):
            out[k, :3, :3] = _rotation(rng.normal(0.0, 1.0, 3))
            out[k, :3, 3] = rng.normal(0.0, typical_depth, 3)
        return depth, out


def with_other_room(sequence: "SyntheticSequence", other: "SyntheticSequence", start: int, count: int,
                    come_back: bool = True) -> "SyntheticSequence":
    """``sequence`` with ``count`` frames of ``other`` (another room) inserted at ``start``; with
    come_back=False the stream never returns (the rest is ``other``). ``info["room"]`` int [S]: 0 for
    frames of ``sequence``, 1 for the others (their poses/depths are in ``other``'s world)."""
    from .sequence import Sequence as SyntheticSequence
    if other.images.shape[1:] != sequence.images.shape[1:] or count > len(other):
        raise ValueError("with_other_room: the other sequence must have the same frame size and >= count frames")
    a, b = slice(0, start), slice(0, count)
    tail = slice(start, len(sequence) if come_back else start)
    parts = [(sequence, a, 0), (other, b, 1), (sequence, tail, 0)]
    cat = lambda name: np.concatenate([getattr(q, name)[sl] for q, sl, _ in parts])      # noqa: E731
    rooms = np.concatenate([np.full(len(range(*sl.indices(len(q)))), r) for q, sl, r in parts])
    n = len(rooms)
    fps = float(sequence.info.get("fps", 30.0)) if isinstance(sequence.info, dict) else 30.0
    info = dict(sequence.info or {}, room=rooms, other_room=(start, count, come_back))
    return SyntheticSequence(cat("images"), cat("depth"), cat("intrinsics"), cat("cam_to_world"),
                             np.arange(n, dtype=np.float64) / fps, sequence.scene, info)


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle [3] (angle = its length) -> rotation matrix [3,3]."""
    theta = float(np.linalg.norm(axis_angle))
    if theta < 1e-12:
        return np.eye(3)
    return axis_angle_rotation(axis_angle, theta)


# ---------------------------------------------------------------------------- known errors


class PerturbedOracle:
    """Ground truth with known, separately controlled errors: for checking that the metrics measure them.

    A predictor built on :class:`OraclePredictor` with its own noise switched off: each window is the
    exact ground truth in the window's first camera, times a random scale (log-uniform in
    ``scale_range``; the similarity every alignment must absorb), and then

    * ``depth_noise``: every depth value times (1 + depth_noise * n), n ~ N(0, 1) per pixel. A point
      moves along its ray by depth_noise * n * |p_cam| (p_cam: the point in its camera frame), so the
      mean displacement is sqrt(2 / pi) * depth_noise * mean |p_cam|;
    * ``drift_deg``: every relative pose between consecutive keyframes of a window is followed by a
      rotation of drift_deg about ``drift_axis`` (camera frame): P_{k+1} = P_k (G_k^-1 G_{k+1}) D, so
      the relative pose error of every consecutive pair is exactly D (RPE rotation = drift_deg);
    * ``depth_scale``: depth of every frame times depth_scale (cameras exact).

    Confidence is constant (2), so a confidence percentile filter drops nothing (ties are kept).
    """

    def __init__(self, sequence, depth_noise: float = 0.0, drift_deg: float = 0.0,
                 drift_axis: Seq[float] = (0.0, 1.0, 0.0), depth_scale: float = 1.0,
                 scale_range: Tuple[float, float] = (0.5, 2.0), seed: int = 0) -> None:
        self.oracle = OraclePredictor(sequence, noise=0.0, seed=seed, scale_range=scale_range, outlier_fraction=0.0)
        self.depth_noise, self.depth_scale = float(depth_noise), float(depth_scale)
        self.drift = axis_angle_rotation(drift_axis, math.radians(drift_deg))
        self.seed = int(seed)

    @property
    def calls(self):
        return self.oracle.calls

    def predict(self, images: torch.Tensor, frame_ids: Seq[int]) -> WindowPrediction:
        """images [S,3,H,W] (size checked by the oracle) -> perturbed WindowPrediction."""
        pred = self.oracle.predict(images, frame_ids)
        call = len(self.oracle.calls) - 1
        rng = np.random.default_rng([self.seed, 1000 + call])
        depth = pred.depth.double().cpu().numpy() * self.depth_scale
        if self.depth_noise:
            depth = depth * (1.0 + self.depth_noise * rng.standard_normal(depth.shape))
        cam = invert_rigid(pred.extrinsics.double().cpu()).numpy()                    # [S,4,4] window frame
        cam = self._drifted(cam)
        dev = pred.depth.device
        pred.extrinsics = torch.as_tensor(np.linalg.inv(cam)[:, :3, :], dtype=torch.float32, device=dev)
        pred.depth = torch.as_tensor(depth, dtype=torch.float32, device=dev)
        pred.depth_conf = torch.full_like(pred.depth, 2.0)
        pred.stats = dict(pred.stats, merge_mode="perturbed_oracle")
        return pred

    def _drifted(self, cam: np.ndarray) -> np.ndarray:
        """P_0 = G_0, P_{k+1} = P_k (G_k^-1 G_{k+1}) D (D: the drift rotation)."""
        if np.allclose(self.drift, np.eye(3)):
            return cam
        d = np.eye(4)
        d[:3, :3] = self.drift
        out = cam.copy()
        for k in range(1, len(cam)):
            out[k] = out[k - 1] @ np.linalg.inv(cam[k - 1]) @ cam[k] @ d
        return out
