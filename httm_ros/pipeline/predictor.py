"""Window predictors: the protocol and the model runner (ground-truth doubles: ``httm_ros.synthetic.oracle``).

A predictor turns the keyframes of one window into VGGT-style geometry::

    pred = predictor.predict(images, frame_ids)   # images [S,3,H,W] float in [0,1]
    pred.extrinsics  [S,3,4]  camera-from-world, OpenCV axes; frame 0 = identity (up to scale)
    pred.intrinsics  [S,3,3]  pixels of the input size, principal point (W/2, H/2)
    pred.depth       [S,H,W]  along the optical axis, same arbitrary unit as the extrinsics
    pred.depth_conf  [S,H,W]  >= 1 (VGGT: 1 + exp(x))
    pred.stats       dict     {"merge": {...}, "model_s": ..., ...} (free-form, JSON-able)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch

from ..timing import StageTimer
from ..vggt.heads import compile_dense_heads
from ..vggt.layers import compile_tokenwise, eager_tokenwise
from ..vggt.pose_encoding import pose_encoding_to_extrinsics_intrinsics


@dataclass
class WindowPrediction:
    """Geometry of one window in the window's own frame (its first camera), up to scale."""

    extrinsics: torch.Tensor      # [S,3,4]
    intrinsics: torch.Tensor      # [S,3,3]
    depth: torch.Tensor           # [S,H,W]
    depth_conf: torch.Tensor      # [S,H,W]
    stats: dict = field(default_factory=dict)

    def check(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError when shapes do not match a window of num_frames x height x width."""
        want = {"extrinsics": (num_frames, 3, 4), "intrinsics": (num_frames, 3, 3),
                "depth": (num_frames, height, width), "depth_conf": (num_frames, height, width)}
        for name, shape in want.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"WindowPrediction.{name} has shape {got}, expected {shape}")


@runtime_checkable
class Predictor(Protocol):
    """Anything with ``predict(images [S,3,H,W] in [0,1], frame_ids) -> WindowPrediction``."""

    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        ...


# ---------------------------------------------------------------------------- the model
class ModelPredictor:
    """Runs our VGGT (``httm_ros.vggt.VGGT``) once per window, optionally with token merging.

    model: a VGGT (moved to ``device`` and put in eval mode). dtype: None keeps the parameters'
    dtype; otherwise parameters and images are cast to it (the model's own CUDA autocast of the
    aggregator still applies). merge: an ``HTTMConfig`` / ``UniformMergeConfig`` installed with
    ``httm_ros.httm.patch`` (None = dense attention, also restored on a previously patched model).
    compile_frames: windows of this many frames run the blocks' token-wise passes and the DPT
    heads through torch.compile (``httm_ros.vggt.layers.compile_tokenwise``,
    ``httm_ros.vggt.heads.compile_dense_heads``; the first such window, or the node's
    warm-up, pays the compile); windows of other sizes (a stream's last, shorter one) run eager, so
    a shape never seen cannot stall the stream with a compile. None: eager always.
    ``stats`` of each prediction: ``model_s`` (synchronised wall time of the forward pass),
    ``merge`` (``MergeStats.summary()``, {} when dense), ``merge_mode``, ``compiled``.
    """

    def __init__(self, model: torch.nn.Module, device="cpu", dtype: Optional[torch.dtype] = None,
                 merge=None, compile_frames: Optional[int] = None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.merge = merge
        from ..httm import patch                                   # installs (or removes) merging
        self._merge_stats = patch(self.model, merge)
        self.merge_mode = {"HTTMConfig": "httm", "UniformMergeConfig": "uniform"}.get(type(merge).__name__, "none")
        if compile_frames is not None and compile_frames < 1:
            raise ValueError(f"compile_frames must be a frame count >= 1 or None, got {compile_frames}")
        self.compile_frames = compile_frames
        compile_tokenwise(self.model, enabled=compile_frames is not None)
        compile_dense_heads(self.model, enabled=compile_frames is not None)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, frame_ids: Sequence[int]) -> WindowPrediction:
        """images [S,3,H,W] float in [0,1] (any device) -> WindowPrediction on ``self.device``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [S,3,H,W], got {tuple(images.shape)}")
        S, _, H, W = images.shape
        x = images.to(device=self.device, dtype=self.dtype or next(self.model.parameters()).dtype)
        self._merge_stats.clear()
        compiled = self.compile_frames == S
        timer = StageTimer(self.device, "wall_sync")                # CUDA synchronised around the forward
        with contextlib.nullcontext() if compiled else eager_tokenwise():
            out = self.model(x, heads=("camera", "depth"))
        model_s = timer.lap("model")
        extr, intr = pose_encoding_to_extrinsics_intrinsics(out["pose_enc"][0].float(), image_hw=(H, W))
        pred = WindowPrediction(extr.float(), intr.float(), out["depth"][0, ..., 0].float(),
                                out["depth_conf"][0].float(),
                                stats={"model_s": model_s, "merge_mode": self.merge_mode,
                                       "merge": self._merge_stats.summary() if self.merge is not None else {},
                                       "frames": int(S), "image_hw": [int(H), int(W)], "compiled": compiled})
        pred.check(S, H, W)
        return pred
