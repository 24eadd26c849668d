"""Window sizes with the trained network (issue 16 "accuracy with the trained model"): the shipped
httm-vggt-synth on held-out 300-frame streams (walk and orbit of scene ``seed``, every frame a
keyframe, the card's checks), one stream per window layout K/O, window mode and merging; per row the
ATE, the windows accepted and the model time (the predictor's share of each window), from which the
new keyframes per second of model time. The first layout is the node's VGGT-1B default of issue 16's
baseline (dense, chained, 24/8). One JSON per run with provenance:

    python bench/window_accuracy.py --seeds 0 --out bench/results/window_size/synth_accuracy_s0.json

The GPU side of the same question (VGGT-1B at 518x392) is ``PART=10 bash bench/gpu_next.sh``.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.bench.streaming import make_predictor, run_stream, sequence, stream_config, summary, \
    trained_network_run  # noqa: E402
from httm_ros.pipeline.stream_config import WINDOW_MODES  # noqa: E402
from httm_ros.provenance import write_json  # noqa: E402
from httm_ros.ros.params import MERGE_MODES  # noqa: E402
from httm_ros.vggt.checkpoint import checkpoint_image_hw, checkpoint_stream_profile  # noqa: E402

KEEP = ("windows", "accepted", "keyframes", "ate_pct", "final_drift_pct", "scale_drift", "wall_s")
#: (K, O, mode, merge): issue 16's baseline first, then the anchored layouts, dense and HTTM
LAYOUTS: List[Tuple[int, int, str, str]] = [(24, 8, "chained", "none")] + [
    (k, o, "anchored", merge) for k, o in ((16, 6), (24, 4), (24, 6), (32, 6), (48, 6)) for merge in ("none", "httm")]


def parse_layout(text: str) -> Tuple[int, int, str, str]:
    """"K/O/MODE/MERGE" (e.g. "16/6/anchored/httm") -> (K, O, mode, merge)."""
    try:
        k, o, mode, merge = text.split("/")
        layout = (int(k), int(o), mode, merge)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/O/MODE/MERGE, got {text!r}") from None
    if mode not in WINDOW_MODES or merge not in MERGE_MODES or not 0 < layout[1] < layout[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: MODE {'|'.join(WINDOW_MODES)}, MERGE {'|'.join(MERGE_MODES)}, "
                                         "0 < O < K")
    return layout


def one_stream(weights: str, seed: int, trajectory: str, frames: int, layout: Tuple[int, int, str, str]) -> dict:
    """One held-out stream of the layout (K, O, mode, merge) -> its row."""
    k, o, mode, merge = layout
    seq = sequence(frames, seed, checkpoint_image_hw(weights), trajectory)
    cfg = stream_config(mode, k, o, min_motion=0.0, profile=checkpoint_stream_profile(weights))
    rec, results, wall = run_stream(seq, make_predictor("checkpoint", seq, 0, 0, 0, weights, merge=merge), cfg)
    model_s = sum(r.timings.get("predict", 0.0) for r in results)
    new = sum(len(r.frame_ids) - r.num_overlap for r in results)           # keyframes each window brought
    row = summary(seq, rec, results, wall)
    return {"seed": seed, "trajectory": trajectory, "frames": frames, "window": k, "overlap": o, "mode": mode,
            "merge": merge, "segments": len(row["segments"]), **{key: row.get(key) for key in KEEP},
            "model_s": model_s, "new_keyframes": new, "new_kf_per_model_s": new / model_s if model_s else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="default: the shipped httm-vggt-synth")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--trajectories", nargs="+", default=["walk", "orbit"])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--layouts", nargs="+", type=parse_layout, default=LAYOUTS, metavar="K/O/MODE/MERGE",
                   help="window layouts, e.g. 24/8/chained/none 16/6/anchored/httm (default: all of LAYOUTS)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    weights, out = trained_network_run("window_accuracy", "python bench/window_accuracy.py", args,
                                       layouts=args.layouts)
    for seed in args.seeds:
        for trajectory in args.trajectories:
            for layout in args.layouts:
                row = one_stream(weights, seed, trajectory, args.frames, layout)
                out["rows"].append(row)
                print({k: row[k] for k in ("seed", "trajectory", "window", "overlap", "mode", "merge", "accepted",
                                           "windows", "ate_pct", "new_kf_per_model_s")}, flush=True)
                write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
