"""Metric scale from an aligned sensor depth image (RGB-D), pure numpy.

VGGT's world is up to scale. With a depth sensor aligned to the colour image, each window gives
a robust estimate of metres per world unit:

1. pixels used: predicted (world-unit) depth finite and > 0, confidence at or above the window's
   ``conf_quantile`` quantile, sensor depth finite and inside [min_depth, max_depth] metres
   (0 and NaN are holes);
2. ratios r = sensor / predicted, in log space; outliers rejected once:
   ``|log r - median| > mad_k * 1.4826 * MAD`` (MAD = median absolute deviation);
3. window scale = exp(median of the kept log ratios); spread = 1.4826 * MAD of the kept log ratios
   (about the relative standard deviation of the ratios); pixels = how many were kept.
   Fewer than ``min_pixels`` kept pixels: no estimate for that window.

Window estimates are smoothed over windows (:class:`MetricScale`): ``ema`` (exponential moving
average of log scale, weight ``ema_alpha`` on the new window) or ``median`` (running median of
the last ``median_windows`` window scales). The smoothed value is what the outputs are
multiplied by; it starts at the first window's estimate.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

SMOOTHING = ("ema", "median")
MAD_TO_SIGMA = 1.4826                 # MAD of a normal distribution x this = its sigma


@dataclass
class MetricScaleConfig:
    """How the metric scale is estimated (see the module docstring for each field)."""

    conf_quantile: float = 0.5
    min_depth: float = 0.1
    max_depth: float = 20.0
    mad_k: float = 3.0
    min_pixels: int = 200
    smoothing: str = "ema"
    ema_alpha: float = 0.3
    median_windows: int = 9

    def __post_init__(self) -> None:
        checks = (("conf_quantile", 0.0 <= self.conf_quantile < 1.0, "in [0, 1)"),
                  ("min_depth", 0.0 <= self.min_depth < self.max_depth, ">= 0 and < max_depth"),
                  ("max_depth", math.isfinite(self.max_depth) and self.max_depth > 0, "finite and > 0"),
                  ("mad_k", self.mad_k > 0, "> 0"),
                  ("min_pixels", isinstance(self.min_pixels, int) and self.min_pixels >= 1, "an int >= 1"),
                  ("smoothing", self.smoothing in SMOOTHING, f"one of {SMOOTHING}"),
                  ("ema_alpha", 0.0 < self.ema_alpha <= 1.0, "in (0, 1]"),
                  ("median_windows", isinstance(self.median_windows, int) and self.median_windows >= 1,
                   "an int >= 1"))
        for name, ok, what in checks:
            if not ok:
                raise ValueError(f"MetricScaleConfig.{name} must be {what}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ScaleEstimate:
    """One window's estimate: metres per world unit, the robust relative spread of the ratios
    (1.4826 MAD of log ratios), and the pixels it used (after outlier rejection)."""

    scale: float
    spread: float
    pixels: int


def window_scale(predicted: np.ndarray, conf: np.ndarray, sensor: np.ndarray,
                 config: MetricScaleConfig) -> Optional[ScaleEstimate]:
    """predicted depth [..., H, W] (world units), confidence [..., H, W], sensor depth [..., H, W]
    (metres; 0 / NaN = no reading) -> the window's ScaleEstimate, or None with too few pixels."""
    predicted = np.asarray(predicted, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    sensor = np.asarray(sensor, dtype=np.float64)
    if not predicted.shape == conf.shape == sensor.shape:
        raise ValueError(f"predicted, conf and sensor must have one shape, got {predicted.shape}, "
                         f"{conf.shape}, {sensor.shape}")
    good = np.isfinite(predicted) & (predicted > 0) & np.isfinite(conf)
    if not good.any():
        return None
    good &= conf >= np.quantile(conf[good], config.conf_quantile)
    with np.errstate(invalid="ignore"):
        good &= np.isfinite(sensor) & (sensor > 0) & (sensor >= config.min_depth) & (sensor <= config.max_depth)
    if int(good.sum()) < config.min_pixels:
        return None
    logs = np.log(sensor[good]) - np.log(predicted[good])                 # [P]
    centre = np.median(logs)
    mad = np.median(np.abs(logs - centre))
    kept = logs[np.abs(logs - centre) <= config.mad_k * MAD_TO_SIGMA * mad] if mad > 0 else logs
    if kept.size < config.min_pixels:
        return None
    centre = float(np.median(kept))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(kept - centre)))
    return ScaleEstimate(math.exp(centre), spread, int(kept.size))


class MetricScale:
    """Window estimates smoothed over windows (``config.smoothing``); ``scale`` is None until the
    first estimate. One per world frame: reset it when the world changes."""

    def __init__(self, config: Optional[MetricScaleConfig] = None) -> None:
        self.config = config or MetricScaleConfig()
        self.reset()

    def reset(self) -> None:
        self.scale: Optional[float] = None
        self.windows = 0                                       # estimates taken in
        self._history: "collections.deque[float]" = collections.deque(maxlen=self.config.median_windows)

    def update(self, estimate: Optional[ScaleEstimate]) -> Optional[float]:
        """Take one window's estimate (None: nothing new); returns the smoothed scale."""
        if estimate is None:
            return self.scale
        log_scale = math.log(estimate.scale)
        self._history.append(log_scale)
        self.windows += 1
        if self.config.smoothing == "median" or self.scale is None:
            smoothed = float(np.median(self._history)) if self.config.smoothing == "median" else log_scale
        else:
            alpha = self.config.ema_alpha
            smoothed = (1.0 - alpha) * math.log(self.scale) + alpha * log_scale
        self.scale = math.exp(smoothed)
        return self.scale


@dataclass(frozen=True)
class MetricReport:
    """What a window did for the metric scale: its own estimate (None: no sensor depth or too
    few pixels), the smoothed scale after it (None: not known yet), and its new keyframes that
    came with sensor depth."""

    window: Optional[ScaleEstimate]
    scale: Optional[float]
    sensor_frames: int
