"""Launch configuration of the matching and aggregation kernels, picked online on CUDA.

Why: on an H100 at 1000 frames, one global layer's merge stages measured merge_kv
(``_aggregate_kernel``, K and V together) 33.3 ms against a predicted 5-9 ms, match_kv
(``_match_kernel``) 12.1 ms, aggregate_q 8.4 ms and match_q 6.5 ms. The K+V aggregation ran at one
CTA per SM (169 registers, 8 warps, 128-group x 32-source tiles) with a latency-bound inner loop of
indirect loads. Which tile shape / warp count / pipeline depth is fastest depends on the GPU and
the block shape, and GPU time to try them by hand is scarce, so the kernels time a few launch
configurations (``CANDIDATES``) on their real inputs and keep the fastest.

How: ``run_tuned(name, key, launch, device)``. The first call for a (kernel, CUDA device, key)
launches every candidate once (compile + warm-up), times three more launches of each with CUDA
events (median; every timed launch is synchronised), caches the fastest and returns the output
of one more launch with it. Later calls with the same key launch the cached configuration only.
The key holds what changes the best configuration (dtype, head dim, block shape, kernel flags),
not the token or frame count, so one tuning per block shape serves every frame count. One-time
cost per key: each candidate's compilation (Triton's on-disk cache saves it in later processes) and
5 launches of it: for the 1000-frame layer, 7-9 candidates x 5 launches of the measured times
above, ~2-3 s of GPU time per block shape in all (estimated, not measured).
A candidate that fails to compile or launch (e.g. Triton's OutOfResources) is skipped and its
error recorded; out-of-memory errors propagate; if every candidate fails, the first error is
raised. ``report()`` gives the chosen configuration and every candidate's time (or error) per
key, for benchmark JSON.

Off: ``HTTM_TUNE=0`` (read at every call), a non-CUDA device (Triton's interpreter) or CUDA graph
capture: the launcher's defaults, which are ``CANDIDATES[name][0]``, with no timing.

Numerics: every candidate computes the same function, but not always the same bits. The
aggregation sums a group's sources tile by tile (``acc += one_hot @ rows`` per source tile), so
``block_s`` changes how the fp32 sums are grouped inside and between the tl.dot calls: sums and
means may differ in the last bits between candidates. The matching's similarities come from
tensor-core products whose instruction shape may follow the tile shape and warp count, so they may
too, and a near-tie may then pick another destination. With one candidate, runs are reproducible
(no atomics in these two kernels); but the tuner's choice rests on timings, so two processes may
choose differently. For bitwise-reproducible results across processes, set ``HTTM_TUNE=0``.
"""

from __future__ import annotations

import os
import statistics
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

import torch

from httm_ros.timing import StageTimer

T = TypeVar("T")

#: Launch keyword arguments of ``triton_ops.match`` / ``triton_ops.aggregate`` to try. The first
#: entry of each is the launcher's default (what runs when tuning is off). Tile sizes are powers of
#: two >= 16 (tl.dot needs >= 16 per dimension). Registers per thread compiled for sm_90 (bf16,
#: d=64; ``httm-bench compile-check --candidates``) in the comments: the K+V
#: aggregation's inner loop waits on gathers, so the smaller-tile entries trade MMA size for more
#: resident warps. num_stages=4 compiled to the same code as Triton's default (3) for both
#: kernels, so the pipeline-depth entries use 5.
CANDIDATES: Dict[str, List[Dict]] = {
    "match": [                                                  # registers (writes assign)
        dict(block_s=128, block_d=64, num_warps=8),             # 111 (default)
        dict(block_s=64, block_d=64, num_warps=4),              # 108
        dict(block_s=128, block_d=128, num_warps=8),            # 169
        dict(block_s=64, block_d=128, num_warps=4),             # 152
        dict(block_s=128, block_d=64, num_warps=4),             # 148
        dict(block_s=128, block_d=64, num_warps=8, num_stages=5),   # 111
        dict(block_s=64, block_d=32, num_warps=4),              # 72
    ],
    "aggregate": [                                              # registers K+V means / Q sums
        dict(block_g=128, block_s=32, num_warps=8),             # 169 / 127 (default)
        dict(block_g=64, block_s=32, num_warps=4),              # 165 / 128
        dict(block_g=64, block_s=32, num_warps=8),              # 115 / 75
        dict(block_g=64, block_s=16, num_warps=4),              # 127 / 80
        dict(block_g=128, block_s=16, num_warps=8),             # 121 / 80
        dict(block_g=64, block_s=16, num_warps=4, num_stages=5),    # 126 / 72
        dict(block_g=128, block_s=32, num_warps=8, num_stages=5),   # 167 / 128
        dict(block_g=64, block_s=64, num_warps=8),              # 182 / 168
        dict(block_g=32, block_s=32, num_warps=4),              # 96 / 64 (mma.sync, no wgmma)
    ],
}

#: Timed launches per candidate (the median counts).
REPEATS = 3

# (name, device index, key) -> {"config", "index", "ms": [median or None], "errors": {i: text}}
_CACHE: Dict[Tuple, Dict] = {}

Timer = Callable[[Callable[[], object], torch.device], float]


def cuda_timer(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``fn`` on ``device``'s current stream (CUDA events, synced);
    the output is dropped before returning."""
    with torch.cuda.device(device):
        timer = StageTimer(device, "events")
        out = fn()
        timer.lap("call")
        ms = timer.times_ms()["call"]
        del out
        return ms


def enabled(device: torch.device) -> bool:
    """Whether launches on ``device`` are tuned (CUDA and ``HTTM_TUNE`` not 0)."""
    return device.type == "cuda" and os.environ.get("HTTM_TUNE", "1").strip().lower() not in ("0", "false", "no", "off")


def _index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text if len(text) <= 500 else text[:497] + "..."


def run_tuned(name: str, key: tuple, launch: Callable[[Dict], T], device: torch.device,
              timer: Optional[Timer] = None) -> T:
    """``launch(config)`` with the fastest of ``CANDIDATES[name]`` for (device, key).

    ``launch`` must be a pure function of its inputs: it allocates and returns its outputs (it may
    write the same values into a passed-in tensor again, as the matching's ``assign``); it is
    called several times on the first call for a key. ``timer(fn, device) -> ms`` times one call
    (default: ``cuda_timer``; injectable for tests). Tuning off (see ``enabled``): ``launch({})``,
    i.e. the launcher's defaults (= ``CANDIDATES[name][0]``).
    """
    candidates = CANDIDATES[name]
    if not enabled(device):
        return launch({})
    cache_key = (name, _index(device), key)
    hit = _CACHE.get(cache_key)
    if hit is not None:
        return launch(dict(hit["config"]))
    if _capturing():                                   # no syncs inside a graph capture
        return launch({})
    timer = timer or cuda_timer
    ms: List[Optional[float]] = [None] * len(candidates)
    errors: Dict[int, str] = {}
    first_error: Optional[BaseException] = None
    for i, cfg in enumerate(candidates):
        try:
            out = launch(dict(cfg))                    # compile + warm up
            del out
            ms[i] = statistics.median(timer(lambda c=cfg: launch(dict(c)), device) for _ in range(REPEATS))
        except torch.OutOfMemoryError:
            raise
        except Exception as err:                       # noqa: BLE001 - compile/launch failure: skip it
            errors[i] = _error_text(err)
            if first_error is None:
                first_error = err
    ok = [i for i, t in enumerate(ms) if t is not None]
    if not ok:
        assert first_error is not None
        raise first_error
    best = min(ok, key=lambda i: ms[i])
    _CACHE[cache_key] = {"config": dict(candidates[best]), "index": best, "ms": ms, "errors": errors,
                         "candidates": [dict(c) for c in candidates]}
    return launch(dict(candidates[best]))


def _key_text(key: tuple) -> str:
    return ",".join(str(k) for k in key)


def report() -> Dict:
    """Every tuned key: ``"<name>/cuda:<i>/<key>" -> {"name", "device", "key", "chosen",
    "chosen_index", "candidates": [{"config", "ms"} or {"config", "error"}]}`` (JSON-ready)."""
    out: Dict = {}
    for (name, index, key), entry in _CACHE.items():
        rows = []
        for i, cfg in enumerate(entry["candidates"]):
            row: Dict = {"config": dict(cfg)}
            if entry["ms"][i] is not None:
                row["ms"] = round(float(entry["ms"][i]), 4)
            else:
                row["error"] = entry["errors"].get(i, "")
            rows.append(row)
        out[f"{name}/cuda:{index}/{_key_text(key)}"] = {
            "name": name, "device": f"cuda:{index}", "key": [str(k) for k in key],
            "chosen": dict(entry["config"]), "chosen_index": entry["index"], "candidates": rows,
        }
    return out


def reset() -> None:
    """Forget every tuned configuration (tests)."""
    _CACHE.clear()


__all__ = ["CANDIDATES", "REPEATS", "cuda_timer", "enabled", "run_tuned", "report", "reset"]
