"""Backend choice for HTTM attention: "triton" (the fast path), "torch" (the reference), "auto"
(triton on CUDA when it works, torch elsewhere).

With "auto", a failure of the Triton path (compile or launch error, missing triton) logs one
warning, switches the fast path off for the rest of the process and runs the torch reference,
so a benchmark still produces numbers; ``status()`` reports it (benchmarks put it in their JSON).
Out-of-memory errors are not hidden: they propagate.
"""

from __future__ import annotations

import logging
import traceback
from typing import Dict, Optional

import torch

from . import triton_usable

LOG = logging.getLogger("httm_ros.httm")

_STATE: Dict = {"disabled": None, "fallbacks": 0, "fast_calls": 0, "last_error": None}


def status() -> Dict:
    """{"disabled": reason or None, "fallbacks": calls run on torch after a failure,
    "fast_calls": calls run on Triton, "last_error": text}."""
    return dict(_STATE)


def reset() -> None:
    _STATE.update(disabled=None, fallbacks=0, fast_calls=0, last_error=None)


def resolve(backend: str, device: torch.device) -> str:
    """"triton" or "torch" for a config's ``backend`` on ``device``; "triton" where it cannot
    run raises RuntimeError (asked for explicitly), "auto" picks torch instead."""
    if backend == "torch":
        return "torch"
    if backend == "triton":
        reason = triton_usable(device)
        if reason is not None:
            raise RuntimeError(f"HTTMConfig.backend='triton' cannot run here: {reason}")
        return "triton"
    if device.type != "cuda" or _STATE["disabled"] is not None or triton_usable(device) is not None:
        return "torch"
    return "triton"


def run_fast(q, k, v, layout, config, layer: int, profile: Optional[bool], owned: Optional[list] = None):
    """The fast path, or None when "auto" must fall back to the torch reference. With ``owned``
    ([q, k, v], q/k/v None) the fast path may free the inputs; once it has, a failure is raised
    (there is nothing left to fall back on)."""
    from . import fast

    try:
        out = fast.httm_attention_fast(q, k, v, layout, config, layer=layer, profile=profile, owned=owned)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:                                              # noqa: BLE001 (compile/launch)
        if config.backend == "triton" or (owned is not None and any(t is None for t in owned)):
            raise
        _STATE["disabled"] = f"{type(exc).__name__}: {exc}"
        _STATE["last_error"] = traceback.format_exc(limit=8)
        LOG.warning("HTTM Triton path failed (%s); using the torch reference from now on",
                    _STATE["disabled"])
        _STATE["fallbacks"] += 1
        return None
    _STATE["fast_calls"] += 1
    return out


def note_fallback() -> None:
    """Count a call that ran on torch because the fast path is off after a failure."""
    if _STATE["disabled"] is not None:
        _STATE["fallbacks"] += 1
