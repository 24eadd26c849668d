"""What the demo runs, by machine: the synthetic sequence, the model and the node's window parameters."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from ..params_yaml import yaml_value


@dataclass
class Settings:
    """What the demo runs: the synthetic sequence, the model and the node's window parameters."""

    frames: int
    width: int
    height: int
    model_config: str
    image_size: int
    window_size: int
    window_overlap: int
    keyframe_policy: str
    device: str
    checkpoint: Optional[str]
    rate: float


def choose_settings(cuda: bool, checkpoint: Optional[str]) -> Settings:
    """Defaults by machine: the real size on CUDA, small ones on a CPU (see httm_ros.tools.demo)."""
    if cuda:
        return Settings(120, 518, 392, "1b", 518, 16, 6, "motion", "cuda", checkpoint, 1.0)
    if checkpoint:
        return Settings(40, 224, 168, "1b", 224, 6, 2, "motion", "cpu", checkpoint, 1.0)
    return Settings(60, 224, 168, "tiny", 224, 6, 2, "motion", "cpu", None, 1.0)


def apply_overrides(s: Settings, args: argparse.Namespace) -> None:
    """The command line's --frames, --size, --device ... over the defaults (in place)."""
    for name in ("frames", "model_config", "window_size", "window_overlap", "rate"):
        value = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    if args.size is not None:
        s.width = s.image_size = args.size
        s.height = round(args.size * 0.75 / 14) * 14
    if args.device and args.device != "auto":
        s.device = args.device


def describe(s: Settings) -> str:
    """One line about what runs and why it is that size."""
    model = "VGGT-1B" if s.model_config == "1b" else "the tiny test network"
    text = f"{model} on {s.device} at {s.width}x{s.height}, {s.frames} frames, windows of {s.window_size} " \
           f"keyframes (overlap {s.window_overlap})"
    if s.device == "cpu" and s.model_config == "tiny":
        text += "; CPU without a checkpoint: small and fast (--model-config 1b for the VGGT-1B architecture, " \
                "about a minute per window here)"
    elif s.device == "cpu":
        text += "; on a CPU VGGT-1B takes about a minute per window"
    return text


def node_params(s: Settings, frames: int) -> Dict[str, object]:
    """The demo's parameters on top of config/reconstruct.yaml (written to demo_params.yaml)."""
    return {"model_config": s.model_config, "image_size": s.image_size, "window_size": s.window_size,
            "window_overlap": s.window_overlap, "keyframe_policy": s.keyframe_policy,
            "qos_reliability": "reliable", "qos_depth": max(10, frames), "queue_size": max(32, frames),
            "diagnostics_period": 0.25}


def write_params_file(path: Path, values: Dict[str, object]) -> Path:
    """A ROS 2 params file for reconstruct_node."""
    lines = ["# reconstruct_node parameters of the demo (httm-demo), applied after config/reconstruct.yaml",
             "/**:", "  ros__parameters:"] + [f"    {k}: {yaml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
