"""Per-call merge records, collected by the attention cores that ``patch`` installs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from torch import Tensor

LOG = logging.getLogger("httm_ros.httm")

#: ``MergeRecord.impl`` values: which implementation produced the call's output.
IMPLS = ("torch", "triton", "torch-fallback")


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
    impl: str = "torch"         # one of IMPLS; "torch-fallback": the Triton kernels failed this call
    fallback_error: Optional[str] = None   # the kernels' error when impl is "torch-fallback"

    def as_dict(self) -> dict:
        return {
            "method": self.method, "layer": self.layer, "tokens_in": self.tokens_in,
            "kept_q": self.kept_q.tolist(), "kept_kv": self.kept_kv.tolist(),
            "outliers": self.outliers.tolist(), "padded_q": self.padded_q,
            "times_ms": dict(self.times_ms),
        }


class MergeStats:
    """Collector of ``MergeRecord``s (``records``), in call order. The first kernel fallback it
    receives is logged as a warning (later ones only counted: ``impl_counts``)."""

    def __init__(self) -> None:
        self.records: List[MergeRecord] = []

    def add(self, record: MergeRecord) -> None:
        if record.impl == "torch-fallback" and self.fallbacks() == 0:
            LOG.warning("HTTM Triton kernels failed (%s); this call ran on the torch reference "
                        "(every later failure is counted in the merge stats)", record.fallback_error)
        self.records.append(record)

    def clear(self) -> None:
        self.records.clear()

    def impl_counts(self) -> Dict[str, int]:
        """Calls per implementation, e.g. {"triton": 23, "torch-fallback": 1}."""
        out: Dict[str, int] = {}
        for r in self.records:
            out[r.impl] = out.get(r.impl, 0) + 1
        return out

    def fallbacks(self) -> int:
        """Calls whose Triton kernels failed and that ran on torch instead."""
        return self.impl_counts().get("torch-fallback", 0)

    def kernel_status(self) -> dict:
        """{"fast_calls", "fallbacks", "last_error"} over the records (benchmarks' JSON)."""
        errors = [r.fallback_error for r in self.records if r.fallback_error]
        counts = self.impl_counts()
        return {"fast_calls": counts.get("triton", 0), "fallbacks": counts.get("torch-fallback", 0),
                "last_error": errors[-1] if errors else None}

    def summary(self, layer: Optional[int] = None) -> dict:
        """Mean kept fractions (of tokens_in) over the records (of one layer if given)."""
        recs = [r for r in self.records if layer is None or r.layer == layer]
        if not recs:
            return {"calls": 0}

        def frac(name: str) -> float:
            return sum(float(getattr(r, name).float().mean()) / r.tokens_in for r in recs) / len(recs)

        return {"calls": len(recs), "kept_q": frac("kept_q"), "kept_kv": frac("kept_kv"),
                "outliers": frac("outliers")}
