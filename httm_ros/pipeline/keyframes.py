"""Keyframe selection from a frame stream by a cheap image-motion measure.

Each frame is reduced to a small grey thumbnail (``analysis_width`` px wide, area-averaged, then
normalised to zero mean / unit variance so exposure changes do not count as motion). The motion
between the last keyframe ``A`` and the current frame ``B`` is estimated by the brightness-
constancy relation ``|B - A| ~ |grad A . flow|``:

    motion = mean|B - A| / mean|grad A|   (thumbnail pixels)  / analysis_width

i.e. roughly the mean optical-flow magnitude as a fraction of the image width. It grows with
camera translation (parallax) and rotation alike, costs well under a millisecond, and saturates
smoothly for large motion (then the frame is a keyframe anyway). A frame becomes a keyframe when
motion >= ``min_motion`` or when ``max_gap`` frames have passed since the last keyframe; the first
frame always is one.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .stream_config import KeyframeConfig

Frame = Union[np.ndarray, torch.Tensor]


def thumbnail(frame: Frame, width: int) -> torch.Tensor:
    """RGB frame uint8 [H,W,3] (or float [3,H,W] in [0,1]) -> normalised grey [h, width] float32."""
    t = torch.as_tensor(frame)
    if t.dtype == torch.uint8:
        t = t.permute(2, 0, 1).float() / 255.0                       # HWC uint8 -> CHW float
    grey = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).float()     # [H,W]
    H, W = grey.shape
    h = max(4, round(H * width / W))
    small = F.interpolate(grey[None, None], size=(h, width), mode="area")[0, 0]
    return (small - small.mean()) / (small.std() + 1e-6)


def image_motion(ref: torch.Tensor, cur: torch.Tensor) -> float:
    """Estimated mean flow magnitude between two thumbnails [h,w], as a fraction of w."""
    gx = (ref[:, 2:] - ref[:, :-2]) / 2
    gy = (ref[2:, :] - ref[:-2, :]) / 2
    grad = 0.5 * (gx.abs().mean() + gy.abs().mean())
    diff = (cur - ref)[1:-1, 1:-1].abs().mean()
    return float(diff / (grad + 1e-6)) / ref.shape[1]


class KeyframeSelector:
    """Stateful selector: ``select(frame) -> (is_keyframe, motion)``; ``reset()`` forgets the past."""

    def __init__(self, config: Optional[KeyframeConfig] = None) -> None:
        self.config = config or KeyframeConfig()
        self.reset()

    def reset(self) -> None:
        self._ref: Optional[torch.Tensor] = None
        self._since = 0

    def select(self, frame: Frame) -> Tuple[bool, float]:
        """Decide for the next frame of the stream; returns (is_keyframe, motion since last keyframe)."""
        cfg = self.config
        if not cfg.enabled:
            return True, float("nan")
        thumb = thumbnail(frame, cfg.analysis_width)
        self._since += 1
        if self._ref is None or self._ref.shape != thumb.shape:
            self._ref, self._since = thumb, 0
            return True, float("inf")
        motion = image_motion(self._ref, thumb)
        if motion >= cfg.min_motion or self._since >= cfg.max_gap:
            self._ref, self._since = thumb, 0
            return True, motion
        return False, motion
