"""What the benchmarks run: VGGT-1B with random weights made on the GPU, synthetic video frames,
and the merge configuration of each mode."""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from httm_ros.httm import HTTMConfig, UniformMergeConfig
from httm_ros.vggt import VGGT, VGGTConfig, layers
from httm_ros.vggt.heads import compile_dense_heads

MODES = ("dense", "uniform", "httm")
DPT_DTYPES = ("float32", "bfloat16")     # --dpt-dtype: the DPT heads on CUDA (VGGTConfig.dpt_cuda_dtype)
HEIGHT, WIDTH = 392, 518                    # 28 x 37 patches + 5 special tokens = 1041 tokens/frame
TOKENS_PER_FRAME = 1041


def tokens_per_frame(image_hw=(HEIGHT, WIDTH), patch: int = 14, special: int = 5) -> int:
    return special + (image_hw[0] // patch) * (image_hw[1] // patch)


def merge_config(mode: str, impl: str = "auto",
                 attention_sdpa: Optional[str] = None) -> Optional[Union[HTTMConfig, UniformMergeConfig]]:
    """dense -> None; uniform -> FastVGGT-style defaults; httm -> the paper's defaults (with
    ``attention_sdpa`` = "flash" | "cudnn" when given, else HTTMConfig's default)."""
    if mode == "dense":
        return None
    if mode == "uniform":
        return UniformMergeConfig()
    if mode == "httm":
        return HTTMConfig(impl=impl) if attention_sdpa is None else HTTMConfig(impl=impl, attention_sdpa=attention_sdpa)
    raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")


def build_model(device: torch.device, config: str = "1b", weights_dtype: torch.dtype = torch.float32,
                seed: int = 0, compile_tokenwise: bool = False, dpt_dtype: str = "float32",
                compile_heads: bool = False, compile_mode: Optional[str] = None) -> VGGT:
    """VGGT (a ``VGGTConfig.preset`` name: 1b, tiny, synth) in eval mode, random weights
    initialised directly on ``device`` (no CPU copy, no golden weights); autocast bf16 on CUDA as
    in normal use. ``compile_tokenwise``: the blocks' token-wise passes through torch.compile
    (``httm_ros.vggt.layers.compile_tokenwise``; compiled at the first forward of each shape).
    ``dpt_dtype`` other than float32: the DPT heads on CUDA in that dtype (``VGGTConfig.dpt_cuda_dtype``).
    ``compile_heads``: the DPT heads' chunks through torch.compile (``heads.compile_dense_heads``);
    ``compile_mode``: the torch.compile mode of both (``layers.COMPILE_MODES``)."""
    torch.manual_seed(seed)
    cfg = VGGTConfig.preset(config, dpt_cuda_dtype=None if dpt_dtype == "float32" else dpt_dtype)
    with torch.device(device):
        model = VGGT(cfg)
    model = model.to(dtype=weights_dtype).eval()
    if compile_tokenwise or compile_heads:
        layers.set_compile_backend("inductor", compile_mode)
    if compile_tokenwise:
        layers.compile_tokenwise(model)
    if compile_heads:
        compile_dense_heads(model)
    return model


def video_frames(frames: int, device: torch.device, height: int = HEIGHT, width: int = WIDTH,
                 seed: int = 0, pan: int = 3) -> Tensor:
    """[1, S, 3, H, W] in [0, 1]: a camera panning ``pan`` px per frame over a smooth random
    texture with fine grain, so consecutive frames share most content (as video does)."""
    g = torch.Generator(device=device).manual_seed(seed)
    canvas_w = width + pan * frames
    low = torch.rand(1, 3, height // 16 + 2, canvas_w // 16 + 2, generator=g, device=device)
    canvas = F.interpolate(low, size=(height, canvas_w), mode="bicubic", align_corners=False)[0]
    canvas = 0.85 * canvas + 0.15 * torch.rand(3, height, canvas_w, generator=g, device=device)
    cols = torch.arange(width, device=device)[None, :] + pan * torch.arange(frames, device=device)[:, None]
    video = canvas[:, :, cols]                                            # [3, H, S, W]
    return video.permute(2, 0, 1, 3).clamp(0, 1).unsqueeze(0).contiguous()


def anchored_indices(frames: int, overlap: int) -> list:
    """Frame indices of one anchored window (docs/STREAMING.md) in a panning video: the anchor
    (frame 0), then ``overlap - 1`` context frames and ``frames - overlap`` new frames, consecutive
    and starting ``frames // 2`` frames after the anchor (an older, still covisible anchor)."""
    if not 1 <= overlap < frames:
        raise ValueError(f"anchored window needs 1 <= overlap < frames, got {overlap}, {frames}")
    start = max(1, frames // 2)
    return [0] + list(range(start, start + frames - 1))


def anchored_window(frames: int, overlap: int, device: torch.device, height: int = HEIGHT,
                    width: int = WIDTH, seed: int = 0) -> Tensor:
    """[1, K, 3, H, W]: the frames of ``anchored_indices`` from ``video_frames``."""
    idx = anchored_indices(frames, overlap)
    video = video_frames(idx[-1] + 1, device, height, width, seed=seed)
    return video[:, idx].contiguous()
