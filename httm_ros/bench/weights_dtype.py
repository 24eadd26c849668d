"""Weights dtype: VGGT-1B's outputs with its weights cast to bfloat16 / float16 against float32, on
the golden weights and images (shared/vggt/GOLDEN.md): the numbers behind docs/ROS.md "Weights
dtype" and the node's ``weights_dtype`` parameter.

    httm-bench dtype --out bench/results/dtype/cpu.json                          # CPU: bfloat16
    httm-bench dtype --device cuda --dtypes bfloat16 float16 --out $OUT/dtype.json

Each model is cast the node's way (``pipeline.predictor.ModelPredictor``: weights and images in the
dtype, outputs read as float32) with the aggregator's autocast off, so only the weights' dtype differs. The
float32 run is also checked against the public code's golden arrays (its error is the maths', not
the dtype's). Per dtype: the weights' bytes, the relative L2 error ``|got - ref| / |ref|`` of the
pose encoding (the golden weights predict a field of view of 0, so K itself is degenerate), depth
and depth confidence, the forward's seconds and (CUDA) peak memory.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from ..pipeline.predictor import ModelPredictor
from ..provenance import environment, write_json
from ..vggt import VGGT
from ..vggt.golden import golden_images, golden_vggt1b
from .fidelity import GOLDEN_DIRS
from .harness import pick_device

OUTPUTS = ("pose_enc", "depth", "depth_conf")     # the golden weights' FoV is 0: compare the encoding


def golden_dir(given: str) -> Path:
    """The folder with state_dict_manifest.json and golden_vggt1b.npz."""
    for folder in ([Path(given)] if given else GOLDEN_DIRS):
        if (folder / "state_dict_manifest.json").is_file() and (folder / "golden_vggt1b.npz").is_file():
            return folder
    raise FileNotFoundError(f"no golden data (state_dict_manifest.json + golden_vggt1b.npz) in "
                            f"{given or ', '.join(map(str, GOLDEN_DIRS))}")


def golden_model(folder: Path) -> VGGT:
    """VGGT-1B with the golden weights, float32 on the CPU, autocast off."""
    model = golden_vggt1b(folder / "state_dict_manifest.json")
    model.config = model.config.replace(cuda_autocast_dtype=None)
    return model


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.norm(got.double() - ref.double()) / torch.linalg.norm(ref.double()))


def run_dtype(folder: Path, dtype_name: str, device: torch.device, images: torch.Tensor) -> Dict:
    """One model with float32-loaded golden weights cast to ``dtype_name``: its outputs and costs."""
    dtype = getattr(torch, dtype_name)
    model = golden_model(folder)
    predictor = ModelPredictor(model, device=device, dtype=dtype)          # images [S, 3, H, W]
    weight_bytes = sum(p.numel() * p.element_size() for p in predictor.model.parameters())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with torch.inference_mode():                                          # as ModelPredictor.predict
        out = predictor.model(images.to(device=device, dtype=dtype), heads=("camera", "depth"))
    seconds = time.perf_counter() - t0
    outputs = {"pose_enc": out["pose_enc"][0], "depth": out["depth"][0, ..., 0], "depth_conf": out["depth_conf"][0]}
    row = {"dtype": dtype_name, "weight_bytes": weight_bytes, "forward_s": round(seconds, 3),
           "outputs": {k: v.float().cpu() for k, v in outputs.items()}}      # [S, 9], [S, H, W] x 2
    if device.type == "cuda":
        row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    del predictor, model
    gc.collect()
    return row


def public_code_errors(folder: Path, row: Dict) -> Dict[str, float]:
    """float32 outputs against the public implementation's golden arrays."""
    ref = np.load(folder / "golden_vggt1b.npz")
    arrays = {"pose_enc": ref["pose_enc"], "depth": ref["depth"][..., 0], "depth_conf": ref["depth_conf"]}
    return {k: rel_error(row["outputs"][k], torch.from_numpy(v)) for k, v in arrays.items()}


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", required=True, help="JSON file to write")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    s.add_argument("--dtypes", nargs="+", default=["bfloat16"], choices=("bfloat16", "float16"),
                   help="weight dtypes compared with float32 (float16 needs CUDA; default: bfloat16)")
    s.add_argument("--golden-dir", default="", help="folder with state_dict_manifest.json and "
                   "golden_vggt1b.npz (default: test/data, else ../shared/vggt)")


def run(args, argv: List[str]) -> int:
    device = pick_device(args.device)
    if device.type == "cuda":                                             # float32 as the reference maths
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if "float16" in args.dtypes and device.type != "cuda":
        raise SystemExit("httm-bench dtype: float16 weights need CUDA (the node refuses them on the CPU)")
    folder = golden_dir(args.golden_dir)
    images = golden_images()                                              # [3, 3, 126, 168]
    result = {"environment": environment(device, argv), "model": "VGGT-1B, golden weights (shared/vggt/GOLDEN.md)",
              "images": list(images.shape), "aggregator_autocast": None, "reference": "float32, same device"}
    ref = run_dtype(folder, "float32", device, images)
    result["float32"] = {"weight_bytes": ref["weight_bytes"], "forward_s": ref["forward_s"],
                         "vs_public_code": public_code_errors(folder, ref),
                         **({"peak_memory_bytes": ref["peak_memory_bytes"]} if "peak_memory_bytes" in ref else {})}
    result["dtypes"] = {}
    for name in args.dtypes:
        row = run_dtype(folder, name, device, images)
        errors = {k: rel_error(row["outputs"][k], ref["outputs"][k]) for k in OUTPUTS}
        result["dtypes"][name] = {"weight_bytes": row["weight_bytes"], "forward_s": row["forward_s"],
                                  "weight_ratio": row["weight_bytes"] / ref["weight_bytes"],
                                  "rel_error_vs_float32": errors,
                                  **({"peak_memory_bytes": row["peak_memory_bytes"]} if "peak_memory_bytes" in row else {})}
        write_json(Path(args.out), result)
        print(f"{name}: weights {row['weight_bytes'] / 2**20:.0f} MiB "
              f"({result['dtypes'][name]['weight_ratio']:.2f} x float32), relative error "
              + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    write_json(Path(args.out), result)
    return 0
