"""Training data for httm-vggt-synth: random rooms, camera paths and intrinsics, rendered in batches.

Split rule (held-out scenes are never trained on):
    training scene seeds  >= TRAIN_SEED_BASE (1000), drawn from the training seed's generator;
    held-out scene seeds  0 .. N-1 (``heldout_specs``), parameters drawn from a generator seeded
    with HELDOUT_PARAM_SEED + i, a stream the training sampler never uses.
The demo room (``make_scene(seed=0)``) is therefore a held-out scene.

A clip is CLIP_FRAMES consecutive frames of one scene rendered in one ``Scene.render_batch`` call
(on the training device). Training windows of 2..24 frames are cut from pooled clips (contiguous,
stride 1 or 2), so each rendered frame serves several windows (``reuse`` window-frames per
rendered frame on average). Every batch holds sequences of one frame count (grouping instead of
padding: no compute is spent on padding and every step is one dense [B,S] forward).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch

from ..geometry import depth_to_camera_points, invert_rigid
from ..synthetic.scene import Scene, SceneConfig, make_scene, to_device
from ..synthetic.sequence import intrinsics_from_fov
from ..synthetic.trajectory import make_trajectory
from ..vggt.pose_encoding import extrinsics_intrinsics_to_pose_encoding

TRAIN_SEED_BASE = 1000
HELDOUT_PARAM_SEED = 7_000_000
CLIP_FRAMES = 48                    # frames per rendered clip (windows of <= 24 frames are cut from it)
MIN_FRAMES, MAX_FRAMES = 2, 24
KIND_WEIGHTS = {"orbit": 0.22, "walk": 0.2, "forward": 0.2, "random": 0.06, "pan": 0.16, "rotate": 0.16}
TRANSLATING = ("orbit", "walk", "forward")


@dataclass
class ClipSpec:
    """Everything that defines one rendered clip (deterministic)."""

    scene: SceneConfig
    kind: str
    speed: float            # m/frame (rad/frame for pan / rotate)
    shake: float            # m
    hfov_deg: float
    camera_height: float
    path_seed: int


def random_scene_config(rng: np.random.Generator, seed: int) -> SceneConfig:
    """A room of random size, clutter, box shapes, texture scale and lighting."""
    x = float(rng.uniform(4.0, 11.0))
    y = float(rng.uniform(3.5, min(x, 9.0)))
    z = float(rng.uniform(2.4, 3.6))
    lo = float(rng.uniform(0.2, 0.5))
    light = rng.normal(size=3)
    light[2] = abs(light[2]) + 0.3                                   # from above, any azimuth
    ambient = float(rng.uniform(0.35, 0.75))
    return SceneConfig(room_size=(x, y, z), num_inner_boxes=int(rng.integers(0, 11)),
                       num_outer_boxes=int(rng.integers(0, 13)), box_size_range=(lo, lo + float(rng.uniform(0.4, 1.2))),
                       seed=seed, thin_box_prob=float(rng.uniform(0.0, 0.4)),
                       texture_scale=float(rng.uniform(0.6, 1.6)), light_dir=tuple(float(v) for v in light),
                       ambient=ambient, diffuse=float(rng.uniform(0.2, 1.05 - ambient)))


def random_clip_spec(rng: np.random.Generator, scene_seed: int, kinds=None) -> ClipSpec:
    """A random path (kind, speed, shake), field of view and eye height in a random room."""
    cfg = random_scene_config(rng, scene_seed)
    names = list(kinds or KIND_WEIGHTS)
    weights = np.array([KIND_WEIGHTS[k] for k in names])
    kind = str(rng.choice(names, p=weights / weights.sum()))
    speed = float(rng.uniform(0.02, 0.12) if kind in ("pan", "rotate") else rng.uniform(0.03, 0.25))
    shake = 0.0 if rng.uniform() < 0.5 else float(rng.uniform(0.0, 0.04))
    height = float(rng.uniform(0.8, cfg.room_size[2] - 0.6))
    return ClipSpec(cfg, kind, speed, shake, float(rng.uniform(50.0, 90.0)), height,
                    int(rng.integers(1 << 30)))


def heldout_specs(n: int = 8) -> List[ClipSpec]:
    """The fixed held-out clips: scene seeds 0..n-1, translating paths (ATE is defined)."""
    return [random_clip_spec(np.random.default_rng(HELDOUT_PARAM_SEED + i), i, TRANSLATING) for i in range(n)]


def prepare_clip(spec: ClipSpec, frames: int, image_hw: Tuple[int, int]) -> Tuple[Scene, np.ndarray, np.ndarray]:
    """The host part of a clip (numpy only): scene, poses [S,4,4] float64, intrinsics [3,3]."""
    height, width = image_hw
    scene = make_scene(spec.scene)
    poses = make_trajectory(scene, frames, spec.kind, spec.speed, spec.path_seed, spec.camera_height, spec.shake)
    return scene, poses, intrinsics_from_fov(width, height, spec.hfov_deg)


def training_clip(seed: int, index: int, frames: int,
                  image_hw: Tuple[int, int]) -> Tuple[Scene, np.ndarray, np.ndarray]:
    """Training clip ``index`` of run ``seed``, host part (picklable: runs in worker processes)."""
    rng = np.random.default_rng([seed, index])
    return prepare_clip(random_clip_spec(rng, TRAIN_SEED_BASE + int(rng.integers(1 << 30))), frames, image_hw)


def render_clip(spec: ClipSpec, frames: int, image_hw: Tuple[int, int], device, prepared=None) -> dict:
    """Render a clip -> dict images uint8 [S,H,W,3], depth [S,H,W], cam_to_world [S,4,4],
    intrinsics [S,3,3] (float32 tensors on ``device``) and the scene. ``prepared``: the result of
    :func:`prepare_clip` if already built (``spec`` is then unused)."""
    height, width = image_hw
    scene, poses, k = prepared if prepared is not None else prepare_clip(spec, frames, image_hw)
    with torch.no_grad():
        images, depth = scene.render_batch(poses, k, width, height, device=device)
    return dict(images=images, depth=depth, scene=scene, cam_to_world=to_device(poses, device),
                intrinsics=to_device(np.repeat(k[None], frames, 0), device))


def normalise_ground_truth(depth: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                           image_hw: Tuple[int, int]) -> dict:
    """VGGT's normalisation: first-frame camera coordinates, scale = mean point distance.

    depth [B,S,H,W], cam_to_world [B,S,4,4], intrinsics [B,S,3,3] -> dict depth [B,S,H,W],
    points [B,S,H,W,3] (first-camera frame), pose_enc [B,S,9], extrinsics [B,S,3,4]
    (camera-from-first), valid [B,S,H,W] bool, scale [B] (metres per unit), intrinsics (as given).
    """
    first_from_world = invert_rigid(cam_to_world[:, :1])                       # [B,1,4,4]
    rel = first_from_world @ cam_to_world                                      # [B,S,4,4] cam -> first
    cam_pts = depth_to_camera_points(depth, intrinsics)                        # [B,S,H,W,3]
    pts = torch.einsum("bsij,bshwj->bshwi", rel[..., :3, :3], cam_pts) + rel[:, :, None, None, :3, 3]
    valid = torch.isfinite(depth) & (depth > 0)
    dist = torch.where(valid, pts.norm(dim=-1), torch.zeros_like(depth))
    scale = dist.sum(dim=(1, 2, 3)) / valid.sum(dim=(1, 2, 3)).clamp_min(1)    # [B]
    extr = invert_rigid(rel)[..., :3, :]                                       # [B,S,3,4]
    extr = torch.cat((extr[..., :3], extr[..., 3:] / scale[:, None, None, None]), dim=-1)
    s = scale[:, None, None, None]
    return dict(depth=depth / s, points=pts / s[..., None], extrinsics=extr, valid=valid, scale=scale,
                intrinsics=intrinsics,
                pose_enc=extrinsics_intrinsics_to_pose_encoding(extr, intrinsics, image_hw))


class ClipPool:
    """``size`` rendered clips held in one set of tensors on the training device; a clip is
    replaced once windows cut from it have used ``reuse`` x ``clip_frames`` frames (each rendered
    frame serves ``reuse`` window-frames on average, whatever the window length).

    Clip i is rendered from ``default_rng([seed, i])`` (so a resumed run draws new clips by
    continuing the counter ``clips_made``). A batch is cut with one gather per tensor (no loop
    over sequences on the device, no host sync: the indices go through pinned memory).
    """

    KEYS = ("images", "depth", "cam_to_world", "intrinsics")

    def __init__(self, image_hw: Tuple[int, int], device, seed: int, size: int = 32, reuse: int = 4,
                 clip_frames: int = CLIP_FRAMES, clips_made: int = 0, workers: int = 0) -> None:
        self.image_hw, self.device, self.seed = tuple(image_hw), torch.device(device), seed
        self.size, self.reuse, self.clip_frames = size, reuse, clip_frames
        self.clips_made = clips_made
        self.store: dict = {}                       # key -> [size, clip_frames, ...] on the device
        self.used = np.zeros(size, dtype=np.int64)  # window-frames served per slot
        self.filled = 0
        self.render_seconds = 0.0                   # host time in render_clip (GPU work overlaps)
        self.frames_rendered = 0
        # workers > 0: scenes and paths (numpy, ~20-100 ms a clip) are built ahead in worker
        # processes; the training process only launches the render kernels.
        self._executor = None
        self._ahead: dict = {}
        if workers > 0:
            import concurrent.futures
            import multiprocessing
            self._executor = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
            self._ahead_count = 4 * workers

    def _prepared(self, index: int):
        """Host part of clip ``index``: from the workers (kept ahead of use) or built here."""
        if self._executor is None:
            return training_clip(self.seed, index, self.clip_frames, self.image_hw)
        for i in range(index, index + self._ahead_count):
            if i not in self._ahead:
                self._ahead[i] = self._executor.submit(training_clip, self.seed, i, self.clip_frames, self.image_hw)
        return self._ahead.pop(index).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _render_into(self, slot: int) -> None:
        index = self.clips_made
        self.clips_made += 1
        t0 = time.perf_counter()
        clip = render_clip(None, self.clip_frames, self.image_hw, self.device, prepared=self._prepared(index))
        for key in self.KEYS:
            if key not in self.store:
                self.store[key] = torch.empty((self.size,) + tuple(clip[key].shape), dtype=clip[key].dtype,
                                              device=self.device)
            self.store[key][slot] = clip[key]
        self.render_seconds += time.perf_counter() - t0
        self.frames_rendered += self.clip_frames
        self.used[slot] = 0

    def _slots(self, rng: np.random.Generator, sequences: int, frames: int) -> np.ndarray:
        """Slots of ``sequences`` windows; worn-out clips are re-rendered before use."""
        while self.filled < self.size:
            self._render_into(self.filled)
            self.filled += 1
        slots = rng.integers(self.size, size=sequences)
        for slot in np.unique(slots):
            if self.used[slot] >= self.reuse * self.clip_frames:
                self._render_into(int(slot))
        np.add.at(self.used, slots, frames)
        return slots

    def window_indices(self, rng: np.random.Generator, frames: int, sequences: int) -> np.ndarray:
        """Frame indices [B,S] into a clip: contiguous, stride 1 or 2 (40 %), either direction."""
        stride = np.where((frames - 1) * 2 < self.clip_frames, 1 + (rng.uniform(size=sequences) < 0.4), 1)
        span = (frames - 1) * stride                                            # [B]
        start = (rng.uniform(size=sequences) * (self.clip_frames - span)).astype(np.int64)
        idx = start[:, None] + stride[:, None] * np.arange(frames)[None]        # [B,S]
        flip = rng.uniform(size=sequences) < 0.5                                # paths both ways
        return np.where(flip[:, None], idx[:, ::-1], idx)

    def batch(self, rng: np.random.Generator, frames: int, sequences: int) -> dict:
        """``sequences`` windows of ``frames`` frames -> images float [B,S,3,H,W] in [0,1] and
        the normalised ground truth of :func:`normalise_ground_truth`."""
        frames = min(frames, self.clip_frames)
        slots = self._slots(rng, sequences, frames)
        idx = self.window_indices(rng, frames, sequences)
        both = to_device(np.stack([np.broadcast_to(slots[:, None], idx.shape), idx]), self.device, torch.int64)
        stack = {k: self.store[k][both[0], both[1]] for k in self.KEYS}          # [B,S,...]
        images = stack["images"].permute(0, 1, 4, 2, 3).float() / 255.0           # [B,S,3,H,W]
        gt = normalise_ground_truth(stack["depth"], stack["cam_to_world"], stack["intrinsics"], self.image_hw)
        gt["images"] = images
        return gt

    @property
    def frames_per_second(self) -> float:
        return self.frames_rendered / self.render_seconds if self.render_seconds > 0 else math.nan


def frame_count_for_step(rng: np.random.Generator, max_frames: int = MAX_FRAMES) -> int:
    """Frames per sequence of a step, uniform in MIN_FRAMES..max_frames (<= MAX_FRAMES)."""
    return int(rng.integers(MIN_FRAMES, max(MIN_FRAMES, min(max_frames, MAX_FRAMES)) + 1))


def measure_renderer(image_hw: Tuple[int, int], device, clips: int = 2, frames: int = CLIP_FRAMES,
                     seed: int = 12345) -> float:
    """Frames/s of render_clip on ``device`` (scene building and path included), after a warm-up."""
    device = torch.device(device)
    specs = [random_clip_spec(np.random.default_rng([seed, i]), TRAIN_SEED_BASE + i) for i in range(clips + 1)]
    render_clip(specs[0], frames, image_hw, device)
    t0 = time.perf_counter()
    for spec in specs[1:]:
        render_clip(spec, frames, image_hw, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clips * frames / (time.perf_counter() - t0)

