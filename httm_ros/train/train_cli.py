"""httm-train: train httm-vggt-synth on rendered rooms, or evaluate a checkpoint on the held-out set.

    httm-train --out DIR [--time-budget-s S] [--resume DIR] [--steps N] [--batch-frames N] ...
    httm-train --smoke --out DIR          # a few steps of the tiny network on CPU (CI)
    httm-train eval --weights W.safetensors [--out metrics.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .loop import TrainOptions, smoke_options, train


def _train_parser() -> argparse.ArgumentParser:
    d = TrainOptions()
    p = argparse.ArgumentParser(prog="httm-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (weights, card, log, resume state)")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="stop, save and evaluate before this many seconds have passed")
    p.add_argument("--resume", default=None, help="resume.pt, a resume-NN.pt part, or the folder holding them")
    p.add_argument("--init-weights", default=None,
                   help="start from this checkpoint's weights and config (a trained httm-vggt-synth), with a new "
                        "optimizer and schedule; excludes --resume, --layerscale-init and --camera-base-pose")
    p.add_argument("--steps", type=int, default=d.steps, help="total steps of the schedule (default %(default)s)")
    p.add_argument("--schedule-s", type=float, default=None,
                   help="cosine learning-rate schedule over this many seconds of training (all calls "
                        "together) instead of --steps; --steps then only caps the run")
    p.add_argument("--batch-frames", type=int, default=d.batch_frames, help="frames per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="warmup steps (default %(default)s)")
    p.add_argument("--point-weight", type=float, default=d.point_weight,
                   help="weight of the optional point-map loss (0: point head untrained; default %(default)s)")
    p.add_argument("--match-weight", type=float, default=d.match_weight,
                   help="weight of the correspondence-to-first-frame loss on aggregator patch tokens (0: off)")
    p.add_argument("--match-layer", type=int, default=d.match_layer,
                   help="aggregator block whose patch tokens the correspondence loss trains (default %(default)s)")
    p.add_argument("--flow-weight", type=float, default=d.flow_weight,
                   help="weight of the loss asking two channels of later frames' patch tokens for their displacement "
                        "to the first-frame match, in patches (0: off)")
    p.add_argument("--flow-layer", type=int, default=d.flow_layer,
                   help="aggregator block whose patch tokens the displacement loss trains (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 (default %(default)s)")
    p.add_argument("--config", default=d.config, help="VGGTConfig preset (default %(default)s)")
    p.add_argument("--layerscale-init", type=float, default=d.layerscale_init,
                   help="LayerScale init of the aggregator and camera-trunk blocks (default: the preset's, "
                        "VGGT's 0.01; bench/NOTES.md: 1.0 lets a from-scratch network learn relative displacement)")
    p.add_argument("--camera-base-pose", action="store_true",
                   help="the camera head starts at a valid pose (identity rotation, FoV 1) with a zero-initialised "
                        "last layer instead of VGGT's first delta from zero (VGGTConfig.camera_base_pose)")
    p.add_argument("--pool-size", type=int, default=d.pool_size, help="rendered clips kept (default %(default)s)")
    p.add_argument("--reuse", type=int, default=d.reuse,
                   help="window-frames served per rendered frame before its clip is replaced (default %(default)s)")
    p.add_argument("--clip-frames", type=int, default=d.clip_frames,
                   help="frames per rendered clip (windows of <= 24 are cut from it; default %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="processes building scenes and paths ahead of the renderer (-1: 6 on CUDA, 0 on CPU)")
    p.add_argument("--camera-weight", type=float, default=d.camera_weight, help="(default %(default)s)")
    p.add_argument("--camera-loss", choices=("l1", "huber"), default=d.camera_loss,
                   help="l1 as VGGT's released code (default); huber (--camera-delta) learned a constant pose in "
                        "run 1 (aggregator LayerScale 0.01); neither taught the camera head the probe of "
                        "bench/train_probes.py at LayerScale 1.0 (probes/handrun/s8)")
    p.add_argument("--camera-delta", type=float, default=d.camera_delta,
                   help="threshold of --camera-loss huber (default %(default)s)")
    p.add_argument("--depth-weight", type=float, default=d.depth_weight, help="(default %(default)s)")
    p.add_argument("--curriculum-frames", type=int, default=d.curriculum_frames,
                   help="longest window at the start; grows to 24 over --curriculum-frac of the schedule")
    p.add_argument("--curriculum-frac", type=float, default=d.curriculum_frac,
                   help="share of the schedule of the window-length ramp (0: 2..24 from the start; "
                        "default %(default)s)")
    p.add_argument("--heldout", type=int, default=d.heldout, help="held-out clips evaluated at the end")
    p.add_argument("--merge", choices=("none", "httm"), default=d.merge,
                   help="httm: token merging (the paper's HTTM ratios, torch path) in --merge-frac of the steps, so "
                        "that the network keeps its accuracy when the node merges (default %(default)s)")
    p.add_argument("--merge-frac", type=float, default=d.merge_frac,
                   help="share of the steps run merged with --merge httm (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="a few steps of the tiny network on CPU, in seconds")
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="httm-train eval", description="held-out metrics of a checkpoint")
    p.add_argument("--weights", required=True, help="safetensors file with its config (and model card)")
    p.add_argument("--n", type=int, default=8, help="held-out clips (scene seeds 0..n-1)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    return p


def _eval(argv: List[str]) -> int:
    from ..provenance import environment, file_sha256
    from ..vggt.checkpoint import checkpoint_image_hw
    from ..vggt.config import SYNTH_IMAGE_HW
    from ..vggt.model import VGGT
    from .heldout import evaluate_heldout
    from .loop import _resolve_device

    parser = _eval_parser()
    args = parser.parse_args(argv)
    if args.n < 1 or args.frames < 2:
        parser.error(f"--n must be >= 1 and --frames >= 2, got {args.n} and {args.frames}")
    device = _resolve_device(args.device)
    model = VGGT.from_checkpoint(args.weights, device=device)
    hw = checkpoint_image_hw(args.weights) or SYNTH_IMAGE_HW
    result = evaluate_heldout(model, hw, device, args.n, args.frames)
    result["environment"] = environment(device, ["eval", *argv], program="httm-train")
    result["weights"] = {"path": str(args.weights), "sha256": file_sha256(args.weights)}
    text = json.dumps(result, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print(json.dumps({"summary": result["summary"], "met": result["met"]}, indent=1))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":
        return _eval(argv[1:])
    parser = _train_parser()
    args = parser.parse_args(argv)
    try:
        opts = _options(args, argv)
    except ValueError as err:
        parser.error(str(err))                 # exit status 2, the usage and the message
    train(opts)
    return 0


def _options(args, argv: List[str]):
    """TrainOptions of the parsed ``args`` (ValueError naming the options out of range)."""
    if args.smoke:
        return smoke_options(args.out, resume=args.resume, init_weights=args.init_weights, seed=args.seed,
                             time_budget_s=args.time_budget_s,
                             layerscale_init=args.layerscale_init, camera_base_pose=args.camera_base_pose,
                             merge=args.merge, merge_frac=args.merge_frac, argv=["httm-train"] + argv)
    return TrainOptions(out=args.out, config=args.config, layerscale_init=args.layerscale_init,
                        camera_base_pose=args.camera_base_pose,
                        steps=args.steps, schedule_s=args.schedule_s,
                        batch_frames=args.batch_frames,
                        lr=args.lr, warmup=args.warmup, point_weight=args.point_weight, seed=args.seed,
                        match_weight=args.match_weight, match_layer=args.match_layer,
                        flow_weight=args.flow_weight, flow_layer=args.flow_layer,
                        device=args.device, time_budget_s=args.time_budget_s, resume=args.resume,
                        init_weights=args.init_weights, pool_size=args.pool_size, reuse=args.reuse,
                        heldout=args.heldout,
                        clip_frames=args.clip_frames, camera_weight=args.camera_weight, workers=args.workers,
                        camera_loss=args.camera_loss, camera_delta=args.camera_delta, depth_weight=args.depth_weight,
                        curriculum_frames=args.curriculum_frames, curriculum_frac=args.curriculum_frac,
                        merge=args.merge, merge_frac=args.merge_frac, argv=["httm-train"] + argv)


if __name__ == "__main__":
    sys.exit(main())
