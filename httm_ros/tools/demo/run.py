"""httm-demo: the default demo (``scripts/demo``): a synthetic rosbag replayed into reconstruct_node.

    httm-demo [--weights model.safetensors] [--out outputs/demo] [--frames N] [--model-config 1b|tiny]

1. renders the built-in synthetic room (httm_ros.synthetic) into a rosbag2 (MCAP, topics
   /camera/image_raw and /camera/camera_info), once: it is cached under .cache/demo/;
2. starts the installed ``reconstruct_node`` executable as a separate process with the parameters
   and remappings that ``ros2 launch httm_ros reconstruct.launch.py bag:=<demo bag>`` gives it
   (httm_ros.replay.launch_args, config/reconstruct.yaml + the demo's own params file);
3. replays the bag into it over DDS with /clock (httm_ros.replay.replay.Player; DDS stays on this
   host: own domain id, shared-memory transport, localhost discovery), calls ~/flush at the end;
4. records every output topic, and writes to the output folder: ``outputs_bag/`` (MCAP of the
   recorded outputs), ``map.ply``, ``trajectory.tum``, ``preview.png`` (map + trajectory + input
   frames), ``summary.json``, ``node.log``, ``demo_params.yaml``; prints a summary.

Sizes: on a CUDA GPU the full VGGT-1B at 518 px; on a CPU with a checkpoint VGGT-1B at 224 px on a
few frames (about a minute per window); on a CPU without a checkpoint the tiny test network at
224 px (well under a minute). Without a checkpoint the model runs on deterministic test weights:
every stage runs, the geometry is meaningless, and the demo says so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .bag import BagError, OutputBag, read_messages
from .launch_args import NODE_NAME, installed_executable, plan

IMAGE_TOPIC = "/camera/image_raw"
INFO_TOPIC = "/camera/camera_info"
BAG_START = 100.0                      # bag time of the first frame, s (sim time 0 means "unset")
BAG_VERSION = 1                        # bump when the demo bag's content changes


class DemoError(RuntimeError):
    """The demo cannot go on; ``str(err)`` says why (and where the node's log is)."""


def log(text: str) -> None:
    print(f"[demo] {text}", flush=True)


# ----------------------------------------------------------------------------- settings
@dataclass
class Settings:
    """What the demo runs: the synthetic sequence, the model and the node's window parameters."""

    frames: int
    width: int
    height: int
    model_config: str
    image_size: int
    window_size: int
    window_overlap: int
    keyframe_policy: str
    device: str
    checkpoint: Optional[str]
    rate: float


def choose_settings(cuda: bool, checkpoint: Optional[str]) -> Settings:
    """Defaults by machine: the real size on CUDA, small ones on a CPU (see the module docstring)."""
    if cuda:
        return Settings(120, 518, 392, "1b", 518, 16, 6, "motion", "cuda", checkpoint, 1.0)
    if checkpoint:
        return Settings(40, 224, 168, "1b", 224, 6, 2, "motion", "cpu", checkpoint, 1.0)
    return Settings(60, 224, 168, "tiny", 224, 6, 2, "motion", "cpu", None, 1.0)


def describe(s: Settings) -> str:
    """One line about what runs and why it is that size."""
    model = "VGGT-1B" if s.model_config == "1b" else "the tiny test network"
    text = f"{model} on {s.device} at {s.width}x{s.height}, {s.frames} frames, windows of {s.window_size} " \
           f"keyframes (overlap {s.window_overlap})"
    if s.device == "cpu" and s.model_config == "tiny":
        text += "; CPU without a checkpoint: small and fast (--model-config 1b for the VGGT-1B architecture, " \
                "about a minute per window here)"
    elif s.device == "cpu":
        text += "; on a CPU VGGT-1B takes about a minute per window"
    return text


def node_params(s: Settings, frames: int) -> Dict[str, object]:
    """The demo's parameters on top of config/reconstruct.yaml (written to demo_params.yaml)."""
    return {"model_config": s.model_config, "image_size": s.image_size, "window_size": s.window_size,
            "window_overlap": s.window_overlap, "keyframe_policy": s.keyframe_policy,
            "qos_reliability": "reliable", "qos_depth": max(10, frames), "queue_size": max(32, frames),
            "diagnostics_period": 0.25}


def write_params_file(path: Path, values: Dict[str, object]) -> Path:
    """A ROS 2 params file for reconstruct_node."""
    from .config_yaml import yaml_value

    lines = ["# reconstruct_node parameters of the demo (httm-demo), applied after config/reconstruct.yaml",
             "/**:", "  ros__parameters:"] + [f"    {k}: {yaml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- the demo bag
def demo_bag(s: Settings, cache_dir: Path, seed: int = 0) -> Path:
    """The synthetic demo sequence as a rosbag2 (MCAP): rgb8 images and the true camera info.
    Rendered once and cached (the name holds everything the content depends on)."""
    from sensor_msgs.msg import CameraInfo  # noqa: F401 - the message package must exist

    from httm_ros.ros import codec
    from httm_ros.synthetic import demo_sequence

    path = cache_dir / f"demo_{s.frames}f_{s.width}x{s.height}_seed{seed}_v{BAG_VERSION}"
    if (path / "metadata.yaml").exists():
        log(f"demo bag (cached): {path}")
        return path
    log(f"rendering the synthetic demo sequence: {s.frames} frames at {s.width}x{s.height} ...")
    t0 = time.perf_counter()
    seq = demo_sequence(num_frames=s.frames, width=s.width, height=s.height, seed=seed)
    with OutputBag(path) as bag:
        for i in range(len(seq)):
            stamp = codec.sec_to_stamp(BAG_START + float(seq.timestamps[i]))
            ns = stamp.sec * 1_000_000_000 + stamp.nanosec
            bag.write_message(IMAGE_TOPIC, codec.rgb_to_image(seq.images[i], codec.make_header(stamp, "camera")), ns)
            info = codec.camera_info(seq.intrinsics[i], s.width, s.height, codec.make_header(stamp, "camera"))
            bag.write_message(INFO_TOPIC, info, ns)
        bag.commit(overwrite=True)
    log(f"demo bag written in {time.perf_counter() - t0:.1f} s: {path}")
    return path


def thumbnails(bag: Path, count: int) -> List[tuple]:
    """(label, rgb) of the first, middle and last frame of the bag."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from httm_ros.ros import codec

    wanted = sorted({0, count // 2, count - 1})
    out = []
    for i, (_, raw) in enumerate(read_messages(bag, IMAGE_TOPIC)):
        if i in wanted:
            out.append((f"input frame {i}", codec.image_to_rgb(deserialize_message(raw, Image))))
    return out


# ----------------------------------------------------------------------------- recording
class Recorder:
    """Records the node's outputs as serialized messages (for the output bag) and keeps the
    latest /diagnostics values of the node (to know when it is idle)."""

    def __init__(self, context, node_fqn: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from httm_ros.ros.testing import OUTPUTS, _import

        self.node = Node("httm_demo_recorder", context=context)
        self.node_fqn = node_fqn
        self.records: List[tuple] = []                      # (topic, msgtype, receive ns, bytes)
        self.diagnostics: Dict[str, str] = {}
        self.diag_count = 0
        self._lock = threading.Lock()
        self.subs = {}
        for name, (type_path, latched) in OUTPUTS.items():
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            msgtype = type_path.replace(".msg.", "/msg/").replace(".", "/")
            self.subs[name] = self.node.create_subscription(
                _import(type_path), f"{node_fqn}/{name}", self._store(f"{node_fqn}/{name}", msgtype), qos, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _store(self, topic: str, msgtype: str):
        def callback(data: bytes) -> None:
            with self._lock:
                self.records.append((topic, msgtype, time.time_ns(), bytes(data)))
        return callback

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.node_fqn + ":"):
                with self._lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.diagnostics["_message"] = status.message
                    self.diag_count += 1

    def messages(self, name: str) -> list:
        """Deserialized messages of one output (e.g. "stats"), in arrival order."""
        from rclpy.serialization import deserialize_message

        from httm_ros.ros.testing import OUTPUTS, _import

        cls = _import(OUTPUTS[name][0])
        topic = f"{self.node_fqn}/{name}"
        with self._lock:
            raws = [r[3] for r in self.records if r[0] == topic]
        return [deserialize_message(raw, cls) for raw in raws]

    def count(self, name: str) -> int:
        topic = f"{self.node_fqn}/{name}"
        with self._lock:
            return sum(1 for r in self.records if r[0] == topic)

    def snapshot(self) -> tuple:
        """(diagnostics values, how many diagnostics arrived so far)."""
        with self._lock:
            return dict(self.diagnostics), self.diag_count


def node_idle(diag: Dict[str, str], stats: list, frames: int, flushed: bool) -> bool:
    """True when the node has taken every frame and no window is running; after the flush also
    no keyframe may be waiting (``stats``: WindowStats received so far, in order)."""
    if not diag:
        return False
    taken = int(diag["frames_received"]) >= frames and int(diag["queue_depth"]) == 0
    no_window = int(diag["windows"]) == len(stats)
    if not flushed:
        return taken and no_window
    last_total = int(stats[-1].keyframes_total) if stats else 0
    return taken and no_window and int(diag["keyframes"]) == last_total


# ----------------------------------------------------------------------------- the node process
def start_node(ros_args: Sequence[str], env: Dict[str, str], log_path: Path) -> subprocess.Popen:
    """The installed reconstruct_node executable, output to ``log_path``."""
    exe = installed_executable()
    if exe is None:
        raise DemoError("reconstruct_node is not installed: run scripts/colcon_build.sh and "
                        "source .ws/install/setup.bash first (scripts/demo does both)")
    handle = open(log_path, "w")
    try:
        return subprocess.Popen([sys.executable, str(exe), *ros_args], env=env, stdout=handle,
                                stderr=subprocess.STDOUT)
    finally:
        handle.close()


def stop_node(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGINT, then SIGKILL after ``timeout``; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Watch:
    """Waits with deadlines that fail early when the node process dies."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path

    def until(self, predicate, timeout: float, what: str, progress=None) -> None:
        """Wait for ``predicate()``; ``progress()`` (a value) changing restarts the deadline."""
        deadline, last = time.monotonic() + timeout, progress() if progress else None
        while not predicate():
            if self.proc.poll() is not None:
                raise DemoError(f"reconstruct_node exited ({self.proc.returncode}) while waiting for {what}; "
                                f"its log ({self.log_path}) ends with:\n{_tail(self.log_path)}")
            now = progress() if progress else None
            if now != last:
                deadline, last = time.monotonic() + timeout, now
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}; node log: {self.log_path}")
            time.sleep(0.05)


def request_flush(node, target: str, timeout: float) -> None:
    """Call ``target``/flush; the executor thread of the context does the spinning."""
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, f"{target}/flush")
    if not client.wait_for_service(timeout_sec=timeout):
        raise DemoError(f"service {target}/flush not available")
    future = client.call_async(Trigger.Request())
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise DemoError(f"no answer from {target}/flush within {timeout:.0f} s")
        time.sleep(0.02)


# ----------------------------------------------------------------------------- outputs
def path_to_matrices(path_msg) -> tuple:
    """nav_msgs/Path -> (stamps [N] s, camera-to-world [N,4,4])."""
    from httm_ros.pipeline.geometry import quat_to_rotmat

    poses = path_msg.poses if path_msg is not None else []
    mats = np.tile(np.eye(4), (len(poses), 1, 1))
    stamps = np.zeros(len(poses))
    for i, p in enumerate(poses):
        o, t = p.pose.orientation, p.pose.position
        mats[i, :3, :3] = quat_to_rotmat(np.array([o.x, o.y, o.z, o.w]))
        mats[i, :3, 3] = (t.x, t.y, t.z)
        stamps[i] = p.header.stamp.sec + 1e-9 * p.header.stamp.nanosec
    return stamps, mats


def write_outputs(out: Path, recorder: Recorder, summary: dict, bag: Path, settings: Settings,
                  test_weights: bool) -> Dict[str, str]:
    """Output bag, PLY, TUM, preview PNG and summary.json; returns their paths."""
    from httm_ros.pipeline.geometry import save_tum
    from httm_ros.pipeline.map import save_ply
    from httm_ros.ros.codec import decode_pointcloud2_xyzrgb

    from .preview import render_preview
    from .summary import format_summary

    with OutputBag(out / "outputs_bag") as ob:
        for topic, msgtype, ns, data in sorted(recorder.records, key=lambda r: r[2]):
            ob.write_raw(topic, msgtype, ns, data)
        ob.commit(overwrite=True)
    maps, paths = recorder.messages("map"), recorder.messages("path")
    xyz, rgb = decode_pointcloud2_xyzrgb(maps[-1]) if maps else (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    save_ply(out / "map.ply", xyz, rgb)
    stamps, mats = path_to_matrices(paths[-1] if paths else None)
    save_tum(out / "trajectory.tum", stamps, mats)
    warning = ("NO CHECKPOINT: deterministic TEST WEIGHTS - every stage ran, but the geometry is MEANINGLESS "
               "(WEIGHTS=model.safetensors scripts/demo for the real model)") if test_weights else None
    model = "VGGT-1B" if settings.model_config == "1b" else "tiny test network"
    title = (f"httm_ros demo: {summary['frames_received']} synthetic frames replayed from a rosbag into "
             f"reconstruct_node ({model}, merging {summary['merge_mode']})")
    image = render_preview(xyz, rgb, mats, thumbnails(bag, settings.frames), title,
                           format_summary(summary)[:2] + _verdict(summary), warning)
    image.save(out / "preview.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return {k: str(out / v) for k, v in (("bag", "outputs_bag"), ("map", "map.ply"), ("trajectory", "trajectory.tum"),
                                         ("preview", "preview.png"), ("summary", "summary.json"), ("log", "node.log"))}


# ----------------------------------------------------------------------------- the run
def run_demo(args: argparse.Namespace) -> int:
    """The whole demo; returns the exit status."""
    import torch

    from httm_ros.ros.testing import RosContext, ros_env

    t_start = time.perf_counter()
    s = choose_settings(torch.cuda.is_available() and args.device != "cpu", args.weights)
    _apply_overrides(s, args)
    log(describe(s))
    log("weights: " + (s.checkpoint or "none -> deterministic TEST WEIGHTS (geometry meaningless; "
                                        "WEIGHTS=/path/model.safetensors scripts/demo for the real model)"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("map.ply", "trajectory.tum", "preview.png", "summary.json"):
        (out / name).unlink(missing_ok=True)
    bag = demo_bag(s, Path(args.cache_dir))
    params_file = write_params_file(out / "demo_params.yaml", node_params(s, s.frames))
    launch = {"bag": str(bag), "extra_params_file": str(params_file), "device": s.device}
    launch.update({"checkpoint": s.checkpoint} if s.checkpoint else {"allow_test_weights": "true"})
    the_plan = plan(launch)
    env = {**os.environ, **ros_env("httm-demo"), "PYTHONUNBUFFERED": "1"}
    log(f"starting reconstruct_node (log: {out / 'node.log'}):\n       reconstruct_node "
        + " ".join(the_plan.ros_args()))
    ctx = RosContext("httm-demo")
    proc = start_node(the_plan.ros_args(), env, out / "node.log")
    try:
        summary = _drive(ctx, proc, out, bag, s, the_plan, args)
    finally:
        code = stop_node(proc)
        ctx.close()
    summary["node_exit_status"] = code
    summary["demo_wall_s"] = round(time.perf_counter() - t_start, 1)
    return _finish(out, summary, bag, s)


def _drive(ctx, proc, out: Path, bag: Path, s: Settings, the_plan, args) -> dict:
    """Replay into the running node, wait until it is done, and write the outputs."""
    from rclpy.node import Node

    from .replay import Player

    fqn = "/" + NODE_NAME
    watch = Watch(proc, out / "node.log")
    recorder = Recorder(ctx.context, fqn)
    ctx.add(recorder.node)
    feeder = ctx.add(Node("httm_demo_player", context=ctx.context))
    player = Player(feeder, bag, the_plan.image_topic, rate=s.rate, depth=max(10, s.frames))
    t0 = time.perf_counter()
    watch.until(lambda: player.publisher.get_subscription_count() > 0 and recorder.subs["stats"].get_publisher_count() > 0,
                args.timeout, "the node to load the model and subscribe")
    log(f"node ready after {time.perf_counter() - t0:.1f} s; replaying {player.topic.count} frames of "
        f"{player.topic.name} at rate {s.rate:g} with /clock")
    stop = threading.Event()
    sent = player.play(stop)
    clock = threading.Thread(target=player.hold_clock, args=(stop,), daemon=True)
    clock.start()
    try:
        progress = lambda: (recorder.count("stats"), recorder.snapshot()[0].get("keyframes"))  # noqa: E731
        watch.until(lambda: node_idle(recorder.snapshot()[0], recorder.messages("stats"), sent, False),
                    args.timeout, "the node to take every frame", progress)
        seen = recorder.snapshot()[1]
        request_flush(feeder, fqn, 30.0)
        log(f"all {sent} frames taken; ~/flush called for the last window")
        watch.until(lambda: recorder.snapshot()[1] >= seen + 2
                    and node_idle(recorder.snapshot()[0], recorder.messages("stats"), sent, True),
                    args.timeout, "the last window", progress)
        _wait_final_map(watch, recorder)
    finally:
        stop.set()
        clock.join(2.0)
    stats = recorder.messages("stats")
    from .summary import summarize

    summary = summarize(stats, {"frames_published": sent, "settings": asdict(s),
                                "test_weights": s.checkpoint is None, "bag": str(bag),
                                "node_diagnostics": recorder.snapshot()[0]})
    summary["outputs"] = write_outputs(out, recorder, summary, bag, s, s.checkpoint is None)
    return summary


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


def _finish(out: Path, summary: dict, bag: Path, s: Settings) -> int:
    from .summary import format_summary

    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print()
    for line in format_summary(summary):
        print("  " + line)
    for line in _verdict(summary):
        print("  " + line)
    if summary["test_weights"]:
        print("  NOTE: deterministic TEST WEIGHTS: every stage ran, but the geometry is MEANINGLESS.")
    print(f"  demo took {summary['demo_wall_s']:.0f} s; outputs in {out}/:")
    for key, path in summary["outputs"].items():
        print(f"    {key:<10} {path}")
    print(f"  open the preview: {summary['outputs']['preview']}")
    return 0


def _verdict(summary: dict) -> List[str]:
    """What a person should make of the window counts (and of a node that did not exit cleanly)."""
    lines = []
    if summary["windows"] == 0:
        lines.append("No window ran: too few keyframes for one window (see summary.json).")
    elif summary["windows_accepted"] == 0:
        lines.append("No window was accepted, so the map is empty (reasons in the table above).")
    elif summary["windows_accepted"] == 1 and summary["windows"] > 1:
        lines.append("Only the first window (which defines the world) was accepted: "
                     + ("with test weights the windows do not agree on their overlap, as expected."
                        if summary["test_weights"] else "later windows did not align (reasons above)."))
    if summary.get("node_exit_status") not in (0, None):
        lines.append(f"WARNING: reconstruct_node exited with status {summary['node_exit_status']} (see node.log).")
    return lines


def _apply_overrides(s: Settings, args: argparse.Namespace) -> None:
    for name in ("frames", "model_config", "window_size", "window_overlap", "rate"):
        value = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    if args.size is not None:
        s.width = s.image_size = args.size
        s.height = round(args.size * 0.75 / 14) * 14
    if args.device and args.device != "auto":
        s.device = args.device


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="httm-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=os.environ.get("WEIGHTS") or None,
                   help="VGGT-1B checkpoint (default: $WEIGHTS; none: deterministic test weights)")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--cache-dir", default=".cache/demo", help="where the demo bag is cached (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--frames", type=int, help="frames of the synthetic sequence")
    p.add_argument("--size", type=int, help="image and model input width (multiple of 14)")
    p.add_argument("--model-config", choices=("1b", "tiny"), help="network (default: by machine)")
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
    except (DemoError, BagError) as err:
        print(f"httm-demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("httm-demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
