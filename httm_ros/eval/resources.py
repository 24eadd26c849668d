"""Peak memory of a block of code: CUDA allocator peak, or sampled process RSS on the CPU.

    with PeakMemory(device) as mem:
        model(images)
    mem.result()   # {"peak_mib": ..., "kind": "cuda_max_memory_allocated" | "cpu_rss_delta_sampled" | ...}

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
allocated at entry (tensors created inside the block: activations, outputs); the caching
allocator's reserved-but-unused memory is not counted. CPU: the process resident set size read
from /proc/self/statm every 2 ms by a background thread, peak minus the value at entry (memory
freed and reused by the allocator inside the block is not double counted; short spikes between
samples can be missed). Without /proc: the growth of ``ru_maxrss`` (only a new process-wide peak shows).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Optional

import torch

MIB = 1024.0 * 1024.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """Context manager measuring the peak memory added inside it (see the module docstring)."""

    def __init__(self, device="cpu", interval_s: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.base = self.peak = 0
        self.kind = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base, self.kind = torch.cuda.memory_allocated(self.device), "cuda_max_memory_allocated"
            return self
        rss = _rss_bytes()
        if rss is None:
            self.base, self.kind = _maxrss_bytes(), "cpu_maxrss_growth"
            return self
        self.base = self.peak = rss
        self.kind = "cpu_rss_delta_sampled"
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _rss_bytes() or 0
            if rss > self.peak:
                self.peak = rss

    def __exit__(self, *exc) -> None:
        if self.kind == "cuda_max_memory_allocated":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.kind == "cpu_maxrss_growth":
            self.peak = _maxrss_bytes()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() or 0)

    def result(self) -> dict:
        """{"peak_mib": peak above the value at entry, "kind": what was measured}."""
        return {"peak_mib": max(0.0, (self.peak - self.base) / MIB), "kind": self.kind}
