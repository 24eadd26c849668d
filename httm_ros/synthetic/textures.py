"""Procedural textures evaluated on surface coordinates (metres), vectorised in torch.

A :class:`Texture` maps 2D surface coordinates ``uv [N,2]`` to linear RGB ``[N,3]`` in [0,1].
Kinds: checkers, tiles (checkers with a random colour per cell), stripes, noise (fractal value
noise through a palette), gradient (a triangle-wave blend of two colours plus noise) and bricks
(per-brick tint, mortar lines). Every texture also gets a fine grain so that no region is
perfectly flat (image matching needs texture everywhere, as in real images).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from typing import Tuple

import numpy as np
import torch

KINDS = ("checkers", "tiles", "stripes", "noise", "gradient", "bricks")
_MASK32 = 0xFFFFFFFF


def hash2(ix: torch.Tensor, iy: torch.Tensor, seed: int) -> torch.Tensor:
    """Integer lattice hash -> float in [0,1) (int64 inputs of equal shape)."""
    h = (ix * 374761393 + iy * 668265263 + (seed * 982451653 & _MASK32)) & _MASK32
    h = ((h ^ (h >> 13)) * 1274126177) & _MASK32
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).to(torch.float32) / float(1 << 24)


def value_noise(uv: torch.Tensor, seed: int) -> torch.Tensor:
    """Smooth value noise at lattice spacing 1: uv [N,2] -> [N] in [0,1]."""
    base = torch.floor(uv)
    frac = uv - base
    i = base.to(torch.int64)
    w = frac * frac * (3 - 2 * frac)                                    # smoothstep
    ix, iy = i[:, 0], i[:, 1]
    n00, n10 = hash2(ix, iy, seed), hash2(ix + 1, iy, seed)
    n01, n11 = hash2(ix, iy + 1, seed), hash2(ix + 1, iy + 1, seed)
    wx, wy = w[:, 0], w[:, 1]
    return (n00 * (1 - wx) + n10 * wx) * (1 - wy) + (n01 * (1 - wx) + n11 * wx) * wy


def fractal_noise(uv: torch.Tensor, seed: int, octaves: int = 3) -> torch.Tensor:
    """Sum of value-noise octaves (frequency x2, amplitude /2): [N,2] -> [N] in [0,1]."""
    total, amp, norm = torch.zeros(uv.shape[0], dtype=uv.dtype, device=uv.device), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(uv * (2.0 ** o), seed + 101 * o)
        norm += amp
        amp *= 0.5
    return total / norm


def random_palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """n saturated, well separated colours [n,3] in [0,1] (random hues spread around the circle)."""
    hue0 = rng.uniform()
    hues = (hue0 + np.arange(n) / n + rng.uniform(-0.08, 0.08, n)) % 1.0
    cols = [colorsys.hsv_to_rgb(h, rng.uniform(0.45, 0.95), rng.uniform(0.45, 1.0)) for h in hues]
    return np.array(cols, dtype=np.float32)


@dataclass
class Texture:
    """Parameters of one procedural texture.

    kind: one of :data:`KINDS`; palette [P,3] colours in [0,1]; period: main pattern size (m);
    angle: pattern rotation (rad); offset: uv offset (m) to decorrelate surfaces; seed: noise seed.
    """

    kind: str
    palette: np.ndarray
    period: float = 0.5
    angle: float = 0.0
    offset: Tuple[float, float] = (0.0, 0.0)
    seed: int = 0
    grain: float = 0.12
    _palette_t: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Texture.kind must be one of {KINDS}, got {self.kind!r}")

    def _on(self, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """palette [P,3], rotation [2,2], offset [2] (float32) on ``device``, cached; copied to a
        CUDA device through pinned memory without a host sync."""
        key = str(device)
        if key not in self._palette_t:
            c, s = math.cos(self.angle), math.sin(self.angle)
            host = (np.asarray(self.palette, dtype=np.float32), np.array([[c, -s], [s, c]], dtype=np.float32),
                    np.asarray(self.offset, dtype=np.float32))
            tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in host]
            if torch.device(device).type == "cuda":
                tensors = [t.pin_memory().to(device, non_blocking=True) for t in tensors]
            self._palette_t[key] = tuple(t.to(device) for t in tensors)
        return self._palette_t[key]

    def palette_on(self, device) -> torch.Tensor:
        return self._on(device)[0]

    def __call__(self, uv: torch.Tensor) -> torch.Tensor:
        """uv [N,2] metres -> rgb [N,3] in [0,1]."""
        _, rot, offset = self._on(uv.device)
        p = (uv + offset.to(uv.dtype)) @ rot.to(uv.dtype) / self.period
        rgb = getattr(self, "_" + self.kind)(p)
        grain = value_noise(p * 6.0, self.seed + 7) - 0.5                # fine detail everywhere
        return (rgb * (1.0 + self.grain * 2 * grain[:, None])).clamp(0, 1)

    # Each pattern takes p [N,2] in units of the period and returns rgb [N,3].
    def _checkers(self, p: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(p).to(torch.int64)
        idx = (cell[:, 0] + cell[:, 1]) % 2
        return self.palette_on(p.device)[idx]

    def _tiles(self, p: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(p).to(torch.int64)
        pal = self.palette_on(p.device)
        idx = (hash2(cell[:, 0], cell[:, 1], self.seed) * len(pal)).long().clamp_max(len(pal) - 1)
        frac = p - torch.floor(p)
        edge = torch.minimum(frac, 1 - frac).amin(dim=1) < 0.04            # grout lines
        rgb = pal[idx]
        return torch.where(edge[:, None], rgb * 0.35, rgb)

    def _stripes(self, p: torch.Tensor) -> torch.Tensor:
        pal = self.palette_on(p.device)
        idx = torch.floor(p[:, 0]).to(torch.int64) % len(pal)
        return pal[idx]

    def _noise(self, p: torch.Tensor) -> torch.Tensor:
        pal = self.palette_on(p.device)
        n = fractal_noise(p, self.seed, octaves=4)
        x = ((n - 0.25) / 0.5).clamp(0, 1) * (len(pal) - 1)                # palette ramp
        lo = torch.floor(x).long().clamp_max(len(pal) - 2)
        w = (x - lo)[:, None]
        return pal[lo] * (1 - w) + pal[lo + 1] * w

    def _gradient(self, p: torch.Tensor) -> torch.Tensor:
        pal = self.palette_on(p.device)
        tri = torch.abs(torch.remainder(p[:, 0] / 4.0, 2.0) - 1.0)[:, None]  # period 8 periods
        blotch = fractal_noise(p * 1.5, self.seed, octaves=2)[:, None] - 0.5
        return pal[0] * (1 - tri) + pal[1] * tri + 0.35 * blotch

    def _bricks(self, p: torch.Tensor) -> torch.Tensor:
        pal = self.palette_on(p.device)
        row = torch.floor(p[:, 1] * 2.0)                                  # bricks half a period high
        x = p[:, 0] + 0.5 * torch.remainder(row, 2.0)                     # staggered rows
        col = torch.floor(x)
        fx, fy = x - col, p[:, 1] * 2.0 - row
        mortar = (torch.minimum(fx, 1 - fx) < 0.04) | (torch.minimum(fy, 1 - fy) < 0.08)
        tint = hash2(col.long(), row.long(), self.seed)[:, None]
        brick = pal[0] * (0.7 + 0.6 * tint) + (pal[1] - pal[0]) * 0.3 * (tint > 0.8)
        return torch.where(mortar[:, None], pal[-1] * 0.4 + 0.5, brick)


def random_texture(rng: np.random.Generator, kind: str | None = None,
                   period_range: Tuple[float, float] = (0.15, 0.6)) -> Texture:
    """A random texture of the given (or a random) kind with a random palette and orientation."""
    kind = kind or KINDS[rng.integers(len(KINDS))]
    npal = {"checkers": 2, "tiles": 5, "stripes": int(rng.integers(2, 5)), "noise": 3,
            "gradient": 2, "bricks": 2}[kind]
    period = float(rng.uniform(*period_range))
    if kind == "bricks":
        period = float(rng.uniform(0.25, 0.45))
    angle = float(rng.choice([0.0, math.pi / 2, rng.uniform(0, math.pi)]))
    if kind == "bricks":
        angle = 0.0
    return Texture(kind=kind, palette=random_palette(rng, npal), period=period, angle=angle,
                   offset=(float(rng.uniform(0, 10)), float(rng.uniform(0, 10))),
                   seed=int(rng.integers(1 << 30)))
