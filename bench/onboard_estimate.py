"""ESTIMATE (not a measurement) of one window of the onboard preset on a Jetson AGX Orin.

Counts one VGGT-1B forward (camera + depth heads) at the preset's window size and resolution with
``httm_ros.bench.roofline`` (the counts of BENCHMARKS.md's per-part bound table: FLOPs on the meta
device, attention analytically at the kept fractions, every op's reads and writes in bf16, unfused),
dense and with HTTM's kept fractions (queries 20%, keys/values 30%; its merging work is not
counted). Then: time >= max(FLOPs / tensor throughput, bytes / bandwidth), a lower bound on a
perfect implementation, against the vendor's published figures.

    python bench/onboard_estimate.py --frames 32 --image-size 392 518 --out bench/results/onboard/orin_estimate.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.provenance import environment, write_json  # noqa: E402
from httm_ros.bench import roofline  # noqa: E402
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
HTTM_KEPT = {"kept_q": 0.2, "kept_kv": 0.3}     # paper defaults


def count(frames: int, image_hw) -> dict:
    """FLOPs and bytes of one forward (dense, and with HTTM's kept fractions), summed over the parts."""
    cfg = VGGTConfig()
    with torch.device("meta"):
        params = sum(p.numel() for p in VGGT(cfg).parameters())
    out = {"params": params, "weight_bytes": params * roofline.BYTES_PER_ELEMENT}
    for mode, kept in (("dense", {}), ("httm", HTTM_KEPT)):
        costs = roofline.part_costs(frames, tuple(image_hw), cfg=cfg, **kept)
        out[f"flops_{mode}"] = int(sum(c["matmul_flop"] + c["attention_flop"] for c in costs.values()))
        out[f"bytes_{mode}"] = int(sum(c["bytes"] for c in costs.values()))
    return out


def estimate(c: dict, dev: dict) -> dict:
    tflops = dev["gpu_sparse_int8_tops"] / 4.0                    # dense bf16/fp16, derived
    out = {"dense_bf16_tflops_derived": tflops, "bandwidth_gbs": dev["bandwidth_gbs"]}
    for mode in ("dense", "httm"):
        t_math = c[f"flops_{mode}"] / (tflops * 1e12)
        t_mem = c[f"bytes_{mode}"] / (dev["bandwidth_gbs"] * 1e9)
        out[mode] = {"flops": c[f"flops_{mode}"], "bytes": c[f"bytes_{mode}"], "seconds_math": round(t_math, 3),
                     "seconds_memory": round(t_mem, 3), "seconds_lower_bound": round(max(t_math, t_mem), 3)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, default=[392, 518], metavar=("H", "W"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    c = count(args.frames, tuple(args.image_size))
    result = {"kind": "onboard_estimate", "ESTIMATE": "counted FLOPs/bytes against published peak figures; "
              "NOT a measurement", "env": environment(torch.device("cpu"), sys.argv[1:] if argv is None else argv,
                                 program="python bench/onboard_estimate.py"),
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
