"""httm-bench windows: window latency in the node's regime (issue 14).

N consecutive K-frame windows of one long panning video, S new frames per window (window w holds
frames w*S .. w*S+K-1), so every window brings new content as a stream does. Each mode runs in
its own process (no plan, tuner or allocator cache carries over from another mode); the process
builds the model, optionally runs the start-up warm-up at the window size on other frames, then
times every window (host clock around a synchronised forward, camera + depth heads; the upload
of the window's frames from pinned host memory is outside the timed region).

Per mode: the first window, p50/p90/p99/max over the windows after the first, how many of those
are above 1.3x p50, peak GPU memory over the timed windows, and every window's seconds.

    python -m httm_ros.bench windows --frames 24 --new 16 --windows 100 --modes dense httm \\
        --peer-fastvggt .peers/FastVGGT --out OUT.json

``--httm-set name=value`` sets HTTMConfig fields for the httm row (a lever on/off: the row's
label says which). Peers (``peers.py``) run the same windows through their own code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from httm_ros.httm import patch, warm_up

from ..provenance import environment, write_json
from .harness import add_compile_arguments, compile_flags, compile_options
from .workload import DPT_DTYPES, MODES, build_model, merge_config, video_frames

HEADS = ("camera", "depth")
SPIKE = 1.3                                           # a window above SPIKE x p50 counts as a spike


# ------------------------------------------------------------------ shared by modes and peers

def long_video(total: int, device: torch.device, image_hw, seed: int = 0, pan: int = 3) -> torch.Tensor:
    """[1, total, 3, H, W] in host memory (pinned when ``device`` is CUDA): the workload's
    panning video, made on ``device`` and moved out so it never counts in the GPU's peak."""
    video = video_frames(total, device, image_hw[0], image_hw[1], seed=seed, pan=pan)
    if device.type != "cuda":
        return video
    host = torch.empty(video.shape, dtype=video.dtype, pin_memory=True)
    host.copy_(video)
    del video
    torch.cuda.empty_cache()
    return host


def window(video: torch.Tensor, index: int, frames: int, new: int, device: torch.device) -> torch.Tensor:
    """Window ``index``: frames index*new .. index*new+frames-1 on ``device`` [1, K, 3, H, W]."""
    start = index * new
    return video[:, start:start + frames].to(device, non_blocking=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(forward: Callable[[torch.Tensor], object], images: torch.Tensor, device: torch.device) -> float:
    """Seconds of one forward (synchronised before and after; the output is dropped)."""
    sync(device)
    start = time.perf_counter()
    out = forward(images)
    sync(device)
    seconds = time.perf_counter() - start
    del out
    return seconds


def latency_stats(seconds: List[float]) -> Dict:
    """First window and the distribution of the others (p50/p90/p99/max, spikes > 1.3x p50)."""
    out: Dict = {"first_window_s": round(seconds[0], 4) if seconds else None, "windows_timed": len(seconds)}
    rest = np.asarray(seconds[1:], dtype=np.float64)
    if rest.size == 0:
        return out
    p50 = float(np.percentile(rest, 50))
    out.update({
        "p50_s": round(p50, 4), "p90_s": round(float(np.percentile(rest, 90)), 4),
        "p99_s": round(float(np.percentile(rest, 99)), 4), "max_s": round(float(rest.max()), 4),
        "mean_s": round(float(rest.mean()), 4),
        "spikes": int((rest > SPIKE * p50).sum()), "spikes_of": int(rest.size),
        "first_over_p50": round(seconds[0] / p50, 3), "p99_over_p50": round(float(np.percentile(rest, 99)) / p50, 3),
    })
    return out


def run_windows(forward: Callable[[torch.Tensor], object], video: torch.Tensor, frames: int, new: int,
                count: int, device: torch.device, deadline: Optional[float] = None,
                after_window: Optional[Callable[[int], None]] = None) -> Dict:
    """Time ``count`` windows; stops early (``truncated``) when the next window would end after
    ``deadline`` (epoch seconds, estimated from the slowest of the last 5 windows)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds: List[float] = []
    truncated = False
    for w in range(count):
        if deadline is not None and seconds and time.time() + 1.5 * max(seconds[-5:]) > deadline:
            truncated = True
            break
        images = window(video, w, frames, new, device)
        seconds.append(timed(forward, images, device))
        del images
        if after_window is not None:
            after_window(w)
    out = latency_stats(seconds)
    out.update({"windows_s": [round(s, 4) for s in seconds], "truncated": truncated})
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)
        out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / 2 ** 30, 3)
    return out


def total_frames(frames: int, new: int, count: int) -> int:
    return frames + new * (count - 1)


def parse_sets(items: List[str]) -> Dict:
    """["name=value", ...] -> {name: value} with value read as JSON when it parses (numbers,
    true/false, null), else kept as text."""
    out = {}
    for item in items or []:
        name, _, text = item.partition("=")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def label(mode: str, sets: Dict, compiled: Optional[Dict] = None) -> str:
    """'httm [k=v] compiled heads-compiled max-autotune-no-cudagraphs' (``compiled``: ``compile_options``)."""
    compiled = compiled or {}
    words = (["compiled"] if compiled.get("compile_tokenwise") else []) \
        + (["heads-compiled"] if compiled.get("compile_heads") else []) \
        + ([compiled["compile_mode"]] if compiled.get("compile_mode") else [])
    return " ".join([mode + "".join(f" [{k}={v}]" for k, v in sorted(sets.items()))] + words)


# ------------------------------------------------------------------ one mode (child process)

def start_up_warm_up(model, frames: int, image_hw, forwards: int) -> Dict:
    """What the node does at start-up (``httm.warm_up``): forwards at the window size on frames
    that are not in the measured video."""
    return {"forwards": forwards, **warm_up(model, frames, image_hw, heads=HEADS, forwards=forwards)}


def _forward(model, images):
    with torch.inference_mode():
        return model(images, heads=HEADS)


def run_mode(args) -> Dict:
    """One mode in this process: build, warm up, time the windows -> row."""
    device = pick_device(args.device)
    row: Dict = {"mode": args.mode, "sets": parse_sets(args.httm_set), "frames": args.frames,
                 "new": args.new, "windows": args.windows, "config": args.config,
                 "weights_dtype": args.weights_dtype, **compile_options(args),
                 "dpt_dtype": args.dpt_dtype, "image_hw": list(args.image_size)}
    row["label"] = label(args.mode, row["sets"], compile_options(args))
    start = time.time()
    model = build_model(device, args.config, getattr(torch, args.weights_dtype), dpt_dtype=args.dpt_dtype,
                        **compile_options(args))
    sync(device)
    row["model_build_s"] = round(time.time() - start, 2)
    config = merge_config(args.mode)
    if row["sets"]:
        if args.mode != "httm":
            raise ValueError("--httm-set applies to the httm mode only")
        config = dataclasses.replace(config, **row["sets"])
    row["merge_config"] = None if config is None else dataclasses.asdict(config)
    stats = patch(model, config)
    video = long_video(total_frames(args.frames, args.new, args.windows), device, args.image_size, pan=args.pan)
    if args.warmup:
        row["warmup"] = start_up_warm_up(model, args.frames, args.image_size, args.warmup)
    if stats is not None:
        stats.clear()

    def after(w: int) -> None:
        if stats is not None and w + 1 < args.windows:
            stats.clear()                                             # keep the last window's records

    row.update(run_windows(lambda x: _forward(model, x), video, args.frames, args.new, args.windows,
                           device, args.deadline, after))
    if stats is not None:
        row["merge_last_window"] = _summary(stats)
    return row


def _summary(stats) -> Dict:
    try:
        return stats.summary()
    except Exception as exc:                                          # noqa: BLE001 (a report detail)
        return {"error": f"{type(exc).__name__}: {exc}"}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ------------------------------------------------------------------ all modes (parent process)

def child_argv(args, module: str, extra: List[str], out: Path, deadline: Optional[float]) -> List[str]:
    common = ["--frames", str(args.frames), "--new", str(args.new), "--windows", str(args.windows),
              "--warmup", str(args.warmup), "--device", args.device, "--pan", str(args.pan),
              "--image-size", *map(str, args.image_size), "--out", str(out)]
    if deadline is not None:
        common += ["--deadline", str(deadline)]
    return [sys.executable, "-m", module, *common, *extra]


def share_of_time(deadline: Optional[float], remaining: int) -> Optional[float]:
    """This child's deadline: an equal share of the time left among the children left (a child
    that ends early leaves its time to the later ones)."""
    if deadline is None:
        return None
    return time.time() + max(0.0, deadline - time.time()) / remaining


def run_child(argv: List[str], out: Path, log: Path, timeout: Optional[float]) -> Dict:
    """One child process -> its row (or a row with the error and the log's last lines)."""
    start = time.time()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    row = json.loads(out.read_text()) if out.exists() else {}
    row["process_s"] = round(time.time() - start, 1)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        row["error"] = f"child exit {rc}: " + "\n".join(tail)
    return row


def plan(args) -> List[Dict]:
    """[{label, module, extra}] in run order: the peers, then the modes as given (the last
    child gets the time the others left)."""
    items = []
    if args.peer_fastvggt:
        items.append({"label": "FastVGGT code", "module": "httm_ros.bench.peers",
                      "extra": ["--peer", "fastvggt", "--path", str(args.peer_fastvggt)]})
    for mode in args.modes:
        extra = ["--mode", mode, "--config", args.config, "--weights-dtype", args.weights_dtype,
                 "--dpt-dtype", args.dpt_dtype]
        extra += compile_flags(args)
        sets = args.httm_set if mode == "httm" else []
        for item in sets:
            extra += ["--httm-set", item]
        items.append({"label": label(mode, parse_sets(sets), compile_options(args)), "module": "httm_ros.bench.windows", "extra": extra})
    return items


def run(args, argv: List[str]) -> int:
    device = pick_device(args.device)
    if args.budget_s is not None:
        args.deadline = time.time() + args.budget_s
    result: Dict = {"kind": "windows", "env": environment(device, argv), "frames": args.frames,
                    "new": args.new, "windows": args.windows, "warmup_forwards": args.warmup,
                    "rows": [], "complete": False}
    write_json(args.out, result)
    items = plan(args)
    for i, item in enumerate(items):
        child_out = args.out.with_suffix(f".row{i}.json")
        child_out.unlink(missing_ok=True)
        deadline = share_of_time(args.deadline, len(items) - i)
        timeout = None if deadline is None else max(30.0, deadline - time.time() + 60.0)
        row = run_child(child_argv(args, item["module"], item["extra"], child_out, deadline), child_out,
                        args.out.with_suffix(f".row{i}.log"), timeout)
        row.setdefault("label", item["label"])
        result["rows"].append(row)
        write_json(args.out, result)
        child_out.unlink(missing_ok=True)
        print(table_line(row), flush=True)
    result["complete"] = True
    write_json(args.out, result)
    print(table(result["rows"]), flush=True)
    return 0


def _fmt(x, unit: str = " s") -> str:
    return "-" if x is None else f"{x:.3f}{unit}"


def table_line(row: Dict) -> str:
    if row.get("error"):
        return f"[windows] {row['label']}: ERROR {row['error'].splitlines()[0]}"
    return (f"[windows] {row['label']}, {row.get('frames')} frames (+{row.get('new')}): first "
            f"{_fmt(row.get('first_window_s'))}, p50 {_fmt(row.get('p50_s'))}, p99 {_fmt(row.get('p99_s'))}, "
            f"max {_fmt(row.get('max_s'))}, spikes {row.get('spikes')} of {row.get('spikes_of')}, "
            f"peak {_fmt(row.get('peak_gib'), ' GiB')}")


def table(rows: List[Dict]) -> str:
    head = ("| mode | frames (new) | warm-up | first window | p50 | p90 | p99 | max | windows > 1.3x p50 "
            "| peak GiB |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        warm = r.get("warmup", {}).get("seconds") if isinstance(r.get("warmup"), dict) else None
        spikes = "-" if r.get("spikes") is None else f"{r['spikes']} of {r['spikes_of']}"
        lines.append(
            f"| {r.get('label')}{' ERROR' if r.get('error') else ''}{' (cut)' if r.get('truncated') else ''} "
            f"| {r.get('frames')} ({r.get('new')}) | {warm if warm else '-'} | {_fmt(r.get('first_window_s'))} "
            f"| {_fmt(r.get('p50_s'))} | {_fmt(r.get('p90_s'))} | {_fmt(r.get('p99_s'))} | {_fmt(r.get('max_s'))} "
            f"| {spikes} | {_fmt(r.get('peak_gib'), '')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line

def window_arguments(p: argparse.ArgumentParser) -> None:
    """Options every process of this benchmark takes (parent, modes, peers)."""
    p.add_argument("--out", type=Path, required=True, help="JSON file")
    p.add_argument("--frames", type=int, default=24, help="K: frames per window")
    p.add_argument("--new", type=int, default=16, help="S: new frames per window")
    p.add_argument("--windows", type=int, default=100, help="N: windows")
    p.add_argument("--warmup", type=int, default=1,
                   help="start-up warm-up forwards at the window size before the first window (0: none)")
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int, nargs=2, default=[392, 518], metavar=("H", "W"))
    p.add_argument("--pan", type=int, default=3, help="camera pan in pixels per frame")
    p.add_argument("--deadline", type=float, default=None,
                   help="epoch seconds: windows that would end after it are not run (row says truncated)")


def model_arguments(p: argparse.ArgumentParser) -> None:
    """Our model's options, the same in the parent and in each mode's child."""
    p.add_argument("--config", choices=("1b", "tiny"), default="1b")
    p.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32")
    add_compile_arguments(p)
    p.add_argument("--dpt-dtype", choices=DPT_DTYPES, default="float32",
                   help="ours: the DPT heads on CUDA in float32 (VGGT) or bfloat16 (autocast, channels-last)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``httm-bench windows`` (the parent)."""
    window_arguments(p)
    p.add_argument("--modes", nargs="*", choices=MODES, default=["dense", "httm"])
    model_arguments(p)
    p.add_argument("--httm-set", action="append", default=[], metavar="NAME=VALUE",
                   help="HTTMConfig field for the httm row (repeatable)")
    p.add_argument("--peer-fastvggt", type=Path, default=None,
                   help="folder of the FastVGGT code (github.com/mystorm16/FastVGGT): adds its row")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds from now for the whole run (sets --deadline)")


def child_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m httm_ros.bench.windows", description="one mode's windows")
    window_arguments(p)
    p.add_argument("--mode", choices=MODES, required=True)
    model_arguments(p)
    p.add_argument("--httm-set", action="append", default=[])
    return p


def child_main(argv: Optional[List[str]] = None) -> int:
    args = child_parser().parse_args(argv)
    row = run_mode(args)
    write_json(args.out, row)
    print(table_line(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
