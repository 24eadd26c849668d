"""Where the pixels of a source frame go in the model input, and back (pure numpy).

A source frame of H x W becomes the model input of h x w in one of two ways, both PIL resizes:

* VGGT's "crop" preprocessing (:mod:`httm_ros.vggt.preprocess`): resize to
  ``resized_size(H, W)`` = (new_h, new_w), then keep the rows ``[top, top + h)``,
  ``top = (new_h - h) // 2`` (0 unless the resized frame is taller than it is wide);
* a plain resize to (h, w) (the node's ``size_change_policy: rescale`` of a frame whose aspect
  ratio maps to another model input than the stream's).

A PIL resize aligns pixel centres, and pixel centres are at integer coordinates (ROS / OpenCV
convention: (0, 0) is the centre of the top-left pixel), so with ``sx = new_w / W``,
``sy = new_h / H``::

    u_model = (u_src + 0.5) * sx - 0.5 - left          v_model = (v_src + 0.5) * sy - 0.5 - top
    fx' = fx * sx   cx' = (cx + 0.5) * sx - 0.5 - left  fy' = fy * sy   cy' = (cy + 0.5) * sy - 0.5 - top

so a 3D point projects with the mapped K exactly where its source pixel lands (left is 0 in both
ways). The source region the model input shows is ``[left / sx, (left + w) / sx)`` x
``[top / sy, (top + h) / sy)`` in source pixels (edges, not centres).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..vggt.preprocess import PATCH_SIZE, crop_top, model_input_size, resized_size


@dataclass(frozen=True)
class InputMapping:
    """Source frame (src_hw) -> model input (model_hw): resize to resized_hw, then keep the window
    at (top, left) of model_hw. All sizes (height, width) in pixels."""

    src_hw: Tuple[int, int]
    resized_hw: Tuple[int, int]
    model_hw: Tuple[int, int]
    top: int = 0
    left: int = 0

    @property
    def scale(self) -> Tuple[float, float]:
        """(sy, sx): resized pixels per source pixel."""
        return self.resized_hw[0] / self.src_hw[0], self.resized_hw[1] / self.src_hw[1]

    @property
    def identity(self) -> bool:
        return self.src_hw == self.model_hw and self.resized_hw == self.model_hw

    def to_model(self, uv: np.ndarray) -> np.ndarray:
        """Source pixel coordinates [..., 2] (u, v) -> model input coordinates [..., 2]."""
        uv = np.asarray(uv, dtype=np.float64)
        sy, sx = self.scale
        return np.stack([(uv[..., 0] + 0.5) * sx - 0.5 - self.left,
                         (uv[..., 1] + 0.5) * sy - 0.5 - self.top], axis=-1)

    def to_source(self, uv: np.ndarray) -> np.ndarray:
        """Model input coordinates [..., 2] (u, v) -> source pixel coordinates [..., 2]."""
        uv = np.asarray(uv, dtype=np.float64)
        sy, sx = self.scale
        return np.stack([(uv[..., 0] + 0.5 + self.left) / sx - 0.5,
                         (uv[..., 1] + 0.5 + self.top) / sy - 0.5], axis=-1)

    def intrinsics(self, k_src: np.ndarray) -> np.ndarray:
        """Pinhole K [3, 3] of the source frame -> K [3, 3] float64 of the model input."""
        k = np.array(k_src, dtype=np.float64).reshape(3, 3)
        sy, sx = self.scale
        out = k.copy()
        out[0, 0], out[0, 1] = k[0, 0] * sx, k[0, 1] * sx
        out[1, 1] = k[1, 1] * sy
        out[0, 2] = (k[0, 2] + 0.5) * sx - 0.5 - self.left
        out[1, 2] = (k[1, 2] + 0.5) * sy - 0.5 - self.top
        return out

    def source_region(self) -> Tuple[float, float, float, float]:
        """(x_offset, y_offset, width, height) of the source area the model input shows, in source
        pixels (pixel edges; may be fractional for a crop)."""
        sy, sx = self.scale
        return self.left / sx, self.top / sy, self.model_hw[1] / sx, self.model_hw[0] / sy

    def resample(self, image: np.ndarray) -> np.ndarray:
        """A source-sized map [H, W] (e.g. depth) -> [h, w] by nearest neighbour (no mixing of
        values across edges or holes): each model pixel takes the source pixel its centre falls in."""
        image = np.asarray(image)
        if image.shape[:2] != tuple(self.src_hw):
            raise ValueError(f"expected a {self.src_hw[1]}x{self.src_hw[0]} map, got {image.shape[1]}x{image.shape[0]}")
        h, w = self.model_hw
        grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1)        # [h, w, 2] (u, v)
        src = np.floor(self.to_source(grid) + 0.5).astype(np.int64)              # nearest source pixel
        cols = np.clip(src[..., 0], 0, self.src_hw[1] - 1)
        rows = np.clip(src[..., 1], 0, self.src_hw[0] - 1)
        return image[rows, cols]


def input_mapping(src_hw: Tuple[int, int], model_hw: Tuple[int, int],
                  image_width: Optional[int]) -> InputMapping:
    """How a frame of ``src_hw`` becomes the model input ``model_hw`` of a stream at
    ``image_width``: VGGT's crop preprocessing when it gives ``model_hw``, else a plain resize."""
    src_hw, model_hw = (int(src_hw[0]), int(src_hw[1])), (int(model_hw[0]), int(model_hw[1]))
    plain = InputMapping(src_hw, model_hw, model_hw)
    if image_width is None or src_hw == model_hw:
        return plain
    try:
        crop_hw = model_input_size(src_hw[0], src_hw[1], "crop", image_width, PATCH_SIZE)
    except ValueError:
        return plain
    if crop_hw != model_hw:
        return plain
    new_h, new_w = resized_size(src_hw[0], src_hw[1], "crop", image_width, PATCH_SIZE)
    return InputMapping(src_hw, (new_h, new_w), model_hw, top=crop_top(new_h, image_width))
