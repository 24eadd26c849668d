"""The package's one stage timer.

    timer = StageTimer(device, mode="events")   # or "wall" (perf_counter), "wall_sync", "off"
    ... work ...;  timer.lap("match")
    ... work ...;  timer.lap("attend")
    timer.times_ms()        # {"match": 1.2, "attend": 8.9}; stages with one name add up

Modes:
- ``off``: every call is a no-op (``times_ms()`` is ``{}``), so timing can stay in hot paths.
- ``wall``: ``time.perf_counter`` (host time; on CUDA it measures launch time only).
- ``wall_sync``: as ``wall``, but synchronises the CUDA device before each reading (exact, slow).
- ``events``: CUDA events recorded at each lap and read once in ``times_ms()`` (one sync in all);
  on a CPU device it falls back to ``wall``.
``lap`` returns the seconds since the previous lap for the wall modes (0.0 for ``events``/``off``).
"""

from __future__ import annotations

import time
from typing import Dict, List, Tuple, Union

import torch

MODES = ("off", "wall", "wall_sync", "events")


class StageTimer:
    def __init__(self, device: Union[torch.device, str, None] = None, mode: str = "wall") -> None:
        if mode not in MODES:
            raise ValueError(f"StageTimer mode must be one of {MODES}, got {mode!r}")
        device = torch.device(device) if device is not None else torch.device("cpu")
        cuda = device.type == "cuda"
        if mode == "events" and not cuda:
            mode = "wall"
        if mode == "wall_sync" and not cuda:
            mode = "wall"
        self.mode, self.device = mode, device
        self._marks: List[Tuple[str, object]] = []
        self._last = 0.0
        if mode != "off":
            self._marks.append(("", self._mark()))

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def _mark(self):
        if self.mode == "events":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        if self.mode == "wall_sync":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, name: str) -> float:
        """Close the stage ``name`` (time since the previous lap or the start)."""
        if self.mode == "off":
            return 0.0
        mark = self._mark()
        prev = self._marks[-1][1]
        self._marks.append((name, mark))
        return 0.0 if self.mode == "events" else mark - prev

    def times_ms(self) -> Dict[str, float]:
        """Stage name -> milliseconds (stages with one name add up)."""
        if self.mode == "off":
            return {}
        if self.mode == "events":
            self._marks[-1][1].synchronize()
        out: Dict[str, float] = {}
        for (_, a), (name, b) in zip(self._marks, self._marks[1:]):
            ms = a.elapsed_time(b) if self.mode == "events" else 1e3 * (b - a)
            out[name] = out.get(name, 0.0) + ms
        return out
