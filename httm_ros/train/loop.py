"""The training loop of httm-vggt-synth: AdamW, warmup + cosine, bf16 autocast on CUDA, gradient
clipping, a time budget, resumable state."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..httm import HTTMConfig, patch
from ..provenance import file_sha256, git_commit
from ..vggt.config import SYNTH_IMAGE_HW, VGGTConfig
from ..vggt.model import VGGT
from .data import CLIP_FRAMES, MAX_FRAMES, MIN_FRAMES, ClipPool, frame_count_for_step, measure_renderer
from .heldout import evaluate_heldout
from .losses import (first_frame_displacement_targets, first_frame_patch_targets, identity_rotation_error_deg,
                     rotation_error_deg, training_loss)
from .outputs import loss_summary, plot_curves, write_log, write_model
from .resume import load_resume, save_resume


@dataclass
class TrainOptions:
    out: Path = Path("httm_train_out")
    config: str = "synth"
    layerscale_init: Optional[float] = None   # overrides the preset's (VGGT's 0.01 stalls relative pose from scratch)
    camera_base_pose: bool = False    # VGGTConfig.camera_base_pose: the camera head starts at a valid pose
    image_hw: Tuple[int, int] = SYNTH_IMAGE_HW
    steps: int = 4000                 # total steps of the schedule (across resumed calls)
    schedule_s: Optional[float] = None  # if set: cosine over this many seconds of training instead
    batch_frames: int = 192           # frames per step (sequences of one frame count each)
    lr: float = 4e-4
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.05
    clip_grad: float = 1.0
    camera_weight: float = 5.0
    camera_loss: str = "l1"           # "l1" (VGGT's released code) or "huber" (run 1: a constant pose)
    camera_delta: float = 0.1         # the Huber loss's threshold (camera_loss "huber")
    depth_weight: float = 1.0
    point_weight: float = 0.0
    match_weight: float = 0.0         # correspondence-to-first-frame InfoNCE (losses.correspondence_loss)
    match_layer: int = 1              # aggregator block whose patch tokens it trains
    flow_weight: float = 0.0          # displacement to the first-frame match (losses.displacement_loss)
    flow_layer: int = 3               # aggregator block whose patch tokens carry it (channels FLOW_CHANNELS)
    seed: int = 0
    device: str = "auto"
    time_budget_s: Optional[float] = None
    resume: Optional[str] = None
    init_weights: Optional[str] = None  # start from a checkpoint's weights and config (new optimizer and schedule)
    pool_size: int = 48
    reuse: int = 8                    # window-frames served per rendered frame (on average)
    clip_frames: int = CLIP_FRAMES
    curriculum_frames: int = 8        # longest window at step 0; grows linearly to 24 ...
    curriculum_frac: float = 0.25     # ... over this share of the schedule (0: 2..24 from the start)
    workers: int = -1                 # processes building scenes/paths ahead (-1: 6 on CUDA, 0 on CPU)
    log_every: int = 10
    print_every_s: float = 30.0
    heldout: int = 8
    heldout_frames: int = 16
    merge: str = "none"               # "httm": merging (the paper's HTTMConfig, torch path) in a share of the steps
    merge_frac: float = 0.5           # ... this share (the rest dense, so the network stays a dense one too)
    argv: list = field(default_factory=lambda: list(sys.argv))

    def __post_init__(self) -> None:
        errors = option_errors(self)
        if errors:
            raise ValueError("invalid training options: " + "; ".join(errors))


#: Channels of the global-attention half of a block's patch tokens that ``--flow-weight`` asks for
#: the displacement (x, y) to the first-frame match: a read-out without parameters, so the weights
#: file and VGGT.from_checkpoint stay as they are.
FLOW_CHANNELS = (0, 2)

_AT_LEAST = {"steps": 1, "batch_frames": MIN_FRAMES, "warmup": 0, "pool_size": 1, "reuse": 1,
             "clip_frames": MIN_FRAMES, "workers": -1, "log_every": 1, "heldout": 1, "heldout_frames": MIN_FRAMES,
             "weight_decay": 0.0, "camera_weight": 0.0, "depth_weight": 0.0, "point_weight": 0.0,
             "match_weight": 0.0, "flow_weight": 0.0, "curriculum_frac": 0.0, "min_lr_ratio": 0.0}
_POSITIVE = ("lr", "clip_grad", "print_every_s", "time_budget_s", "schedule_s", "layerscale_init", "camera_delta")


def option_errors(opts: "TrainOptions") -> List[str]:
    """What is out of range in ``opts`` (one message per option, named as the CLI names it)."""
    def name(key: str) -> str:
        return "--" + key.replace("_", "-")

    errors = [f"{name(k)} must be >= {low}, got {getattr(opts, k)}" for k, low in _AT_LEAST.items()
              if getattr(opts, k) < low]
    errors += [f"{name(k)} must be > 0, got {getattr(opts, k)}" for k in _POSITIVE
               if getattr(opts, k) is not None and not getattr(opts, k) > 0]
    errors += [f"{name(k)} must be <= 1, got {getattr(opts, k)}" for k in ("curriculum_frac", "min_lr_ratio")
               if getattr(opts, k) > 1]
    if not MIN_FRAMES <= opts.curriculum_frames <= MAX_FRAMES:
        errors.append(f"--curriculum-frames must be in {MIN_FRAMES}..{MAX_FRAMES}, got {opts.curriculum_frames}")
    if opts.init_weights and opts.resume:
        errors.append("--init-weights and --resume exclude each other (a resume state has its own weights)")
    if opts.init_weights and (opts.layerscale_init is not None or opts.camera_base_pose):
        errors.append("--init-weights takes the network's config from the checkpoint: drop --layerscale-init "
                      "and --camera-base-pose")
    if opts.merge not in ("none", "httm"):
        errors.append(f"--merge must be none or httm, got {opts.merge!r}")
    if not 0.0 <= opts.merge_frac <= 1.0:
        errors.append(f"--merge-frac must be in [0, 1], got {opts.merge_frac}")
    if opts.camera_loss not in ("l1", "huber"):
        errors.append(f"--camera-loss must be l1 or huber, got {opts.camera_loss!r}")
    return errors


def smoke_options(out: Path, **changes) -> TrainOptions:
    """A few steps of the tiny network at 56x42 on CPU (CI)."""
    base = dict(out=Path(out), config="tiny", image_hw=(42, 56), steps=4, batch_frames=8, warmup=1,
                device="cpu", pool_size=2, reuse=8, clip_frames=8, log_every=1, heldout=2, heldout_frames=4,
                curriculum_frac=0.0)
    base.update(changes)
    return TrainOptions(**base)


def lr_at(step: int, opts: TrainOptions, trained_s: float = 0.0) -> float:
    """Linear warmup, then cosine from lr to lr * min_lr_ratio at opts.steps (or, with
    opts.schedule_s, after that many seconds of training: robust to an unknown step time)."""
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    if opts.schedule_s:
        frac = min(1.0, trained_s / opts.schedule_s)
    else:
        frac = min(1.0, (step - opts.warmup) / max(1, opts.steps - opts.warmup))
    return opts.lr * (opts.min_lr_ratio + (1 - opts.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def max_frames_at(step: int, opts: TrainOptions, trained_s: float = 0.0) -> int:
    """Curriculum: the longest window grows from opts.curriculum_frames to MAX_FRAMES over the first
    opts.curriculum_frac of the schedule (steps, or seconds with opts.schedule_s)."""
    if opts.curriculum_frac <= 0:
        return MAX_FRAMES
    frac = trained_s / opts.schedule_s if opts.schedule_s else step / max(1, opts.steps)
    ramp = min(1.0, frac / opts.curriculum_frac)
    return int(round(opts.curriculum_frames + ramp * (MAX_FRAMES - opts.curriculum_frames)))


def make_optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, tokens and position tables (1-d or token params)."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        no_decay = p.dim() < 2 or "token" in name or "pos_embed" in name
        (plain if no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.95), eps=1e-8)


def forward_train(model: VGGT, images: torch.Tensor, point_head: bool = False,
                  match_layer: Optional[int] = None, flow_layer: Optional[int] = None) -> Dict:
    """images [B,S,3,H,W] -> pose_history (every camera-head iteration), depth [B,S,H,W,1], depth_conf
    (and match_tokens [B,S,h*w,2C], the patch tokens of block ``match_layer``; flow [B,S,h*w,2],
    channels FLOW_CHANNELS of block ``flow_layer``'s patch tokens; each when its block is given).

    The aggregator runs under bf16 autocast on CUDA, the heads in fp32 (as in inference).
    """
    cfg = model.config
    asked = {name: layer for name, layer in (("match_layer", match_layer), ("flow_layer", flow_layer))
             if layer is not None}
    for name, layer in asked.items():
        if not 0 <= layer < cfg.depth:
            raise ValueError(f"{name} must be a block index in [0, {cfg.depth - 1}], got {layer}")
    keep = sorted(set(cfg.dpt_layers) | {cfg.depth - 1} | set(asked.values()))
    cuda = images.device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    with ctx:
        layers = model.aggregator(images, keep_layers=keep)
    hw = tuple(images.shape[-2:])
    ps = model.aggregator.patch_start
    with torch.autocast(images.device.type, enabled=False):
        layers = {k: v.float() for k, v in layers.items()}
        out = {"pose_history": model.camera_head(layers[cfg.depth - 1][:, :, 0])}
        out["depth"], out["depth_conf"] = model.depth_head(layers, ps, hw, None)
        if point_head:
            out["world_points"], out["world_points_conf"] = model.point_head(layers, ps, hw, None)
    if match_layer is not None:
        out["match_tokens"] = layers[match_layer][:, :, ps:]
    if flow_layer is not None:
        out["flow"] = layers[flow_layer][:, :, ps:, cfg.embed_dim + FLOW_CHANNELS[0]:cfg.embed_dim + FLOW_CHANNELS[1]]
    return out


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state(device: torch.device) -> Dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _state(model, opt, step: int, pool: ClipPool, log, opts: TrainOptions, device, seen: int, elapsed: float) -> Dict:
    """Resumable state: fp32 weights, AdamW (moments in bf16 to keep the files few), counters, RNG."""
    opt_state = opt.state_dict()
    for entry in opt_state["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in entry:
                entry[key] = entry[key].to("cpu", torch.bfloat16)
    return {"model": {k: v.detach().float().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt_state, "step": step, "clips_made": pool.clips_made, "seen_frames": seen,
            "elapsed_s": elapsed, "rng": _rng_state(device), "log": log,
            "config": model.config.to_dict(), "options": _plain_options(opts)}


def training_merge_config(opts: TrainOptions) -> Optional[HTTMConfig]:
    """The merging of ``--merge httm`` steps: the paper's ratios (the node's defaults) on the torch
    path, whose ops have gradients (the Triton kernels are forward-only); None for ``--merge none``."""
    return HTTMConfig(impl="torch") if opts.merge == "httm" else None


def _merge_for_step(model: VGGT, merging: Optional[HTTMConfig], rng: np.random.Generator, opts: TrainOptions) -> bool:
    """Merging on for this step (drawn with probability ``merge_frac``) or off; returns whether on.
    Without ``--merge`` the model is never patched (and nothing is drawn)."""
    if merging is None:
        return False
    on = bool(rng.random() < opts.merge_frac)
    patch(model, merging if on else None)
    return on


def _train_step(model: VGGT, opt: torch.optim.Optimizer, batch: Dict, opts: TrainOptions,
                cfg: VGGTConfig) -> Tuple[Dict, Dict, torch.Tensor]:
    """One optimiser step on ``batch`` -> (predictions, loss parts, gradient norm before clipping)."""
    matching, flowing = opts.match_weight > 0, opts.flow_weight > 0
    geometry = (batch["points"], batch["intrinsics"], batch["valid"], cfg.patch_size)
    if matching:
        batch["match_target"] = first_frame_patch_targets(*geometry)
    if flowing:
        batch["flow_target"], batch["flow_valid"] = first_frame_displacement_targets(*geometry)
    pred = forward_train(model, batch["images"], point_head=opts.point_weight > 0,
                         match_layer=opts.match_layer if matching else None,
                         flow_layer=opts.flow_layer if flowing else None)
    parts = training_loss(pred, batch, opts.camera_weight, opts.depth_weight, opts.point_weight,
                          huber_delta=opts.camera_delta, camera_kind=opts.camera_loss, match_weight=opts.match_weight,
                          flow_weight=opts.flow_weight)
    opt.zero_grad(set_to_none=True)
    parts["loss"].backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_grad)
    opt.step()
    return pred, parts, gnorm


def _halve_after_oom(opt: torch.optim.Optimizer, opts: TrainOptions, step: int, device: torch.device,
                     events: List[Dict]) -> int:
    """After an out-of-memory error in a step (in the forward or backward, where the memory goes,
    nothing is applied yet; the optimiser steps last): free what it left, and return half the frames
    per step (RuntimeError below MIN_FRAMES)."""
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    half = opts.batch_frames // 2
    if half < MIN_FRAMES:
        raise RuntimeError(f"out of memory at {opts.batch_frames} frames per step, the smallest batch "
                           f"({MIN_FRAMES} frames); free the device or use a smaller --config")
    _print(f"out of memory at {opts.batch_frames} frames per step (step {step}): going on with {half}")
    events.append({"step": step, "from_batch_frames": opts.batch_frames, "to_batch_frames": half})
    return half


def _plain_options(opts: TrainOptions) -> Dict:
    d = asdict(opts)
    d["out"] = str(d["out"])
    d["image_hw"] = list(d["image_hw"])
    return d


def _print(msg: str) -> None:
    print(msg, flush=True)


def _rotation_since(log: List[Dict], start: int) -> str:
    """" rot E deg (identity I)": the mean training rotation error of the entries logged since
    ``start`` beside a rotation-free prediction's on the same windows ("" if none)."""
    recent = [e for e in log[start:] if "rot_identity_deg" in e]
    if not recent:
        return ""
    return (f" rot {np.mean([e['rot_err_deg'] for e in recent]):.1f} deg "
            f"(identity {np.mean([e['rot_identity_deg'] for e in recent]):.1f})")


def train(opts: TrainOptions) -> Dict:
    """Run (or continue) training; writes the outputs in opts.out and returns the model card's
    training section plus the held-out metrics."""
    t_start = time.monotonic()
    commit = git_commit()                    # the code that runs (HEAD may move during a long run)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    device = _resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    state = load_resume(opts.resume) if opts.resume else None
    changes = {} if opts.layerscale_init is None else {"layerscale_init": opts.layerscale_init}
    if opts.camera_base_pose:
        changes["camera_base_pose"] = True
    init = None
    if opts.init_weights:
        model = VGGT.from_checkpoint(opts.init_weights).float().to(device).train()   # its config travels with it
        cfg = model.config
        init = {"path": str(opts.init_weights), "sha256": file_sha256(opts.init_weights)}
        _print(f"initialised from {init['path']} (sha256 {init['sha256'][:16]})")
    else:
        cfg = VGGTConfig.from_dict(state["config"]) if state else VGGTConfig.preset(opts.config, **changes)
        model = VGGT(cfg).to(device).train()
    opt = make_optimizer(model, opts)
    step, seen, log, before = 0, 0, [], 0.0
    if state:
        init = state.get("init_weights")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, seen, log, before = state["step"], state["seen_frames"], list(state["log"]), state["elapsed_s"]
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        _print(f"resumed from {opts.resume} at step {step} ({seen} frames seen)")
    n_params = sum(p.numel() for p in model.parameters())
    render_fps = measure_renderer(opts.image_hw, device, clips=2, frames=opts.clip_frames)
    _print(f"httm-train: {n_params / 1e6:.2f}M params, config {opts.config}, image {opts.image_hw}, device "
           f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
           f"steps {step}->{opts.steps}, batch {opts.batch_frames} frames")
    _print(f"renderer throughput: {render_fps:.0f} frames/s at {opts.image_hw[1]}x{opts.image_hw[0]} on {device}")
    workers = opts.workers if opts.workers >= 0 else (min(6, max(0, (os.cpu_count() or 1) - 2))
                                                      if device.type == "cuda" else 0)
    pool = ClipPool(opts.image_hw, device, opts.seed, opts.pool_size, opts.reuse, opts.clip_frames,
                    clips_made=state["clips_made"] if state else 0, workers=workers)
    merging = training_merge_config(opts)
    step_times, last_print, stopped = [], time.monotonic(), "steps"
    since = {"steps": 0, "frames": 0, "render_s": pool.render_seconds, "log_len": len(log)}   # since the last print
    reserve = 15.0 + 2.0 * opts.heldout                          # seconds kept for saving + held-out eval
    oom_events: List[Dict] = []                                 # batch halvings after running out of GPU memory
    while step < opts.steps:
        elapsed = time.monotonic() - t_start
        avg = float(np.mean(step_times[-20:])) if step_times else 0.0
        if opts.time_budget_s is not None and elapsed + reserve + 2 * avg > opts.time_budget_s:
            stopped = "time budget"
            break
        t0 = time.monotonic()
        rng = np.random.default_rng([opts.seed, step, 7])
        trained_s = before + time.monotonic() - t_start
        frames = frame_count_for_step(rng, max_frames_at(step, opts, trained_s))
        batch = pool.batch(rng, frames, max(1, opts.batch_frames // frames))
        lr = lr_at(step, opts, trained_s)
        for group in opt.param_groups:
            group["lr"] = lr
        merged = _merge_for_step(model, merging, rng, opts)
        try:
            pred, parts, gnorm = _train_step(model, opt, batch, opts, cfg)
            oom = False
        except torch.OutOfMemoryError:
            oom = True                        # handled outside the except: its traceback holds the tensors
        if oom:
            batch = None
            opts.batch_frames = _halve_after_oom(opt, opts, step, device, oom_events)
            continue                          # the same step again (its rng is the step's), half the frames
        step += 1
        n_frames = int(batch["images"].shape[0] * frames)
        seen += n_frames
        if step % opts.log_every == 0 or step == opts.steps:
            entry = {k: float(v.detach()) for k, v in parts.items()}
            entry["rot_err_deg"] = float(rotation_error_deg(pred["pose_history"][-1].detach(), batch["pose_enc"]))
            entry["rot_identity_deg"] = float(identity_rotation_error_deg(batch["pose_enc"]))
            dt = time.monotonic() - t0
            entry.update(step=step, lr=lr, frames=frames, merged=merged, grad_norm=float(gnorm),
                         frames_per_s=n_frames / dt,
                         steps_per_s=(len(step_times[-9:]) + 1) / (sum(step_times[-9:]) + dt),   # last 10 steps
                         seen_frames=seen, elapsed_s=before + time.monotonic() - t_start)
            if not all(math.isfinite(entry[k]) for k in ("loss", "grad_norm")):
                raise FloatingPointError(f"non-finite loss at step {step}: {entry}")
            log.append(entry)
        step_times.append(time.monotonic() - t0)
        since["steps"] += 1
        since["frames"] += n_frames
        if time.monotonic() - last_print >= opts.print_every_s or step == 1:
            span = time.monotonic() - last_print
            last_print = time.monotonic()
            rot = _rotation_since(log, since["log_len"])
            loss, cam, dep = (float(parts[k].detach()) for k in ("loss", "camera", "depth"))
            _print(f"step {step}/{opts.steps} loss {loss:.4f} camera {cam:.4f} depth {dep:.4f}{rot} lr {lr:.2e} | "
                   f"last {span:.0f}s: {since['steps'] / span:.2f} steps/s, {since['frames'] / span:.0f} frames/s, "
                   f"render host {100 * (pool.render_seconds - since['render_s']) / span:.0f}% | "
                   f"elapsed {time.monotonic() - t_start:.0f}s")
            since = {"steps": 0, "frames": 0, "render_s": pool.render_seconds, "log_len": len(log)}
    pool.close()
    if merging is not None:
        patch(model, None)                   # the saved and evaluated network is the dense one
    elapsed = before + time.monotonic() - t_start
    _print(f"stopped at step {step} ({stopped}); saving")
    save_resume({**_state(model, opt, step, pool, log, opts, device, seen, elapsed), "init_weights": init}, out)
    heldout = evaluate_heldout(model, opts.image_hw, device, opts.heldout, opts.heldout_frames)
    _print("held-out: " + json.dumps(heldout["summary"]) + " met: " + json.dumps(heldout["met"]))
    if merging is not None:                  # the same clips with the merging it was trained with
        patch(model, merging)
        heldout["merged"] = evaluate_heldout(model, opts.image_hw, device, opts.heldout, opts.heldout_frames)["summary"]
        patch(model, None)
        _print("held-out, merged: " + json.dumps(heldout["merged"]))
    training = {"command": " ".join(opts.argv), "commit": commit, "steps": step, "schedule_steps": opts.steps,
                "complete": step >= opts.steps, "seen_frames": seen, "elapsed_s": round(elapsed, 1),
                "seed": opts.seed, "device": str(device), "renderer_frames_per_s": round(render_fps, 1),
                "options": _plain_options(opts), "loss": loss_summary(log)}
    if init:
        training["init_weights"] = init           # the steps count from these weights
    if oom_events:
        training["out_of_memory"] = oom_events    # options.batch_frames is the size it ended with
    write_model(out, model, opts.image_hw, training, heldout)
    write_log(out / "train_log.json", log, {"training": training, "heldout": heldout["summary"]})
    plot_curves(out / "train_curves.png", log)
    _print(f"wrote {out} in {time.monotonic() - t_start:.0f}s")
    return {"training": training, "heldout": heldout}
