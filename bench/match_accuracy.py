"""Do a trained network's patch tokens find their first-frame match? (issue 15's diagnosis beside
``camera_feature_probe.py``: correspondence found, pose not read out, or neither.)

For every camera path kind, 2-frame windows (frame 0 with frames 1, 2 and 4 of held-out-seeded
clips): the tokens of aggregator block ``--layer`` (the block ``httm-train --match-layer`` trains,
1 by default), cosine similarity of each frame-1 patch with every frame-0 patch, top-1 accuracy
against the renderer's exact correspondences (``first_frame_patch_targets``; patches without one
are left out), and the true matches' mean horizontal / vertical displacement in patches.

    python bench/match_accuracy.py --weights W.safetensors --out match.json
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.provenance import environment, write_json  # noqa: E402
from httm_ros.train.data import (KIND_WEIGHTS, TRAIN_SEED_BASE, normalise_ground_truth,  # noqa: E402
                                 random_clip_spec, render_clip)
from httm_ros.train.losses import first_frame_patch_targets  # noqa: E402
from httm_ros.vggt import VGGT  # noqa: E402
from httm_ros.vggt.checkpoint import checkpoint_image_hw  # noqa: E402
from httm_ros.vggt.config import SYNTH_IMAGE_HW  # noqa: E402

PAIRS = ((0, 1), (0, 2), (0, 4))


def pair_accuracy(model: VGGT, clip: dict, a: int, b: int, layer: int, hw) -> Dict[str, float]:
    """Frames a, b of a rendered clip -> top-1 accuracy and mean |dx|, |dy| (patches) of the true matches."""
    pick = [a, b]
    gt = normalise_ground_truth(clip["depth"][None, pick], clip["cam_to_world"][None, pick],
                                clip["intrinsics"][None, pick], hw)
    patch, w = model.config.patch_size, hw[1] // model.config.patch_size
    target = first_frame_patch_targets(gt["points"], gt["intrinsics"], gt["valid"], patch)[0, 1]   # [N]
    images = clip["images"][pick].permute(0, 3, 1, 2).float()[None] / 255.0                        # [1,2,3,H,W]
    with torch.inference_mode():
        tokens = model.aggregator(images, keep_layers=[layer])[layer][0, :, model.aggregator.patch_start:]
    tokens = torch.nn.functional.normalize(tokens.float(), dim=-1)                                 # [2,N,2C]
    found = (tokens[1] @ tokens[0].T).argmax(-1)
    ok = target >= 0
    n = torch.arange(target.numel())
    return {"valid": int(ok.sum()), "correct": int(((found == target) & ok).sum()),
            "dx": float(((target % w) - (n % w))[ok].float().abs().mean()) if ok.any() else float("nan"),
            "dy": float(((target // w) - (n // w))[ok].float().abs().mean()) if ok.any() else float("nan")}


def evaluate(model: VGGT, hw, layer: int, clips: int, seed: int) -> List[Dict]:
    """One row per path kind: accuracy over ``clips`` clips x PAIRS."""
    rows = []
    for k, kind in enumerate(KIND_WEIGHTS):
        got = []
        for i in range(clips):
            spec = random_clip_spec(np.random.default_rng([seed, k, i]), TRAIN_SEED_BASE + seed * 1000 + i, [kind])
            clip = render_clip(spec, max(b for _, b in PAIRS) + 1, hw, "cpu")
            got += [pair_accuracy(model, clip, a, b, layer, hw) for a, b in PAIRS]
        valid = sum(g["valid"] for g in got)
        rows.append({"kind": kind, "pairs": len(got), "patches": valid,
                     "top1": sum(g["correct"] for g in got) / max(1, valid),
                     "mean_abs_dx_patches": float(np.nanmean([g["dx"] for g in got])),
                     "mean_abs_dy_patches": float(np.nanmean([g["dy"] for g in got]))})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--layer", type=int, default=1, help="aggregator block whose patch tokens are matched")
    p.add_argument("--clips", type=int, default=6, help="clips per path kind")
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = VGGT.from_checkpoint(args.weights).eval()
    if not 0 <= args.layer < model.config.depth:
        p.error(f"--layer must be a block index in [0, {model.config.depth - 1}], got {args.layer}")
    hw = checkpoint_image_hw(args.weights) or SYNTH_IMAGE_HW             # as httm-train eval
    rows = evaluate(model, hw, args.layer, args.clips, args.seed)
    env = environment(torch.device("cpu"), argv, program="python bench/match_accuracy.py")
    write_json(args.out, {"environment": env, "weights": args.weights, "layer": args.layer, "image_hw": list(hw),
                          "pairs": [list(x) for x in PAIRS], "rows": rows, "seconds": round(time.time() - t0, 1)})
    for r in rows:
        print(f"{r['kind']:8s} top-1 {r['top1']:.2f} over {r['patches']} patches, mean |dx| "
              f"{r['mean_abs_dx_patches']:.2f} |dy| {r['mean_abs_dy_patches']:.2f} patches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
