"""What the model benchmarks (``e2e``, ``layer``) share on the command line: the clock start,
the device, the model build and their common options."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

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
                        compile_tokenwise=getattr(args, "compile_tokenwise", False),
                        dpt_dtype=getattr(args, "dpt_dtype", "float32"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, round(time.time() - start, 2)


def add_model_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", type=Path, required=True, help="JSON file (rewritten after every item)")
    s.add_argument("--device", default="auto")
    s.add_argument("--config", choices=("1b", "tiny", "synth"), default="1b")
    s.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32")
    s.add_argument("--compile-tokenwise", action="store_true",
                   help="run the blocks' token-wise passes through torch.compile (compiled at each shape's first forward)")
    s.add_argument("--dpt-dtype", choices=DPT_DTYPES, default="float32",
                   help="the DPT heads on CUDA: float32 (VGGT) or bfloat16 (autocast, channels-last)")
    s.add_argument("--image-size", type=int, nargs=2, default=[392, 518], metavar=("H", "W"))
