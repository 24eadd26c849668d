"""Fast path of HTTM: Triton kernels for matching, aggregation, outliers and unmerging, an exact
sort-free top-k, and attention over per-head query lengths. See docs/KERNELS.md.

    from httm_ros.httm.kernels import httm_attention_fast, triton_usable
    o, record = httm_attention_fast(q, k, v, layout, HTTMConfig())

``triton_ops`` (the kernels) imports triton; it is only imported when a kernel runs. On a CPU the
kernels need Triton's interpreter (``TRITON_INTERPRET=1`` before triton is first imported).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

import torch


def triton_usable(device: torch.device) -> Optional[str]:
    """None if the Triton kernels can run on ``device``, else the reason why not."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET", "0") not in ("1", "true", "True"):
            return "on CPU the kernels need TRITON_INTERPRET=1 (Triton's interpreter)"
        if "triton.language" in sys.modules and not _interpreted():
            return "triton was imported before TRITON_INTERPRET=1 was set"
        return None
    return f"no Triton kernels for device type {device.type!r}"


def _interpreted() -> bool:
    """Whether triton.language's own jit functions were built for the interpreter."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(getattr(tl.standard, "max", None), InterpretedFunction) or \
        type(getattr(tl.standard, "sum", None)).__name__ == "InterpretedFunction"


def ops():
    """The kernel module (imports triton)."""
    from . import triton_ops

    return triton_ops


def httm_attention_fast(*args, **kwargs):
    """See ``fast.httm_attention_fast``."""
    from .fast import httm_attention_fast as run

    return run(*args, **kwargs)


__all__ = ["triton_usable", "ops", "httm_attention_fast"]
