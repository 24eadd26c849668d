"""Fuzz suite, part 3 (issue 20): SIGINT and SIGTERM at random moments, in node subprocesses
(the installed executable, tiny model, CPU): during start-up (imports, rclpy init, parameters,
model build, warm-up) and while busy (frames flowing, a window running, frames queued). Every
run must end with exit code 0, within a bound, and no traceback or error log line. Moments come
from a seeded generator; the start-up runs of one signal go in parallel (3 processes).
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from httm_ros.tools.local_dds import RosContext, make_collector, wait_for, wait_matched  # noqa: E402

import fuzz_inputs as F  # noqa: E402

pytestmark = pytest.mark.fuzz

STOP_TIMEOUT = 20.0              # a stop must end within this (shutdown_timeout is 5 s)
START_TIMEOUT = 60.0
STARTUP_RUNS = 3
# Start-up: with the warm-up forward, the node is ready ~3-6 s after exec on 2 loaded cores.
STARTUP_ARGS = F.TINY_NODE[:-2] + ("-p", "warmup_forwards:=1")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def _finish(proc, log_path, what: str) -> None:
    """Wait for ``proc`` after its signal; exit 0, bounded, nothing unclean in its output."""
    try:
        proc.wait(STOP_TIMEOUT)
    except Exception:  # noqa: BLE001 - report a hang as a failure, not a stuck test
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"{what}: still running {STOP_TIMEOUT:.0f} s after the signal:\n"
                             f"{log_path.read_text()[-3000:]}")
    log = log_path.read_text()
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{log[-3000:]}"
    assert not F.unclean(log), f"{what}: {F.unclean(log)}\n{log[-3000:]}"


# Moments of start-up: (log line that anchors it, or None for the exec; seconds after it, lo..hi).
# The first log line of the node ("NO CHECKPOINT ...") comes when the model build starts, after
# the imports, rclpy init and the parameters; "ready:" after the model build and warm-up.
MOMENTS = ((None, 0.05, 2.0), ("NO CHECKPOINT", 0.0, 0.6), ("ready:", 0.0, 0.2))


def _wait_line(log_path, text: str, proc, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text():
        assert proc.poll() is None, f"the node exited before '{text}':\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no '{text}' after {timeout:.0f} s"
        time.sleep(0.005)


@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_at_random_moments_of_start_up(name, tmp_path):
    """One process per moment of MOMENTS, in parallel; the signal at a seeded random time after
    the moment's anchor (an impatient second signal in one run)."""
    rng = np.random.default_rng(100 + SIGNALS[name])
    delays = [float(rng.uniform(lo, hi)) for _, lo, hi in MOMENTS]
    twice = int(rng.integers(len(MOMENTS)))
    runs, errors = [], []

    def run(k: int) -> None:
        anchor, proc, log = MOMENTS[k][0], *runs[k][:2]
        try:
            if anchor is not None:
                _wait_line(log, anchor, proc)
            time.sleep(delays[k])
            runs[k][2].append("ready:" in log.read_text())      # was the node up already?
            proc.send_signal(SIGNALS[name])
            if k == twice:
                time.sleep(float(rng.uniform(0.0, 0.3)))
                if proc.poll() is None:
                    proc.send_signal(SIGNALS[name])
        except AssertionError as err:
            errors.append(err)

    for k in range(len(MOMENTS)):
        log = tmp_path / f"{name}_{k}.log"
        runs.append((F.start_node(f"{__name__}.{name}.{k}", log, "-r", f"__ns:=/sig{k}", *STARTUP_ARGS), log, []))
    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(MOMENTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(START_TIMEOUT + 10)
    for proc, _, _ in runs:
        if proc.poll() is None and errors:
            proc.kill()
    assert not errors, errors
    for k, (proc, log, up) in enumerate(runs):
        anchor = MOMENTS[k][0] or "exec"
        _finish(proc, log, f"{name} {delays[k]:.2f} s after '{anchor}' (node up: {up})")


@pytest.mark.parametrize("name, flush", [("SIGINT", True), ("SIGTERM", False)])
def test_signal_while_busy(name, flush, tmp_path):
    """Frames flow at ~100 Hz into a node whose windows take 0.2 s longer (debug_window_delay):
    frames are queued and a window runs when the signal comes, at a random moment."""
    rng = np.random.default_rng(200 + SIGNALS[name])
    ns = f"/busy_{name.lower()}"
    log = tmp_path / "node.log"
    proc = F.start_node(__name__, log, "-r", f"__ns:={ns}", *F.TINY_NODE, "-p", "qos_reliability:=reliable",
                        "-p", "qos_depth:=1000", "-p", "queue_size:=16", "-p", "debug_window_delay:=0.2",
                        "-p", f"flush_on_shutdown:={str(flush).lower()}")
    ros = RosContext(__name__)
    stop = threading.Event()
    try:
        feeder = ros.add(Node("feeder", context=ros.context))
        col = ros.add(make_collector(ros.context, f"{ns}/reconstruct_node"))
        pub = feeder.create_publisher(Image, f"{ns}/image",
                                      QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        wait_matched(pub, 1, START_TIMEOUT)
        rgb = np.random.default_rng(0).integers(0, 256, (84, 112, 3), dtype=np.uint8)

        def feed() -> None:
            i = 0
            while not stop.is_set():
                pub.publish(F.good_raw(rgb, i))
                i += 1
                time.sleep(0.01)
        feeder_thread = threading.Thread(target=feed, daemon=True)
        feeder_thread.start()
        wait_for(lambda: col.count("stats") >= 1, START_TIMEOUT, "a first window (the node is busy)")
        time.sleep(float(rng.uniform(0.0, 0.4)))             # somewhere in a window, frames queued
        proc.send_signal(SIGNALS[name])
        _finish(proc, log, f"{name} while busy (flush_on_shutdown {flush})")
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        ros.close()
    text = log.read_text()
    assert "stop requested" in text                          # it went through the one shutdown path
