"""Deterministic "golden" weights and images (rules in shared/vggt/GOLDEN.md).

The reference outputs for these inputs come from the public VGGT implementation; a correct
implementation that loads ``golden_state_dict(manifest)`` reproduces them.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence, Union

import torch

_HALF_SCALE_NAMES = {
    "camera_token", "register_token", "register_tokens", "cls_token",
    "pos_embed", "mask_token", "empty_pose_tokens",
}


def _manifest_shapes(manifest: Union[str, Path, Mapping]) -> "OrderedDict[str, tuple]":
    if not isinstance(manifest, Mapping):
        manifest = json.loads(Path(manifest).read_text())
    tensors = manifest.get("tensors", manifest)
    return OrderedDict((k, tuple(int(d) for d in v)) for k, v in tensors.items())


def golden_tensor(key: str, shape: Sequence[int]) -> torch.Tensor:
    """One weight from its name and shape alone (fp32, CPU)."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    r = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    last = key.rsplit(".", 1)[-1]
    if key.endswith(".bias"):
        return r.mul_(0.02)
    if key.endswith("gamma"):
        return r.mul_(0.02).add_(0.1)
    if last in _HALF_SCALE_NAMES:
        return r.mul_(0.5)
    if len(shape) == 1:
        return r.mul_(0.1).add_(1.0)
    return r.div_(math.sqrt(math.prod(shape[1:])))


def golden_state_dict(manifest_path_or_dict, include_track_head: bool = False) -> "OrderedDict[str, torch.Tensor]":
    """All tensors of the manifest (``{"tensors": {name: shape}}`` or ``{name: shape}``)."""
    out = OrderedDict()
    for key, shape in _manifest_shapes(manifest_path_or_dict).items():
        if not include_track_head and key.startswith("track_head."):
            continue
        out[key] = golden_tensor(key, shape)
    return out


def golden_vggt1b(manifest_path: Union[str, Path]):
    """VGGT-1B (the default ``VGGTConfig``) with the golden weights of ``manifest_path``, fp32 on
    the CPU, in eval mode; built on the meta device, so no random initialisation runs first."""
    from .model import VGGT

    with torch.device("meta"):
        model = VGGT()
    model.load_state_dict(golden_state_dict(manifest_path), assign=True, strict=True)
    return model.eval()


def golden_images(frames: int = 3, height: int = 126, width: int = 168) -> torch.Tensor:
    """Smooth synthetic frames [frames, 3, height, width] in [0, 1], computed in torch fp32."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    out = []
    for s in range(frames):
        xs = x + 0.07 * s
        r = 0.5 + 0.5 * torch.sin(6 * xs + 3 * y)
        g = 0.5 + 0.5 * torch.cos(5 * y - 4 * xs ** 2)
        b = 0.5 + 0.5 * torch.sin(9 * xs * y + 1)
        out.append(torch.stack([r, g, b]))
    return torch.stack(out)
