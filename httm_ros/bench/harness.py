"""What the model benchmarks (``e2e``, ``layer``) share on the command line: the clock start,
the device, the model build and their common options."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Dict, List

import torch

from httm_ros.vggt.layers import COMPILE_MODES

from .workload import DPT_DTYPES, build_model


def start_time() -> float:
    """$BENCH_T0 (epoch seconds, set by bench/gpu_suite.sh at its start), else now."""
    try:
        return float(os.environ["BENCH_T0"])
    except (KeyError, ValueError):
        return time.time()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def timed_model(args, device: torch.device):
    """(model, seconds it took to build) for ``--config`` / ``--weights-dtype``."""
    start = time.time()
    model = build_model(device, args.config, getattr(torch, args.weights_dtype),
                        dpt_dtype=getattr(args, "dpt_dtype", "float32"), **compile_options(args))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, round(time.time() - start, 2)


def compile_options(args) -> Dict:
    """The torch.compile levers of ``args`` as ``build_model`` keywords (and row fields)."""
    return {"compile_tokenwise": getattr(args, "compile_tokenwise", False),
            "compile_heads": getattr(args, "compile_heads", False),
            "compile_mode": getattr(args, "compile_mode", None)}


def compile_flags(args) -> List[str]:
    """The same levers as command-line flags (for a child process)."""
    opts = compile_options(args)
    flags = ["--compile-tokenwise"] if opts["compile_tokenwise"] else []
    flags += ["--compile-heads"] if opts["compile_heads"] else []
    return flags + (["--compile-mode", opts["compile_mode"]] if opts["compile_mode"] else [])


def add_compile_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--compile-tokenwise", action="store_true",
                   help="run the blocks' token-wise passes through torch.compile (compiled at each shape's first forward)")
    s.add_argument("--compile-heads", action="store_true",
                   help="run the DPT heads' chunks through torch.compile (compiled at each chunk shape's first forward)")
    s.add_argument("--compile-mode", choices=[m for m in COMPILE_MODES if m], default=None,
                   help="torch.compile mode of the compiled parts (default: inductor's default mode)")


def add_model_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", type=Path, required=True, help="JSON file (rewritten after every item)")
    s.add_argument("--device", default="auto")
    s.add_argument("--config", choices=("1b", "tiny", "synth"), default="1b")
    s.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32")
    add_compile_arguments(s)
    s.add_argument("--dpt-dtype", choices=DPT_DTYPES, default="float32",
                   help="the DPT heads on CUDA: float32 (VGGT) or bfloat16 (autocast, channels-last)")
    s.add_argument("--image-size", type=int, nargs=2, default=[392, 518], metavar=("H", "W"))
