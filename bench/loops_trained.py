"""Loop closure with the trained network (issue 18 "measured with the trained small model"): the
shipped httm-vggt-synth on a held-out two-lap walk (the camera comes back to the same views), the
anchored stream with the card's checks, with and without the pose graph; one JSON per run of this
script with provenance. A hand-sized measurement beside ``httm-bench loops`` (the oracle's drifts,
the wrong loop, the 10k-keyframe scale run), which this does not replace.

    python bench/loops_trained.py --seeds 1 --frames 920 --out bench/results/loops/synth6_two_laps.json
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httm_ros.bench.streaming import make_predictor, run_stream, stream_config, summary, \
    trained_network_run  # noqa: E402
from httm_ros.pipeline.pose_graph import LoopClosureConfig  # noqa: E402
from httm_ros.provenance import write_json  # noqa: E402
from httm_ros.synthetic import demo_sequence  # noqa: E402
from httm_ros.vggt.checkpoint import checkpoint_image_hw, checkpoint_stream_profile  # noqa: E402

KEEP = ("windows", "accepted", "keyframes", "ate_pct", "final_drift_pct", "scale_drift", "wall_s")


def one_stream(weights: str, seed: int, frames: int, loops: bool, window: int, overlap: int) -> dict:
    """Two laps of a held-out room (scene ``seed``), every frame a keyframe, anchored windows."""
    hw = checkpoint_image_hw(weights)
    seq = demo_sequence(num_frames=frames, width=hw[1], height=hw[0], seed=seed, speed=0.03, trajectory="walk")
    cfg = stream_config("anchored", window, overlap, min_motion=0.0, profile=checkpoint_stream_profile(weights))
    cfg.loop_closure = LoopClosureConfig(enabled=loops, synchronous=True)     # every update before the next window
    rec, results, wall = run_stream(seq, make_predictor("checkpoint", seq, 0, 0, 0, weights), cfg)
    graph = {}
    if rec.loops is not None:
        rec.loops.flush()                                # the end of the stream: pending loops are rejected
        rec.loops.wait()                                 # (queued on the solver thread)
        rec.loops.apply(rec)
        graph = rec.loops.summary()
        rec.loops.close()
    row = summary(seq, rec, results, wall)
    return {"seed": seed, "frames": frames, "loop_closure": loops, "segments": len(row["segments"]),
            **{k: row.get(k) for k in KEEP}, **graph}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="default: the shipped httm-vggt-synth")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--frames", type=int, default=920, help="two laps of the walk at 0.03 m/frame")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--overlap", type=int, default=6)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    weights, out = trained_network_run("loops_trained", "python bench/loops_trained.py", args)
    for seed in args.seeds:
        for loops in (False, True):
            row = one_stream(weights, seed, args.frames, loops, args.window, args.overlap)
            out["rows"].append(row)
            print(row)
            write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
