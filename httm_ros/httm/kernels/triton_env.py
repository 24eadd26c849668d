"""Where the Triton kernels can run, and the kernel module itself.

``triton_ops`` (the kernels) imports triton at module level; ``ops()`` imports it only when a
kernel runs, because triton is optional and, on a CPU, must first be imported after
``TRITON_INTERPRET=1`` is set (Triton's interpreter).
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


def resolve_impl(impl: str, device: torch.device) -> str:
    """``HTTMConfig.impl`` on ``device`` -> "triton" or "torch". "triton" where the kernels cannot
    run raises RuntimeError (asked for explicitly); "auto" picks triton on CUDA when usable."""
    if impl == "torch":
        return "torch"
    reason = triton_usable(device)
    if impl == "triton":
        if reason is not None:
            raise RuntimeError(f"HTTMConfig.impl='triton' cannot run here: {reason}")
        return "triton"
    return "triton" if device.type == "cuda" and reason is None else "torch"


def ops():
    """The kernel module (imports triton)."""
    from . import triton_ops

    return triton_ops
