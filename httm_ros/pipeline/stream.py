"""Streaming reconstruction: frames in, anchored windows, a global map and a trajectory out.

    rec = StreamingReconstructor(predictor, StreamConfig())
    for frame, stamp in stream:                 # frame: uint8 [H,W,3] RGB, any size
        for result in rec.push(frame, stamp):   # WindowResult of each window this frame completed
            ...
    rec.flush()                                 # the last, partial window
    rec.map.save_ply("map.ply"); rec.trajectory.save_tum("traj.tum")

Flow: every frame goes through the keyframe selector; keyframes are brought to the model input
size by VGGT's own preprocessing in "crop" mode (``httm_ros.vggt.preprocess``: width
``StreamConfig.image_width``, height scaled and rounded to a multiple of 14, centre-cropped if
taller than the width; frames already at that size are used untouched) and queued. When ``K``
keyframes are queued the predictor runs once on them. The first accepted window defines the world
frame (its first keyframe's camera, its scale). Every later window starts with the last ``O``
keyframes of the previous accepted window (the overlap), is aligned onto the world by a checked
similarity from those frames (:mod:`.alignment`), and only its new keyframes are added to the map
and the trajectory (overlap frames keep the pose they got first).

Rejected windows (failed alignment, non-finite output) are reported and NOT applied: their new
keyframes are dropped (counted in ``counters.keyframes_dropped``) and the next window starts again
from the anchor keyframes of the last accepted window. A first window that fails leaves the world
undefined and the next window tries to define it.

Frame size: all frames must map to the same model input size. A frame whose size maps to a
different one (a different aspect ratio, or any change when ``image_width`` is None) raises
:class:`FrameSizeError`; call ``reset()`` (or make a new reconstructor) to start a new map.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ..geometry import invert_rigid, transform_cam_to_world, unproject_depth
from ..timing import StageTimer
from ..vggt.preprocess import model_input_size as vggt_input_size
from ..vggt.preprocess import model_input_rgb
from .alignment import AlignmentReport, FrameGeometry, align_overlap
from .keyframe_trajectory import Trajectory
from .keyframes import KeyframeSelector
from .map import GlobalMap
from .predictor import Predictor
from .stream_config import StreamConfig

PATCH = 14
POST_STAGES = ("align", "filter", "unproject", "map_update")   # everything after predict


class FrameSizeError(ValueError):
    """A frame does not fit the stream's model input size (see the module docstring)."""


@dataclass
class Keyframe:
    """A queued keyframe: model-input image uint8 [3,H,W]; world geometry once reconstructed."""

    frame_id: int
    stamp: float
    image: torch.Tensor
    preprocess_s: float = 0.0
    cam_to_world: Optional[torch.Tensor] = None     # [4,4] float64
    intrinsics: Optional[torch.Tensor] = None       # [3,3]
    depth: Optional[torch.Tensor] = None            # [H,W] world units
    conf: Optional[torch.Tensor] = None             # [H,W]


@dataclass
class WindowResult:
    """Everything one window produced. Tensors live on the stream's device.

    frame_ids / stamps [K]: the window's keyframes; the first ``num_overlap`` are shared with the
    previous accepted window, the others are new. cam_to_world [K,4,4] float64 and depth [K,H,W]
    are in the world frame and unit when ``accepted`` (None / window units otherwise);
    cam_to_window [K,4,4]: the predictor's poses in the window frame. intrinsics [K,3,3] and conf
    [K,H,W] refer to the model input size ``image_hw``. points_xyz [N,3] float32 / points_rgb
    [N,3] uint8: confidence-filtered points of the NEW keyframes in the world frame (what went
    into the map; empty when rejected). timings: seconds per stage (preprocess, predict, align,
    filter, unproject, map_update, post = everything after predict, total). stats: the predictor's.
    """

    index: int
    frame_ids: List[int]
    stamps: List[float]
    num_overlap: int
    image_hw: Tuple[int, int]
    alignment: AlignmentReport
    cam_to_window: torch.Tensor
    intrinsics: torch.Tensor
    depth: torch.Tensor
    conf: torch.Tensor
    cam_to_world: Optional[torch.Tensor] = None
    points_xyz: Optional[torch.Tensor] = None
    points_rgb: Optional[torch.Tensor] = None
    timings: Dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.alignment.accepted

    @property
    def num_keyframes(self) -> int:
        return len(self.frame_ids)

    def points_numpy(self) -> Tuple[np.ndarray, np.ndarray]:
        """(xyz float32 [N,3], rgb uint8 [N,3]) on the CPU (empty arrays when rejected)."""
        if self.points_xyz is None:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        return self.points_xyz.cpu().numpy(), self.points_rgb.cpu().numpy()


@dataclass
class StreamCounters:
    """Running totals of a stream."""

    frames_received: int = 0
    keyframes: int = 0
    windows: int = 0
    windows_accepted: int = 0
    windows_rejected: int = 0
    keyframes_dropped: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def model_input_size(height: int, width: int, image_width: Optional[int]) -> Tuple[int, int]:
    """(H, W) of the model input for a frame of height x width (see ``StreamConfig.image_width``)."""
    if image_width is None:
        if height % PATCH or width % PATCH:
            raise FrameSizeError(f"frame is {width}x{height} but with image_width=None both sides must be "
                                 f"multiples of {PATCH}")
        return height, width
    return vggt_input_size(height, width, mode="crop", target_size=image_width, patch_size=PATCH)


class StreamingReconstructor:
    """Keyframes -> sliding windows -> anchored similarity alignment -> global map + trajectory."""

    def __init__(self, predictor: Predictor, config: Optional[StreamConfig] = None) -> None:
        if not callable(getattr(predictor, "predict", None)):
            raise TypeError(f"predictor must have a predict(images, frame_ids) method, got {type(predictor).__name__}")
        self.predictor = predictor
        self.config = config or StreamConfig()
        dev = self.config.device
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else
                                   "cpu" if dev == "auto" else dev)
        self.reset()

    def reset(self) -> None:
        """Forget everything: new world frame, empty map and trajectory, counters at zero."""
        self.selector = KeyframeSelector(self.config.keyframes)
        self.map = GlobalMap(self.config.map, device=self.device)
        self.trajectory = Trajectory()
        self.counters = StreamCounters()
        self.model_hw: Optional[Tuple[int, int]] = None
        self.last_result: Optional[WindowResult] = None
        self._pending: List[Keyframe] = []
        self._anchor: List[Keyframe] = []            # last O keyframes of the last accepted window
        self._num_overlap = 0                        # leading anchor keyframes in _pending

    @property
    def world_defined(self) -> bool:
        return bool(self.counters.windows_accepted)

    # ------------------------------------------------------------------ input
    def push(self, frame: Union[np.ndarray, torch.Tensor], stamp: Optional[float] = None) -> List[WindowResult]:
        """Feed one RGB frame uint8 [H,W,3]; returns the windows it completed (0 or 1).

        stamp: seconds (default: the frame's index in the stream).
        """
        frame = self._check_frame(frame)
        fid = self.counters.frames_received
        self.counters.frames_received += 1
        is_key, _ = self.selector.select(frame)
        if not is_key:
            return []
        timer = StageTimer(mode="wall")
        image = self._prepare(frame)
        kf = Keyframe(fid, float(fid if stamp is None else stamp), image, timer.lap("preprocess"))
        self._pending.append(kf)
        self.counters.keyframes += 1
        if len(self._pending) >= self.config.window.size:
            return [self._run_window()]
        return []

    def flush(self) -> List[WindowResult]:
        """Run the queued keyframes as a last (shorter) window if any of them is new."""
        if len(self._pending) > self._num_overlap:
            return [self._run_window()]
        return []

    @staticmethod
    def _check_frame(frame) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(frame) if isinstance(frame, np.ndarray) else frame)
        if t.dim() != 3 or t.shape[-1] != 3 or t.dtype != torch.uint8:
            raise ValueError(f"frame must be uint8 [H,W,3] RGB, got {t.dtype} {tuple(t.shape)}")
        return t

    def _prepare(self, frame: torch.Tensor) -> torch.Tensor:
        """uint8 [H,W,3] -> model input uint8 [3,h,w] on the device (resized if needed)."""
        H, W = int(frame.shape[0]), int(frame.shape[1])
        hw = model_input_size(H, W, self.config.image_width)
        if self.model_hw is None:
            self.model_hw = hw
        elif hw != self.model_hw:
            raise FrameSizeError(f"frame {self.counters.frames_received - 1} is {W}x{H}, which maps to model input "
                                 f"{hw[1]}x{hw[0]}, but this stream runs at {self.model_hw[1]}x{self.model_hw[0]}; "
                                 "call reset() to start a new map at the new size")
        if (H, W) != hw:                                   # VGGT's own preprocessing (PIL bicubic, crop mode)
            frame = torch.from_numpy(model_input_rgb(frame.cpu().numpy(), "crop", self.config.image_width, PATCH))
        return frame.to(self.device).permute(2, 0, 1).contiguous()

    # ------------------------------------------------------------------ one window
    def _run_window(self) -> WindowResult:
        kfs, n_ov = self._pending, self._num_overlap
        index = self.counters.windows
        self.counters.windows += 1
        timer = StageTimer(self.device, "wall_sync" if self.config.sync_timing else "wall")
        timings = {"preprocess": sum(k.preprocess_s for k in kfs[n_ov:])}
        images = torch.stack([k.image for k in kfs]).float().div_(255.0)         # [K,3,H,W] in [0,1]
        ids, stamps = [k.frame_id for k in kfs], [k.stamp for k in kfs]
        pred = self.predictor.predict(images, ids)
        timings["predict"] = timer.lap("predict")
        K, _, H, W = images.shape
        pred.check(K, H, W)
        cam_to_window = invert_rigid(pred.extrinsics.to(self.device, torch.float64))  # [K,4,4]
        intr = pred.intrinsics.to(self.device, torch.float32)
        depth = pred.depth.to(self.device, torch.float32)
        conf = pred.depth_conf.to(self.device, torch.float32)
        report = self._align(cam_to_window, intr, depth, conf, n_ov)
        timings["align"] = timer.lap("align")
        result = WindowResult(index, ids, stamps, n_ov, (H, W), report, cam_to_window, intr, depth, conf,
                              stats=dict(pred.stats))
        if report.accepted:
            self._apply(result, images, timer, timings)
        else:
            self.counters.windows_rejected += 1
            self.counters.keyframes_dropped += K - n_ov
        self._next_pending()
        timings["post"] = sum(timings.get(stage, 0.0) for stage in POST_STAGES)
        timings["total"] = timings["post"] + timings["predict"] + timings["preprocess"]
        result.timings = timings
        self.last_result = result
        return result

    def _align(self, cam_to_window, intr, depth, conf, n_ov: int) -> AlignmentReport:
        """Checked window -> world similarity (identity for the window that defines the world)."""
        finite = all(bool(torch.isfinite(t).all()) for t in (cam_to_window, intr))
        if not finite or not bool(torch.isfinite(depth).any()):
            return AlignmentReport(False, "non-finite prediction (cameras or all depths)", num_frames=n_ov)
        if not self._anchor:
            return AlignmentReport(True, "", num_frames=0)                      # defines the world
        anchor = FrameGeometry(torch.stack([k.cam_to_world for k in self._anchor]),
                               torch.stack([k.intrinsics for k in self._anchor]),
                               torch.stack([k.depth for k in self._anchor]),
                               torch.stack([k.conf for k in self._anchor]))
        local = FrameGeometry(cam_to_window[:n_ov], intr[:n_ov], depth[:n_ov], conf[:n_ov])
        return align_overlap(local, anchor, self.config.align)

    def _apply(self, result: WindowResult, images: torch.Tensor, timer: StageTimer, timings: dict) -> None:
        """Move an accepted window into the world; add its new keyframes to the map and trajectory."""
        rep, n_ov = result.alignment, result.num_overlap
        rot = torch.as_tensor(rep.rotation, dtype=torch.float64, device=self.device)
        trans = torch.as_tensor(rep.translation, dtype=torch.float64, device=self.device)
        result.cam_to_world = transform_cam_to_world(result.cam_to_window, rep.scale, rot, trans)
        result.depth = result.depth * rep.scale
        if self.map.voxel_size is None:
            valid = result.depth[torch.isfinite(result.depth) & (result.depth > 0)]
            self.map.set_voxel_size(self.config.map.voxel_size_rel * float(valid.median()))
        new = slice(n_ov, result.num_keyframes)
        keep, stride = self._filter(result.depth[new], result.conf[new])
        timings["filter"] = timer.lap("filter")
        pts = unproject_depth(result.depth[new], result.cam_to_world[new], result.intrinsics[new], stride)
        result.points_xyz = pts[keep].float()
        colours = images[new, :, ::stride, ::stride].permute(0, 2, 3, 1)[keep]
        result.points_rgb = (colours * 255.0).round_().to(torch.uint8)
        timings["unproject"] = timer.lap("unproject")
        self.map.insert(result.points_xyz, result.points_rgb, stamp=result.index)
        timings["map_update"] = timer.lap("map_update")
        self.trajectory.append(result.frame_ids[new], result.stamps[new], result.cam_to_world[new].cpu().numpy())
        self.counters.windows_accepted += 1
        first = max(0, result.num_keyframes - self.config.window.overlap)
        for k in range(first, result.num_keyframes):   # copies: the anchor must not pin the whole window
            kf = self._pending[k]
            kf.cam_to_world, kf.intrinsics = result.cam_to_world[k].clone(), result.intrinsics[k].clone()
            kf.depth, kf.conf = result.depth[k].clone(), result.conf[k].clone()
        self._anchor = self._pending[first:]

    def _filter(self, depth: torch.Tensor, conf: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """Keep mask [n,h,w] on the stride grid: valid depth, conf >= threshold and >= percentile."""
        cfg = self.config.filter
        s = cfg.pixel_stride
        d, c = depth[:, ::s, ::s], conf[:, ::s, ::s]
        keep = torch.isfinite(d) & (d > 0) & torch.isfinite(c) & (c >= cfg.conf_threshold)
        if cfg.conf_percentile > 0 and bool(keep.any()):
            vals = c[keep]
            k = max(1, int(math.ceil(cfg.conf_percentile / 100.0 * vals.numel())))
            keep &= c >= torch.kthvalue(vals, k).values
        return keep, s

    def _next_pending(self) -> None:
        """The next window starts from the anchor keyframes (last accepted window's last O)."""
        self._pending = list(self._anchor)
        self._num_overlap = len(self._anchor)
