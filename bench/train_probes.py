"""Learnability probes for httm-vggt-synth's camera path (issue 15; CPU, minutes).

Training run 2 left the camera head predicting a constant pose. Each probe trains a fresh
network (the "synth" preset at 84x56 by default) for a few hundred steps on a 2-frame task whose
target goes into one pose-encoding entry of frame 1 (q_y, through the VGGT camera loss), and
reports the mean absolute error against the predict-zero baseline. A task the network learns
ends far below its baseline; one it cannot learn ends at it.

  brightness         frame 1's mean brightness             (per-frame content)
  brightness_first   frame 0's mean brightness             (reads the other frame)
  brightness_diff    brightness(frame 1) - brightness(0)   (compares the frames; the sign needs
                                                             frame identity)
  square_position    x of a bright square in frame 1       (absolute position)
  square_shift       x shift of a bright square 0 -> 1     (cross-frame displacement)
  texture_shift      x shift of a textured crop 0 -> 1     (correspondence on rendered texture;
                                                             --match-weight adds the correspondence
                                                             loss with the exact patch matches)
  texture_sign       the sign of a +-2-patch shift 0 -> 1  (the same, reduced to one bit, with
                                                             whole-patch copies in both frames)

--model plain-vit trains a generic control instead of the synth VGGT: a pre-norm transformer over
both frames' patch tokens with learned position and frame embeddings and a read-out token (no RoPE,
no LayerScale, no camera head), which tells whether a failure is specific to our architecture.
--device cuda and --time-budget-s run the same probes for longer on the GPU machine.

    python bench/train_probes.py --tasks all --steps 400 --out bench/results/train_synth/probes.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from httm_ros.provenance import environment, write_json  # noqa: E402
from httm_ros.train.data import ClipPool  # noqa: E402
from httm_ros.train.loop import TrainOptions, forward_train, make_optimizer  # noqa: E402
from httm_ros.train.losses import camera_loss, correspondence_loss  # noqa: E402
from httm_ros.vggt import VGGT, VGGTConfig  # noqa: E402

H, W = 56, 84          # probe image size (4 x 6 patches of 14)
SHIFT = 42             # texture_shift: |k| <= 42 px (3 patches)
TARGET_SCALE = 50.0    # target (px or brightness units) / 50 -> pose-encoding entry


def _square(x: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """A 14x14 white square at column x [B] (row 21) over 0.3 x background [B,3,H,W]."""
    out = 0.3 * background.clone()
    for b in range(x.shape[0]):
        out[b, :, 21:35, int(x[b]):int(x[b]) + 14] += 1.0
    return out


def shift_matches(k: np.ndarray, patch: int = 14) -> torch.Tensor:
    """texture_shift's correspondences: frame 1 = frame 0 moved by k [B] px, so frame 1's patch
    (r, c) sees frame 0's pixel column c*patch + patch/2 + k -> [B,2,h*w] first-frame patch index
    (frame 0 maps to itself; -1 where the column leaves the image)."""
    h, w = H // patch, W // patch
    cols = torch.arange(w) * patch + patch // 2 + torch.from_numpy(k)[:, None]          # [B,w]
    col0 = torch.where((cols >= 0) & (cols < W), cols // patch, torch.full_like(cols, -1))
    rows = torch.arange(h)[None, :, None] * w                                            # [1,h,1]
    moved = torch.where(col0[:, None] >= 0, rows + col0[:, None], torch.full_like(rows + col0[:, None], -1))
    same = torch.arange(h * w).expand(k.shape[0], -1)
    return torch.stack((same, moved.reshape(k.shape[0], -1)), 1)


def make_pair(task: str, wide: torch.Tensor,
              rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """wide [B,3,H,W+2*SHIFT] rendered frames -> (images [B,2,3,H,W], target [B], first-frame patch
    matches [B,2,h*w] where the task defines them (texture_shift), else None)."""
    b = wide.shape[0]
    base = wide[:, :, :, SHIFT:SHIFT + W]
    other = torch.roll(base, 1, dims=0)                      # another scene's frame
    if task == "brightness":
        return torch.stack((other, base), 1), base.mean(dim=(1, 2, 3)) * 100 - 40, None
    if task == "brightness_first":
        return torch.stack((base, other), 1), base.mean(dim=(1, 2, 3)) * 100 - 40, None
    if task == "brightness_diff":
        return torch.stack((base, other), 1), (other.mean(dim=(1, 2, 3)) - base.mean(dim=(1, 2, 3))) * 200, None
    if task == "square_position":
        x = torch.from_numpy(rng.integers(0, W - 14, size=b))
        return torch.stack((other, _square(x, base)), 1), x.float() - (W - 14) / 2, None
    if task == "square_shift":
        x0 = torch.from_numpy(rng.integers(14, W - 28, size=b))
        d = torch.from_numpy(rng.integers(-14, 15, size=b))
        return torch.stack((_square(x0, base), _square(x0 + d, base)), 1), d.float(), None
    if task in ("texture_shift", "texture_sign"):
        k = rng.integers(-SHIFT, SHIFT + 1, size=b) if task == "texture_shift" else rng.choice([-28, 28], size=b)
        target = torch.from_numpy(k).float().to(wide.device)
        cols = SHIFT + target.long()[:, None] + torch.arange(W, device=wide.device)      # [B,W]
        moved = torch.gather(wide, 3, cols[:, None, None, :].expand(b, wide.shape[1], H, W))
        return torch.stack((base, moved), 1), target, shift_matches(k).to(wide.device)
    raise ValueError(f"unknown task {task!r}")


TASKS = ("brightness", "brightness_first", "brightness_diff", "square_position", "square_shift", "texture_shift",
         "texture_sign")


class PlainViT(torch.nn.Module):
    """The generic control: images [B,2,3,H,W] -> one number per pair [B] (target / TARGET_SCALE)."""

    def __init__(self, dim: int = 128, depth: int = 6, heads: int = 4, patch: int = 14) -> None:
        super().__init__()
        self.patch, n = patch, (H // patch) * (W // patch)
        self.embed = torch.nn.Linear(3 * patch * patch, dim)
        self.pos = torch.nn.Parameter(0.02 * torch.randn(1, 1, n, dim))
        self.frame = torch.nn.Parameter(0.02 * torch.randn(1, 2, 1, dim))
        self.readout = torch.nn.Parameter(0.02 * torch.randn(1, 1, dim))
        layer = torch.nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, s, c, h, w = images.shape
        p = self.patch
        tiles = images.reshape(b, s, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        tokens = self.embed(tiles.reshape(b, s, (h // p) * (w // p), c * p * p)) + self.pos + self.frame
        x = torch.cat((self.readout.expand(b, -1, -1), tokens.reshape(b, -1, tokens.shape[-1])), 1)
        return self.head(self.blocks(x)[:, 0])[:, 0]


def run_task(task: str, steps: int, lr: float, batch: int, seed: int, log: Callable[[str], None],
             match_weight: float = 0.0, model_name: str = "synth", device: str = "cpu",
             time_budget_s: Optional[float] = None, readout: str = "camera-head",
             layerscale_init: Optional[float] = None, synth_set: Optional[Dict] = None,
             camera_loss_kind: str = "l1", constants: str = "pose") -> Dict:
    """Train a fresh network on ``task`` for ``steps`` (or until ``time_budget_s``); match_weight > 0
    (texture tasks, synth model only) adds the correspondence loss of httm-train --match-weight with
    the probe's exact correspondences. Synth ablations: ``readout`` "camera-head" (the VGGT camera
    loss over the whole pose encoding), "camera-frame1" (the same loss over frame 1's encoding only,
    without the first frame's), "camera-entry" (the camera head, loss on the target entry only) or
    "linear" (a linear read-out of frame 1's last-block camera token, loss on the target
    only, as the plain ViT); ``layerscale_init`` and ``synth_set`` (VGGTConfig fields) override the
    preset's; ``camera_loss_kind`` the camera-head read-out's loss (httm-train --camera-loss);
    ``constants`` the pose encoding's entries other than the target: "pose" (an identity rotation,
    FoV entries 1.0: what a real pose encoding holds) or "zero" (all 0, so that the camera head has
    no constant offset to fit before the target)."""
    if match_weight > 0 and (not task.startswith("texture") or model_name != "synth"):
        raise ValueError("--match-weight: only the texture tasks have correspondences, only the synth model uses them")
    torch.manual_seed(seed)
    dev = torch.device(device)
    changes = {**(synth_set or {}), **({} if layerscale_init is None else {"layerscale_init": layerscale_init})}
    model = (VGGT(VGGTConfig.preset("synth", img_size=W, **changes)) if model_name == "synth" else PlainViT())
    if model_name == "synth" and readout == "linear":
        model.probe_readout = torch.nn.Linear(2 * model.config.embed_dim, 1)
    model = model.to(dev).train()
    opt = make_optimizer(model, TrainOptions(lr=lr))
    pool = ClipPool((H, W + 2 * SHIFT), dev, seed=seed, size=16, reuse=8, clip_frames=8)
    curve: List[Tuple[int, float, float]] = []
    errs: List[torch.Tensor] = []
    t0 = time.monotonic()
    for step in range(steps):
        if time_budget_s is not None and time.monotonic() - t0 > time_budget_s:
            break
        rng = np.random.default_rng([seed, step, 11])
        wide = pool.batch(rng, 1, batch)["images"][:, 0]                    # [B,3,H,W+2*SHIFT]
        images, target, matches = make_pair(task, wide, rng)
        target = target.float().to(dev)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50)
        if model_name == "synth" and readout == "linear":
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                last = model.config.depth - 1
                tokens = model.aggregator(images, keep_layers=[last])[last][:, 1, 0]      # [B, 2C]
            raw = model.probe_readout(tokens.float())[:, 0]
            loss = (raw - target / TARGET_SCALE).abs().mean()
            pred = raw.detach() * TARGET_SCALE
        elif model_name == "synth":
            enc = torch.zeros(batch, 2, 9, device=dev)
            if constants == "pose":
                enc[:, :, 6] = 1.0                                          # identity quaternion
                enc[:, :, 7:] = 1.0                                         # FoV entries
            enc[:, 1, 4] = target / TARGET_SCALE
            out = forward_train(model, images, match_layer=1 if match_weight > 0 else None)
            if readout == "camera-entry":
                loss = torch.stack([(h[:, 1, 4] - enc[:, 1, 4]).abs().mean() for h in out["pose_history"]]).mean()
            else:
                frames = slice(1, None) if readout == "camera-frame1" else slice(None)
                loss = camera_loss([h[:, frames] for h in out["pose_history"]], enc[:, frames],
                                   kind=camera_loss_kind)["total"]
            if match_weight > 0:
                loss = loss + match_weight * correspondence_loss(out["match_tokens"], matches)
            pred = out["pose_history"][-1][:, 1, 4].detach() * TARGET_SCALE
        else:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                raw = model(images).float()
            loss = (raw - target / TARGET_SCALE).abs().mean()
            pred = raw.detach() * TARGET_SCALE
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        errs.append(torch.stack(((pred - target).abs().mean(), target.abs().mean())))  # no host sync
        if (step + 1) % 50 == 0:
            err, base = torch.stack(errs[-50:]).mean(0).tolist()
            curve.append((step + 1, round(err, 3), round(base, 3)))
            log(f"[probe] {model_name} {task} step {step + 1} error {err:.2f} baseline {base:.2f} "
                f"({time.monotonic() - t0:.0f} s)")
    err, base = torch.stack(errs[-100:]).mean(0).tolist()
    return {"task": task, "model": model_name, "match_weight": match_weight, "readout": readout,
            "layerscale_init": layerscale_init, "synth_set": synth_set or {}, "camera_loss": camera_loss_kind,
            "constants": constants, "steps": len(errs),
            "final_error": err, "baseline_error": base, "error_over_baseline": err / base, "curve": curve,
            "seconds": time.monotonic() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["all"], help=f"any of {', '.join(TASKS)} or all")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--match-weight", type=float, default=0.0,
                   help="add the correspondence loss (texture_shift only), as httm-train --match-weight")
    p.add_argument("--model", choices=("synth", "plain-vit"), default="synth",
                   help="the synth VGGT (default) or the generic transformer control")
    p.add_argument("--readout", choices=("camera-head", "camera-frame1", "camera-entry", "linear"),
                   default="camera-head",
                   help="synth: the camera head with the VGGT camera loss (over both frames, or frame 1 only), "
                        "the camera head with the loss on the target entry only, or a linear read-out of the "
                        "last camera token")
    p.add_argument("--layerscale-init", type=float, default=None,
                   help="synth: override the preset's LayerScale init (aggregator and camera trunk)")
    p.add_argument("--camera-loss", choices=("l1", "huber"), default="l1",
                   help="synth, --readout camera-head: the camera loss over the pose encoding (as httm-train)")
    p.add_argument("--constants", choices=("pose", "zero"), default="pose",
                   help="synth, camera-head read-outs: the other entries' targets, a real pose's constants "
                        "(identity quaternion, FoV 1) or all zero")
    p.add_argument("--synth-set", action="append", default=[], metavar="NAME=VALUE",
                   help="synth: a VGGTConfig integer or true/false field, e.g. camera_iterations=1 or "
                        "camera_base_pose=true (repeatable)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--time-budget-s", type=float, default=None, help="stop each task after this many seconds")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = TASKS if args.tasks == ["all"] else tuple(args.tasks)
    flags = {"true": True, "false": False}
    synth_set = {k: flags[v.lower()] if v.lower() in flags else int(v)
                 for k, v in (item.split("=", 1) for item in args.synth_set)}
    env = environment(torch.device(args.device), argv, program="python bench/train_probes.py")   # the commit run
    results = [run_task(t, args.steps, args.lr, args.batch, args.seed, lambda m: print(m, flush=True),
                        args.match_weight, args.model, args.device, args.time_budget_s, args.readout,
                        args.layerscale_init, synth_set, args.camera_loss, args.constants) for t in tasks]
    write_json(args.out, {"environment": env,
                          "image_hw": [H, W], "config": args.model, "lr": args.lr, "batch": args.batch,
                          "match_weight": args.match_weight, "readout": args.readout,
                          "layerscale_init": args.layerscale_init, "synth_set": synth_set,
                          "camera_loss": args.camera_loss, "constants": args.constants, "results": results})
    for r in results:
        print(f"{r['task']:18s} error {r['final_error']:.2f} baseline {r['baseline_error']:.2f} "
              f"ratio {r['error_over_baseline']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
