"""Configuration of the VGGT network (sizes only; the default is VGGT-1B exactly)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

_AUTOCAST_DTYPES = ("bfloat16", "float16", None)


@dataclass(frozen=True)
class VGGTConfig:
    """Sizes of a VGGT model. ``VGGTConfig()`` is VGGT-1B (facebook/VGGT-1B).

    Aggregator
        embed_dim, depth (frame/global block pairs), num_heads, mlp_ratio,
        layerscale_init (also the camera head's trunk blocks', as in VGGT), rope_frequency (base of
        the 2D RoPE).
    Patch embedding (DINOv2 ViT with registers; shares ``embed_dim``)
        patch_size, img_size (the square size ``pos_embed`` was trained at),
        dino_depth, dino_num_heads, dino_mlp_ratio, num_register_tokens
        (used both by the DINO backbone and by the aggregator's own register tokens).
    Camera head
        camera_trunk_depth, camera_num_heads, camera_mlp_ratio, camera_iterations.
        camera_base_pose: False (VGGT) sums the iterations' deltas from zero; True starts the
        estimate at a base pose encoding (no translation, identity rotation, FoV entries 1.0) and
        zero-initialises the head's last layer, so a network trained from scratch starts at a
        valid pose instead of fitting that offset first (httm-train --camera-base-pose).
    DPT heads (depth and point)
        dpt_features, dpt_out_channels (4 values), dpt_layers (4 aggregator block
        indices), dpt_hidden (channels of the last 3x3 conv), dpt_chunk_size
        (frames per head pass; None = all frames at once).
    Runtime
        cuda_autocast_dtype: dtype of the aggregator's autocast on CUDA
        ("bfloat16", "float16" or None for fp32). The camera head always runs in fp32.
        dpt_cuda_dtype: the DPT heads on CUDA: None (fp32, as VGGT) or "bfloat16"/"float16"
        (autocast, channels-last convolutions, activations in fp32; issue 14's lever, measured
        against fp32 in BENCHMARKS.md before it is used anywhere by default).
    """

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    layerscale_init: float = 0.01
    rope_frequency: float = 100.0
    num_register_tokens: int = 4

    dino_depth: int = 24
    dino_num_heads: int = 16
    dino_mlp_ratio: float = 4.0

    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_mlp_ratio: float = 4.0
    camera_iterations: int = 4
    camera_base_pose: bool = False

    dpt_features: int = 256
    dpt_out_channels: Tuple[int, int, int, int] = (256, 512, 1024, 1024)
    dpt_layers: Tuple[int, int, int, int] = (4, 11, 17, 23)
    dpt_hidden: int = 32
    dpt_chunk_size: Optional[int] = 8

    cuda_autocast_dtype: Optional[str] = "bfloat16"
    dpt_cuda_dtype: Optional[str] = None

    def __post_init__(self) -> None:
        # Normalise sequences to tuples so the frozen dataclass stays hashable.
        object.__setattr__(self, "dpt_out_channels", tuple(int(c) for c in self.dpt_out_channels))
        object.__setattr__(self, "dpt_layers", tuple(int(i) for i in self.dpt_layers))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        positive = (
            "img_size", "patch_size", "embed_dim", "depth", "num_heads", "dino_depth",
            "dino_num_heads", "camera_trunk_depth", "camera_num_heads", "camera_iterations",
            "dpt_features", "dpt_hidden",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"VGGTConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_register_tokens, int) or self.num_register_tokens < 0:
            raise ValueError(f"VGGTConfig.num_register_tokens must be an int >= 0, got {self.num_register_tokens!r}")
        for name in ("mlp_ratio", "dino_mlp_ratio", "camera_mlp_ratio", "rope_frequency"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VGGTConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size ({self.img_size}) must be a multiple of patch_size ({self.patch_size})")
        self._check_heads("num_heads", self.embed_dim, self.num_heads, rope=True)
        self._check_heads("dino_num_heads", self.embed_dim, self.dino_num_heads, rope=False)
        self._check_heads("camera_num_heads", 2 * self.embed_dim, self.camera_num_heads, rope=False)
        if len(self.dpt_out_channels) != 4 or min(self.dpt_out_channels) <= 0:
            raise ValueError(f"dpt_out_channels must be 4 positive ints, got {self.dpt_out_channels}")
        if len(self.dpt_layers) != 4:
            raise ValueError(f"dpt_layers must hold 4 block indices, got {self.dpt_layers}")
        bad = [i for i in self.dpt_layers if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"dpt_layers {bad} outside the aggregator's blocks 0..{self.depth - 1}")
        if self.dpt_features % 2:
            raise ValueError(f"dpt_features must be even (half feeds output_conv1), got {self.dpt_features}")
        if self.dpt_chunk_size is not None and (not isinstance(self.dpt_chunk_size, int) or self.dpt_chunk_size <= 0):
            raise ValueError(f"dpt_chunk_size must be a positive int or None, got {self.dpt_chunk_size!r}")
        if not isinstance(self.camera_base_pose, bool):
            raise ValueError(f"camera_base_pose must be a bool, got {self.camera_base_pose!r}")
        for name in ("cuda_autocast_dtype", "dpt_cuda_dtype"):
            if getattr(self, name) not in _AUTOCAST_DTYPES:
                raise ValueError(f"{name} must be one of {_AUTOCAST_DTYPES}, got {getattr(self, name)!r}")

    @staticmethod
    def _check_heads(name: str, dim: int, heads: int, rope: bool) -> None:
        if dim % heads:
            raise ValueError(f"{name}={heads} does not divide the width {dim}")
        if rope and (dim // heads) % 4:
            raise ValueError(f"2D RoPE needs a head dim divisible by 4; {dim}/{name}={dim // heads}")

    # ---------------------------------------------------------------- variants
    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def patch_start(self) -> int:
        """Index of the first patch token in a frame: 1 camera token + the register tokens."""
        return 1 + self.num_register_tokens

    def replace(self, **changes) -> "VGGTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able fields (tuples as lists); ``VGGTConfig.from_dict`` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, fields: dict) -> "VGGTConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown VGGTConfig fields {unknown}")
        return cls(**fields)

    @classmethod
    def preset(cls, name: str, **changes) -> "VGGTConfig":
        """A named size from ``PRESETS`` ("1b", "tiny", "synth"), with optional field changes."""
        if name not in PRESETS:
            raise ValueError(f"unknown model config {name!r}; choose one of {tuple(PRESETS)}")
        return cls(**{**PRESETS[name], **changes})

    @classmethod
    def vggt_1b(cls) -> "VGGTConfig":
        return cls.preset("1b")

    @classmethod
    def tiny(cls, **changes) -> "VGGTConfig":
        """A few blocks of width 64 for fast CPU tests (not weight-compatible with anything)."""
        return cls.preset("tiny", **changes)


#: Named sizes. "1b": VGGT-1B (the defaults). "tiny": fast CPU tests. "synth": httm-vggt-synth,
#: the ~5M-parameter network trained on our synthetic rooms (``httm-train``) at 168x126 (4:3,
#: a 12x9 patch grid); its fp16 safetensors file is ~10 MiB.
PRESETS = {
    "1b": {},
    "tiny": dict(
        img_size=56, patch_size=14, embed_dim=64, depth=4, num_heads=4, num_register_tokens=4,
        dino_depth=2, dino_num_heads=4, camera_trunk_depth=1, camera_num_heads=4,
        camera_iterations=2, dpt_features=32, dpt_out_channels=(16, 32, 64, 64),
        dpt_layers=(0, 1, 2, 3), dpt_hidden=16, dpt_chunk_size=8,
    ),
    "synth": dict(
        img_size=168, patch_size=14, embed_dim=128, depth=6, num_heads=4, num_register_tokens=4,
        dino_depth=3, dino_num_heads=4, camera_trunk_depth=1, camera_num_heads=4,
        camera_iterations=4, dpt_features=48, dpt_out_channels=(32, 48, 96, 96),
        dpt_layers=(1, 3, 4, 5), dpt_hidden=16, dpt_chunk_size=8,
    ),
}

#: Input size (height, width) the "synth" preset is trained at.
SYNTH_IMAGE_HW = (126, 168)
