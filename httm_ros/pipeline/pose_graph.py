"""A pose graph over keyframes as plain records (no GTSAM here: :mod:`.gtsam_backend` solves it).

Variables: one Sim(3) per keyframe (key = frame id), a 4x4 ``cam_to_world`` with its scale in the
rotation block (s R | t). Constraints:

* :class:`Prior`: the first keyframe's pose (fixes the gauge: the world frame and its scale);
* :class:`Between`: a measured relative Sim(3) ``T_a^-1 T_b`` with sigmas (rotation rad, translation
  world units, log-scale), ``kind`` "window" (an accepted window: anchor -> new keyframe) or "loop"
  (a retrieval hit verified by a window anchored on the old keyframe).

Loop candidates wait in ``pending`` until a second loop close in time agrees with them
(:func:`cycle_chi2`, the backend's consistency test), then face the backend's residual gates;
every rejection is counted by reason in ``rejected``.
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
    Levenberg-Marquardt solve of the whole graph, judged by the same gates (it closes loops after a
    large drift; alone it also lets a wrong loop through when a drift within the window sigmas
    could explain it). Loop consistency (docs/STREAMING.md "Loop consistency"; ORB-SLAM's temporal
    consistency test, checked as a PCM cycle): a loop candidate waits (pending) until
    ``consistent_loops`` other verified loops close to it in time (at most ``consistency_window``
    keyframes of chain between their old ends plus between their new ends) agree with it: the
    cycle loop1, chain, loop2^-1, chain has a whitened squared error <= ``consistency_chi2`` (7 dof),
    with sigmas from both loops' and the chain segments' (per keyframe) sigmas. A pending loop whose
    new end falls more than ``consistency_window`` keyframes behind the newest keyframe is rejected,
    with the reason.
    ``consistent_loops=0``: every loop goes straight to the graph (no consistency test).
    Verification (a window [old keyframe, newest]): at the loop pose at least ``verify_min_visible``
    of the old keyframe's stored sample points (``StoreConfig.sample_points``, the confident half of
    a pixel grid) must land in the new view with a depth, and at least ``verify_min_agreement`` of
    those must agree with the new keyframe's predicted depth: a loop is permanent and global, so it
    asks for more agreement than a window's map check (``TrackingConfig.min_depth_agreement``, which
    a relocalisation bridge between two keyframes close in time keeps).
    ``synchronous``: every graph update finishes before the stream goes on (the solver still runs on
    its thread). Off in the node, where the update overlaps the next window; on in accuracy tests,
    whose result must not depend on which window an asynchronous correction reaches.
    Defaults (httm-bench loops, docs/STREAMING.md): window sigmas that admit ~1 deg of drift per
    keyframe pair plus ``batch_resolve`` close loops after large drift; the consistency test (14.07:
    chi2's 95 % quantile for 7 dof) keeps a wrong loop that such a drift could explain out.
    """

    enabled: bool = False
    min_gap: int = 40
    min_similarity: float = 0.8
    cooldown: int = 8
    window_sigma_rot_deg: float = 3.0
    window_sigma_trans: float = 0.02
    window_sigma_scale: float = 0.01
    loop_sigma_rot_deg: float = 2.0
    loop_sigma_trans: float = 0.05
    loop_sigma_scale: float = 0.02
    kernel: str = "huber"
    kernel_k: float = 3.0
    max_loop_chi2: float = 25.0
    max_window_chi2: float = 50.0
    batch_resolve: bool = True
    consistent_loops: int = 1
    consistency_window: int = 30
    consistency_chi2: float = 14.07
    verify_min_visible: float = 0.5
    verify_min_agreement: float = 0.8
    synchronous: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in ("cauchy", "huber"):
            raise ValueError(f"LoopClosureConfig.kernel must be 'cauchy' or 'huber', got {self.kernel!r}")
        if not (isinstance(self.min_gap, int) and self.min_gap >= 2):
            raise ValueError(f"LoopClosureConfig.min_gap must be an int >= 2, got {self.min_gap!r}")
        for name in ("consistent_loops", "consistency_window"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"LoopClosureConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("window_sigma_rot_deg", "window_sigma_trans", "window_sigma_scale", "loop_sigma_rot_deg",
                     "loop_sigma_trans", "loop_sigma_scale", "kernel_k", "max_loop_chi2", "max_window_chi2",
                     "consistency_chi2"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"LoopClosureConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("verify_min_visible", "verify_min_agreement"):
            if not 0.0 < float(getattr(self, name)) <= 1.0:
                raise ValueError(f"LoopClosureConfig.{name} must be in (0, 1], got {getattr(self, name)!r}")


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
    pending: List[Between] = field(default_factory=list)               # loops waiting for a consistent one

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


def sim3_log(t: np.ndarray) -> np.ndarray:
    """[4,4] Sim(3) -> [7]: rotation vector (rad), translation, log-scale (the sigmas' order)."""
    s = sim3_scale(t)
    r = t[:3, :3] / s
    angle = math.acos(min(1.0, max(-1.0, (np.trace(r) - 1.0) / 2.0)))
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if math.sin(angle) > 1e-6:
        w = axis * (angle / (2.0 * math.sin(angle)))
    elif angle < 1.0:                                  # ~identity
        w = axis / 2.0
    else:                                              # ~180 deg: the eigenvector of eigenvalue 1
        vals, vecs = np.linalg.eigh((r + r.T) / 2.0)
        w = vecs[:, int(np.argmax(vals))] * angle
    return np.concatenate([w, t[:3, 3], [math.log(s)]])


def cycle_chi2(l1: Between, l2: Between, poses: Dict[int, np.ndarray], steps: int,
               config: LoopClosureConfig) -> float:
    """Whitened squared error (7 dof) of the cycle a1 -l1-> b1 -chain-> b2 -l2^-1-> a2 -chain-> a1
    (``poses``: key -> [4,4], the chain's current estimate). It is the identity exactly when both loops
    imply the same world correction of the drift (PCM's pairwise consistency). Sigmas: both loops',
    plus ``steps`` window steps (keyframes on the two chain segments) of the config's window sigmas;
    rotation uncertainty moves the translation by the segments' length (lever arm)."""
    ta1, tb1, ta2, tb2 = poses[l1.a], poses[l1.b], poses[l2.a], poses[l2.b]
    cycle = l1.relative @ sim3_inverse(tb1) @ tb2 @ sim3_inverse(l2.relative) @ sim3_inverse(ta2) @ ta1
    err = sim3_log(cycle)                                                                   # [7]
    per_step = window_sigmas(config, 0.0) ** 2                                              # [7]
    var = l1.sigmas ** 2 + l2.sigmas ** 2 + steps * per_step
    lever = max(np.linalg.norm(ta1[:3, 3] - ta2[:3, 3]), np.linalg.norm(tb1[:3, 3] - tb2[:3, 3])) / sim3_scale(ta1)
    var[3:6] += var[:3].max() * lever ** 2
    return float(np.sum(err ** 2 / var))


def drift_correction(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The world-frame Sim(3) that moves a keyframe from ``before`` to ``after`` (apply to its points)."""
    return after @ sim3_inverse(before)


def loop_summary(graph: PoseGraph) -> dict:
    loops = [f for f in graph.betweens if f.kind == "loop"]
    return {"keyframes": len(graph.initial), "window_constraints": len(graph.betweens) - len(loops),
            "loops_accepted": graph.loops_accepted, "loops_pending": len(graph.pending),
            "loops_rejected": dict(graph.rejected)}


__all__ = ["LoopClosureConfig", "Prior", "Between", "PoseGraph", "sim3", "sim3_inverse", "sim3_scale",
           "window_sigmas", "sim3_log", "cycle_chi2", "drift_correction", "loop_summary"]
