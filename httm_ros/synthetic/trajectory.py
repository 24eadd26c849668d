"""Smooth camera trajectories in a :class:`~.scene.Scene` (camera-to-world, OpenCV camera axes).

Kinds
-----
orbit  : the camera circles the room centre on an ellipse of the free ring at eye height, looking
         at the central box cluster (the look-at point wanders slowly). Strong overlap.
walk   : a wavy loop through the free ring, looking partly along the direction of travel and
         partly inwards (more translation-induced parallax than orbit).
random : independent random poses in the free ring looking at random points of the central
         cluster (sparse views, large motion; ``speed`` is ignored).
forward: the walk's path, looking ahead along the direction of travel (forward motion: little
         parallax at the image centre, as a robot driving).
pan    : a fixed camera in the ring turning about the vertical (yaw sweep), no translation.
rotate : a fixed camera turning about a random axis (yaw, pitch and a little roll), no
         translation (pure rotation: depth is only monocular there).

``speed`` is the camera's path length per frame in metres (constant along the path: the path is
re-parametrised by arc length), so e.g. 0.02 m/frame at 30 fps is a slow 0.6 m/s walk and 0.3
m/frame gives large, sparse motion. For pan and rotate it is the angular rate in rad/frame.
``shake`` (m) adds smooth hand-held jitter to any kind: positions move by up to about ``shake``
and the orientation by about ``shake`` rad per 2 m (0 = none, the default).
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import numpy as np

from .scene import INNER_MAX, RING, Scene

KINDS = ("orbit", "walk", "random", "forward", "pan", "rotate")
_FIXED = ("pan", "rotate")


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
        if kind == "forward":
            d = tangent + 0.2 * inward + np.array([0, 0, -0.12])
        return p + d
    return pos_w, target_w


def make_trajectory(scene: Scene, num_frames: int, kind: str = "orbit", speed: float = 0.02,
                    seed: int = 0, height: float = 1.4, shake: float = 0.0) -> np.ndarray:
    """Camera-to-world poses float64 [num_frames,4,4] of a smooth (or random) camera path."""
    if kind not in KINDS:
        raise ValueError(f"trajectory kind must be one of {KINDS}, got {kind!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not speed > 0:
        raise ValueError(f"speed must be > 0 m/frame, got {speed}")
    if not 0.3 < height < scene.room[1, 2] - 0.3:
        raise ValueError(f"height must be inside the room (0.3 .. {scene.room[1, 2] - 0.3:.2f} m), got {height}")
    if not 0 <= shake <= 0.1:
        raise ValueError(f"shake must be in [0, 0.1] m, got {shake}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        poses = _random_poses(scene, num_frames, rng, height)
    elif kind in _FIXED:
        poses = _turning_poses(scene, num_frames, kind, speed, rng, height)
    else:
        poses = _smooth_poses(scene, num_frames, kind, speed, rng, height)
    return _shaken(poses, shake, rng) if shake > 0 else poses


def _smooth_poses(scene: Scene, num_frames: int, kind: str, speed: float, rng: np.random.Generator,
                  height: float) -> np.ndarray:
    """orbit / walk / forward: a loop of the free ring, re-parametrised by arc length."""
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


def _axis_angle(vec: np.ndarray) -> np.ndarray:
    """Rotation matrices [N,3,3] of rotation vectors [N,3] (Rodrigues)."""
    angle = np.linalg.norm(vec, axis=-1, keepdims=True)
    k = vec / np.maximum(angle, 1e-12)
    kx = np.zeros(vec.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx = kx - np.swapaxes(kx, -1, -2)
    a = angle[..., None]
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def _turning_poses(scene: Scene, num_frames: int, kind: str, rate: float, rng: np.random.Generator,
                   height: float) -> np.ndarray:
    """pan / rotate: one eye in the free ring; yaw (and for rotate pitch, roll) change by ``rate``."""
    half = (scene.room[1, :2] - scene.room[0, :2]) / 2
    c = scene.center[:2]
    th = rng.uniform(0, 2 * math.pi)
    eye = np.array([c[0] + RING * half[0] * math.cos(th), c[1] + RING * half[1] * math.sin(th), height])
    yaw0 = math.atan2(c[1] - eye[1], c[0] - eye[0]) + rng.uniform(-0.6, 0.6)     # roughly inwards
    t = np.arange(num_frames) * rate * rng.choice([-1.0, 1.0])
    pitch = np.full(num_frames, rng.uniform(-0.35, 0.05))
    roll = np.zeros(num_frames)
    if kind == "rotate":
        slant = rng.uniform(-0.6, 0.6)                                    # share of the rate on pitch
        t_yaw, t_pitch = t * math.cos(slant), t * math.sin(slant)
        pitch = np.clip(pitch + t_pitch, -0.9, 0.6)
        roll = 0.15 * np.sin(t * 0.7 + rng.uniform(0, 2 * math.pi))
        t = t_yaw
    yaw = yaw0 + t
    fwd = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], -1)
    poses = np.stack([look_at(eye, eye + f) for f in fwd])
    poses[:, :3, :3] = poses[:, :3, :3] @ _axis_angle(roll[:, None] * np.array([0.0, 0.0, 1.0]))
    return poses


def _shaken(poses: np.ndarray, shake: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth hand-held jitter: sums of 3 random sinusoids (periods 4-20 frames) per axis."""
    n = len(poses)
    t = np.arange(n, dtype=np.float64)[:, None, None]                       # [N,1,1]
    freq = 2 * math.pi / rng.uniform(4, 20, size=(1, 6, 3))
    phase = rng.uniform(0, 2 * math.pi, size=(1, 6, 3))
    wave = np.sin(freq * t + phase).sum(-1) / 3.0                              # [N,6] about [-1,1]
    out = poses.copy()
    out[:, :3, 3] += shake * wave[:, :3]
    out[:, :3, :3] = out[:, :3, :3] @ _axis_angle(0.5 * shake * wave[:, 3:])
    return out


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
