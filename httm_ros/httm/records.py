"""Per-call merge statistics, collected by the attention cores that ``patch`` installs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor


class Stopwatch:
    """Stage timer: ``lap(name)`` records ms since the previous lap. Off -> no-op.

    On CUDA it synchronises before every reading, so it is only switched on by ``profile=True``.
    """

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled
        self.cuda = device.type == "cuda"
        self.times: Dict[str, float] = {}
        self._last = self._now() if enabled else 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, name: str) -> None:
        if self.enabled:
            now = self._now()
            self.times[name] = self.times.get(name, 0.0) + 1e3 * (now - self._last)
            self._last = now


@dataclass
class MergeRecord:
    """One merged attention call. Per-head counts are tensors [B, H] (left on the device, so
    recording costs no synchronisation; ``as_dict`` converts them)."""

    method: str                 # "httm" or "uniform"
    layer: int                  # global block index
    tokens_in: int              # N = frames * tokens_per_frame (per batch element)
    kept_q: Tensor              # [B, H] query rows attended per head (special tokens included)
    kept_kv: Tensor             # [B, H] key/value rows per head
    outliers: Tensor            # [B, H] queries restored by outlier filtering
    padded_q: int               # query rows per head given to attention (max over heads)
    times_ms: Dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.method, "layer": self.layer, "tokens_in": self.tokens_in,
            "kept_q": self.kept_q.tolist(), "kept_kv": self.kept_kv.tolist(),
            "outliers": self.outliers.tolist(), "padded_q": self.padded_q,
            "times_ms": dict(self.times_ms),
        }


class MergeStats:
    """Collector of ``MergeRecord``s (``records``), in call order."""

    def __init__(self) -> None:
        self.records: List[MergeRecord] = []

    def add(self, record: MergeRecord) -> None:
        self.records.append(record)

    def clear(self) -> None:
        self.records.clear()

    def summary(self, layer: Optional[int] = None) -> dict:
        """Mean kept fractions (of tokens_in) over the records (of one layer if given)."""
        recs = [r for r in self.records if layer is None or r.layer == layer]
        if not recs:
            return {"calls": 0}

        def frac(name: str) -> float:
            return sum(float(getattr(r, name).float().mean()) / r.tokens_in for r in recs) / len(recs)

        return {"calls": len(recs), "kept_q": frac("kept_q"), "kept_kv": frac("kept_kv"),
                "outliers": frac("outliers")}
