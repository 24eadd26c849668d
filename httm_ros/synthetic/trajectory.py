"""Smooth camera trajectories in a :class:`~.scene.Scene` (camera-to-world, OpenCV camera axes).

Kinds
-----
orbit  : the camera circles the room centre on an ellipse of the free ring at eye height, looking
         at the central box cluster (the look-at point wanders slowly). Strong overlap.
walk   : a wavy loop through the free ring, looking partly along the direction of travel and
         partly inwards (more translation-induced parallax than orbit).
random : independent random poses in the free ring looking at random points of the central
         cluster (sparse views, large motion; ``speed`` is ignored).

``speed`` is the camera's path length per frame in metres (constant along the path: the path is
re-parametrised by arc length), so e.g. 0.02 m/frame at 30 fps is a slow 0.6 m/s walk and 0.3
m/frame gives large, sparse motion.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import numpy as np

from .scene import INNER_MAX, RING, Scene

KINDS = ("orbit", "walk", "random")


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world [4,4] at ``eye`` looking at ``target`` (OpenCV axes, world z up)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-8:                      # looking straight up/down: pick any right axis
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = eye
    return pose


def _paths(scene: Scene, kind: str, phase: float, height: float
           ) -> Tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """Position and look-at functions of the path parameter theta [N] -> [N,3]."""
    half = (scene.room[1, :2] - scene.room[0, :2]) / 2
    c = scene.center[:2]
    look_h = 0.45 * height

    def ring(theta, wobble):
        r = RING * (1 + wobble * np.sin(3 * theta + phase))
        return np.stack([c[0] + r * half[0] * np.cos(theta), c[1] + r * half[1] * np.sin(theta)], -1)

    if kind == "orbit":
        def pos(th):
            return np.concatenate([ring(th, 0.0), (height + 0.1 * np.sin(2 * th))[:, None]], -1)

        def target(th):
            w = 0.5 * INNER_MAX * half
            xy = np.stack([c[0] + w[0] * np.cos(0.37 * th + phase), c[1] + w[1] * np.sin(0.53 * th)], -1)
            return np.concatenate([xy, np.full((len(th), 1), look_h)], -1)
        return pos, target

    def pos_w(th):
        return np.concatenate([ring(th, 0.12), (height + 0.15 * np.sin(1.7 * th + phase))[:, None]], -1)

    def target_w(th):
        p = pos_w(th)
        tangent = pos_w(th + 1e-3) - p
        tangent[:, 2] = 0
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        inward = np.concatenate([c - p[:, :2], np.zeros((len(th), 1))], -1)
        inward /= np.linalg.norm(inward, axis=1, keepdims=True)
        d = 0.45 * tangent + inward + np.array([0, 0, -0.25])
        return p + d
    return pos_w, target_w


def make_trajectory(scene: Scene, num_frames: int, kind: str = "orbit", speed: float = 0.02,
                    seed: int = 0, height: float = 1.4) -> np.ndarray:
    """Camera-to-world poses float64 [num_frames,4,4] of a smooth (or random) camera path."""
    if kind not in KINDS:
        raise ValueError(f"trajectory kind must be one of {KINDS}, got {kind!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not speed > 0:
        raise ValueError(f"speed must be > 0 m/frame, got {speed}")
    if not 0.3 < height < scene.room[1, 2] - 0.3:
        raise ValueError(f"height must be inside the room (0.3 .. {scene.room[1, 2] - 0.3:.2f} m), got {height}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        return _random_poses(scene, num_frames, rng, height)
    phase = float(rng.uniform(0, 2 * math.pi))
    pos, target = _paths(scene, kind, phase, height)
    # Arc-length re-parametrisation on a dense grid covering enough loops.
    theta0 = float(rng.uniform(0, 2 * math.pi))
    loop = np.linspace(0, 2 * math.pi, 4097)
    loop_len = np.linalg.norm(np.diff(pos(loop), axis=0), axis=1).sum()
    loops = int(math.ceil(speed * num_frames / loop_len)) + 1
    grid = theta0 + np.linspace(0, 2 * math.pi * loops, 4096 * loops + 1)
    arclen = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pos(grid), axis=0), axis=1))])
    theta = np.interp(np.arange(num_frames) * speed, arclen, grid)
    eyes, targets = pos(theta), target(theta)
    return np.stack([look_at(e, t) for e, t in zip(eyes, targets)])


def _random_poses(scene: Scene, num_frames: int, rng: np.random.Generator, height: float) -> np.ndarray:
    """Independent poses in the free ring looking at the central cluster."""
    half = (scene.room[1, :2] - scene.room[0, :2]) / 2
    c = scene.center[:2]
    th = rng.uniform(0, 2 * math.pi, num_frames)
    r = RING * rng.uniform(0.9, 1.1, num_frames)
    eyes = np.stack([c[0] + r * half[0] * np.cos(th), c[1] + r * half[1] * np.sin(th),
                     height + rng.uniform(-0.3, 0.3, num_frames)], -1)
    ta = rng.uniform(0, 2 * math.pi, num_frames)
    tr = 0.6 * INNER_MAX * rng.uniform(0, 1, num_frames)
    targets = np.stack([c[0] + tr * half[0] * np.cos(ta), c[1] + tr * half[1] * np.sin(ta),
                        rng.uniform(0.2, 1.0, num_frames) * height], -1)
    return np.stack([look_at(e, t) for e, t in zip(eyes, targets)])
