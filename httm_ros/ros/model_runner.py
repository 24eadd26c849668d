"""Model loading and the streaming core, built from the node's parameter values (no rclpy here).

``build_model_runner(values)`` returns a :class:`ModelRunner`: the ``StreamingReconstructor`` the
node feeds, wrapping a :class:`SafePredictor` around the model (CUDA out-of-memory is caught per
window). With a model, ``warmup_forwards`` forwards at the window size run before it returns
(:func:`warm_up_model`), so the node's first window is not the slow one. ``image_size`` 0 becomes
the checkpoint model card's width (else 518) here, and the description (the node's "ready" line)
says so. The parameter -> configuration translation is in :mod:`.core_config`.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import torch

from httm_ros.httm import warm_up
from httm_ros.pipeline import KeyframeConfig, StreamingReconstructor, WindowPrediction
from httm_ros.pipeline.stream_warmup import warm_up_core
from httm_ros.vggt.layers import compile_failure
from httm_ros.vggt.preprocess import model_input_size

from .core_config import image_width, merge_config, profile_mismatch, stream_config, stream_profile, card_settings

LOG = logging.getLogger("httm_ros.ros.model_runner")


# ----------------------------------------------------------------------------- predictor
def nan_prediction(images: torch.Tensor, stats: dict) -> WindowPrediction:
    """A prediction the core rejects ("non-finite prediction"): used for failed windows."""
    s, _, h, w = images.shape
    nan = dict(dtype=torch.float32, device=images.device)
    return WindowPrediction(torch.full((s, 3, 4), math.nan, **nan), torch.full((s, 3, 3), math.nan, **nan),
                            torch.full((s, h, w), math.nan, **nan), torch.full((s, h, w), math.nan, **nan),
                            stats=stats)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class SafePredictor:
    """Wraps a predictor so that one window's failure never stops the stream.

    CUDA out of memory: the cache is emptied and the window is retried with the DPT heads run one
    frame at a time (the window is split for the heads, the aggregator still sees all frames);
    if that fails too, or on any other error, the window comes back as a NaN prediction, which
    the core rejects without touching the map. ``stats["error"]`` says what happened;
    ``failures`` / ``oom_events`` count.
    """

    def __init__(self, inner, log: Callable[[str], None] = LOG.error) -> None:
        self.inner = inner
        self.log = log
        self.failures = 0
        self.oom_events = 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        """images [S,3,H,W] in [0,1] -> WindowPrediction (NaN-filled when the window failed)."""
        try:
            return self.inner.predict(images, frame_ids)
        except Exception as err:  # noqa: BLE001 - every failure is reported, the node keeps running
            if not _is_oom(err):
                return self._failed(images, f"{type(err).__name__}: {err}")
            self.oom_events += 1
            _empty_cache()
        try:
            with _heads_one_frame_at_a_time(self.inner):
                pred = self.inner.predict(images, frame_ids)
            pred.stats["recovered"] = "out of memory; retried with the heads one frame at a time"
            self.log(f"window of {images.shape[0]} frames ran out of GPU memory; recovered by running "
                     "the heads one frame at a time")
            return pred
        except Exception as err:  # noqa: BLE001
            _empty_cache()
            return self._failed(images, f"{'GPU out of memory' if _is_oom(err) else type(err).__name__}: {err}")

    def _failed(self, images: torch.Tensor, reason: str) -> WindowPrediction:
        self.failures += 1
        self.log(f"window of {images.shape[0]} frames failed and is skipped: {reason}")
        return nan_prediction(images, {"error": reason, "model_s": 0.0,
                                       "merge_mode": getattr(self.inner, "merge_mode", "unknown"), "merge": {}})


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _heads_one_frame_at_a_time:
    """Context: set the model's ``dpt_chunk_size`` to 1 (when the predictor has a VGGT model)."""

    def __init__(self, predictor) -> None:
        self.model = getattr(predictor, "model", None)
        self.saved = getattr(self.model, "config", None)

    def __enter__(self):
        if self.saved is not None and hasattr(self.saved, "dpt_chunk_size"):
            self.model.config = self.saved.replace(dpt_chunk_size=1)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            self.model.config = self.saved


class DelayedPredictor:
    """``debug_window_delay`` (for tests): each window waits ``delay`` s before its forward, after a
    log line a test can wait for ("debug_window_delay: window of N frames waits ...")."""

    def __init__(self, inner, delay: float, log: Callable[[str], None]) -> None:
        self.inner, self.delay, self.log = inner, delay, log

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        self.log(f"debug_window_delay: window of {images.shape[0]} frames waits {self.delay:g} s "
                 "before its forward")
        time.sleep(self.delay)
        return self.inner.predict(images, frame_ids)


# ----------------------------------------------------------------------------- runner
@dataclass
class ModelRunner:
    """The streaming core and facts about the model the node reports."""

    reconstructor: StreamingReconstructor
    predictor: SafePredictor
    device: torch.device
    test_weights: bool
    patch_start: int            # special tokens per frame (camera + registers)
    description: str
    warmup: Optional[dict] = None   # start-up warm-up: {forwards, frames, image_hw, seconds} or {error}
    keyframes: Optional[KeyframeConfig] = None   # selection the caller runs (core_selects_keyframes=False)

    def tokens_per_frame(self, image_hw: Tuple[int, int], patch: int = 14) -> int:
        """Special + patch tokens of one frame of the model input size (H, W)."""
        return self.patch_start + (image_hw[0] // patch) * (image_hw[1] // patch)


class GpuRequiredError(RuntimeError):
    """``require_gpu`` is set and CUDA is not available."""


def resolve_device(name: str, log: Callable[[str], None] = LOG.warning, require_gpu: bool = False) -> torch.device:
    """The factory's device choice, with its warnings (e.g. no GPU -> CPU, ``auto`` included)
    sent to ``log``; GpuRequiredError instead of a CPU fallback when ``require_gpu``."""
    from httm_ros.vggt.factory import resolve_device as _resolve

    if require_gpu and not torch.cuda.is_available():
        raise GpuRequiredError(f"require_gpu is true but CUDA is not available (device {name!r}); "
                               "start on a machine with a GPU or set require_gpu:=false")
    if require_gpu and name == "cpu":
        raise GpuRequiredError("require_gpu is true but device is 'cpu'")
    if name == "auto" and not torch.cuda.is_available():
        log("device auto: CUDA is not available, running on CPU (slow); require_gpu:=true makes this an error")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = _resolve(name)
    for w in caught:
        log(str(w.message))
    return device


def build_model_runner(values: Mapping[str, Any], predictor=None, warn: Callable[[str], None] = LOG.warning,
                       error: Callable[[str], None] = LOG.error, core_selects_keyframes: bool = True) -> ModelRunner:
    """Load the model (or use ``predictor``, e.g. an OraclePredictor in tests and benchmarks) and
    build the reconstructor. Raises httm_ros.vggt.CheckpointError for a missing/wrong checkpoint.
    ``core_selects_keyframes=False``: the caller selects keyframes before it pushes frames (the node,
    in its subscription callback); the core takes every pushed frame as a keyframe and
    ``runner.keyframes`` is the selection to run."""
    device = resolve_device(values["device"], warn, values.get("require_gpu", False))
    width, source = image_width(values)                   # image_size 0: the model card's width, else 518
    values = {**values, **card_settings(values), "image_size": width}   # 0 / auto: the card's windows, merging
    test_weights, patch_start, warmup = False, 5, None
    if predictor is None:
        predictor, test_weights, patch_start = _model_predictor(values, device, warn)
        description = f"{_model_name(values)} on {device}, merge {values['merge_mode']}"
        if source not in ("image_size", "default"):
            description += f", input {width} px wide (image_size 0: the width of {source})"
        if profile := stream_profile(values):
            mismatch = profile_mismatch(values, profile)
            description += (", streaming checks from its model card (card_stream_profile), windows "
                            f"{values['window_size']}/{values['window_overlap']} {values['window_mode']} with "
                            f"keyframe_policy {values['keyframe_policy']}"
                            + ("" if mismatch else " as its model card was measured"))
            if mismatch:
                warn(f"{_model_name(values)}'s streaming checks were measured with other settings: "
                     f"{', '.join(mismatch)}; expect dropped keyframes and lost tracking (docs/STREAMING.md)")
        if values.get("weights_dtype", "float32") != "float32":
            description += f", weights {values['weights_dtype']}"
        if device.type == "cuda" and predictor.model.config.dpt_cuda_dtype:
            description += f", DPT heads {predictor.model.config.dpt_cuda_dtype}"
        if predictor.compile_frames is not None:
            description += f", token-wise passes and DPT heads compiled for {predictor.compile_frames}-frame windows"
        warmup = warm_up_model(predictor.model, values, warn)
        description += warmup_text(warmup)
        failure = compile_failure() if predictor.compile_frames is not None else None
        if failure:
            description += f" (compile failed, running eager: {failure})"
    else:
        description = f"injected {type(predictor).__name__} on {device}"
    config = stream_config(values, str(device))
    if warmup is not None and not warmup.get("error") and device.type == "cuda":
        warmup["core"] = warm_up_stream(predictor, config, warn)
        description += core_warmup_text(warmup["core"])
    if values.get("debug_window_delay", 0.0) > 0:
        predictor = DelayedPredictor(predictor, values["debug_window_delay"], warn)
    safe = SafePredictor(predictor, log=error)
    selection = None
    if not core_selects_keyframes:
        selection, config = config.keyframes, replace(config, keyframes=replace(config.keyframes, enabled=False))
    return ModelRunner(StreamingReconstructor(safe, config), safe, device,
                       test_weights, patch_start, description, warmup, selection)


def _model_name(values: Mapping[str, Any]) -> str:
    """The checkpoint's model card name (e.g. httm-vggt-synth), else ``VGGT <model_config>``."""
    from httm_ros.vggt.checkpoint import CheckpointError, read_model_card

    checkpoint = values.get("checkpoint") or ""
    try:
        card = read_model_card(checkpoint) if checkpoint else None
    except CheckpointError:
        card = None
    name = card.get("name") if card else None
    return str(name) if name else f"VGGT {values['model_config']}"


class _InputsInWeightDtype:
    """``model`` for ``warm_up``: its float32 images cast to the weights' dtype (as ModelPredictor
    does for the windows), so that bfloat16/float16 weights warm up too."""

    def __init__(self, model) -> None:
        self.model = model

    def parameters(self):
        return self.model.parameters()

    def __call__(self, images: torch.Tensor, **kwargs):
        return self.model(images.to(next(self.model.parameters()).dtype), **kwargs)


def warm_up_model(model, values: Mapping[str, Any], warn: Callable[[str], None]) -> Optional[dict]:
    """``warmup_forwards`` forwards at the window size (``window_size`` frames, model input of a 4:3
    frame ``image_size`` wide) before the node reports ready: the one-time costs (Triton
    compilation and tuning, plans, memory pool) are paid here, not in the first window. None when
    0; a failure is reported and the node starts anyway (the windows then pay those costs)."""
    forwards = values["warmup_forwards"]
    if forwards <= 0:
        return None
    image_hw = model_input_size(480, 640, "crop", values["image_size"])      # (H, W) of a 4:3 frame
    try:
        return {"forwards": forwards, **warm_up(_InputsInWeightDtype(model), values["window_size"], image_hw,
                                                 forwards=forwards)}
    except Exception as err:  # noqa: BLE001 - the node still starts; its first window is then cold
        _empty_cache()
        warn(f"start-up warm-up failed ({type(err).__name__}: {err}); the first window pays the one-time costs")
        return {"forwards": forwards, "error": f"{type(err).__name__}: {err}"}


def warm_up_stream(predictor, config, warn: Callable[[str], None]) -> dict:
    """After the model's warm-up on CUDA: two windows of a scratch streaming core built like the
    node's (:func:`httm_ros.pipeline.stream_warmup.warm_up_core`), so that the first windows of the
    stream do not pay the first use of the stages after the model. -> its result, or {"error"}
    after a failure (reported; the node starts anyway)."""
    try:
        return warm_up_core(predictor, config)
    except Exception as err:  # noqa: BLE001 - as warm_up_model: the first windows then pay those costs
        _empty_cache()
        warn(f"start-up warm-up of the streaming core failed ({type(err).__name__}: {err}); "
             "the first windows pay the one-time costs of alignment and mapping")
        return {"error": f"{type(err).__name__}: {err}"}


def core_warmup_text(core: dict) -> str:
    """The core's warm-up for the node's "ready" line."""
    if core.get("error"):
        return ", core warm-up failed"
    return f", core warm-up {core['windows']} windows in {core['seconds']:.2f} s"


def warmup_text(warmup: Optional[dict]) -> str:
    """The warm-up for the node's "ready" line."""
    if warmup is None:
        return ", no warm-up"
    if warmup.get("error"):
        return ", warm-up failed"
    h, w = warmup["image_hw"]
    return (f", warm-up {len(warmup['seconds'])} x {warmup['frames']} frames {w}x{h} in "
            f"{sum(warmup['seconds']):.2f} s")


def weights_dtype(values: Mapping[str, Any], device: torch.device) -> Optional[torch.dtype]:
    """``weights_dtype`` as a torch dtype (None: float32, as loaded); float16 needs CUDA."""
    name = values.get("weights_dtype", "float32")
    if name == "float32":
        return None
    if name == "float16" and device.type != "cuda":
        raise ValueError(f"weights_dtype float16 needs CUDA (device is {device}); on CPU use bfloat16 or float32")
    return getattr(torch, name)


def compile_enabled(values: Mapping[str, Any], device: torch.device) -> bool:
    """``compile_tokenwise``: on, off, or auto (on with CUDA)."""
    choice = values.get("compile_tokenwise", "auto")
    return choice == "on" or (choice == "auto" and device.type == "cuda")


def _model_predictor(values: Mapping[str, Any], device: torch.device, warn: Callable[[str], None]):
    """-> (ModelPredictor, uses test weights, special tokens per frame)."""
    from httm_ros.pipeline import ModelPredictor
    from httm_ros.vggt.factory import WEIGHTS_HELP, build_model

    checkpoint = values["checkpoint"] or None
    test_weights = checkpoint is None and values["allow_test_weights"]
    if test_weights:
        warn("NO CHECKPOINT: allow_test_weights is set, running with deterministic TEST WEIGHTS; the "
             "geometry (depth, poses, points) is MEANINGLESS. " + WEIGHTS_HELP)
    weights = weights_dtype(values, device)
    logger = logging.getLogger("httm_ros.vggt")
    level = logger.level
    logger.setLevel(logging.ERROR)                       # the factory's own warning: said above
    try:                                                 # cast weights on the CPU, then to the device
        model = build_model(values["model_config"], checkpoint, values["allow_test_weights"],
                            str(device) if weights is None else "cpu")
    finally:
        logger.setLevel(level)
    autocast = None if values["dtype"] == "float32" else values["dtype"]
    heads = None if values["dpt_dtype"] == "float32" else values["dpt_dtype"]
    model.config = model.config.replace(cuda_autocast_dtype=autocast, dpt_cuda_dtype=heads)
    predictor = ModelPredictor(model, device=device, dtype=weights, merge=merge_config(values),
                               compile_frames=values["window_size"] if compile_enabled(values, device) else None)
    return predictor, test_weights, model.config.patch_start
