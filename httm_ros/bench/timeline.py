"""Where the time and the memory of one forward go: hooks around the model's parts.

``Timeline(model)`` hooks DINO (``patch_embed``), the aggregator, and the ``attend`` methods of
the global and frame attention modules; each part's spans are timed by ``StageTimer``s in CUDA
event mode (read after the forward: one synchronisation), and the allocator's peak is charged
to the part that was running. CUDA only.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import torch

from httm_ros.timing import StageTimer


class Timeline:
    """Timed spans around modules and ``attend`` methods; sums read after the forward."""

    def __init__(self, model) -> None:
        self.spans: List[StageTimer] = []
        self.peaks: Dict[str, int] = {}
        self.part = "heads_and_host"
        self._undo: List[Callable[[], None]] = []
        agg = model.aggregator
        self._hook(agg, "aggregator", "aggregator_other", "heads_and_host")
        self._hook(agg.patch_embed, "dino", "dino", "aggregator_other")
        for name, blocks in (("global_attention", agg.global_blocks), ("frame_attention", agg.frame_blocks)):
            for block in blocks:
                self._wrap_attend(block.attn, name)

    def _begin(self) -> StageTimer:
        return StageTimer(torch.device("cuda"), "events")

    def _end(self, span: StageTimer, name: str) -> None:
        span.lap(name)
        self.spans.append(span)

    def _enter(self, part: str) -> None:
        """Memory: the allocator's peak since the last switch belongs to the part that ran; then
        the peak counter restarts for ``part`` (host-side bookkeeping, no sync)."""
        peak = torch.cuda.max_memory_allocated()
        self.peaks[self.part] = max(self.peaks.get(self.part, 0), peak)
        torch.cuda.reset_peak_memory_stats()
        self.part = part

    def _hook(self, module, name: str, inside: str, after: str) -> None:
        start: List[StageTimer] = []

        def pre(m, a):
            self._enter(inside)
            start.append(self._begin())

        def post(m, a, o):
            self._end(start.pop(), name)
            self._enter(after)

        handles = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        self._undo += [h.remove for h in handles]

    def _wrap_attend(self, attn, name: str) -> None:
        """Time ``attend`` and ``attend_owned`` (the chunked path's hand-over variant)."""
        for method in ("attend", "attend_owned"):
            original = getattr(attn, method)

            def timed(*args, _original=original, **kwargs):
                self._enter(name)
                span = self._begin()
                out = _original(*args, **kwargs)
                self._end(span, name)
                self._enter("aggregator_other")
                return out

            setattr(attn, method, timed)
            self._undo.append(lambda m=method: delattr(attn, m))

    def reset(self) -> None:
        self.spans.clear()

    def reset_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats()
        self.peaks.clear()
        self.part = "heads_and_host"

    def peak_gib(self) -> Dict[str, float]:
        """GiB: peak allocated memory while each part ran, and ``total`` (the forward's peak)."""
        self._enter(self.part)
        out = {k: round(v / 2 ** 30, 3) for k, v in sorted(self.peaks.items())}
        out["total"] = max(out.values())
        return out

    def seconds(self) -> Dict[str, float]:
        """Part -> seconds summed over its spans."""
        torch.cuda.synchronize()
        out: Dict[str, float] = {}
        for span in self.spans:
            for name, ms in span.times_ms().items():
                out[name] = out.get(name, 0.0) + ms / 1e3
        return out

    def remove(self) -> None:
        for undo in self._undo:
            undo()
        self._undo.clear()
