"""Our own weight-compatible VGGT-1B (Visual Geometry Grounded Transformer) in PyTorch."""

from .config import VGGTConfig
from .layers import Attention, TokenLayout
from .model import VGGT
from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["VGGT", "VGGTConfig", "TokenLayout", "Attention", "load_checkpoint", "CheckpointError"]
