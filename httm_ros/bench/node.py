"""Benchmark of reconstruct_node's overhead: everything but the model forward, per window.

    python -m httm_ros.bench node --out bench/node_overhead_cpu.json             # ROS host (CPU)
    python -m httm_ros.bench node --device cuda --model 1b --no-ros --out bench/node_gpu.json

Sections (each where it can run):
- ``pointcloud2``: packing 1M coloured points into a PointCloud2 (``codec.pointcloud2_xyzrgb``,
  one bulk copy), decoding it back, and rclpy's serialisation of it (what ``publish`` does).
- ``node`` (needs rclpy and the built messages): the real node in this process with an
  OraclePredictor in place of the model, fed rgb8 518x392 frames over DDS (shared memory) by a
  paced publisher, every output subscribed by a separate process. Windows of 24 keyframes
  (overlap 8). Per window it records the node's own work: decode (every frame since the previous
  window; executor thread), queue, host copies (inference thread), conversion and publish calls
  (publisher thread, beside the next window's inference), the latency from the last keyframe to
  the stats message, and the core's non-model stages (preprocess, align, filter, unproject, map).
- ``conversion`` (needs only the message packages, not rclpy or DDS): the node's work per window
  without the publish calls, with the core on ``--device``: decoding the new frames, host copies
  (``messages.host_copies``, map snapshot included: the only node work on the inference thread)
  and message conversion (``messages.window_messages``, on the publisher thread).
- ``model`` (``--model tiny|1b``): one VGGT forward on the same 24 frames (deterministic test
  weights; timing only), with HTTM merging and dense, median of ``--repeats`` after a warm-up.
The JSON holds the exact command, the git commit, the device and every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..provenance import device_name, git_commit
from ..timing import StageTimer

WIDTH, HEIGHT = 518, 392
NODE_KEYS = ("decode_ms", "queue_ms", "host_copy_ms", "convert_ms", "publish_calls_ms", "latency_ms")
CORE_KEYS = ("core_preprocess_ms", "core_align_ms", "core_filter_ms", "core_unproject_ms", "core_map_update_ms",
             "core_post_ms")


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        timer = StageTimer("cpu", "wall")
        fn()
        times.append(1e3 * timer.lap("call"))
    return round(statistics.median(times), 3)


# ----------------------------------------------------------------------------- PointCloud2
def bench_pointcloud2(points: int = 1_000_000, repeats: int = 5) -> dict:
    """Packing / decoding / serialising ``points`` coloured points."""
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from httm_ros.ros import codec

    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (points, 3), dtype=np.uint8)
    msg = codec.pointcloud2_xyzrgb(xyz, rgb, Header(frame_id="map"))
    out = {"points": points, "bytes": len(msg.data),
           "pack_ms": _median_ms(lambda: codec.pointcloud2_xyzrgb(xyz, rgb, Header(frame_id="map")), repeats),
           "decode_ms": _median_ms(lambda: codec.decode_pointcloud2_xyzrgb(msg), repeats)}
    try:
        from rclpy.serialization import deserialize_message, serialize_message
    except ImportError:
        return out
    data = serialize_message(msg)
    out["serialize_ms"] = _median_ms(lambda: serialize_message(msg), repeats)
    out["deserialize_ms"] = _median_ms(lambda: deserialize_message(data, PointCloud2), repeats)
    return out


# ----------------------------------------------------------------------------- the node over DDS
def _sequence(windows: int, keyframes: int, overlap: int, device: str = "cpu"):
    from httm_ros.synthetic import demo_sequence

    frames = keyframes + (windows - 1) * (keyframes - overlap)
    timer = StageTimer("cpu", "wall")
    seq = demo_sequence(num_frames=frames, width=WIDTH, height=HEIGHT, seed=0, speed=0.03, device=device)
    return seq, timer.lap("render")


def bench_node(seq, args) -> dict:
    """The node in-process with an oracle predictor, a subscriber process on every output."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from httm_ros.ros import codec
    from httm_ros.tools.local_dds import RosContext, ros_env, wait_for, wait_matched
    from httm_ros.ros.reconstruct_node import ReconstructNode
    from httm_ros.synthetic.oracle import OraclePredictor

    ctx = RosContext("httm_ros.bench.node")
    env = {**os.environ, **ros_env("httm_ros.bench.node")}
    sink = subprocess.Popen([sys.executable, "-m", "httm_ros.bench", "node", "--sink", "/bench/reconstruct_node"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        overrides = dict(image_size=WIDTH, window_size=args.keyframes, window_overlap=args.overlap,
                         keyframe_policy="every", qos_reliability="reliable", qos_depth=10, device=args.device)
        node = ctx.add(ReconstructNode(predictor=OraclePredictor(seq, seed=0), context=ctx.context,
                                       namespace="/bench",
                                       parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]))
        feeder = ctx.add(Node("bench_feeder", context=ctx.context))
        pub = feeder.create_publisher(Image, "/bench/image", 10)
        for publisher in (pub, *(p for t, p in node.pub.items() if t != "diagnostics")):
            wait_matched(publisher, 1, 60.0)
        messages = [codec.rgb_to_image(img, codec.make_header(codec.sec_to_stamp(float(t)), "camera"))
                    for img, t in zip(seq.images, seq.timestamps)]
        for i, msg in enumerate(messages):                 # paced: one frame at a time, like a camera
            pub.publish(msg)
            wait_for(lambda: node.rec.counters.frames_received > i, 120.0, f"frame {i} processed")
        wait_for(lambda: len(node.history) >= args.windows, 120.0, "all windows")
        history = list(node.history)
        node.shutdown()
    finally:
        sink.stdin.close()
        received = sink.stdout.read()
        sink.wait(30)
        ctx.close()
    return _summarise_node(history, received)


def _summarise_node(history: List[dict], received: str) -> dict:
    aligned = [h for h in history[1:] if h["keyframes"] == history[0]["keyframes"]] or history
    med = {k: round(statistics.median(h[k] for h in aligned), 2) for k in NODE_KEYS + CORE_KEYS}
    med["node_overhead_ms"] = round(sum(med[k] for k in NODE_KEYS[:-1]), 2)
    med["inference_thread_ms"] = med["host_copy_ms"]          # the rest runs beside the next window
    med["core_non_model_ms"] = round(med["core_preprocess_ms"] + med["core_post_ms"], 2)
    return {"median_over_windows_1_on": med, "windows": [{k: (round(v, 3) if isinstance(v, float) else v)
                                                          for k, v in h.items()} for h in history],
            "subscriber_received": json.loads(received or "{}")}


def run_sink(node_fqn: str) -> int:
    """Subscriber process: count every output of ``node_fqn`` until stdin closes; print JSON."""
    from httm_ros.tools.local_dds import RosContext, make_collector

    ctx = RosContext("httm_ros.bench.node", domain=int(os.environ["ROS_DOMAIN_ID"]))
    col = ctx.add(make_collector(ctx.context, node_fqn, name="bench_sink", diagnostics=False))
    sys.stdin.read()

    def counts() -> dict:
        return {topic: col.count(topic) for topic in list(col.messages)}

    last, deadline = None, time.monotonic() + 30.0                # drain what is still in flight
    while counts() != last and time.monotonic() < deadline:
        last = counts()
        time.sleep(1.0)
    print(json.dumps(counts()))
    ctx.close()
    return 0


# ----------------------------------------------------------------------------- conversions
def bench_conversion(seq, args) -> dict:
    """The node's per-window work except the publish calls, without DDS: decoding the window's
    new rgb8 frames, host copies (messages.host_copies, with the map snapshot) and message
    conversion (messages.window_messages). The core runs on ``args.device`` with the oracle."""
    from httm_ros.pipeline import StreamingReconstructor
    from httm_ros.synthetic.oracle import OraclePredictor

    from httm_ros.ros import codec
    from httm_ros.ros.core_config import stream_config
    from httm_ros.ros.params import defaults

    device = torch.device(args.device)
    values = {**defaults(), "image_size": WIDTH, "window_size": args.keyframes, "window_overlap": args.overlap,
              "keyframe_policy": "every"}
    rec = StreamingReconstructor(OraclePredictor(seq, seed=0), stream_config(values, str(device)))
    stamps = [codec.sec_to_stamp(float(t)) for t in seq.timestamps]
    msgs = [codec.rgb_to_image(img, codec.make_header(s, "camera")) for img, s in zip(seq.images, stamps)]
    rows, decode_ms = [], 0.0
    for i, msg in enumerate(msgs):
        timer = StageTimer("cpu", "wall")
        rgb = codec.image_to_rgb(msg)
        decode_ms += 1e3 * timer.lap("decode")
        for r in rec.push(rgb, float(seq.timestamps[i])):
            rows.append(_convert_window(r, rec, stamps, values, device, decode_ms))
            decode_ms = 0.0
    rows = rows[1:] or rows                                  # windows after the first (16 new frames)
    return {k: round(statistics.median(row[k] for row in rows), 3) for k in rows[0]}


def _convert_window(result, rec, stamps, values, device: torch.device, decode_ms: float) -> Dict[str, float]:
    """Time the node's two steps for one window: host copies (inference thread, with the map
    snapshot) and message conversion (publisher thread)."""
    from httm_ros.ros.messages import host_copies, window_messages

    window_stamps = [stamps[i] for i in result.frame_ids]
    timer = StageTimer(device, "wall_sync")              # synchronised: the copies are asynchronous
    map_points = rec.map.points()
    timer.lap("map_snapshot")
    outputs = host_copies(result, values, map_points)
    timer.lap("host_copy")
    msgs = window_messages(outputs, window_stamps, values, with_tf=True)
    timer.lap("convert")
    ms = timer.times_ms()
    images = msgs.depth + msgs.depth_confidence
    data_bytes = sum(len(m.data) for m in images) + len(msgs.points.data) + len(msgs.map.data)
    host_copy_ms = ms["map_snapshot"] + ms["host_copy"]                  # the map snapshot included
    return {"decode_ms": decode_ms, "map_snapshot_ms": ms["map_snapshot"], "host_copy_ms": host_copy_ms,
            "convert_ms": ms["convert"], "node_cpu_ms": decode_ms + host_copy_ms + ms["convert"],
            "new_keyframes": float(len(msgs.pose)), "window_points": float(msgs.points.width),
            "map_points": float(msgs.map.width), "message_mbytes": data_bytes / 1e6}


def memcpy_gbps(mbytes: int = 64, repeats: int = 10) -> float:
    """Host memory copy bandwidth (GB/s, bytes copied) of one numpy copy: the publish calls'
    cost (rclpy's conversion, serialisation and the shared-memory write) scales with it."""
    src = np.ones(mbytes * 2**20, np.uint8)
    dst = np.empty_like(src)
    ms = _median_ms(lambda: np.copyto(dst, src), repeats)
    return round(src.nbytes / 1e6 / ms, 2)


def bench_model(seq, args) -> dict:
    """One VGGT forward on the first window's frames, HTTM and dense."""
    from httm_ros.httm import HTTMConfig
    from httm_ros.pipeline import ModelPredictor
    from httm_ros.vggt.factory import build_model

    device = torch.device(args.device)
    model = build_model(args.model, allow_test_weights=True, device=str(device))
    images = torch.as_tensor(seq.images[:args.keyframes]).permute(0, 3, 1, 2).float().div(255).to(device)
    ids = list(range(args.keyframes))
    out = {"config": args.model, "weights": "deterministic test weights (timing only)", "frames": args.keyframes}
    for name, merge in (("httm", HTTMConfig()), ("none", None)):
        predictor = ModelPredictor(model, device=device, merge=merge)
        predictor.predict(images, ids)                                      # warm-up
        times = [1e3 * predictor.predict(images, ids).stats["model_s"] for _ in range(args.repeats)]
        out[f"{name}_ms_median"] = round(statistics.median(times), 2)
        out[f"{name}_ms"] = [round(t, 2) for t in times]
    if device.type == "cuda":
        out["gpu_memory_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


# ----------------------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``httm-bench node`` options (bench/cli.py registers the subcommand)."""
    p.add_argument("--out", default="bench/node_overhead_cpu.json", help="JSON output (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="device of the core (and model): cpu, cuda, cuda:N")
    p.add_argument("--keyframes", type=int, default=24, help="window size K (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=8, help="window overlap O (default: %(default)s)")
    p.add_argument("--windows", type=int, default=3, help="windows through the node (default: %(default)s)")
    p.add_argument("--points", type=int, default=1_000_000, help="PointCloud2 size (default: %(default)s)")
    p.add_argument("--model", choices=("none", "tiny", "1b"), default="none", help="also time a VGGT forward")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (default: %(default)s)")
    p.add_argument("--no-ros", action="store_true", help="skip the sections that need rclpy and the messages")
    p.add_argument("--sink", metavar="NODE", help=argparse.SUPPRESS)


def _has_messages() -> bool:
    try:
        import sensor_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def _has_ros() -> bool:
    try:
        import rclpy  # noqa: F401
        from httm_ros.msg import WindowStats  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``httm-bench node``: the sections that can run here, into ``args.out`` (JSON); ``argv``:
    the httm-bench arguments, recorded as the command."""
    if args.sink:
        return run_sink(args.sink)
    ros = not args.no_ros and _has_ros()
    seq, render_s = _sequence(args.windows, args.keyframes, args.overlap, args.device)
    report = {"command": "python -m httm_ros.bench " + " ".join(argv),
              "git_commit": git_commit(), "device": device_name(torch.device(args.device)),
              "host_cpu": device_name(torch.device("cpu")), "torch": torch.__version__,
              "host_memcpy_gbps": memcpy_gbps(),
              "image_wh": [WIDTH, HEIGHT], "keyframes": args.keyframes, "overlap": args.overlap,
              "frames": len(seq), "render_s": round(render_s, 2)}
    if _has_messages():
        report["pointcloud2"] = bench_pointcloud2(args.points, args.repeats)
        report["conversion"] = bench_conversion(seq, args)
    if ros:
        report["node"] = bench_node(seq, args)
    if args.model != "none":
        report["model"] = bench_model(seq, args)
        _ratios(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("node",)}, indent=1))
    if "node" in report:
        print("node medians (windows 1..):", json.dumps(report["node"]["median_over_windows_1_on"]))
    print(f"-> {out}")
    return 0


def _ratios(report: dict) -> None:
    """Node CPU work without the publish calls (``conversion``) over the model time, per window;
    with the node section, the full node overhead too."""
    for mode in ("httm", "none"):
        model_ms = report["model"][f"{mode}_ms_median"]
        if "conversion" in report:
            conv = report["conversion"]
            report[f"conversion_over_model_{mode}"] = round(conv["node_cpu_ms"] / model_ms, 4)
            report[f"inference_thread_over_model_{mode}"] = round(conv["host_copy_ms"] / model_ms, 4)
        if "node" in report:
            node = report["node"]["median_over_windows_1_on"]["node_overhead_ms"]
            report[f"node_overhead_over_model_{mode}"] = round(node / model_ms, 4)
