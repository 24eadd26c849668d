"""Our own weight-compatible VGGT-1B (Visual Geometry Grounded Transformer) in PyTorch.

Modules
    config      VGGTConfig (VGGT-1B by default; ``VGGTConfig.tiny()`` for tests)
    layers      TokenLayout, Attention (with the ``core`` hook), Block, 2D RoPE
    dino        DINOv2 ViT-L/14 + registers used as patch embedding
    aggregator  alternating frame / global attention, keeps only requested block outputs
    heads       CameraHead, DPTHead (depth, points)
    model       VGGT (forward, from_checkpoint)
    checkpoint  load_checkpoint, CheckpointError
    pose_encoding  pose encoding <-> extrinsics/intrinsics (rotations etc.: httm_ros.geometry)
    preprocess  preprocess_images, model_input_size (official crop / pad behaviour)
    golden      deterministic golden weights and images (shared/vggt/GOLDEN.md)
"""

from .config import VGGTConfig
from .layers import Attention, TokenLayout
from .model import VGGT
from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["VGGT", "VGGTConfig", "TokenLayout", "Attention", "load_checkpoint", "CheckpointError"]
