"""Image preprocessing matching the official ``load_and_preprocess_images`` (crop / pad modes).

crop: width -> target_size, height -> round(h * target/w / 14) * 14, centre-cropped to
      target_size if taller.
pad:  longer side -> target_size, other side rounded to a multiple of 14, then padded with
      white to target_size x target_size.
Resizing is PIL bicubic on uint8 RGB, as the official code does (:func:`resize_rgb`, the package's
one resize; :func:`model_input_rgb` gives one frame's model input as uint8). Frames that end up with
different sizes are padded with white to the largest (as the official code does), with a warning.
"""

from __future__ import annotations

import logging
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

LOG = logging.getLogger("httm_ros.vggt")

ImageLike = Union[np.ndarray, Image.Image]
PATCH_SIZE = 14                   # VGGT's patch edge in pixels (the default patch_size below)


def _check_args(mode: str, target_size: int, patch_size: int) -> None:
    if mode not in ("crop", "pad"):
        raise ValueError(f"mode must be 'crop' or 'pad', got {mode!r}")
    if target_size <= 0 or target_size % patch_size:
        raise ValueError(f"target_size {target_size} must be a positive multiple of {patch_size}")


def resized_size(h: int, w: int, mode: str = "crop", target_size: int = 518,
                 patch_size: int = 14) -> Tuple[int, int]:
    """(height, width) an h x w image is resized to, before any crop or pad."""
    _check_args(mode, target_size, patch_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h} (width x height)")
    if mode == "crop" or w >= h:
        new_w = target_size
        new_h = round(h * (new_w / w) / patch_size) * patch_size
    else:
        new_h = target_size
        new_w = round(w * (new_h / h) / patch_size) * patch_size
    if new_h == 0 or new_w == 0:
        raise ValueError(f"image {w}x{h} (width x height) is too elongated to resize to a multiple of {patch_size}")
    return new_h, new_w


def crop_top(new_h: int, target_size: int) -> int:
    """Rows above the centre crop of a frame resized to ``new_h`` rows ("crop" mode; 0 when it fits)."""
    return (new_h - target_size) // 2 if new_h > target_size else 0


def model_input_size(h: int, w: int, mode: str = "crop", target_size: int = 518,
                     patch_size: int = 14) -> Tuple[int, int]:
    """(H, W) of the model input an h x w frame is mapped to (one frame on its own)."""
    new_h, new_w = resized_size(h, w, mode, target_size, patch_size)
    if mode == "pad":
        return target_size, target_size
    return min(new_h, target_size), new_w


def _to_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        if image.mode == "RGBA":
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}")
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def _pad_white(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    dh, dw = height - img.shape[1], width - img.shape[2]
    if dh <= 0 and dw <= 0:
        return img
    top, left = dh // 2, dw // 2
    return F.pad(img, (left, dw - left, top, dh - top), mode="constant", value=1.0)


def resize_rgb(image: ImageLike, hw: Tuple[int, int]) -> np.ndarray:
    """The package's one image resize: RGB (HxWx3 uint8 array or PIL image) -> uint8 [hw[0], hw[1], 3].

    PIL bicubic on uint8, as the official VGGT preprocessing does.
    """
    pil = _to_pil(image)
    if (pil.height, pil.width) != tuple(hw):
        pil = pil.resize((int(hw[1]), int(hw[0])), Image.Resampling.BICUBIC)
    return np.array(pil, dtype=np.uint8)                                    # writable copy


def model_input_rgb(image: ImageLike, mode: str = "crop", target_size: int = 518,
                    patch_size: int = 14) -> np.ndarray:
    """One frame -> the model input as uint8 [H, W, 3]: :func:`resize_rgb` to :func:`resized_size`,
    then the centre crop ("crop", when taller than target_size) or white padding ("pad")."""
    _check_args(mode, target_size, patch_size)
    pil = _to_pil(image)
    new_h, new_w = resized_size(pil.height, pil.width, mode, target_size, patch_size)
    rgb = resize_rgb(pil, (new_h, new_w))                                   # [new_h, new_w, 3]
    if mode == "crop" and new_h > target_size:
        top = crop_top(new_h, target_size)
        rgb = rgb[top:top + target_size]
    if mode == "pad":
        dh, dw = target_size - new_h, target_size - new_w
        rgb = np.pad(rgb, ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)), constant_values=255)
    return np.ascontiguousarray(rgb)


def _one(image: ImageLike, mode: str, target_size: int, patch_size: int) -> torch.Tensor:
    rgb = model_input_rgb(image, mode, target_size, patch_size)
    return torch.from_numpy(rgb.astype(np.float32) / np.float32(255.0)).permute(2, 0, 1).contiguous()  # [3, H, W]


def preprocess_images(images: Sequence[ImageLike], mode: str = "crop", target_size: int = 518,
                      patch_size: int = 14) -> torch.Tensor:
    """RGB frames (HxWx3 uint8 arrays or PIL images) -> float32 [S, 3, H, W] in [0, 1]."""
    _check_args(mode, target_size, patch_size)
    if len(images) == 0:
        raise ValueError("at least one image is required")
    frames = [_one(im, mode, target_size, patch_size) for im in images]
    sizes = {tuple(f.shape[1:]) for f in frames}
    if len(sizes) > 1:
        height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
        LOG.warning("frames of different sizes %s: padding with white to %dx%d",
                    sorted(sizes), height, width)
        frames = [_pad_white(f, height, width) for f in frames]
    return torch.stack(frames)
