"""A pose graph over keyframes as plain records (no GTSAM here: :mod:`.gtsam_backend` solves it).

Variables: one Sim(3) per keyframe (key = frame id), a 4x4 ``cam_to_world`` with its scale in the
rotation block (s R | t). Constraints:

* :class:`Prior`: the first keyframe's pose (fixes the gauge: the world frame and its scale);
* :class:`Between`: a measured relative Sim(3) ``T_a^-1 T_b`` with sigmas (rotation rad, translation
  world units, log-scale), ``kind`` "window" (an accepted window: anchor -> new keyframe) or "loop"
  (a retrieval hit verified by a window anchored on the old keyframe).

Loop candidates are gated before they reach the solver (:meth:`PoseGraph.check_loop`) and after
(the backend's residual check); every rejection is counted by reason in ``rejected``.
Export: keyframe poses as TUM lines and the whole graph as g2o text (VERTEX_SE3:QUAT /
EDGE_SE3:QUAT, the scale folded into the translation: what standard tools read).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np


@dataclass
class LoopClosureConfig:
    """Loop closure (docs/STREAMING.md, "Loop closure"). Off by default.

    min_gap: keyframes between a loop's two ends (closer ones are ordinary tracking). min_similarity:
    descriptor cosine similarity for a retrieval hit. cooldown: keyframes between two loop attempts.
    window_sigma_rot_deg / window_sigma_trans: a window constraint's sigmas at residual 0 (grown with
    the window's alignment residual); loop_sigma_*: a loop's. kernel: "cauchy" or "huber", width
    ``kernel_k`` (whitened units; on every factor). After an update with a loop: if the loop's
    whitened squared error stays above max_loop_chi2, or any window constraint's rises above
    max_window_chi2 (the loop bends the graph more than the windows allow), the loop is rejected and
    removed (the map keeps its pre-loop poses). A window constraint's sigmas grow with the keyframe's
    position after the anchor (errors of a window compound along it) and with its alignment residual.
    batch_resolve: a loop that fails those gates after iSAM2's relinearisations gets a batch
    Levenberg-Marquardt solve of the whole graph, judged by the same gates (docs/STREAMING.md: it
    closes loops after a large drift, and it also lets a wrong loop through when a drift within the
    window sigmas could explain it: then only the verification window protects). Off by default.
    """

    enabled: bool = False
    min_gap: int = 40
    min_similarity: float = 0.8
    cooldown: int = 8
    window_sigma_rot_deg: float = 1.0
    window_sigma_trans: float = 0.02
    window_sigma_scale: float = 0.01
    loop_sigma_rot_deg: float = 2.0
    loop_sigma_trans: float = 0.05
    loop_sigma_scale: float = 0.02
    kernel: str = "huber"
    kernel_k: float = 3.0
    max_loop_chi2: float = 25.0
    max_window_chi2: float = 50.0
    batch_resolve: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in ("cauchy", "huber"):
            raise ValueError(f"LoopClosureConfig.kernel must be 'cauchy' or 'huber', got {self.kernel!r}")
        if not (isinstance(self.min_gap, int) and self.min_gap >= 2):
            raise ValueError(f"LoopClosureConfig.min_gap must be an int >= 2, got {self.min_gap!r}")
        for name in ("window_sigma_rot_deg", "window_sigma_trans", "window_sigma_scale", "loop_sigma_rot_deg",
                     "loop_sigma_trans", "loop_sigma_scale", "kernel_k", "max_loop_chi2", "max_window_chi2"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"LoopClosureConfig.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class Prior:
    key: int
    pose: np.ndarray                     # [4,4] Sim(3)
    sigmas: np.ndarray                   # [7] rot (rad) x3, trans x3, log-scale


@dataclass
class Between:
    a: int
    b: int
    relative: np.ndarray                 # [4,4] Sim(3): T_a^-1 T_b
    sigmas: np.ndarray                   # [7] rot (rad) x3, trans x3, log-scale
    kind: str = "window"                 # "window" | "loop"


@dataclass
class PoseGraph:
    """Keyframe poses (initial / optimised) and constraints; ``rejected`` counts loop rejections by reason."""

    initial: Dict[int, np.ndarray] = field(default_factory=dict)       # key -> [4,4] first estimate
    current: Dict[int, np.ndarray] = field(default_factory=dict)       # key -> [4,4] latest estimate
    stamps: Dict[int, float] = field(default_factory=dict)
    priors: List[Prior] = field(default_factory=list)
    betweens: List[Between] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    loops_accepted: int = 0

    def add_keyframe(self, key: int, pose: np.ndarray, stamp: float = 0.0) -> bool:
        """A new variable at ``pose`` [4,4]; the first one gets a tight prior. False if known."""
        if key in self.initial:
            return False
        self.initial[key], self.current[key], self.stamps[key] = pose.copy(), pose.copy(), float(stamp)
        if not self.priors:
            self.priors.append(Prior(key, pose.copy(), np.full(7, 1e-6)))
        return True

    def add_between(self, a: int, b: int, relative: np.ndarray, sigmas: np.ndarray, kind: str = "window") -> Between:
        factor = Between(int(a), int(b), np.asarray(relative, np.float64), np.asarray(sigmas, np.float64), kind)
        self.betweens.append(factor)
        return factor

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def keys(self) -> List[int]:
        return sorted(self.initial)

    # ------------------------------------------------------------------ export
    def save_tum(self, path: Union[str, Path], which: str = "current", world: Optional[np.ndarray] = None) -> Path:
        """Keyframe poses (``which`` = "initial" or "current") as TUM lines: stamp tx ty tz qx qy qz qw;
        ``world`` [4,4]: a rigid change of world frame applied to every pose (e.g. REP-103)."""
        poses = self.initial if which == "initial" else self.current
        lines = []
        for k in self.keys():
            t, q = _t_quat(_in_world(world, poses[k]))
            lines.append(f"{self.stamps[k]:.6f} " + " ".join(f"{v:.9g}" for v in (*t, *q)))
        out = Path(path)
        out.write_text("\n".join(lines) + "\n")
        return out

    def save_g2o(self, path: Union[str, Path], which: str = "initial", world: Optional[np.ndarray] = None) -> Path:
        """The graph as g2o text: VERTEX_SE3:QUAT per keyframe, EDGE_SE3:QUAT per constraint (scale in t);
        ``world`` as in :meth:`save_tum` (vertices only: the edges are relative)."""
        poses = self.initial if which == "initial" else self.current
        lines = []
        for k in self.keys():
            t, q = _t_quat(_in_world(world, poses[k]))
            lines.append(f"VERTEX_SE3:QUAT {k} " + " ".join(f"{v:.9g}" for v in (*t, *q)))
        for f in self.betweens:
            t, q = _t_quat(f.relative)
            info = np.diag(1.0 / np.concatenate([f.sigmas[3:6], f.sigmas[:3]]) ** 2)   # g2o order: t, then r
            upper = [info[i, j] for i in range(6) for j in range(i, 6)]
            lines.append(f"EDGE_SE3:QUAT {f.a} {f.b} " + " ".join(f"{v:.9g}" for v in (*t, *q, *upper)))
        out = Path(path)
        out.write_text("\n".join(lines) + "\n")
        return out


def _in_world(world: Optional[np.ndarray], pose: np.ndarray) -> np.ndarray:
    return pose if world is None else world @ pose


def sim3(rotation: np.ndarray, translation: np.ndarray, scale: float = 1.0) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = scale * np.asarray(rotation)
    out[:3, 3] = translation
    return out


def sim3_scale(t: np.ndarray) -> float:
    return float(np.cbrt(abs(np.linalg.det(t[:3, :3]))))


def sim3_inverse(t: np.ndarray) -> np.ndarray:
    s = sim3_scale(t)
    r = t[:3, :3] / s
    return sim3(r.T / s, -(r.T @ t[:3, 3]) / s)


def window_sigmas(config: LoopClosureConfig, residual: float, kind: str = "window", steps: int = 1) -> np.ndarray:
    """[7] sigmas of a constraint: the config's, times (1 + 10 x relative alignment residual) x steps
    (steps: the keyframe's position after the anchor in its window)."""
    grow = (1.0 + 10.0 * (residual if math.isfinite(residual) else 1.0)) * max(1, steps)
    pre = "window" if kind == "window" else "loop"
    rot = math.radians(getattr(config, f"{pre}_sigma_rot_deg")) * grow
    trans = getattr(config, f"{pre}_sigma_trans") * grow
    return np.array([rot] * 3 + [trans] * 3 + [getattr(config, f"{pre}_sigma_scale") * grow])


def _t_quat(t: np.ndarray):
    """[4,4] Sim(3) -> (translation [3], quaternion x y z w) of its rotation part."""
    s = sim3_scale(t)
    r = t[:3, :3] / s
    w = math.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return t[:3, 3], (x, y, z, w)


def drift_correction(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The world-frame Sim(3) that moves a keyframe from ``before`` to ``after`` (apply to its points)."""
    return after @ sim3_inverse(before)


def loop_summary(graph: PoseGraph) -> dict:
    loops = [f for f in graph.betweens if f.kind == "loop"]
    return {"keyframes": len(graph.initial), "window_constraints": len(graph.betweens) - len(loops),
            "loops_accepted": graph.loops_accepted, "loops_rejected": dict(graph.rejected)}


__all__ = ["LoopClosureConfig", "Prior", "Between", "PoseGraph", "sim3", "sim3_inverse", "sim3_scale",
           "window_sigmas", "drift_correction", "loop_summary"]
