"""Configuration dataclasses of the streaming reconstruction; each validates itself on creation.

Errors are ``ValueError`` naming the field and the allowed range, e.g.
``WindowConfig.overlap must be an int in [1, 23] (< size), got 24``.

Units: lengths called "relative" are fractions of the median depth of the overlap / first window
(the world's unit is whatever scale the first window was predicted at: VGGT is up to scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Optional, Tuple

from .metric_scale import MetricScaleConfig
from .pose_graph import LoopClosureConfig


def _int_in(owner: str, name: str, value, lo: int, hi: Optional[int] = None, note: str = "") -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{owner}.{name} must be an int {rng}{note}, got {value!r}")


def _float_in(owner: str, name: str, value, lo: float, hi: float, lo_open: bool = False,
              hi_open: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    ok = (not math.isnan(v)) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{owner}.{name} must be a number in {rng}, got {value!r}")


@dataclass
class KeyframeConfig:
    """Keyframe selection (see :class:`~httm_ros.pipeline.keyframes.KeyframeSelector`).

    enabled: False makes every frame a keyframe. min_motion: estimated mean image motion since the
    last keyframe, as a fraction of the image width, above which a frame becomes a keyframe
    (0.03 = 3 % of the width). max_gap: a keyframe is forced after this many frames. analysis_width:
    width (px) of the grey thumbnail the motion is measured on; the measure follows the true mean
    flow up to roughly 2/analysis_width and saturates beyond, so keep min_motion below that.
    """

    enabled: bool = True
    min_motion: float = 0.03
    max_gap: int = 15
    analysis_width: int = 32

    def __post_init__(self) -> None:
        _float_in("KeyframeConfig", "min_motion", self.min_motion, 0.0, 1.0)
        _int_in("KeyframeConfig", "max_gap", self.max_gap, 1)
        _int_in("KeyframeConfig", "analysis_width", self.analysis_width, 8, 1024)


@dataclass
class WindowConfig:
    """Sliding windows: ``size`` keyframes per model run, ``overlap`` shared with the previous one.

    mode: "chained" (each window starts with the last ``overlap`` keyframes of the previous
    accepted window and is aligned by a similarity fitted on them: errors compound window after
    window) or "anchored" (each window starts with an anchor keyframe of the map whose world pose is
    known, then ``overlap - 1`` context keyframes of the map chosen by covisibility and recency;
    window -> world = the anchor's pose and one robust scale; see docs/STREAMING.md).

    Defaults K=24, O=8: 24 frames at 518x392 is ~24.9k tokens per global-attention layer, which
    VGGT-1B runs in about a second on one H100 and where token merging starts to pay; 8 overlap
    frames give ~1.6M overlap pixels (far more than the alignment needs) spread over a third of the
    window's baseline, so one bad overlap frame cannot dominate, while 2/3 of each model run
    (16 frames) is new.
    """

    size: int = 24
    overlap: int = 8
    mode: str = "chained"

    def __post_init__(self) -> None:
        _int_in("WindowConfig", "size", self.size, 2, 1024)
        _int_in("WindowConfig", "overlap", self.overlap, 1, self.size - 1, " (< size)")
        if self.mode not in WINDOW_MODES:
            raise ValueError(f"WindowConfig.mode must be one of {WINDOW_MODES}, got {self.mode!r}")

    @property
    def stride(self) -> int:
        """New keyframes per window (after the first)."""
        return self.size - self.overlap


@dataclass
class FilterConfig:
    """Confidence filtering of the points that reach the map and the window results.

    conf_threshold: keep pixels with depth_conf >= this (VGGT's conf is >= 1, so 1.0 = off).
    conf_percentile: additionally drop the lowest this-percent confidences of the window's new
    keyframes (0 = off; VGGT's demo uses 50). pixel_stride: take every n-th pixel in both
    directions (2 = a quarter of the pixels; enough when a voxel spans >= 2 pixels).
    """

    conf_threshold: float = 1.0
    conf_percentile: float = 50.0
    pixel_stride: int = 2

    def __post_init__(self) -> None:
        _float_in("FilterConfig", "conf_threshold", self.conf_threshold, 0.0, math.inf, hi_open=True)
        _float_in("FilterConfig", "conf_percentile", self.conf_percentile, 0.0, 100.0, hi_open=True)
        _int_in("FilterConfig", "pixel_stride", self.pixel_stride, 1, 64)


@dataclass
class AlignConfig:
    """Similarity alignment of a window onto the world from its overlap keyframes.

    min_overlap_frames / min_points: fewer shared keyframes or valid correspondences -> rejected.
    max_points: overlap pixels sampled (uniform grid) for the estimate. irls_iterations: robust
    reweighting rounds (Cauchy weights). inlier_threshold: residual below this fraction of the
    median overlap depth counts as an inlier. Rejected when violated: min_inlier_fraction;
    max_residual (weighted RMS of the inliers over the median depth; keep it below
    inlier_threshold to be a real check); scale_range (window-to-world scale); max_rotation_deg /
    max_center_error (overlap cameras after alignment vs. their world poses, the centre error
    relative to the median depth). Defaults leave room for VGGT's few-percent depth errors.
    """

    min_overlap_frames: int = 2
    min_points: int = 500
    max_points: int = 20000
    irls_iterations: int = 10
    inlier_threshold: float = 0.1
    min_inlier_fraction: float = 0.5
    max_residual: float = 0.05
    scale_range: Tuple[float, float] = (1e-3, 1e3)
    max_rotation_deg: float = 10.0
    max_center_error: float = 0.25

    def __post_init__(self) -> None:
        o = "AlignConfig"
        _int_in(o, "min_overlap_frames", self.min_overlap_frames, 1, 1024)
        _int_in(o, "min_points", self.min_points, 3)
        _int_in(o, "max_points", self.max_points, self.min_points, None, " (>= min_points)")
        _int_in(o, "irls_iterations", self.irls_iterations, 0, 100)
        _float_in(o, "inlier_threshold", self.inlier_threshold, 0.0, 1.0, lo_open=True)
        _float_in(o, "min_inlier_fraction", self.min_inlier_fraction, 0.0, 1.0)
        _float_in(o, "max_residual", self.max_residual, 0.0, 1.0, lo_open=True)
        _float_in(o, "max_rotation_deg", self.max_rotation_deg, 0.0, 180.0, lo_open=True)
        _float_in(o, "max_center_error", self.max_center_error, 0.0, math.inf, lo_open=True)
        lo, hi = (tuple(self.scale_range) + (None, None))[:2]
        if lo is None or not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo < hi):
            raise ValueError(f"AlignConfig.scale_range must be (lo, hi) with 0 < lo < hi, got {self.scale_range!r}")


OVERFLOW_POLICIES = ("coarsen", "evict_oldest")
WINDOW_MODES = ("chained", "anchored")
ANCHOR_POLICIES = ("first", "last_window")
EVICTION_POLICIES = ("thin_oldest", "drop_oldest")


@dataclass
class TrackingConfig:
    """Tracking state, checks on the new keyframes of a window, relocalisation (docs/STREAMING.md).

    Anchored windows (window -> world = anchor pose + one scale): anchor_scale_inlier: a pixel of
    the anchor/context frames agrees with the map when |log(map depth / (scale x predicted depth))|
    is below this; min_depth_agreement: share of such pixels needed; the context cameras, once in
    the world, must match their map poses within ``AlignConfig.max_rotation_deg`` /
    ``max_center_error``: every one of them, and in relocalisation windows at least
    min_context_agreement of them (the others are counted in ``AlignmentReport.context_disagreeing``).
    min_covisibility: share of a keyframe's sample points that the reference
    camera (the newest keyframe) sees, for the keyframe to count as covisible. anchor_policy
    "first": the anchor is the map's first keyframe while it is covisible, else the most covisible
    one; context: half the newest keyframes, half the most covisible. "last_window": the known
    frames are the last ``overlap`` keyframes of the last accepted window, the oldest of them the
    anchor: one window placed them, so their map poses agree with each other, and they lie within
    the baseline a small network handles (httm-vggt-synth; docs/STREAMING.md).

    New keyframes (both modes): min_confidence: median depth confidence of a new keyframe below this
    -> dropped (VGGT's floor is 1). max_jump: distance between a new keyframe's centre and its
    constant-velocity prediction, relative to the median depth, above which it is dropped (the
    allowance grows by the predicted step); max_jump_deg: the same for the rotation. depth_check:
    map points of the window's known frames projected into the new keyframe must agree with its
    depth within |log ratio| < new_depth_tolerance (share >= min_depth_agreement, tested where >=
    min_visible_points land; kept apart from anchor_scale_inlier, so that a network's looser
    known-frame agreement does not let another place's frames in). min_new_similarity: a new
    keyframe's global descriptor must be at least this similar (cosine) to the frame it follows in
    the window (the best known frame for the first new one); it depends on the keyframe spacing, so
    it is for profiles measured at one spacing (-1: off). The first failed
    new keyframe is dropped, the earlier ones are kept and the later ones go into the next window
    once more (they were not judged on their own).

    lost_after: consecutive failed windows before TRACKING -> LOST (1: at once). relocalise_timeout_s:
    time (stamps) spent LOST before a NEW_SEGMENT starts. relocalise_candidates: keyframes retrieved
    by global descriptor per relocalisation attempt (one model run verifies the best).
    relocalise_min_similarity: while LOST, a window is tried only with map keyframes whose global
    descriptor (cosine) is at least this similar to the first new keyframe's: retrieved candidates
    (anchored) or the overlap (chained); -1: any (verification by the window alone).
    """

    min_confidence: float = 1.2
    max_jump: float = 0.5
    max_jump_deg: float = 30.0
    depth_check: bool = True
    new_depth_tolerance: float = 0.2
    min_new_similarity: float = -1.0
    min_depth_agreement: float = 0.3
    min_visible_points: int = 32
    anchor_scale_inlier: float = 0.1
    min_context_agreement: float = 0.5
    min_covisibility: float = 0.3
    anchor_policy: str = "first"
    lost_after: int = 1
    relocalise_timeout_s: float = 5.0
    relocalise_candidates: int = 3
    relocalise_min_similarity: float = -1.0

    def __post_init__(self) -> None:
        o = "TrackingConfig"
        _float_in(o, "min_confidence", self.min_confidence, 0.0, math.inf, hi_open=True)
        _float_in(o, "max_jump", self.max_jump, 0.0, math.inf, lo_open=True)
        _float_in(o, "max_jump_deg", self.max_jump_deg, 0.0, 180.0, lo_open=True)
        _float_in(o, "min_depth_agreement", self.min_depth_agreement, 0.0, 1.0)
        _int_in(o, "min_visible_points", self.min_visible_points, 1)
        _float_in(o, "anchor_scale_inlier", self.anchor_scale_inlier, 0.0, 1.0, lo_open=True)
        _float_in(o, "new_depth_tolerance", self.new_depth_tolerance, 0.0, 2.0, lo_open=True)
        _float_in(o, "min_new_similarity", self.min_new_similarity, -1.0, 1.0)
        _float_in(o, "min_covisibility", self.min_covisibility, 0.0, 1.0)
        _float_in(o, "min_context_agreement", self.min_context_agreement, 0.0, 1.0)
        if self.anchor_policy not in ANCHOR_POLICIES:
            raise ValueError(f"TrackingConfig.anchor_policy must be one of {ANCHOR_POLICIES}, got {self.anchor_policy!r}")
        _int_in(o, "lost_after", self.lost_after, 1, 1000)
        _float_in(o, "relocalise_timeout_s", self.relocalise_timeout_s, 0.0, math.inf, hi_open=True)
        _int_in(o, "relocalise_candidates", self.relocalise_candidates, 1, 64)
        _float_in(o, "relocalise_min_similarity", self.relocalise_min_similarity, -1.0, 1.0)


@dataclass
class StoreConfig:
    """The keyframe store (:class:`~httm_ros.pipeline.keyframe_store.KeyframeStore`).

    Keeps, per accepted keyframe, the model-input image (uint8, host), depth and confidence (float16,
    host), pose, intrinsics, a global descriptor and a few world sample points. max_keyframes /
    max_bytes: the bound (whichever is hit first). eviction: "thin_oldest" removes every other
    keyframe of the oldest half (older places stay reachable at a coarser spacing);
    "drop_oldest" forgets the oldest keyframes. The first keyframe of each segment is never evicted.
    descriptor_width: width of the grey thumbnail the global descriptor is pooled from.
    """

    max_keyframes: int = 2000
    max_bytes: int = 2 * 1024 ** 3
    eviction: str = "thin_oldest"
    descriptor_width: int = 16
    sample_points: int = 64

    def __post_init__(self) -> None:
        _int_in("StoreConfig", "max_keyframes", self.max_keyframes, 2)
        _int_in("StoreConfig", "max_bytes", self.max_bytes, 1)
        _int_in("StoreConfig", "descriptor_width", self.descriptor_width, 4, 256)
        _int_in("StoreConfig", "sample_points", self.sample_points, 4, 4096)
        if self.eviction not in EVICTION_POLICIES:
            raise ValueError(f"StoreConfig.eviction must be one of {EVICTION_POLICIES}, got {self.eviction!r}")


@dataclass
class MapConfig:
    """Global voxel map.

    voxel_size: edge length in world units; None -> ``voxel_size_rel`` times the median depth of
    the first window (the world's unit is the first window's arbitrary scale). max_points: hard
    bound on stored voxels. overflow: "coarsen" doubles the voxel size and re-merges until the map
    fits (keeps coverage, loses resolution); "evict_oldest" drops the voxels updated longest ago
    (keeps resolution, forgets old places). device: where the map lives (None = the stream's).
    """

    voxel_size: Optional[float] = None
    voxel_size_rel: float = 0.005
    max_points: int = 2_000_000
    overflow: str = "coarsen"
    device: Optional[str] = None

    def __post_init__(self) -> None:
        if self.voxel_size is not None:
            _float_in("MapConfig", "voxel_size", self.voxel_size, 0.0, math.inf, lo_open=True, hi_open=True)
        _float_in("MapConfig", "voxel_size_rel", self.voxel_size_rel, 0.0, 1.0, lo_open=True)
        _int_in("MapConfig", "max_points", self.max_points, 1)
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"MapConfig.overflow must be one of {OVERFLOW_POLICIES}, got {self.overflow!r}")


@dataclass
class StreamConfig:
    """Everything the :class:`~httm_ros.pipeline.stream.StreamingReconstructor` needs.

    image_width: model input width; frames of any size are resized as VGGT's loader does in crop
    mode (aspect kept, height rounded to a multiple of 14, centre-cropped if taller than the
    width) - a 518-wide frame with a height multiple of 14 is used as is. None: frames are used as
    they come and must have both sides multiples of 14. device: "cpu",
    "cuda", "cuda:N" or "auto" (where frames, post-processing and by default the map live).
    sync_timing: synchronise CUDA around stage timers (exact per-stage times, tiny cost).
    metric: the metric scale from sensor depth given to ``push`` (:mod:`.metric_scale`).
    """

    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    map: MapConfig = field(default_factory=MapConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    loop_closure: LoopClosureConfig = field(default_factory=LoopClosureConfig)
    metric: MetricScaleConfig = field(default_factory=MetricScaleConfig)
    image_width: Optional[int] = 518
    device: str = "cpu"
    sync_timing: bool = True

    def __post_init__(self) -> None:
        for name, cls in (("keyframes", KeyframeConfig), ("window", WindowConfig), ("filter", FilterConfig),
                          ("align", AlignConfig), ("map", MapConfig),
                          ("tracking", TrackingConfig), ("store", StoreConfig),
                          ("loop_closure", LoopClosureConfig), ("metric", MetricScaleConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"StreamConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        if self.image_width is not None:
            _int_in("StreamConfig", "image_width", self.image_width, 14, 4096)
            if self.image_width % 14:
                raise ValueError(f"StreamConfig.image_width must be a multiple of 14 (the patch size), got {self.image_width}")
        if self.window.overlap < self.align.min_overlap_frames:
            raise ValueError(f"WindowConfig.overlap ({self.window.overlap}) must be >= "
                             f"AlignConfig.min_overlap_frames ({self.align.min_overlap_frames})")
        if not isinstance(self.device, str) or not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise ValueError(f"StreamConfig.device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}")


PROFILE_SECTIONS = ("align", "tracking")
PROFILE_NOTES = ("measured_with",)      # node parameter values the profile was measured with (not applied)


def apply_profile(config: StreamConfig, profile: Optional[dict]) -> StreamConfig:
    """``config`` with a checkpoint's streaming profile applied: {"align": {field: value},
    "tracking": {field: value}}, the checks calibrated to that network's accuracy (a model card's
    ``stream_profile``; :func:`httm_ros.vggt.checkpoint.checkpoint_stream_profile`). None: unchanged.
    ValueError naming the section or field for anything else (the fields' own checks apply)."""
    if profile is None:
        return config
    if not isinstance(profile, dict) or set(profile) - set(PROFILE_SECTIONS + PROFILE_NOTES):
        raise ValueError(f"stream profile must be a dict with sections {PROFILE_SECTIONS}, got {profile!r}")
    changes = {}
    for section, values in profile.items():
        if section in PROFILE_NOTES:
            continue
        current = getattr(config, section)
        names = {f.name for f in fields(current)}
        if not isinstance(values, dict) or set(values) - names:
            raise ValueError(f"stream profile section {section!r}: unknown fields {sorted(set(values) - names)}"
                             if isinstance(values, dict) else f"stream profile section {section!r} must be a dict")
        changes[section] = replace(current, **values)
    return replace(config, **changes)
