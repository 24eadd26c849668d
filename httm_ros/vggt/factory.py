"""Building a ready-to-run VGGT: configuration by name, device choice, and weights.

One place for what every entry point needs (``httm-reconstruct``, the ROS node, the benchmarks):
a real checkpoint, or - only when explicitly allowed - deterministic test weights, which make
every stage run but give meaningless geometry.
"""

from __future__ import annotations

import logging
import warnings
from typing import Optional, Union

import torch

from .checkpoint import CheckpointError, checkpoint_config
from .config import PRESETS, VGGTConfig
from .golden import golden_state_dict
from .model import VGGT

LOG = logging.getLogger("httm_ros.vggt")

CONFIG_NAMES = tuple(PRESETS)
WEIGHTS_HELP = (
    "Download the official checkpoint (Hugging Face facebook/VGGT-1B, file model.safetensors, "
    "~5 GB, CC BY-NC 4.0; facebook/VGGT-1B-Commercial for commercial use) and pass its path."
)


def config_by_name(name: Union[str, VGGTConfig]) -> VGGTConfig:
    """A preset name of ``VGGTConfig.preset`` ("1b", "tiny", "synth"); a VGGTConfig passes through."""
    if isinstance(name, VGGTConfig):
        return name
    return VGGTConfig.preset(name)


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; an unavailable cuda falls back to cpu with a warning."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device {device!r} requested but CUDA is not available: running on CPU (slow)")
        return torch.device("cpu")
    return dev


TEST_WEIGHTS_FOV = 1.0            # radians: field of view the test weights' camera head predicts
_FOV_ROWS = slice(7, 9)           # pose encoding [t (3), quaternion (4), fov_h, fov_w]
_FOV_WEIGHT_SCALE = 0.01          # what is left of the golden rows: FoV varies a little per frame


def deterministic_weights(model: VGGT) -> dict:
    """Deterministic weights for ``model``'s parameter names and shapes: the GOLDEN.md rules, then
    arranged so that the cameras are finite (still meaningless).

    With the golden rules alone the camera head's FoV outputs (ReLU) are often 0, i.e. infinite
    focal lengths, and every streaming window would be rejected as non-finite. So the final layer's
    two FoV rows (``camera_head.pose_branch.fc2``, outputs 7 and 8) are scaled down to
    ``_FOV_WEIGHT_SCALE`` of their golden values and their biases set so that the refinement
    iterations, which add up their deltas, arrive near ``TEST_WEIGHTS_FOV`` (~57 degrees).
    The golden test uses ``golden_state_dict`` directly and is not affected.
    """
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    weights = golden_state_dict(shapes)
    head = getattr(model, "camera_head", None)
    key = "camera_head.pose_branch.fc2"
    if head is not None and f"{key}.weight" in weights:
        weights[f"{key}.weight"][_FOV_ROWS] *= _FOV_WEIGHT_SCALE
        weights[f"{key}.bias"][_FOV_ROWS] = TEST_WEIGHTS_FOV / head.iterations
    return weights


def build_model(config: Union[str, VGGTConfig] = "1b", weights: Optional[str] = None,
                allow_test_weights: bool = False, device: str = "auto") -> VGGT:
    """A VGGT in eval mode on ``device`` with ``weights`` (a .safetensors/.pt checkpoint).

    A checkpoint that carries its config (``save_checkpoint``) is built with that config.

    Without ``weights`` this raises CheckpointError unless ``allow_test_weights``; then it loads
    deterministic weights and logs a loud warning that the geometry is meaningless.
    """
    cfg = config_by_name(config)
    dev = resolve_device(device)
    if weights:
        stored = checkpoint_config(weights)
        if stored is not None and stored != cfg:
            LOG.info("%s carries its own model config; using it instead of %r", weights, config)
        return VGGT.from_checkpoint(weights, stored or cfg, device=dev)
    if not allow_test_weights:
        raise CheckpointError(f"no checkpoint given. {WEIGHTS_HELP}")
    LOG.warning("NO CHECKPOINT: running with deterministic test weights; every stage runs but the "
                "geometry (depth, poses, points) is MEANINGLESS. %s", WEIGHTS_HELP)
    with torch.device("meta"):
        model = VGGT(cfg)
    model.load_state_dict(deterministic_weights(model), assign=True)
    return model.to(dev).eval()
