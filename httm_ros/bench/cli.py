"""httm-bench command line: ``e2e`` rows, the ``layer`` breakdown, the ``report``.

Every measurement is written to its JSON file as soon as it exists (atomic rewrite), so a run
cut short keeps what it finished. ``--deadline-s`` counts from $BENCH_T0 (epoch seconds, set by
bench/gpu_suite.sh at its start) or from this process's start; rows that would end after it are
skipped and say so.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..provenance import environment, write_json
from .workload import MODES


def _t0() -> float:
    try:
        return float(os.environ["BENCH_T0"])
    except (KeyError, ValueError):
        return time.time()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _model(args, device):
    from .workload import build_model

    start = time.time()
    model = build_model(device, args.config, getattr(torch, args.weights_dtype))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, round(time.time() - start, 2)


def cmd_e2e(args, argv: List[str]) -> int:
    from . import e2e

    t0 = _t0()
    device = _device(args.device)
    result: Dict = {"kind": "e2e", "env": environment(device, argv), "config": args.config,
                    "weights_dtype": args.weights_dtype, "rows": [], "complete": False}
    write_json(args.out, result)
    model, result["model_build_s"] = _model(args, device)
    if not args.no_warmup:
        result["warmup"] = e2e.warm_up(model, args.modes, device, backend=args.backend,
                                       image_hw=tuple(args.image_size))
        write_json(args.out, result)
    plan = [(mode, frames, args.repeats or e2e.repeats_for(frames))
            for frames in args.frames for mode in args.modes]

    def on_row(row: Dict) -> None:
        row["elapsed_s"] = round(time.time() - t0, 1)
        result["rows"].append(row)
        write_json(args.out, result)
        print(f"[httm-bench] {row['mode']:8s} {row['frames']:5d} frames: {row.get('seconds')} s, "
              f"{row.get('peak_gib')} GiB {'SKIPPED ' + row['skipped'] if row.get('skipped') else ''}"
              f"{'ERROR ' + row['error'].splitlines()[0] if row.get('error') else ''}", flush=True)

    deadline = args.deadline_s
    e2e.run_rows(model, plan, device, deadline, on_row, backend=args.backend, t0=t0,
                 clock=time.time, image_hw=tuple(args.image_size),
                 warmups={mode: args.row_warmup for mode in args.modes})
    result["complete"] = True
    write_json(args.out, result)
    return 0


def cmd_layer(args, argv: List[str]) -> int:
    from .layer import run_layer

    device = _device(args.device)
    result: Dict = {"kind": "layer", "env": environment(device, argv), "config": args.config,
                    "layer_result": None}
    write_json(args.out, result)
    model, result["model_build_s"] = _model(args, device)

    def update(partial: Dict) -> None:
        result["layer_result"] = partial
        write_json(args.out, result)

    update(run_layer(model, args.frames, device, layer=args.layer, reps=args.reps,
                     dense=not args.no_dense, on_update=update, image_hw=tuple(args.image_size)))
    res = result["layer_result"]
    for name in ("httm", "uniform"):
        if isinstance(res.get(name), dict) and res[name].get("columns_ms"):
            print(f"[httm-bench] layer {name}: {res[name]['columns_ms']}", flush=True)
    print(f"[httm-bench] layer dense attention: {res.get('dense_attention_ms')} ms", flush=True)
    return 0


def cmd_report(args, argv: List[str]) -> int:
    from .report import build_report

    text = build_report(args.files, png=args.png, notes=args.notes)
    args.md.write_text(text)
    print(f"wrote {args.md}" + (f" and {args.png}" if args.png else ""))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="httm-bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(s):
        s.add_argument("--out", type=Path, required=True, help="JSON file (rewritten after every item)")
        s.add_argument("--device", default="auto")
        s.add_argument("--config", choices=("1b", "tiny"), default="1b")
        s.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32")
        s.add_argument("--image-size", type=int, nargs=2, default=[392, 518], metavar=("H", "W"))

    e = sub.add_parser("e2e", help="whole forward per mode and frame count")
    common(e)
    e.add_argument("--frames", type=int, nargs="+", default=[100, 300, 500])
    e.add_argument("--modes", nargs="+", choices=MODES, default=["httm", "uniform", "dense"])
    e.add_argument("--repeats", type=int, default=None, help="default: 3 at <=100 frames, else 1")
    e.add_argument("--deadline-s", type=float, default=None)
    e.add_argument("--backend", choices=("auto", "triton", "torch"), default="auto")
    e.add_argument("--no-warmup", action="store_true", help="skip the 8-frame warm-up per mode")
    e.add_argument("--row-warmup", choices=("auto", "always", "never"), default="auto",
                   help="an untimed forward at each row's size first (auto: always for httm, "
                        "for the others when it costs <= ~60 s)")
    e.set_defaults(func=cmd_e2e)

    la = sub.add_parser("layer", help="one global layer, stage by stage (Table 4)")
    common(la)
    la.add_argument("--frames", type=int, default=1000)
    la.add_argument("--layer", type=int, default=0)
    la.add_argument("--reps", type=int, default=3)
    la.add_argument("--no-dense", action="store_true")
    la.set_defaults(func=cmd_layer)

    r = sub.add_parser("report", help="BENCHMARKS.md (+ PNG) from result JSON files")
    r.add_argument("files", type=Path, nargs="*")
    r.add_argument("--md", type=Path, default=Path("BENCHMARKS.md"))
    r.add_argument("--png", type=Path, default=None)
    r.add_argument("--notes", type=Path, default=None, help="markdown appended as is (the analysis)")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    return args.func(args, argv)


if __name__ == "__main__":
    sys.exit(main())
