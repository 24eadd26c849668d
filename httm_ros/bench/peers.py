"""Other projects' code in the ``windows`` benchmark, each in its own process.

FastVGGT (github.com/mystorm16/FastVGGT, arXiv 2509.02560): VGGT with token merging in global
attention. Its code is not part of this package: pass the folder of a checkout (``--path``; the
project keeps one in the ignored ``.peers/FastVGGT``). Built as its own evaluation scripts build
it (``eval/eval_custom.py``): ``VGGT(merging=0)`` (merging from global block 0, ratio 0.9: its
default), camera + depth heads (its defaults: no point or track head), weights in bf16
(``model.to(torch.bfloat16)``), input frames in bf16 under ``torch.autocast(dtype=bf16)``
(``vggt/utils/eval_utils.py``), ``update_patch_dimensions`` for the image size. Weights are
random (seed 0), made directly on the device, as for our rows.

    python -m httm_ros.bench.peers --peer fastvggt --path .peers/FastVGGT --frames 24 --out row.json

Its aggregator calls CUDA directly (``torch.cuda.synchronize()``, positions made with
``device="cuda"``); on a CPU (smoke runs only) ``cpu_shim`` stands in for those calls.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional
from unittest import mock

import torch

from httm_ros.httm.warmup import warm_up_frames
from httm_ros.provenance import write_json

from .windows import (long_video, pick_device, run_windows, sync, table_line, timed, total_frames,
                      window_arguments)

PEERS = ("fastvggt",)


def peer_commit(path: Path) -> Optional[str]:
    """The checkout's commit: PEER_COMMIT (an exported tree) or .git/HEAD's target."""
    for name in ("PEER_COMMIT",):
        if (path / name).exists():
            return (path / name).read_text().strip()
    head = path / ".git" / "HEAD"
    if head.exists():
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            target = path / ".git" / ref[5:]
            return target.read_text().strip() if target.exists() else ref
        return ref
    return None


def build_fastvggt(path: Path, device: torch.device, image_hw, merging: Optional[int] = 0, seed: int = 0):
    """FastVGGT's ``VGGT`` from the checkout at ``path`` with random weights, bf16, eval mode."""
    sys.path.insert(0, str(path.resolve()))
    from vggt.models.vggt import VGGT as FastVGGT                         # the peer's package

    torch.manual_seed(seed)
    with torch.device(device):
        model = FastVGGT(merging=merging)
    # bf16 weights as its users run it; on a CPU fp32 (torch's CPU antialiased bicubic resize of the
    # position embedding has no bf16 kernel), the blocks still run in bf16 under autocast
    model = model.eval().to(torch.bfloat16 if device.type == "cuda" else torch.float32)
    model.update_patch_dimensions(image_hw[1] // 14, image_hw[0] // 14)
    return model


class _TorchOnCpu:
    """``torch`` as the peer's aggregator sees it on a CPU: ``device="cuda"`` -> CPU, and
    ``torch.cuda.synchronize`` / ``empty_cache`` do nothing; with ``bf16_as_fp32`` its bf16 casts
    are fp32 (parity tests against our fp32 model)."""

    cuda = SimpleNamespace(synchronize=lambda *a, **k: None, empty_cache=lambda *a, **k: None)

    def __init__(self, bf16_as_fp32: bool = False) -> None:
        if bf16_as_fp32:
            self.bfloat16 = torch.float32

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def zeros(*size, device=None, **kwargs):
        return torch.zeros(*size, device="cpu" if device == "cuda" else device, **kwargs)


@contextlib.contextmanager
def cpu_shim(device: torch.device, bf16_as_fp32: bool = False):
    """On a CPU: the peer's aggregator runs with ``_TorchOnCpu`` and its positions follow the
    CPU (smoke runs and parity tests; nothing changes on CUDA)."""
    if device.type == "cuda":
        yield
        return
    import vggt.models.aggregator as agg                                  # the peer's module

    original = agg.PositionGetter.__call__

    def positions(self, batch, height, width, device=None):
        return original(self, batch, height, width, device=torch.device("cpu"))

    with mock.patch.object(agg, "torch", _TorchOnCpu(bf16_as_fp32)), \
            mock.patch.object(agg.PositionGetter, "__call__", positions):
        yield


def fastvggt_forward(model, device: torch.device):
    def forward(images):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return model(images.to(torch.bfloat16))
    return forward


def run_peer(args) -> Dict:
    device = pick_device(args.device)
    row: Dict = {"mode": args.peer, "label": "FastVGGT code", "frames": args.frames, "new": args.new,
                 "windows": args.windows, "weights_dtype": "bfloat16" if device.type == "cuda" else "float32", "image_hw": list(args.image_size), "cpu_shim": device.type != "cuda",
                 "peer_path": str(args.path), "peer_commit": peer_commit(args.path), "merging": args.merging}
    start = time.time()
    model = build_fastvggt(args.path, device, args.image_size, merging=args.merging)
    sync(device)
    row["model_build_s"] = round(time.time() - start, 2)
    forward = fastvggt_forward(model, device)
    video = long_video(total_frames(args.frames, args.new, args.windows), device, args.image_size, pan=args.pan)
    with cpu_shim(device):
        if args.warmup:
            images = warm_up_frames(args.frames, tuple(args.image_size), device)
            row["warmup"] = {"forwards": args.warmup,
                             "seconds": [round(timed(forward, images, device), 4) for _ in range(args.warmup)]}
            del images
        row.update(run_windows(forward, video, args.frames, args.new, args.windows, device, args.deadline))
    return row


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m httm_ros.bench.peers", description="a peer's windows")
    window_arguments(p)
    p.add_argument("--peer", choices=PEERS, default="fastvggt")
    p.add_argument("--path", type=Path, required=True, help="folder of the peer's code")
    p.add_argument("--merging", type=int, default=0, help="FastVGGT: first global block that merges")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    row = run_peer(args)
    write_json(args.out, row)
    print(table_line(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
