"""Start-up warm-up: forwards at the window size before the first real window (issue 14).

The first forward at a size pays one-time costs inside the window: the CUDA context and library
handles, Triton's compilation of the merging kernels and the launch-configuration tuner for the
size's region shapes (``kernels/tune.py``), the region layout and its kernel tables, the heads'
convolution plans, and the allocator growing its pool. Measured on an H200 (issue 14), the first
24-frame HTTM window took 22.4 s against a 0.54 s median. A node calls ``warm_up`` once, at its
window size and input size, after ``patch(model, config)`` and before the first frames arrive.

What it cannot cover: with ``HTTMConfig.attention_sdpa="cudnn"``, cuDNN builds a plan for every
new attention shape, and the shapes follow the per-head outlier counts of each window's content;
the default ("flash") has no per-shape build, so one forward at the window size is enough.

    stats = patch(model, HTTMConfig())
    warm_up(model, frames=24, image_hw=(392, 518))      # before the first window
"""

from __future__ import annotations

import time
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def warm_up_frames(frames: int, image_hw: Tuple[int, int], device: torch.device, seed: int = 0,
                   pan: int = 3) -> Tensor:
    """[1, frames, 3, H, W] in [0, 1]: a camera panning ``pan`` px per frame over a smooth random
    texture (video-like content, so the merging finds the similar tokens it finds in a stream)."""
    height, width = image_hw
    g = torch.Generator(device="cpu").manual_seed(seed)
    canvas_w = width + pan * frames
    low = torch.rand(1, 3, height // 16 + 2, canvas_w // 16 + 2, generator=g)
    canvas = F.interpolate(low, size=(height, canvas_w), mode="bicubic", align_corners=False)[0]
    canvas = (0.85 * canvas + 0.15 * torch.rand(3, height, canvas_w, generator=g)).clamp(0, 1)
    video = torch.stack([canvas[:, :, i * pan:i * pan + width] for i in range(frames)])  # [S, 3, H, W]
    return video.unsqueeze(0).to(device)


def warm_up(model, frames: int, image_hw: Tuple[int, int], heads: Sequence[str] = ("camera", "depth"),
            forwards: int = 1) -> Dict:
    """``forwards`` untimed-for-the-caller forwards of ``model`` (with whatever merging is patched
    in) on ``frames`` synthetic frames of ``image_hw`` on the model's device ->
    {"frames", "image_hw", "seconds": [per forward]}."""
    device = next(model.parameters()).device
    images = warm_up_frames(frames, image_hw, device)
    seconds = []
    for _ in range(forwards):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(images, heads=tuple(heads))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(round(time.perf_counter() - start, 4))
        del out
    return {"frames": frames, "image_hw": list(image_hw), "seconds": seconds}
