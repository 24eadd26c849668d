"""The demo's command line and orchestration: bag, node process, replay, flush, outputs, report
(what happens in which order: see httm_ros.tools.demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from httm_ros.timing import StageTimer
from httm_ros.tools import demo as demo_package

from ..bag_io import BagError
from ..launch_plan import NODE_NAME, LaunchPlan, resolve_launch_arguments
from ..replay import FlushError, Player, call_flush
from ..run_summary import summarize
from .artifacts import write_outputs
from .console import log, print_report
from .demo_bag import demo_bag
from .node_process import DemoError, Watch, start_node, stop_node
from .recorder import Recorder, node_idle
from .demo_settings import Settings, apply_overrides, choose_settings, describe, node_params, write_params_file

STALE_OUTPUTS = ("map.ply", "trajectory.tum", "preview.png", "viewer.png", "summary.json")


def run_demo(args: argparse.Namespace) -> int:
    """The whole demo; returns the exit status."""
    import torch

    from httm_ros.tools.local_dds import RosContext, ros_env

    demo_timer = StageTimer(mode="wall")
    s = choose_settings(torch.cuda.is_available() and args.device != "cpu", args.weights, _synth(args))
    apply_overrides(s, args)
    log(describe(s))
    log("weights: " + (s.checkpoint or "none -> deterministic TEST WEIGHTS (geometry meaningless; "
                                        "WEIGHTS=/path/model.safetensors scripts/demo for VGGT-1B)"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in STALE_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    bag = demo_bag(s, Path(args.cache_dir))
    launch = _launch_plan(s, bag, write_params_file(out / "demo_params.yaml", node_params(s, s.frames)))
    env = {**os.environ, **ros_env("httm-demo"), "PYTHONUNBUFFERED": "1"}
    log(f"starting reconstruct_node (log: {out / 'node.log'}):\n       reconstruct_node "
        + " ".join(launch.ros_args()))
    ctx = RosContext("httm-demo")
    proc = start_node(launch.ros_args(), env, out / "node.log")
    try:
        summary = _drive(ctx, proc, out, bag, s, launch, args.timeout)
    finally:
        code = stop_node(proc)
        ctx.close()
    summary["node_exit_status"] = code
    summary["demo_wall_s"] = round(demo_timer.lap("demo"), 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_report(out, summary)
    return 0


def _synth(args: argparse.Namespace) -> Optional[Path]:
    """The shipped httm-vggt-synth, unless --weights or a test-weights --model-config is given; a loud
    warning when it should run but its file is missing (the demo then runs on test weights)."""
    from httm_ros.weights import FOLDER, SYNTH_NAME, synth_weights

    if args.weights or args.model_config not in (None, "synth"):
        return None
    path = synth_weights()
    if path is None:
        log(f"WARNING: the shipped {SYNTH_NAME} weights are missing ({FOLDER / SYNTH_NAME}.safetensors): "
            "falling back to deterministic TEST WEIGHTS")
        if args.model_config == "synth":
            args.model_config = None
    return path


def _launch_plan(s: Settings, bag: Path, params_file: Path) -> LaunchPlan:
    """What ``ros2 launch httm_ros reconstruct.launch.py bag:=<bag> ...`` would give the node."""
    launch = {"bag": str(bag), "extra_params_file": str(params_file), "device": s.device}
    launch.update({"checkpoint": s.checkpoint} if s.checkpoint else {"allow_test_weights": "true"})
    return resolve_launch_arguments(launch)


def _drive(ctx, proc, out: Path, bag: Path, s: Settings, launch: LaunchPlan, timeout: float) -> dict:
    """Replay into the running node, wait until it is done, and write the outputs."""
    from rclpy.node import Node

    fqn = "/" + NODE_NAME
    watch = Watch(proc, out / "node.log")
    recorder = Recorder(ctx.context, fqn)
    ctx.add(recorder.node)
    feeder = ctx.add(Node("httm_demo_player", context=ctx.context))
    player = Player(feeder, bag, launch.image_topic, rate=s.rate, depth=max(10, s.frames))
    ready_timer = StageTimer(mode="wall")
    watch.until(lambda: player.publisher.get_subscription_count() > 0 and recorder.subs["stats"].get_publisher_count() > 0,
                timeout, "the node to load the model and subscribe")
    log(f"node ready after {ready_timer.lap('ready'):.1f} s; replaying {player.topic.count} frames of "
        f"{player.topic.name} at rate {s.rate:g} with /clock")
    stop = threading.Event()
    sent = player.play(stop)
    clock = threading.Thread(target=player.hold_clock, args=(stop,), daemon=True)
    clock.start()
    try:
        _wait_done(watch, recorder, feeder, fqn, sent, timeout)
    finally:
        stop.set()
        clock.join(2.0)
    import torch

    from httm_ros.provenance import environment

    summary = summarize(recorder.messages("stats"),
                        {"frames_published": sent, "settings": asdict(s), "test_weights": s.test_weights,
                         "bag": str(bag), "node_diagnostics": recorder.snapshot()[0],
                         "environment": environment(torch.device(s.device), program="httm-demo")})
    summary["outputs"] = write_outputs(out, recorder, summary, bag, s, s.test_weights)
    return summary


def _wait_done(watch: Watch, recorder: Recorder, feeder, fqn: str, sent: int, timeout: float) -> None:
    """Every frame taken, ~/flush called, the last window and its map and path received."""
    progress = lambda: (recorder.count("stats"), recorder.snapshot()[0].get("keyframes"))  # noqa: E731
    watch.until(lambda: node_idle(recorder.snapshot()[0], recorder.messages("stats"), sent, False),
                timeout, "the node to take every frame", progress)
    seen = recorder.snapshot()[1]
    call_flush(feeder, fqn, 30.0)
    log(f"all {sent} frames taken; ~/flush called for the last window")
    watch.until(lambda: recorder.snapshot()[1] >= seen + 2
                and node_idle(recorder.snapshot()[0], recorder.messages("stats"), sent, True),
                timeout, "the last window", progress)
    _wait_final_map(watch, recorder)


def _wait_final_map(watch: Watch, recorder: Recorder) -> None:
    """The latched ~/map and ~/path of the last accepted window (published before its stats)."""
    stats = [m for m in recorder.messages("stats") if m.alignment_accepted]
    if not stats:
        return
    stamp = stats[-1].header.stamp

    def arrived(name: str) -> bool:
        msgs = recorder.messages(name)
        return bool(msgs) and msgs[-1].header.stamp == stamp

    watch.until(lambda: arrived("map") and arrived("path"), 30.0, "the final ~/map and ~/path")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="httm-demo", description=demo_package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=os.environ.get("WEIGHTS") or None,
                   help="VGGT-1B checkpoint (default: $WEIGHTS; none: the shipped httm-vggt-synth)")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--cache-dir", default=".cache/demo", help="where the demo bag is cached (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--frames", type=int, help="frames of the synthetic sequence")
    p.add_argument("--size", type=int, help="image and model input width (multiple of 14)")
    p.add_argument("--model-config", choices=("1b", "tiny", "synth"),
                   help="network (default: synth, the shipped httm-vggt-synth, or 1b with --weights); 1b or "
                        "tiny without --weights: deterministic test weights (tiny: a fast plumbing check)")
    p.add_argument("--window-size", type=int, help="keyframes per window")
    p.add_argument("--window-overlap", type=int, help="keyframes shared by consecutive windows")
    p.add_argument("--rate", type=float, help="replay rate (default: 1.0, recorded speed)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds without progress before giving up (default: %(default)s)")
    args = p.parse_args(argv)
    if args.size is not None and (args.size < 14 or args.size % 14):
        p.error("--size must be a positive multiple of 14")
    if args.frames is not None and args.frames < 2:
        p.error("--frames must be >= 2")
    if args.model_config == "tiny" and args.weights:
        p.error("--model-config tiny cannot load a VGGT-1B checkpoint")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run_demo(args)
    except (DemoError, FlushError, BagError) as err:
        print(f"httm-demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("httm-demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
