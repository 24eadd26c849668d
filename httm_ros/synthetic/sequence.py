"""Rendered sequences with ground truth and their on-disk format.

On-disk layout written by :meth:`Sequence.save` (and read by :meth:`Sequence.load`)::

    folder/images/000000.png ...   RGB frames (8 bit)
    folder/depth/000000.png ...    ground-truth depth, 16-bit PNG in millimetres (0 = invalid)
    folder/poses.txt               TUM: ``t tx ty tz qx qy qz qw`` camera-to-world, OpenCV axes
    folder/intrinsics.txt          one line per frame: ``t fx fy cx cy width height``
    folder/scene.json              the SceneConfig (the scene is rebuilt from it, deterministically)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image

from ..geometry import unproject_depth
from ..io.images import load_image_folder
from ..io.tum import load_tum, save_tum
from .scene import Scene, SceneConfig, make_scene
from .trajectory import make_trajectory

PathLike = Union[str, Path]


def intrinsics_from_fov(width: int, height: int, hfov_deg: float = 65.0) -> np.ndarray:
    """Pinhole K [3,3] float32 with square pixels and the principal point at (W/2, H/2) (VGGT's)."""
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float32)


@dataclass
class Sequence:
    """Frames with ground truth: images uint8 [S,H,W,3], depth float32 [S,H,W] (m, z along the
    optical axis), intrinsics float32 [S,3,3], cam_to_world float64 [S,4,4] (OpenCV camera axes,
    world z up), timestamps float64 [S] (s), and the Scene (None when loaded without scene.json)."""

    images: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    timestamps: np.ndarray
    scene: Optional[Scene] = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def trajectory_length(self) -> float:
        """Total camera path length (m)."""
        return float(np.linalg.norm(np.diff(self.cam_to_world[:, :3, 3], axis=0), axis=1).sum())

    def world_points(self, index: int, stride: int = 1) -> np.ndarray:
        """Ground-truth world points float32 [h,w,3] of frame ``index`` (pixels 0, stride, ...)."""
        pts = unproject_depth(torch.from_numpy(self.depth[index:index + 1]),
                              torch.from_numpy(self.cam_to_world[index:index + 1]),
                              torch.from_numpy(self.intrinsics[index:index + 1]), stride)
        return pts[0].numpy()

    def sample_observed_points(self, n: int, seed: int = 0) -> np.ndarray:
        """n random ground-truth points [n,3] float32 seen by the sequence (for map completeness)."""
        rng = np.random.default_rng(seed)
        s = rng.integers(0, len(self), n)
        i = rng.integers(0, self.height, n)
        j = rng.integers(0, self.width, n)
        z = self.depth[s, i, j].astype(np.float64)
        k_inv = np.linalg.inv(self.intrinsics[s].astype(np.float64))                  # [n,3,3]
        cam = np.einsum("nij,nj->ni", k_inv, np.stack([j, i, np.ones(n)], -1)) * z[:, None]
        pose = self.cam_to_world[s]
        return (np.einsum("nij,nj->ni", pose[:, :3, :3], cam) + pose[:, :3, 3]).astype(np.float32)

    # ------------------------------------------------------------------ disk I/O
    def save(self, folder: PathLike, depth: bool = True) -> Path:
        """Write the layout described in the module docstring; returns the folder."""
        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(self.images):
            Image.fromarray(img).save(folder / "images" / f"{k:06d}.png", compress_level=1)
        if depth:
            (folder / "depth").mkdir(exist_ok=True)
            for k, d in enumerate(self.depth):
                mm = np.clip(np.nan_to_num(d * 1000.0 + 0.5), 0, 65535).astype(np.uint16)
                Image.fromarray(mm).save(folder / "depth" / f"{k:06d}.png", compress_level=1)
        save_tum(folder / "poses.txt", self.timestamps, self.cam_to_world)
        with open(folder / "intrinsics.txt", "w") as f:
            f.write("# timestamp fx fy cx cy width height\n")
            for t, K in zip(self.timestamps, self.intrinsics):
                f.write(f"{t:.6f} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f} "
                        f"{self.width} {self.height}\n")
        if self.scene is not None and self.scene.config is not None:
            (folder / "scene.json").write_text(json.dumps(asdict(self.scene.config), indent=1))
        return folder

    @classmethod
    def load(cls, folder: PathLike) -> "Sequence":
        """Read a folder written by :meth:`save` (depth in mm precision; zeros if absent)."""
        folder = Path(folder)
        images = load_image_folder(folder / "images")
        stamps, poses = load_tum(folder / "poses.txt")
        rows = np.loadtxt(folder / "intrinsics.txt", comments="#", ndmin=2)
        K = np.tile(np.eye(3, dtype=np.float32), (len(rows), 1, 1))
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        depth = np.zeros(images.shape[:3], dtype=np.float32)
        if (folder / "depth").is_dir():
            depth = load_image_folder(folder / "depth", rgb=False).astype(np.float32) / 1000.0
        scene = None
        if (folder / "scene.json").exists():
            cfg = json.loads((folder / "scene.json").read_text())
            scene = make_scene(SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))
        return cls(images, depth, K, poses, stamps, scene)


DEMO_SPEED = 0.02               # metres per frame along the built-in demo's orbit
FPS = 30.0                      # frame rate of rendered sequences (their timestamps)
CAMERA_HEIGHT = 1.4             # metres above the floor
GPU_BATCH = 16                  # views per Scene.render_batch pass when rendering on an accelerator


def render_sequence(scene: Scene, num_frames: int = 100, width: int = 518, height: int = 392,
                    trajectory: str = "orbit", speed: float = DEMO_SPEED, fps: float = FPS,
                    hfov_deg: float = 65.0, seed: int = 0, camera_height: float = CAMERA_HEIGHT,
                    device: str = "cpu", batch: Optional[int] = None) -> Sequence:
    """Render ``num_frames`` views of ``scene`` along a trajectory (see :mod:`.trajectory`).

    Deterministic for fixed arguments. ``speed`` is metres per frame; ``fps`` sets the timestamps.
    ``batch``: views per :meth:`Scene.render_batch` pass (default: one view at a time on the CPU,
    GPU_BATCH on an accelerator); the pixels are the same up to float32 rounding of the rays.
    """
    if width < 8 or height < 8:
        raise ValueError(f"width and height must be >= 8 pixels, got {width}x{height}")
    if not 10.0 <= hfov_deg <= 150.0:
        raise ValueError(f"hfov_deg must be in [10, 150], got {hfov_deg}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    t0 = time.perf_counter()
    poses = make_trajectory(scene, num_frames, trajectory, speed, seed, camera_height)
    K = intrinsics_from_fov(width, height, hfov_deg)
    images = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    depth = np.empty((num_frames, height, width), dtype=np.float32)
    with torch.inference_mode():
        batch = batch or (1 if torch.device(device).type == "cpu" else GPU_BATCH)
        if batch == 1:
            for k, pose in enumerate(poses):
                images[k], depth[k] = scene.render(pose, K, width, height, device=device)
        else:
            for k in range(0, num_frames, batch):
                rgb, t = scene.render_batch(poses[k:k + batch], K, width, height, device=device)
                images[k:k + len(rgb)], depth[k:k + len(rgb)] = rgb.cpu().numpy(), t.float().cpu().numpy()
    info = dict(trajectory=trajectory, speed=speed, fps=fps, hfov_deg=hfov_deg, seed=seed,
                render_seconds=time.perf_counter() - t0)
    return Sequence(images, depth, np.repeat(K[None], num_frames, 0), poses,
                    np.arange(num_frames, dtype=np.float64) / fps, scene, info)


def demo_sequence(num_frames: int = 100, width: int = 518, height: int = 392, seed: int = 0,
                  trajectory: str = "orbit", speed: float = DEMO_SPEED, **kwargs) -> Sequence:
    """The built-in demo: ``make_scene(seed=seed)`` seen along an orbit at 0.02 m/frame, 30 fps."""
    return render_sequence(make_scene(seed=seed), num_frames, width, height, trajectory, speed,
                           seed=seed, **kwargs)


def demo_path(num_frames: int, seed: int = 0):
    """(scene, camera-to-world [num_frames, 4, 4]) of ``demo_sequence(num_frames, seed=seed)`` at its
    defaults, without rendering (the demo's ground truth; stamps are ``arange(num_frames) / FPS``)."""
    scene = make_scene(seed=seed)
    return scene, make_trajectory(scene, num_frames, "orbit", DEMO_SPEED, seed, CAMERA_HEIGHT)
