"""Window predictors: the model runner and a ground-truth "oracle" with the same interface.

A predictor turns the keyframes of one window into VGGT-style geometry::

    pred = predictor.predict(images, frame_ids)   # images [S,3,H,W] float in [0,1]
    pred.extrinsics  [S,3,4]  camera-from-world, OpenCV axes; frame 0 = identity (up to scale)
    pred.intrinsics  [S,3,3]  pixels of the input size, principal point (W/2, H/2)
    pred.depth       [S,H,W]  along the optical axis, same arbitrary unit as the extrinsics
    pred.depth_conf  [S,H,W]  >= 1 (VGGT: 1 + exp(x))
    pred.stats       dict     {"merge": {...}, "model_s": ..., ...} (free-form, JSON-able)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..synthetic import Sequence as SyntheticSequence


@dataclass
class WindowPrediction:
    """Geometry of one window in the window's own frame (its first camera), up to scale."""

    extrinsics: torch.Tensor      # [S,3,4]
    intrinsics: torch.Tensor      # [S,3,3]
    depth: torch.Tensor           # [S,H,W]
    depth_conf: torch.Tensor      # [S,H,W]
    stats: dict = field(default_factory=dict)

    def check(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError when shapes do not match a window of num_frames x height x width."""
        want = {"extrinsics": (num_frames, 3, 4), "intrinsics": (num_frames, 3, 3),
                "depth": (num_frames, height, width), "depth_conf": (num_frames, height, width)}
        for name, shape in want.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"WindowPrediction.{name} has shape {got}, expected {shape}")


@runtime_checkable
class Predictor(Protocol):
    """Anything with ``predict(images [S,3,H,W] in [0,1], frame_ids) -> WindowPrediction``."""

    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        ...


# ---------------------------------------------------------------------------- the model
class ModelPredictor:
    """Runs our VGGT (``httm_ros.vggt.VGGT``) once per window, optionally with token merging.

    model: a VGGT (moved to ``device`` and put in eval mode). dtype: None keeps the parameters'
    dtype; otherwise parameters and images are cast to it (the model's own CUDA autocast of the
    aggregator still applies). merge: an ``HTTMConfig`` / ``UniformMergeConfig`` installed with
    ``httm_ros.httm.patch`` (None = dense attention, also restored on a previously patched model).
    ``stats`` of each prediction: ``model_s`` (synchronised wall time of the forward pass),
    ``merge`` (``MergeStats.summary()``, {} when dense), ``merge_mode``.
    """

    def __init__(self, model: torch.nn.Module, device="cpu", dtype: Optional[torch.dtype] = None,
                 merge=None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.merge = merge
        from ..httm import patch                                   # installs (or removes) merging
        self._merge_stats = patch(self.model, merge)
        self.merge_mode = {"HTTMConfig": "httm", "UniformMergeConfig": "uniform"}.get(type(merge).__name__, "none")

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        """images [S,3,H,W] float in [0,1] (any device) -> WindowPrediction on ``self.device``."""
        from ..vggt.geometry import pose_encoding_to_extrinsics_intrinsics

        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [S,3,H,W], got {tuple(images.shape)}")
        S, _, H, W = images.shape
        x = images.to(device=self.device, dtype=self.dtype or next(self.model.parameters()).dtype)
        self._merge_stats.clear()
        _sync(self.device)
        t0 = time.perf_counter()
        out = self.model(x, heads=("camera", "depth"))
        _sync(self.device)
        model_s = time.perf_counter() - t0
        extr, intr = pose_encoding_to_extrinsics_intrinsics(out["pose_enc"][0].float(), image_hw=(H, W))
        pred = WindowPrediction(extr.float(), intr.float(), out["depth"][0, ..., 0].float(),
                                out["depth_conf"][0].float(),
                                stats={"model_s": model_s, "merge_mode": self.merge_mode,
                                       "merge": self._merge_stats.summary() if self.merge is not None else {},
                                       "frames": int(S), "image_hw": [int(H), int(W)]})
        pred.check(S, H, W)
        return pred


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- the oracle
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
        t0 = time.perf_counter()
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
        extr = np.linalg.inv(cam_to_local)[:, :3, :]
        self.calls.append({"frame_ids": ids.tolist(), "scale": scale, "corrupt": kind})
        dev = images.device
        pred = WindowPrediction(
            torch.as_tensor(extr, dtype=torch.float32, device=dev),
            torch.as_tensor(seq.intrinsics[ids], dtype=torch.float32, device=dev),
            torch.as_tensor(depth, dtype=torch.float32, device=dev),
            torch.as_tensor(conf, dtype=torch.float32, device=dev),
            stats={"model_s": time.perf_counter() - t0, "merge_mode": "oracle", "merge": {},
                   "oracle": {"call": call, "scale": scale, "corrupt": kind}})
        pred.check(S, H, W)
        return pred

    def _perturb_poses(self, cam_to_local: np.ndarray, median: float, rng: np.random.Generator) -> np.ndarray:
        """Small rotation (sigma noise*10 deg) and translation (sigma noise*0.2*median) errors, not on frame 0."""
        out = cam_to_local.copy()
        for k in range(1, len(out)):
            axis_angle = rng.normal(0.0, math.radians(10.0 * self.noise), 3)
            out[k, :3, :3] = _rodrigues(axis_angle) @ out[k, :3, :3]
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
            out[k, :3, :3] = _rodrigues(rng.normal(0.0, 1.0, 3))
            out[k, :3, 3] = rng.normal(0.0, typical_depth, 3)
        return depth, out


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle [3] -> rotation matrix [3,3]."""
    theta = float(np.linalg.norm(axis_angle))
    if theta < 1e-12:
        return np.eye(3)
    k = axis_angle / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx
