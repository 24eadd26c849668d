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
from the anchor keyframes of the last accepted window. A window whose new keyframes fail their
checks keeps the prefix before the first failure; that keyframe is dropped, and the ones after it
(never judged on their own) go into the next window once more (``counters.keyframes_requeued``).
A first window that fails leaves the world undefined and the next window tries to define it.

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
from ..vggt.preprocess import PATCH_SIZE as PATCH
from ..vggt.preprocess import model_input_size as vggt_input_size
from ..vggt.preprocess import model_input_rgb
from .alignment import AlignmentReport, FrameGeometry, align_overlap
from .anchoring import anchored_alignment, check_new_frames
from .keyframe_store import KeyframeStore, StoredKeyframe, global_descriptor, make_stored, visible_fractions
from .keyframe_trajectory import Trajectory
from .input_mapping import input_mapping
from .keyframes import KeyframeSelector
from .loop_closure import LoopCloser
from .map import GlobalMap
from .metric_scale import MetricReport, MetricScale, window_scale
from .predictor import Predictor
from .stream_config import StreamConfig
from .tracking import Tracker, TrackingState

POST_STAGES = ("align", "check", "filter", "unproject", "map_update", "store")   # everything after predict
# WindowResult.timings (seconds): preprocess (the new keyframes'), context (anchored: choosing the
# anchor and context keyframes), predict, POST_STAGES (store: the trajectory, metric scale and
# keyframe store updates of an accepted window), post (their sum), total


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
    points: Optional[torch.Tensor] = None           # [P,3] world sample points (map keyframes)
    given_intrinsics: Optional[torch.Tensor] = None  # [3,3] float32 at the model input (push(intrinsics=))
    sensor_depth: Optional[torch.Tensor] = None     # [H,W] float32 metres at the model input, NaN = none
    retried: bool = False                           # queued again once after a dropped keyframe
    _descriptor: Optional[Tuple[int, torch.Tensor]] = field(default=None, repr=False, compare=False)

    def descriptor(self, config) -> torch.Tensor:
        """Global descriptor [D] of the image (see :mod:`.keyframe_store`), computed once per width
        (retrieval, the relocalisation floor and the new-keyframe check all ask for it)."""
        if self._descriptor is None or self._descriptor[0] != config.descriptor_width:
            self._descriptor = (config.descriptor_width, global_descriptor(self.image, config.descriptor_width))
        return self._descriptor[1]

    @classmethod
    def from_stored(cls, kf: StoredKeyframe, device) -> "Keyframe":
        """A map keyframe as a window frame (on ``device``)."""
        return cls(kf.frame_id, kf.stamp, kf.image.to(device), 0.0, kf.cam_to_world.to(device),
                   kf.intrinsics.to(device), kf.depth.to(device), kf.conf.to(device, torch.float32), kf.points)


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
    tracking_state: the state after this window (:class:`~.tracking.TrackingState` value); segment:
    the map segment it belongs to; dropped: [(frame_id, reason)] of new keyframes the checks removed
    (the tensors above hold only the kept ones); requeued: new keyframes after the first dropped
    one, not judged on their own, queued again for the next window (once per keyframe);
    relocalisation: the window was anchored on a retrieved keyframe while LOST. In anchored mode
    the first ``num_overlap`` keyframes are the anchor and the context keyframes of the map.
    focal_predicted / focal_given: mean fx (model
    pixels) of the new keyframes as predicted / as given to ``push`` (NaN: none given);
    given_intrinsics: new keyframes whose given K replaced the predicted one (``intrinsics`` then
    holds the given K). metric: the metric scale after this window (accepted windows).
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
    tracking_state: str = TrackingState.INITIALISING.value
    segment: int = 0
    dropped: List[Tuple[int, str]] = field(default_factory=list)
    requeued: List[int] = field(default_factory=list)
    relocalisation: bool = False
    focal_predicted: float = math.nan
    focal_given: float = math.nan
    given_intrinsics: int = 0
    metric: Optional[MetricReport] = None

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
    keyframes_requeued: int = 0
    windows_partial: int = 0
    windows_errored: int = 0       # windows that raised inside the core: new keyframes dropped, error re-raised
    relocalisations: int = 0
    segments: int = 1

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
        self.segments: List[MapSegment] = [MapSegment(0, GlobalMap(self.config.map, device=self.device), Trajectory())]
        self.store = KeyframeStore(self.config.store)
        self.tracker = Tracker()
        self.counters = StreamCounters()
        self.model_hw: Optional[Tuple[int, int]] = None
        self.last_result: Optional[WindowResult] = None
        self._pending: List[Keyframe] = []
        self._requeued: List[Keyframe] = []          # keyframes a partial window gives a second chance
        self._anchor: List[Keyframe] = []            # chained: last O keyframes of the last accepted window
        self._num_overlap = 0                        # leading anchor keyframes in _pending
        self._reloc_attempts = 0
        self.metric = MetricScale(self.config.metric)   # metres per world unit, from sensor depth
        if getattr(self, "loops", None) is not None:
            self.loops.close()
        self.loops: Optional[LoopCloser] = None         # pose graph (StreamConfig.loop_closure, anchored mode)
        if self.config.loop_closure.enabled:
            self.loops = LoopCloser(self.config.loop_closure, self.anchored)

    @property
    def map(self) -> GlobalMap:
        """The current segment's map."""
        return self.segments[-1].map

    @property
    def trajectory(self) -> Trajectory:
        """The current segment's keyframe trajectory."""
        return self.segments[-1].trajectory

    @property
    def anchored(self) -> bool:
        return self.config.window.mode == "anchored"

    @property
    def tracking_state(self) -> TrackingState:
        return self.tracker.state

    @property
    def world_defined(self) -> bool:
        """The current segment has a world frame (an accepted window)."""
        return len(self.trajectory) > 0

    def save_segments(self, folder) -> List[str]:
        """Each map segment apart: map_segment<N>.ply and trajectory_segment<N>.tum; returns the paths."""
        from pathlib import Path
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for seg in self.segments:
            paths.append(str(seg.map.save_ply(out / f"map_segment{seg.index}.ply")))
            paths.append(str(seg.trajectory.save_tum(out / f"trajectory_segment{seg.index}.tum")))
        return paths

    # ------------------------------------------------------------------ input
    def push(self, frame: Union[np.ndarray, torch.Tensor], stamp: Optional[float] = None,
             intrinsics: Optional[np.ndarray] = None, depth: Optional[np.ndarray] = None) -> List[WindowResult]:
        """Feed one RGB frame uint8 [H,W,3]; returns the windows it completed (0 or 1).

        stamp: seconds (default: the frame's index in the stream). intrinsics: the frame's pinhole
        K [3,3] (pixels of this frame, no distortion; e.g. from a camera_info): it replaces the
        predicted K of this keyframe for alignment, checks and unprojection. depth: sensor depth
        [H,W] in metres aligned with the frame (0 / NaN = no reading): the metric scale
        (``self.metric``, :mod:`.metric_scale`). Both are mapped to the model input exactly as
        the image is (:mod:`.input_mapping`).
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
        self._side_inputs(kf, tuple(frame.shape[:2]), intrinsics, depth)
        self._pending.append(kf)
        self.counters.keyframes += 1
        if len(self._pending) - self._num_overlap >= self._new_per_window():
            return self._window()
        return []

    def flush(self) -> List[WindowResult]:
        """Run the queued keyframes as a last (shorter) window if any of them is new."""
        if len(self._pending) > self._num_overlap:
            return self._window()
        return []

    def _window(self) -> List[WindowResult]:
        """Run the pending window. One that raises (a bug, an input nothing checked) drops its new
        keyframes (``counters.windows_errored``, ``keyframes_dropped``) before the error goes on to
        the caller, so that the next window starts from new keyframes instead of failing the same
        way on every later frame."""
        try:
            return [self._run_window()]
        except Exception:
            dropped = len(self._pending) - self._num_overlap
            self._requeued = []
            self._next_pending()
            self.counters.windows_errored += 1
            self.counters.keyframes_dropped += dropped
            raise

    def _new_per_window(self) -> int:
        """New keyframes that complete a window: K without a world, else K - (known frames)."""
        cfg = self.config.window
        if self.anchored:
            return cfg.size if not self.world_defined else cfg.stride
        return cfg.size - self._num_overlap

    def _side_inputs(self, kf: Keyframe, src_hw: Tuple[int, int], intrinsics, depth) -> None:
        """Given K and sensor depth of a keyframe, mapped from the frame to the model input."""
        if intrinsics is None and depth is None:
            return
        mapping = input_mapping(src_hw, self.model_hw, self.config.image_width)
        if intrinsics is not None:
            k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
            if not (np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0):
                raise ValueError(f"intrinsics must be a finite pinhole K with fx, fy > 0, got {k.tolist()}")
            kf.given_intrinsics = torch.as_tensor(mapping.intrinsics(k), dtype=torch.float32)
        if depth is not None:
            kf.sensor_depth = torch.as_tensor(mapping.resample(np.asarray(depth, dtype=np.float32)))

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

    # ------------------------------------------------------------------ window layout
    def _known_frames(self) -> Tuple[List[Keyframe], bool]:
        """Anchored mode: (anchor + context keyframes of the map, relocalisation?) for the next window."""
        if not self.world_defined:
            return [], False
        seg = self.segments[-1].index
        if self.tracker.state == TrackingState.LOST:
            cands = self.store.retrieve(self._pending[0].descriptor(self.config.store), seg,
                                        self.config.tracking.relocalise_candidates,
                                        min_similarity=self.config.tracking.relocalise_min_similarity)
            if not cands:
                return [], True
            anchor = cands[self._reloc_attempts % len(cands)]
            return self._with_context(anchor, anchor, seg), True
        if self.config.tracking.anchor_policy == "last_window":
            last = [self.store[k.frame_id] for k in self._anchor if k.frame_id in self.store]
            if last:                                 # the last window's last O keyframes, as stored
                return [Keyframe.from_stored(k, self.device) for k in last], False
        ref = self.store[self.trajectory.frame_ids[-1]]
        covis = visible_fractions(self.store.keyframes(seg), ref.cam_to_world, ref.intrinsics, self.model_hw)
        first = self.store.first(seg)
        if first is not None and covis[first.frame_id] >= self.config.tracking.min_covisibility:
            anchor = first
        else:
            anchor = self.store[max(covis, key=lambda f: (covis[f], -f))]
        return self._with_context(anchor, ref, seg, covis), False

    def _with_context(self, anchor: StoredKeyframe, ref: StoredKeyframe, seg: int,
                      covis: Optional[Dict[int, float]] = None) -> List[Keyframe]:
        """[anchor] + O-1 context keyframes: half the most recent (nearest ``ref`` in time), half by covisibility."""
        want = self.config.window.overlap - 1
        pool = [k for k in self.store.keyframes(seg) if k.frame_id != anchor.frame_id]
        recent = sorted(pool, key=lambda k: abs(k.frame_id - ref.frame_id))[:(want + 1) // 2]
        if covis is None:
            covis = visible_fractions(pool, ref.cam_to_world, ref.intrinsics, self.model_hw)
        chosen = {k.frame_id for k in recent}
        rest = sorted((k for k in pool if k.frame_id not in chosen), key=lambda k: -covis.get(k.frame_id, 0.0))
        context = sorted(recent + rest[:want - len(recent)], key=lambda k: k.frame_id)
        return [Keyframe.from_stored(k, self.device) for k in [anchor] + context]

    # ------------------------------------------------------------------ one window
    def _run_window(self) -> WindowResult:
        reloc = False
        if self.loops is not None:
            self.loops.apply(self)                       # a newer pose-graph estimate, if any
        timer = StageTimer(self.device, "wall_sync" if self.config.sync_timing else "wall")
        if self.anchored:
            known, reloc = self._known_frames()
            self._pending = known + self._pending[self._num_overlap:]
            self._num_overlap = len(known)
        kfs, n_ov = self._pending, self._num_overlap
        index = self.counters.windows
        self.counters.windows += 1
        timings = {"preprocess": sum(k.preprocess_s for k in kfs[n_ov:]), "context": timer.lap("context")}
        images = torch.stack([k.image.to(self.device) for k in kfs]).float().div_(255.0)   # [K,3,H,W] in [0,1]
        ids, stamps = [k.frame_id for k in kfs], [k.stamp for k in kfs]
        pred = self.predictor.predict(images, ids)
        timings["predict"] = timer.lap("predict")
        K, _, H, W = images.shape
        pred.check(K, H, W)
        cam_to_window = invert_rigid(pred.extrinsics.to(self.device, torch.float64))  # [K,4,4]
        intr = pred.intrinsics.to(self.device, torch.float32)
        focal_predicted = float(intr[n_ov:, 0, 0].mean()) if K > n_ov else math.nan
        intr, given = self._given_intrinsics(kfs, n_ov, intr)
        depth = pred.depth.to(self.device, torch.float32)
        conf = pred.depth_conf.to(self.device, torch.float32)
        report = self._align(cam_to_window, intr, depth, conf, n_ov, reloc)
        timings["align"] = timer.lap("align")
        result = WindowResult(index, ids, stamps, n_ov, (H, W), report, cam_to_window, intr, depth, conf,
                              stats=dict(pred.stats), segment=self.segments[-1].index, relocalisation=reloc,
                              focal_predicted=focal_predicted, given_intrinsics=len(given),
                              focal_given=float(intr[given, 0, 0].mean()) if given else math.nan)
        if report.accepted:
            self._place(result)
            self._check_new(result, images, reloc)
            timings["check"] = timer.lap("check")
        if result.accepted:
            images = images[:result.num_keyframes]
            self._apply(result, images, timer, timings)
        else:
            self.counters.windows_rejected += 1
            self.counters.keyframes_dropped += K - n_ov
            result.cam_to_world = None
            result.depth = depth
        self._update_tracking(result)
        if self.loops is not None and result.accepted:
            self.loops.on_window(self, result)           # constraints; the solver runs on its own thread
        self._next_pending()
        timings["post"] = sum(timings.get(stage, 0.0) for stage in POST_STAGES)
        timings["total"] = timings["post"] + timings["predict"] + timings["preprocess"] + timings["context"]
        result.timings = timings
        result.tracking_state = self.tracker.state.value
        self.last_result = result
        return result

    def _given_intrinsics(self, kfs: List[Keyframe], n_ov: int, intr: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
        """intr [K,3,3] with the given K of every keyframe that has one; when any new keyframe has
        one, the known (overlap) keyframes keep the K they were placed with. Returns (intr, indices
        of the new keyframes with a given K)."""
        given = [k for k in range(n_ov, len(kfs)) if kfs[k].given_intrinsics is not None]
        if not given:
            return intr, []
        intr = intr.clone()
        for k, kf in enumerate(kfs):
            known = kf.intrinsics if k < n_ov else None
            chosen = kf.given_intrinsics if kf.given_intrinsics is not None else known
            if chosen is not None:
                intr[k] = chosen.to(intr.device, intr.dtype)
        return intr, given

    def _align(self, cam_to_window, intr, depth, conf, n_ov: int, reloc: bool = False) -> AlignmentReport:
        """Checked window -> world similarity (identity for the window that defines the world)."""
        finite = all(bool(torch.isfinite(t).all()) for t in (cam_to_window, intr))
        if not finite or not bool(torch.isfinite(depth).any()):
            return AlignmentReport(False, "non-finite prediction (cameras or all depths)", num_frames=n_ov)
        known = self._pending[:n_ov]
        floor = self.config.tracking.relocalise_min_similarity
        if not known:
            if self.anchored and self.world_defined:        # LOST with nothing to retrieve
                return AlignmentReport(False, "relocalisation: no keyframe to retrieve" + (
                    f" with a descriptor similarity >= relocalise_min_similarity={floor}" if floor > -1 else ""),
                                       num_frames=0)
            return AlignmentReport(True, "", num_frames=0)                      # defines the world
        if not self.anchored and self.tracker.state == TrackingState.LOST and floor > -1:
            best = self._similarity_to_known(n_ov)
            if best < floor:
                return AlignmentReport(False, f"relocalisation: the new keyframes do not look like the overlap "
                                              f"(descriptor similarity {best:.2f} < relocalise_min_similarity={floor})",
                                       num_frames=n_ov)
        world = FrameGeometry(torch.stack([k.cam_to_world for k in known]),
                              torch.stack([k.intrinsics for k in known]),
                              torch.stack([k.depth for k in known]),
                              torch.stack([k.conf for k in known]))
        local = FrameGeometry(cam_to_window[:n_ov], intr[:n_ov], depth[:n_ov], conf[:n_ov])
        if self.anchored:
            share = self.config.tracking.min_context_agreement if reloc else 1.0
            return anchored_alignment(local, world, self.config.align, self.config.tracking, share)
        return align_overlap(local, world, self.config.align)

    def _similarity_to_known(self, n_ov: int) -> float:
        """Best descriptor similarity of the window's first new keyframe to its known keyframes."""
        cfg = self.config.store
        query = self._pending[n_ov].descriptor(cfg).float()
        return max(float(k.descriptor(cfg).float() @ query) for k in self._pending[:n_ov])

    def _place(self, result: WindowResult) -> None:
        """World poses and world-unit depths of an aligned window."""
        rep = result.alignment
        rot = torch.as_tensor(rep.rotation, dtype=torch.float64, device=self.device)
        trans = torch.as_tensor(rep.translation, dtype=torch.float64, device=self.device)
        result.cam_to_world = transform_cam_to_world(result.cam_to_window, rep.scale, rot, trans)
        result.depth = result.depth * rep.scale

    def _check_new(self, result: WindowResult, images: torch.Tensor, reloc: bool) -> None:
        """Checks on the new keyframes: keep the prefix that passes, record what was dropped."""
        n_ov, K = result.num_overlap, result.num_keyframes
        if n_ov == 0:
            return                                                        # defines the world: nothing to check against
        known = self._pending[:n_ov]
        points = torch.cat([k.points for k in known if k.points is not None] or [torch.zeros(0, 3)])
        d = result.depth[:n_ov]
        valid = d[torch.isfinite(d) & (d > 0)]
        median = float(valid.median()) if valid.numel() else 1.0
        previous = None if reloc else self._previous_poses()
        new = slice(n_ov, K)
        kept, dropped = check_new_frames(result.frame_ids[new], result.cam_to_world[new], result.intrinsics[new],
                                         result.depth[new], result.conf[new], previous, points, median,
                                         self.config.tracking, require_overlap=reloc,
                                         look_alike=self._look_alike(n_ov, K))
        result.dropped = dropped
        if not dropped:
            return
        if kept == 0:
            result.alignment.accepted = False
            result.alignment.reason = f"all {K - n_ov} new keyframes dropped: {dropped[0][1]}"
            return                                                        # counted with the rejection
        self.counters.windows_partial += 1
        end = n_ov + kept
        self._requeue(result, end)
        self.counters.keyframes_dropped += len(result.dropped)
        for name in ("frame_ids", "stamps"):
            setattr(result, name, getattr(result, name)[:end])
        for name in ("cam_to_window", "intrinsics", "depth", "conf", "cam_to_world"):
            setattr(result, name, getattr(result, name)[:end])
        self._pending = self._pending[:end]

    def _requeue(self, result: WindowResult, end: int) -> None:
        """A partial window (keyframes [end] failed its checks): the keyframes after it were dropped
        only for coming after it; those not yet retried are queued again for the next window (a
        keyframe gets one second chance, so a bad stretch cannot make every window run again)."""
        again = [kf for kf in self._pending[end + 1:] if not kf.retried]
        for kf in again:
            kf.retried = True
        self._requeued = again
        result.requeued = [kf.frame_id for kf in again]
        ids = set(result.requeued)
        result.dropped = [(fid, why) for fid, why in result.dropped if fid not in ids]
        self.counters.keyframes_requeued += len(again)

    def _look_alike(self, n_ov: int, K: int) -> Optional[List[float]]:
        """Per new keyframe, its global-descriptor similarity to the frame it follows in the window:
        the best known frame for the first, the previous new one after that (None: check off)."""
        if self.config.tracking.min_new_similarity <= -1:
            return None
        desc = [k.descriptor(self.config.store).float() for k in self._pending[n_ov:K]]
        return [self._similarity_to_known(n_ov)] + [float(a @ b) for a, b in zip(desc, desc[1:])]

    def _previous_poses(self) -> Optional[List[torch.Tensor]]:
        """The last two accepted world poses before this window's new keyframes (chained: the overlap's)."""
        if not self.anchored:
            poses = [k.cam_to_world.cpu().double() for k in self._pending[:self._num_overlap]]
            return poses[-2:] if len(poses) >= 2 else None
        if len(self.trajectory) < 2:
            return None
        return [torch.from_numpy(p) for p in self.trajectory.cam_to_world()[-2:]]

    def _apply(self, result: WindowResult, images: torch.Tensor, timer: StageTimer, timings: dict) -> None:
        """Add an accepted window's (kept) new keyframes to the map, trajectory and keyframe store."""
        n_ov = result.num_overlap
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
        result.metric = self._metric_update(result, new)
        first = max(0, result.num_keyframes - self.config.window.overlap)
        for k in range(first if not self.anchored else n_ov, result.num_keyframes):   # copies: never pin the window
            kf = self._pending[k]
            kf.cam_to_world, kf.intrinsics = result.cam_to_world[k].clone(), result.intrinsics[k].clone()
            kf.depth, kf.conf = result.depth[k].clone(), result.conf[k].clone()
        if self.anchored:
            self._store_new(result, new)
        self._anchor = self._pending[first:]
        timings["store"] = timer.lap("store")

    def _store_new(self, result: WindowResult, new: slice) -> None:
        """The window's new keyframes into the keyframe store: images, depth, confidence, poses and
        intrinsics reach the host in one transfer each, not one small copy per keyframe."""
        seg, kfs = self.segments[-1].index, self._pending[new]
        images = torch.stack([kf.image for kf in kfs]).cpu()                   # uint8 [n,3,h,w]
        depth, conf = result.depth[new].detach().cpu(), result.conf[new].detach().cpu()       # [n,h,w]
        poses, intr = result.cam_to_world[new].detach().cpu(), result.intrinsics[new].detach().cpu()
        for i, kf in enumerate(kfs):
            self.store.add(make_stored(kf.frame_id, kf.stamp, seg, images[i], depth[i], conf[i], poses[i], intr[i],
                                       self.config.store))

    def _metric_update(self, result: WindowResult, new: slice) -> MetricReport:
        """The window's metric scale from the sensor depth of its new keyframes (world-unit depth
        vs metres), smoothed into ``self.metric``."""
        ks = [k for k in range(new.start, new.stop) if self._pending[k].sensor_depth is not None]
        estimate = None
        if ks:
            sensor = torch.stack([self._pending[k].sensor_depth for k in ks]).numpy()      # [n,H,W] m
            estimate = window_scale(result.depth[ks].cpu().numpy(), result.conf[ks].cpu().numpy(), sensor,
                                    self.config.metric)
        return MetricReport(estimate, self.metric.update(estimate), len(ks))

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

    # ------------------------------------------------------------------ tracking state
    def _update_tracking(self, result: WindowResult) -> None:
        """The one place the tracking state changes after a window (see :mod:`.tracking`)."""
        tr, S = self.tracker, TrackingState
        stamp, idx = result.stamps[-1], result.index
        if result.accepted:
            tr.failures, self._reloc_attempts = 0, 0
            if tr.state == S.LOST:
                self.counters.relocalisations += 1
                tr.transition(S.RELOCALISED, f"window anchored on keyframe {result.frame_ids[0]} accepted "
                                             f"(scale {result.alignment.scale:.3g})", idx, stamp)
            elif tr.state != S.TRACKING:
                what = "defines the world" if result.num_overlap == 0 else "accepted"
                tr.transition(S.TRACKING, f"window {idx} {what}", idx, stamp)
            return
        tr.failures += 1
        reason = result.alignment.reason
        if tr.state in (S.TRACKING, S.RELOCALISED) and tr.failures >= self.config.tracking.lost_after:
            tr.transition(S.LOST, reason, idx, stamp)
        elif tr.state == S.LOST:
            self._reloc_attempts += 1
            waited = stamp - (tr.since_stamp if tr.since_stamp is not None else stamp)
            if waited >= self.config.tracking.relocalise_timeout_s:
                tr.transition(S.NEW_SEGMENT, f"relocalisation failed for {waited:.1f} s "
                                             f">= relocalise_timeout_s={self.config.tracking.relocalise_timeout_s} "
                                             f"(last: {reason})", idx, stamp)
                self._new_segment()

    def _new_segment(self) -> None:
        """A new map segment with its own world frame; the old one is kept apart."""
        index = self.segments[-1].index + 1
        self.segments.append(MapSegment(index, GlobalMap(self.config.map, device=self.device), Trajectory()))
        self.counters.segments += 1
        self.metric.reset()                                  # a new world frame, a new scale
        self._anchor = []

    def _next_pending(self) -> None:
        """Chained: the next window starts from the anchor keyframes (last accepted window's last O).
        Anchored: from the new keyframes only (known frames are chosen when the window runs). Both:
        then the keyframes a partial window queued again."""
        again, self._requeued = self._requeued, []
        if self.anchored:
            self._pending, self._num_overlap = again, 0
            return
        self._pending = list(self._anchor) + again
        self._num_overlap = len(self._anchor)


@dataclass
class MapSegment:
    """One map segment: its own world frame, map and trajectory (segments are never merged)."""

    index: int
    map: GlobalMap
    trajectory: Trajectory
