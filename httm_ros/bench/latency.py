"""Latency of one global-attention call: dense SDPA vs HTTM vs the uniform baseline.

Random q, k, v ``[1, 16, S * (5 + h*w), 64]`` (VGGT-1B's global attention at 518x392 by default),
each method timed after a warm-up call (which also builds the cached region layouts). HTTM and
uniform also report their stage times (``profile=True``: synchronises between stages).

    httm-bench latency --frames 100 300 1000 --out /tmp/httm_latency.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from httm_ros.httm import HTTMConfig, UniformMergeConfig, httm_attention, uniform_attention
from httm_ros.provenance import device_name, git_commit
from httm_ros.timing import StageTimer
from httm_ros.vggt import TokenLayout


def _timed(fn: Callable[[], object], reps: int, device: torch.device) -> Dict:
    """Mean and min wall time (ms) over ``reps`` calls after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(reps):
        timer = StageTimer(device, "wall_sync")
        out = fn()
        timer.lap("call")
        times.append(timer.times_ms()["call"])
    return {"mean_ms": sum(times) / len(times), "min_ms": min(times), "result": out}


def measure(frames: int, grid=(28, 37), heads: int = 16, dim: int = 64, dtype=torch.bfloat16,
            device: str = "cuda", reps: int = 2, dense: bool = True) -> Dict:
    dev = torch.device(device)
    layout = TokenLayout(frames, 5 + grid[0] * grid[1], 5, tuple(grid))
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(1, heads, layout.num_tokens, dim, device=dev, dtype=dtype, generator=g)
               for _ in range(3))
    row: Dict = {"frames": frames, "tokens": layout.num_tokens}
    if dense:
        row["dense_ms"] = _timed(lambda: F.scaled_dot_product_attention(q, k, v), reps, dev)["mean_ms"]
    for name, fn, cfg in (("httm", httm_attention, HTTMConfig()), ("uniform", uniform_attention, UniformMergeConfig())):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = _timed(lambda: fn(q, k, v, layout, cfg, profile=False), reps, dev)
        _, rec = fn(q, k, v, layout, cfg, profile=True)
        row[f"{name}_ms"] = t["mean_ms"]
        row[f"{name}_stages_ms"] = {s: round(ms, 2) for s, ms in rec.times_ms.items()}
        row[f"{name}_kept_q"] = float(rec.kept_q.float().mean()) / layout.num_tokens
        row[f"{name}_kept_kv"] = float(rec.kept_kv.float().mean()) / layout.num_tokens
        if dev.type == "cuda":
            row[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--grid", type=int, nargs=2, default=[28, 37])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    parser.add_argument("--out", type=Path, default=None)


def run(args, argv: List[str]) -> int:
    """``httm-bench latency``: one JSON line per frame count; the whole result to ``--out``."""
    rows = []
    for s in args.frames:
        rows.append(measure(s, args.grid, dtype=getattr(torch, args.dtype), device=args.device,
                            reps=args.reps, dense=not args.no_dense))
        print(json.dumps(rows[-1]), flush=True)
    dev = torch.device(args.device)
    result = {
        "command": " ".join(["python -m httm_ros.bench"] + list(argv)),
        "git_commit": git_commit(),
        "device": device_name(dev),
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
