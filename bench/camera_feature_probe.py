"""Does a trained aggregator carry the relative camera pose, even where its camera head predicts
none? (issue 15's diagnosis: the camera head of every run so far predicts a rotation-free pose.)

Ridge regression from frozen features of 2-frame training windows (the renderer's training
distribution, ``ClipPool``) to frame 1's pose encoding relative to frame 0 (translation t, the
quaternion's x/y/z, all in VGGT's normalisation); R^2 on held-out windows of other clips, per
entry. The features, per window, from the aggregator's last block: ``cam1`` frame 1's camera
token [2C], ``patch_mean`` both frames' mean patch token [4C] and
``patch_grid`` frame 1's patch tokens pooled to a 3x4 grid [12*2C] (it keeps where things are).
The camera head's own prediction is scored the same way. Run it on a checkpoint and on the same
config at initialisation (``--init``): features that only the trained network can read out show
that the aggregator learned the pose and the read-out did not.

    python bench/camera_feature_probe.py --weights W.safetensors --out probe.json [--init]
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.train.data import ClipPool  # noqa: E402
from httm_ros.vggt import VGGT  # noqa: E402
from httm_ros.vggt.checkpoint import checkpoint_image_hw  # noqa: E402
from httm_ros.vggt.config import SYNTH_IMAGE_HW  # noqa: E402
from httm_ros.provenance import environment, write_json  # noqa: E402

ENTRIES = ("t_x", "t_y", "t_z", "q_x", "q_y", "q_z")


def collect(model: VGGT, hw: Tuple[int, int], windows: int, batch: int, seed: int) -> Dict[str, np.ndarray]:
    """-> features {name: [N, D]}, target [N, 6] (frame 1's t and q_xyz), head [N, 6] (the camera
    head's prediction of the same entries); N = windows at input size ``hw``, clips from ``seed``'s
    stream."""
    cfg = model.config
    pool = ClipPool(hw, "cpu", seed=seed, size=16, reuse=2, clip_frames=16)
    rng = np.random.default_rng(seed)
    last, ps = cfg.depth - 1, model.aggregator.patch_start
    h, w = hw[0] // cfg.patch_size, hw[1] // cfg.patch_size
    parts: Dict[str, list] = {"cam1": [], "patch_mean": [], "patch_grid": [], "target": [], "head": []}
    with torch.inference_mode():
        for _ in range(windows // batch):
            gt = pool.batch(rng, 2, batch)
            tokens = model.aggregator(gt["images"], keep_layers=[last])[last]          # [B,2,P,2C]
            patches = tokens[:, :, ps:]                                                # [B,2,h*w,2C]
            grid = patches[:, 1].reshape(batch, h, w, -1).permute(0, 3, 1, 2)          # [B,2C,h,w]
            pooled = torch.nn.functional.adaptive_avg_pool2d(grid, (3, 4)).flatten(1)  # [B,12*2C]
            pose = model.camera_head(tokens[:, :, 0])[-1]                              # [B,2,9]
            parts["cam1"].append(tokens[:, 1, 0])
            parts["patch_mean"].append(patches.mean(2).flatten(1))
            parts["patch_grid"].append(pooled)
            parts["target"].append(gt["pose_enc"][:, 1, :6])
            parts["head"].append(pose[:, 1, :6])
    return {k: torch.cat(v).double().numpy() for k, v in parts.items()}


def ridge_r2(x_tr, y_tr, x_te, y_te, alpha: float) -> np.ndarray:
    """Standardised ridge fit on train -> R^2 per target column on test [6]."""
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    a, b = (x_tr - mu) / sd, (x_te - mu) / sd
    ym = y_tr.mean(0)
    coef = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ (y_tr - ym))
    pred = b @ coef + ym
    return 1 - ((y_te - pred) ** 2).sum(0) / ((y_te - y_te.mean(0)) ** 2).sum(0)


def r2_of(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True, help="a httm-train checkpoint (.safetensors)")
    p.add_argument("--init", action="store_true", help="the same config, freshly initialised (the control)")
    p.add_argument("--train", type=int, default=2048, help="training windows of the ridge fit")
    p.add_argument("--test", type=int, default=512, help="held-out windows (other clips)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--alphas", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1, 1.0])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    torch.manual_seed(0)
    model = VGGT.from_checkpoint(args.weights)
    if args.init:
        model = VGGT(model.config)
    model = model.eval()
    hw = checkpoint_image_hw(args.weights) or SYNTH_IMAGE_HW             # as httm-train eval
    tr = collect(model, hw, args.train, args.batch, seed=1)
    te = collect(model, hw, args.test, args.batch, seed=2)
    rows = {"head (the camera head's prediction)": r2_of(te["head"], te["target"]).tolist()}
    for name in ("cam1", "patch_mean", "patch_grid"):
        fits = {a: ridge_r2(tr[name], tr["target"], te[name], te["target"], a) for a in args.alphas}
        best = max(fits, key=lambda a: fits[a].mean())
        rows[f"ridge on {name} [{tr[name].shape[1]}] (alpha {best:g})"] = fits[best].tolist()
    env = environment(torch.device("cpu"), argv, program="python bench/camera_feature_probe.py")
    write_json(Path(args.out), {"environment": env, "weights": str(args.weights), "image_hw": list(hw),
                                "init": args.init, "train_windows": len(tr["target"]),
                                "test_windows": len(te["target"]), "entries": ENTRIES, "r2_test": rows,
                                "seconds": round(time.monotonic() - t0, 1),
                                "note": "alpha chosen on the test windows (an optimistic bound for the ridge rows)"})
    for k, v in rows.items():
        print(f"{k:55s} " + " ".join(f"{e}={r:+.2f}" for e, r in zip(ENTRIES, v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
