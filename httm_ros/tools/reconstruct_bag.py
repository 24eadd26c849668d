"""httm-reconstruct-bag: offline reconstruction of a bag's camera topic (no DDS, no ROS graph).

    httm-reconstruct-bag BAG --checkpoint model.safetensors [--topic T] [--out DIR] [-p NAME:=VALUE ...]

Runs the streaming core over the images of one topic (sensor_msgs/Image or CompressedImage) with
the node's parameters (config/reconstruct.yaml, ``--params-file``, ``-p name:=value``) and writes
into DIR:

- ``bag/``: an MCAP rosbag2 with the node's output topics (/reconstruct_node/points, map, depth,
  depth_confidence, camera_info, pose, path, stats and /tf), made by the node's own message
  conversion (httm_ros.ros.messages / codec / window_stats), so it replays into RViz like a live run;
- ``map.ply`` (coloured voxel map), ``trajectory.tum`` (keyframe camera-to-world poses), both in
  the world frame of the bag's messages (REP 103, docs/ROS.md "Frames and TF"),
  ``report.json`` (parameters, per-window statistics, timings).

Everything is written under a temporary name and renamed to DIR when the run succeeds; an
unreadable, truncated or unsuitable bag is one clear error and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from httm_ros.timing import StageTimer

from .bag_io import BagError, OutputBag, choose_topic, read_messages
from .launch_plan import NODE_NAME, share_directory
from .run_summary import format_summary, summarize

LOG = logging.getLogger("httm_ros.reconstruct_bag")


# ----------------------------------------------------------------------------- parameters
class ParamsError(ValueError):
    """Bad parameter files or values; ``str(err)`` says which."""


def _node_blocks(data: dict) -> List[dict]:
    """ros__parameters blocks of a params file that apply to reconstruct_node."""
    keys = ("/**", "**", NODE_NAME, "/" + NODE_NAME)
    return [block["ros__parameters"] for key, block in data.items()
            if (key in keys or str(key).endswith("/" + NODE_NAME))
            and isinstance(block, dict) and isinstance(block.get("ros__parameters"), dict)]


def load_params_file(path) -> Dict[str, Any]:
    """name -> value from a ROS 2 params file (blocks for /** or reconstruct_node)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ParamsError(f"params file {path}: {err}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: not a ROS 2 parameter file")
    values: Dict[str, Any] = {}
    for block in _node_blocks(data):
        values.update(block)
    return values


def parse_override(text: str) -> tuple:
    """'name:=value' (value as YAML, as ``ros2 run ... -p`` reads it) -> (name, value)."""
    import yaml

    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise ParamsError(f"-p {text!r}: expected NAME:=VALUE")
    return name.strip(), yaml.safe_load(value)


def node_values(files: Sequence, overrides: Sequence[str]) -> Dict[str, Any]:
    """All node parameters: defaults, then the files in order, then the overrides; validated, the
    window settings left at 0 / 'auto' resolved (``params.resolved``)."""
    from httm_ros.ros import params

    values = params.defaults()
    given: Dict[str, Any] = {}
    for path in files:
        given.update(load_params_file(path))
    given.update(parse_override(text) for text in overrides)
    given.pop("use_sim_time", None)
    unknown = sorted(set(given) - set(values))
    if unknown:
        raise ParamsError(f"unknown parameter(s): {', '.join(unknown)}")
    for name, value in given.items():
        if params.BY_NAME[name].type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    errors = params.validate(values)
    if errors:
        raise ParamsError("invalid parameters: " + "; ".join(errors))
    return params.resolved(values)                        # window settings 0 / auto: the model card's


# ----------------------------------------------------------------------------- the run
@dataclass
class RunState:
    """What one offline run accumulates besides the core's own state."""

    values: Dict[str, Any]
    topics: Dict[str, str]
    path: List[Any] = field(default_factory=list)
    stats: List[Any] = field(default_factory=list)
    accepted_since_map: int = 0
    decode_ms: float = 0.0


def output_topics(node: str = NODE_NAME) -> Dict[str, str]:
    """Output name -> topic in the output bag, as the node names them."""
    names = ("points", "map", "depth", "depth_confidence", "camera_info", "pose", "path", "stats")
    return {**{n: f"/{node}/{n}" for n in names}, "tf": "/tf"}


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def save_world_files(rec, out_dir: Path) -> None:
    """map.ply and trajectory.tum in the published world frame (REP 103, like ~/map and ~/path)."""
    from httm_ros.io.ply import save_ply
    from httm_ros.io.tum import save_tum
    from httm_ros.ros.messages import to_world_points, to_world_poses

    xyz, rgb = rec.map.points()                                              # [N, 3] each
    save_ply(out_dir / "map.ply", to_world_points(xyz), rgb)
    save_tum(out_dir / "trajectory.tum", rec.trajectory.stamps, to_world_poses(rec.trajectory.cam_to_world()))


def write_window(out: OutputBag, result, runner, state: RunState, stamps, counters, queue) -> None:
    """One window's messages (what the node would publish) into the output bag."""
    from httm_ros.ros import codec
    from httm_ros.ros.messages import host_copies, window_messages
    from httm_ros.ros.node_counters import NodeTimings
    from httm_ros.ros.window_stats import merge_outliers, window_stats

    values, rec = state.values, runner.reconstructor
    timer = StageTimer(mode="wall")
    timings = NodeTimings(decode_ms=state.decode_ms)
    state.decode_ms = 0.0
    counters.windows_failed += bool(result.stats.get("error"))
    counters.windows_rejected += not result.accepted
    if result.accepted:
        state.accepted_since_map += 1
        due = values["publish_map"] and state.accepted_since_map >= values["map_publish_every"]
        state.accepted_since_map = 0 if due else state.accepted_since_map
        outputs = host_copies(result, values, rec.map.points() if due else None)
        timings.host_copy_ms = 1e3 * timer.lap("host_copy")
        msgs = window_messages(outputs, stamps, values, with_tf=values["publish_tf"])
        timings.convert_ms = 1e3 * timer.lap("convert")
        _write_messages(out, msgs, state, stamps)
        timings.publish_calls_ms = 1e3 * timer.lap("publish_calls")
    timer.lap("stats")
    timings.latency_ms = sum(timer.times_ms().values()) + float(result.timings.get("total", 0.0)) * 1e3
    stats = window_stats(result, codec.make_header(stamps[-1], values["world_frame"]),
                         tokens_per_frame=runner.tokens_per_frame(result.image_hw), counters=counters,
                         timings=timings, core_counters=rec.counters, queue=queue, map_points=len(rec.map),
                         outliers=merge_outliers(getattr(runner.predictor, "model", None)), device=runner.device,
                         loops=rec.loops)
    state.stats.append(stats)
    if values["publish_stats"]:
        out.write_message(state.topics["stats"], stats, _ns(stamps[-1]))


def _write_messages(out: OutputBag, msgs, state: RunState, stamps) -> None:
    """The window's messages, in the order the node publishes them."""
    from nav_msgs.msg import Path as PathMsg

    from httm_ros.ros import codec

    values, topics = state.values, state.topics
    for name in ("depth", "depth_confidence", "camera_info") + (("pose",) if values["publish_pose"] else ()):
        for msg in getattr(msgs, name):
            out.write_message(topics[name], msg, _ns(msg.header.stamp))
    state.path.extend(msgs.pose)
    if values["publish_path"]:
        out.write_message(topics["path"], PathMsg(header=codec.make_header(stamps[-1], values["world_frame"]),
                                                  poses=state.path), _ns(stamps[-1]))
    for tf in msgs.tf:
        out.write_tf([tf], _ns(tf.header.stamp), topics["tf"])
    for name in ("points", "map"):
        if getattr(msgs, name) is not None:
            out.write_message(topics[name], getattr(msgs, name), _ns(stamps[-1]))


def _decode(raw: bytes, msg_class, bag_time_ns: int, codec, limits):
    """Serialized image -> (rgb, stamp); a zero header stamp is replaced by the bag time."""
    from rclpy.serialization import deserialize_message

    msg = deserialize_message(raw, msg_class)
    rgb = codec.decode_any(msg, limits)
    stamp = msg.header.stamp
    if stamp.sec == 0 and stamp.nanosec == 0:
        stamp = codec.sec_to_stamp(bag_time_ns * 1e-9)
    return rgb, stamp


def run_bag(bag, topic_name: Optional[str], values: Dict[str, Any], out_dir: Path, runner,
            max_frames: Optional[int] = None) -> dict:
    """Reconstruct ``bag`` into ``out_dir`` (which must not exist yet); returns the report."""
    from sensor_msgs.msg import CompressedImage, Image

    from httm_ros.pipeline.stream import model_input_size
    from httm_ros.ros import codec
    from httm_ros.ros.codec import StampBook
    from httm_ros.ros.core_config import input_limits
    from httm_ros.ros.frame_queue import FrameQueue
    from httm_ros.ros.loop_outputs import LoopOutputs
    from httm_ros.ros.node_counters import NodeCounters
    from httm_ros.vggt.preprocess import resize_rgb

    topic = choose_topic(bag, topic_name)
    msg_class = CompressedImage if topic.input_type == "compressed" else Image
    state = RunState(values, output_topics())
    counters, queue, book, rec = NodeCounters(), FrameQueue(1), StampBook(), runner.reconstructor
    limits = input_limits(values, rec.config.image_width)
    codec.apply_pillow_limit(limits)
    run_timer = StageTimer(mode="wall")
    with OutputBag(out_dir / "bag") as out:
        for bag_ns, raw in read_messages(bag, topic.name):
            if max_frames is not None and counters.frames_received >= max_frames:
                break
            decode_timer = StageTimer(mode="wall")
            try:
                rgb, stamp = _decode(raw, msg_class, bag_ns, codec, limits)
            except codec.ImageDecodeError as err:
                counters.reject(err.reason, str(err))
                LOG.warning("skipped an image that cannot be decoded: %s", err)
                continue
            counters.enter_queue(drop_oldest=False, dropped_newest=False)    # the node's accounting:
            counters.take()                                                   # received = processed + skipped + drops
            state.decode_ms += 1e3 * decode_timer.lap("decode")
            hw = rec.model_hw
            if hw is not None and model_input_size(*rgb.shape[:2], rec.config.image_width) != hw:
                counters.frames_rescaled += 1
                rgb = resize_rgb(rgb, hw)
            seconds = codec.stamp_to_sec(stamp)
            book.add(seconds, stamp)
            keyframes = rec.counters.keyframes
            for result in rec.push(rgb, seconds):
                write_window(out, result, runner, state, [book.get(s) for s in result.stamps], counters, queue)
                _log_window(result, state)
            counters.finish("processed" if rec.counters.keyframes > keyframes else "skipped")
        for result in rec.flush():
            write_window(out, result, runner, state, [book.get(s) for s in result.stamps], counters, queue)
            _log_window(result, state)
        out.commit()
        bag_counts = dict(out.counts)
    loop_files = LoopOutputs().export(rec, str(out_dir))    # the last correction applied first: then the world files
    save_world_files(rec, out_dir)
    report = {"summary": summarize(state.stats), "bag": str(bag), "topic": topic.name, "input_type": topic.input_type,
              "frames_bad_input": counters.frames_bad_input, "frames_rescaled": counters.frames_rescaled,
              "wall_s": round(run_timer.lap("run"), 2), "output_messages": bag_counts}
    if loop_files:                                          # keyframes_before/after.tum, pose_graph.g2o
        report["loop_closure"] = {**rec.loops.summary(), "files": [Path(f).name for f in loop_files]}
    return report


def _log_window(result, state: RunState) -> None:
    s = state.stats[-1]
    verdict = "accepted" if result.accepted else f"rejected ({s.alignment_message})"
    LOG.info("window %d: %d keyframes, model %.0f ms, kept q %.3f kv %.3f, %s, map %d points",
             result.index, result.num_keyframes, s.latency_model_ms, s.kept_q_ratio, s.kept_kv_ratio,
             verdict, s.map_points)


# ----------------------------------------------------------------------------- command line
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="httm-reconstruct-bag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--topic", help="image topic (needed when the bag has several)")
    p.add_argument("--out", help="output folder (default: outputs/<bag name>_reconstruction)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--params-file", action="append", default=None,
                   help="node parameter file(s), applied in order (default: config/reconstruct.yaml)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="one node parameter, as with ros2 run ... -p (repeatable)")
    p.add_argument("--checkpoint", help="VGGT checkpoint (same as -p checkpoint:=PATH)")
    p.add_argument("--allow-test-weights", action="store_true",
                   help="without a checkpoint, use deterministic test weights (meaningless geometry)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (same as -p device:=...)")
    p.add_argument("--max-frames", type=int, help="stop after this many images")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> List[str]:
    out = list(args.param)
    if args.checkpoint:
        out.append(f'checkpoint:="{args.checkpoint}"')
    if args.allow_test_weights:
        out.append("allow_test_weights:=true")
    if args.device:
        out.append(f'device:="{args.device}"')
    return out


def _output_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path("outputs") / f"{Path(args.bag).name.split('.')[0]}_reconstruction"


def reconstruct(args: argparse.Namespace) -> dict:
    """The whole job: parameters, model, run into a temporary folder, rename; returns the report."""
    from httm_ros.ros.model_runner import build_model_runner

    files = args.params_file or [str(share_directory() / "config" / "reconstruct.yaml")]
    values = node_values(files, _overrides(args))
    final = _output_dir(args)
    if final.exists() and not args.overwrite:
        raise ParamsError(f"{final} exists; pass --overwrite or another --out")
    choose_topic(args.bag, args.topic)                    # bag problems before the model loads
    runner = build_model_runner(values, warn=LOG.warning, error=LOG.error)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = run_bag(args.bag, args.topic, values, tmp, runner, args.max_frames)
        report.update(_report_tail(values, runner, report, final))
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _report_tail(values, runner, report, final: Path) -> dict:
    return {"model": runner.description, "test_weights": runner.test_weights, "parameters": values,
            "outputs": {"bag": str(final / "bag"), "map": str(final / "map.ply"),
                        "trajectory": str(final / "trajectory.tum")}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from httm_ros.vggt import CheckpointError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        report = reconstruct(args)
    except (BagError, ParamsError, CheckpointError) as err:
        print(f"httm-reconstruct-bag: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("httm-reconstruct-bag: interrupted; nothing written", file=sys.stderr)
        return 130
    print("\n".join(format_summary(report["summary"])))
    if report["test_weights"]:
        print("NOTE: deterministic TEST WEIGHTS were used: the geometry is meaningless.")
    print(f"wrote {report['outputs']['bag']}, {report['outputs']['map']}, {report['outputs']['trajectory']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
