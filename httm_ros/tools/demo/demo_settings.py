"""What the demo runs, by machine: the synthetic sequence, the model and the node's window parameters."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from ..params_yaml import yaml_value


SYNTH_LABEL = "httm-vggt-synth (trained on synthetic rooms only; not VGGT-1B)"
SYNTH_FRAMES = 120          # 12 windows of 16 consecutive frames (overlap 6): about a minute on 2 CPU cores


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
    model: str = ""             # what a person reads: "httm-vggt-synth (...)", "VGGT-1B", ...
    window_mode: str = "chained"

    @property
    def test_weights(self) -> bool:
        return self.checkpoint is None


def choose_settings(cuda: bool, checkpoint: Optional[str], synth: Optional[Path] = None) -> Settings:
    """Defaults by machine (see httm_ros.tools.demo). ``checkpoint`` (WEIGHTS=): VGGT-1B, the real size
    on CUDA, 224 px on a CPU. Else ``synth`` (the shipped httm-vggt-synth, ``synth_weights()``): at
    its model card's size on either, with the windows its card's stream_profile was measured with
    (``measured_with``: every frame a keyframe, since the network was trained on clips of consecutive
    frames and with motion keyframes the later windows fail the overlap checks; anchored). Neither:
    deterministic test weights (VGGT-1B architecture on CUDA, the tiny network on a CPU)."""
    device = "cuda" if cuda else "cpu"
    if checkpoint:
        if cuda:
            return Settings(120, 518, 392, "1b", 518, 16, 6, "motion", "cuda", checkpoint, 1.0, "VGGT-1B")
        return Settings(40, 224, 168, "1b", 224, 6, 2, "motion", "cpu", checkpoint, 1.0, "VGGT-1B")
    if synth is not None:
        from httm_ros.vggt.checkpoint import checkpoint_image_hw, checkpoint_stream_profile

        height, width = checkpoint_image_hw(synth) or (126, 168)
        card = (checkpoint_stream_profile(synth) or {}).get("measured_with") or {}     # the card's windows
        return Settings(SYNTH_FRAMES, width, height, "synth", width, card.get("window_size", 16),
                        card.get("window_overlap", 6), card.get("keyframe_policy", "every"), device, str(synth),
                        1.0, SYNTH_LABEL, card.get("window_mode", "anchored"))
    if cuda:
        return Settings(120, 518, 392, "1b", 518, 16, 6, "motion", "cuda", None, 1.0, "VGGT-1B on TEST WEIGHTS")
    return Settings(60, 224, 168, "tiny", 224, 6, 2, "motion", "cpu", None, 1.0, "the tiny test network")


def apply_overrides(s: Settings, args: argparse.Namespace) -> None:
    """The command line's --frames, --size, --device ... over the defaults (in place)."""
    for name in ("frames", "model_config", "window_size", "window_overlap", "rate"):
        value = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    if args.model_config is not None and s.test_weights:
        s.model = "the tiny test network" if s.model_config == "tiny" else f"VGGT-{s.model_config} on TEST WEIGHTS"
    if args.size is not None:
        s.width = s.image_size = args.size
        s.height = round(args.size * 0.75 / 14) * 14
    if args.device and args.device != "auto":
        s.device = args.device


def describe(s: Settings) -> str:
    """One line about what runs and why it is that size."""
    text = f"{s.model} on {s.device} at {s.width}x{s.height}, {s.frames} frames, windows of {s.window_size} " \
           f"keyframes ({s.window_mode}, overlap {s.window_overlap}, keyframes: {s.keyframe_policy})"
    if s.device == "cpu" and s.model_config == "tiny":
        text += "; CPU without a checkpoint: small and fast (plumbing only)"
    elif s.device == "cpu" and s.model_config == "1b":
        text += "; on a CPU VGGT-1B takes about a minute per window"
    return text


def node_params(s: Settings, frames: int) -> Dict[str, object]:
    """The demo's parameters on top of config/reconstruct.yaml (written to demo_params.yaml)."""
    return {"model_config": s.model_config, "image_size": s.image_size, "window_size": s.window_size,
            "window_overlap": s.window_overlap, "keyframe_policy": s.keyframe_policy, "window_mode": s.window_mode,
            "qos_reliability": "reliable", "qos_depth": max(10, frames), "queue_size": max(32, frames),
            "diagnostics_period": 0.25}


def write_params_file(path: Path, values: Dict[str, object]) -> Path:
    """A ROS 2 params file for reconstruct_node."""
    lines = ["# reconstruct_node parameters of the demo (httm-demo), applied after config/reconstruct.yaml",
             "/**:", "  ros__parameters:"] + [f"    {k}: {yaml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
