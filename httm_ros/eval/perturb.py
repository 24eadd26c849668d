"""Ground truth with known, separately controlled errors: for checking that the metrics measure them.

:class:`PerturbedOracle` is a predictor (``predict(images, frame_ids) -> WindowPrediction``) built
on :class:`httm_ros.pipeline.OraclePredictor` with its own noise switched off: each window is the
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

from __future__ import annotations

import math
from typing import Sequence as Seq, Tuple

import numpy as np
import torch

from ..pipeline import OraclePredictor, WindowPrediction
from ..pipeline.geometry import invert_rigid


def axis_angle_matrix(axis: Seq[float], degrees: float) -> np.ndarray:
    """Rotation [3,3] of ``degrees`` about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(degrees)
    return np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx


class PerturbedOracle:
    """Exact ground truth of a sequence with known errors (see the module docstring)."""

    def __init__(self, sequence, depth_noise: float = 0.0, drift_deg: float = 0.0,
                 drift_axis: Seq[float] = (0.0, 1.0, 0.0), depth_scale: float = 1.0,
                 scale_range: Tuple[float, float] = (0.5, 2.0), seed: int = 0) -> None:
        self.oracle = OraclePredictor(sequence, noise=0.0, seed=seed, scale_range=scale_range, outlier_fraction=0.0)
        self.depth_noise, self.depth_scale = float(depth_noise), float(depth_scale)
        self.drift = axis_angle_matrix(drift_axis, drift_deg)
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
