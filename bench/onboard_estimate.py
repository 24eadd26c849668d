"""ESTIMATE (not a measurement) of one window of the onboard preset on a Jetson AGX Orin.

Counts the FLOPs (torch.utils.flop_counter.FlopCounterMode) and the bytes every op writes, of one
dense VGGT-1B forward (camera + depth heads) at the preset's window size and resolution, on the
meta device (no memory, no arithmetic). HTTM's effect is applied analytically to the global
attention's SDPA FLOPs only (queries kept 20%, keys/values kept 30% -> 6% of them); its merging
work is not counted. Then: time >= max(FLOPs / tensor throughput, bytes / bandwidth), a lower
bound on a perfect implementation, against the vendor's published figures.

    python bench/onboard_estimate.py --frames 32 --image-size 392 518 --out bench/results/onboard/orin_estimate.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.provenance import environment, write_json  # noqa: E402
from httm_ros.vggt import VGGT, VGGTConfig  # noqa: E402

# Published figures (NVIDIA Jetson AGX Orin Series Technical Brief / data sheet), and what we
# derive from them. The GPU's share of the module's 275 (64GB) / 200 (32GB) sparse INT8 TOPS is
# 170 / 108 (the rest is the two DLAs, which run neither this model nor bf16). Dense FP16/BF16
# tensor throughput on Ampere = sparse INT8 / 2 (no 2:4 sparsity) / 2 (FP16 vs INT8 rate).
DEVICES = {
    "AGX Orin 64GB": {"published": "275 sparse INT8 TOPS (module), GPU 170 sparse INT8 TOPS, "
                                   "2048 CUDA cores 5.3 FP32 TFLOPS, 204.8 GB/s LPDDR5",
                      "gpu_sparse_int8_tops": 170.0, "bandwidth_gbs": 204.8, "memory_gb": 64},
    "AGX Orin 32GB": {"published": "200 sparse INT8 TOPS (module), GPU 108 sparse INT8 TOPS, "
                                   "1792 CUDA cores, 204.8 GB/s LPDDR5",
                      "gpu_sparse_int8_tops": 108.0, "bandwidth_gbs": 204.8, "memory_gb": 32},
}
HTTM_ATTENTION_SHARE = 0.2 * 0.3            # queries kept x keys/values kept (paper defaults)


# On "meta", SDPA runs as its math decomposition (scores materialised, upcast); the GPU runs a
# fused kernel that writes only its output: those ops' bytes are left out, their FLOPs kept.
SDPA_MATH = ("bmm", "_safe_softmax", "_unsafe_view", "_to_copy")


class WrittenBytes(TorchDispatchMode):
    """Sums the bytes of every op's tensor outputs (each is written once and read at least once:
    traffic >= 2x this, weights read once per use on top)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False) or func.__name__.split(".")[0] in SDPA_MATH:
            return out                # a view writes nothing; a fused SDPA never writes its scores
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


def count(frames: int, image_hw, dtype: torch.dtype) -> dict:
    """FLOPs by module and bytes written of one dense forward, on the meta device."""
    with torch.device("meta"):
        model = VGGT(VGGTConfig()).to(dtype).eval().requires_grad_(False)
        images = torch.zeros(1, frames, 3, *image_hw, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    flops = FlopCounterMode(display=False, depth=None)
    written = WrittenBytes()
    # "meta" has no autocast: every op runs in the weights' dtype (bf16, heads included)
    no_autocast = (mock.patch("torch.is_autocast_enabled", lambda *a: False),
                   mock.patch("torch.autocast", lambda *a, **k: contextlib.nullcontext()))
    with torch.no_grad(), no_autocast[0], no_autocast[1], flops, written:
        model(images, heads=("camera", "depth"))
    by_module = flops.get_flop_counts()
    total = sum(by_module.get("Global", {}).values())
    global_sdpa = 0
    for name, ops in by_module.items():
        if re.search(r"global_blocks\.\d+$", name):              # a block's counts include its children
            global_sdpa += sum(v for op, v in ops.items() if "bmm" in str(op))   # QK^T and PV
    return {"params": params, "weight_bytes": params * torch.finfo(dtype).bits // 8,
            "flops_dense": int(total), "flops_global_sdpa_dense": int(global_sdpa),
            "bytes_written": int(written.bytes)}


def estimate(c: dict, dev: dict) -> dict:
    tflops = dev["gpu_sparse_int8_tops"] / 4.0                    # dense bf16/fp16, derived
    traffic = 2 * c["bytes_written"] + c["weight_bytes"]
    out = {"dense_bf16_tflops_derived": tflops, "bandwidth_gbs": dev["bandwidth_gbs"]}
    for mode, flops in (("dense", c["flops_dense"]),
                        ("httm", c["flops_dense"] - (1 - HTTM_ATTENTION_SHARE) * c["flops_global_sdpa_dense"])):
        t_math, t_mem = flops / (tflops * 1e12), traffic / (dev["bandwidth_gbs"] * 1e9)
        out[mode] = {"flops": int(flops), "seconds_math": round(t_math, 3), "seconds_memory": round(t_mem, 3),
                     "seconds_lower_bound": round(max(t_math, t_mem), 3)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, default=[392, 518], metavar=("H", "W"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    c = count(args.frames, tuple(args.image_size), torch.bfloat16)
    result = {"kind": "onboard_estimate", "ESTIMATE": "counted FLOPs/bytes against published peak figures; "
              "NOT a measurement", "env": environment(torch.device("cpu"), sys.argv[1:] if argv is None else argv),
              "frames": args.frames, "overlap": args.overlap, "image_hw": args.image_size, "counts": c,
              "devices": {}}
    for name, dev in DEVICES.items():
        e = estimate(c, dev)
        new = args.frames - args.overlap
        for mode in ("dense", "httm"):
            e[mode]["new_keyframes_per_s_upper_bound"] = round(new / e[mode]["seconds_lower_bound"], 2)
        result["devices"][name] = {"published": dev["published"], **e}
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("counts", "devices")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
