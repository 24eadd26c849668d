"""What a training run leaves in --out: the fp16 weights with their model card, train_log.json and
train_curves.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..vggt.checkpoint import model_card_path, save_checkpoint

MODEL_NAME = "httm-vggt-synth"
STATEMENT = ("Trained on synthetic rooms only (procedurally textured boxes rendered by httm_ros.synthetic); "
             "this is NOT VGGT-1B and has no real-world knowledge. For demos, tests and measuring the "
             "accuracy cost of token merging on trained attention.")


def loss_summary(log: List[Dict], window: int = 20) -> Dict:
    """First / last / min of the loss parts, each smoothed over ``window`` log entries."""
    if not log:
        return {}
    out = {}
    keys = [k for k in log[0] if k not in ("step", "lr", "elapsed_s", "frames_per_s", "steps_per_s", "frames",
                                           "seen_frames")]
    for key in keys:
        vals = np.array([e[key] for e in log if key in e], dtype=np.float64)
        w = min(window, len(vals))
        smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
        out[key] = {"first": float(smooth[0]), "last": float(smooth[-1]), "min": float(smooth.min())}
    return out


def write_log(path: Path, log: List[Dict], meta: Dict) -> None:
    path.write_text(json.dumps({"meta": meta, "entries": log}, indent=None, separators=(",", ":")))


def plot_curves(path: Path, log: List[Dict]) -> Optional[Path]:
    """Loss parts and lr against step (log scale); None (with a printed note) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("train_curves.png skipped: matplotlib is not installed", flush=True)
        return None
    steps = [e["step"] for e in log]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for key in ("loss", "camera", "depth", "points", "match", "flow"):  # points / match / flow: when trained
        if all(key in e for e in log):
            axes[0].plot(steps, [e[key] for e in log], label=key, lw=0.8)
    for key in ("cam_t", "cam_q", "cam_fov", "depth_reg", "depth_grad"):
        axes[1].plot(steps, [e[key] for e in log], label=key, lw=0.8)
    for ax in axes[:2]:
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("step")
        ax.legend()
    axes[0].set_title("loss (weighted) and parts")
    axes[1].set_title("camera / depth terms")
    axes[2].plot(steps, [e["lr"] for e in log])
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("step")
    for key, label in (("rot_err_deg", "network"), ("rot_identity_deg", "no rotation")):
        rot = [(e["step"], e[key]) for e in log if key in e]
        if rot:
            axes[3].plot(*zip(*rot), lw=0.8, label=label)
    if axes[3].lines:
        axes[3].legend()
    axes[3].set_title("training batch: mean camera rotation error (deg)")
    axes[3].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _clean(value):
    """NaN -> None for strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def status_text(training: Dict, heldout: Optional[Dict]) -> str:
    """One honest paragraph: targets met or missed with the numbers, the baselines, the run's extent."""
    run = (f"{training.get('steps')} steps ({'complete' if training.get('complete') else 'schedule not complete'}), "
           f"{training.get('seen_frames')} training frames, {training.get('elapsed_s')} s on {training.get('device')}")
    if not heldout:
        return f"No held-out evaluation. Run: {run}."
    summary, targets, met = heldout["summary"], heldout["targets"], heldout["met"]
    missed = [k for k, ok in met.items() if not ok]
    parts = [f"{k} {summary[k]:.3g} (target {targets[k]}: {'met' if met[k] else 'MISSED'})" for k in met]
    head = ("All issue-15 held-out targets met" if not missed else
            f"Issue-15 held-out targets MISSED ({len(missed)} of {len(met)}: {', '.join(missed)})")
    text = f"{head}: " + "; ".join(parts) + f". Run: {run}."
    base = heldout.get("baselines")
    if base:
        text += (f" Baselines of a network ignoring the images: constant depth abs_rel "
                 f"{base['abs_rel_constant_depth']:.3g}, identity rotations "
                 f"{base['rot_err_median_deg_identity']:.3g} deg"
                 + (" (the model's rotation error is no better: it has not learned camera rotation)"
                    if summary["rot_err_median_deg"] >= 0.9 * base["rot_err_median_deg_identity"] else "") + ".")
    return text


def write_model(out: Path, model, image_hw, training: Dict, heldout: Optional[Dict]) -> Path:
    """``<out>/httm-vggt-synth.safetensors`` (fp16, config in the metadata) and its model card."""
    weights = save_checkpoint(model, out / f"{MODEL_NAME}.safetensors",
                              metadata={"name": MODEL_NAME, "image_hw": json.dumps(list(image_hw))})
    card = {
        "name": MODEL_NAME,
        "statement": STATEMENT,
        "status": status_text(training, heldout),
        "targets_met": bool(heldout) and all(heldout["met"].values()),
        "image_hw": [int(image_hw[0]), int(image_hw[1])],
        "weights": weights.name,
        "dtype": "float16",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "config": model.config.to_dict(),
        "data": ("httm_ros.synthetic rooms: random room sizes, 0-10 central and 0-12 wall boxes (incl. "
                 "slabs/planks/pillars), 6 procedural texture kinds at varied scales, varied light "
                 "direction/ambient/diffuse; paths orbit/walk/forward/random/pan/rotate with optional "
                 "hand-held shake; 2-24 frames; horizontal FoV 50-90 deg; principal point at the centre"),
        "heads": "camera and depth trained; the point head is trained only if training.point_weight > 0",
        "training": training,
        "heldout": heldout,
        "log": "train_log.json",
        "curves": "train_curves.png",
    }
    model_card_path(weights).write_text(json.dumps(_clean(card), indent=1))
    return weights
