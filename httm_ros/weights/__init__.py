"""Weights shipped with the package: httm-vggt-synth (trained by ``httm-train`` on synthetic rooms
only; NOT VGGT-1B), its model card ``httm-vggt-synth.json`` and training log/curves.

``synth_weights()`` is the path of the safetensors file, or None until a training run has put it
here (copy ``httm-vggt-synth.safetensors``, ``httm-vggt-synth.json``, ``train_log.json`` and
``train_curves.png`` from the run's --out folder). ``synth_merge_weights()``: httm-vggt-synth-merge,
the same network fine-tuned with HTTM merging (README.md, runs 7-8), whose card runs it merged.
Load with ``VGGT.from_checkpoint(path)`` (the config travels in the file) and take the input size
from ``httm_ros.vggt.checkpoint.checkpoint_image_hw(path)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

FOLDER = Path(__file__).resolve().parent
SYNTH_NAME = "httm-vggt-synth"
SYNTH_MERGE_NAME = "httm-vggt-synth-merge"


def synth_weights() -> Optional[Path]:
    """Path of httm-vggt-synth.safetensors in this folder, None if it is not there (yet)."""
    return _shipped(SYNTH_NAME)


def synth_merge_weights() -> Optional[Path]:
    """Path of httm-vggt-synth-merge.safetensors in this folder, None if it is not there."""
    return _shipped(SYNTH_MERGE_NAME)


def _shipped(name: str) -> Optional[Path]:
    path = FOLDER / f"{name}.safetensors"
    return path if path.is_file() else None
