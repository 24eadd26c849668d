"""httm-bench: every benchmark of the project behind one command line.

Each subcommand is a module of this package with ``add_arguments(parser)`` and
``run(args, argv) -> int`` (exit code); ``SUBCOMMANDS`` lists them. The model benchmarks write
every measurement to their JSON file as soon as it exists (atomic rewrite), so a run cut short
keeps what it finished.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from . import (compile_check, e2e, fidelity, latency, layer, loops, multi_gpu, node, node_stream, postprocess, report,
               streaming, weights_dtype, windows)

# name -> (module, help)
SUBCOMMANDS = {
    "e2e": (e2e, "whole forward per mode and frame count"),
    "layer": (layer, "one global layer, stage by stage (Table 4)"),
    "windows": (windows, "window latency over consecutive windows of new content, per mode in its own process"),
    "latency": (latency, "one global-attention call: dense vs HTTM vs uniform"),
    "fidelity": (fidelity, "attention error of HTTM and uniform merging vs dense, per layer (CPU)"),
    "postprocess": (postprocess, "the streaming core's post-processing per window (bench/postprocess.py)"),
    "node": (node, "reconstruct_node's overhead per window (bench/node.py)"),
    "stream": (node_stream, "the streaming core at the node's defaults over a long sequence: new keyframes/s, "
                            "window latency, warm-up, GPU memory, per-stage time (oracle or model geometry)"),
    "streaming": (streaming, "streaming core: anchored vs chained windows, tracking states, relocalisation (CPU)"),
    "loops": (loops, "loop closure: pose graph (GTSAM iSAM2) ATE with/without, update time, memory (CPU, oracle)"),
    "distributed": (multi_gpu, "one forward over N GPUs/processes (httm_ros.distributed): seconds, memory, all-gathers"),
    "dtype": (weights_dtype, "VGGT-1B with bfloat16/float16 weights vs float32 on the golden data: errors, memory"),
    "compile-check": (compile_check, "compile the Triton kernels for sm_90 and read their resources"),
    "report": (report, "BENCHMARKS.md (+ PNG) from result JSON files"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="httm-bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, (module, text) in SUBCOMMANDS.items():
        s = sub.add_parser(name, help=text)
        module.add_arguments(s)
        s.set_defaults(run=module.run)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    return args.run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
