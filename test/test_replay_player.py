"""httm-replay over DDS (this host only): pacing, start offset, /clock, loop, CLI errors."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from httm_ros.tools.bag_io import OutputBag  # noqa: E402
from httm_ros.tools.replay import Player  # noqa: E402
from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import RosContext, ros_env, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 30.0


def _bag(path, frames=6, period=0.2):
    with OutputBag(path) as out:
        for i in range(frames):
            t = 20.0 + period * i
            rgb = np.full((4, 6, 3), i, np.uint8)
            out.write_message("/cam/image_raw", codec.rgb_to_image(rgb, codec.make_header(codec.sec_to_stamp(t), "c")),
                              int(round(t * 1e9)))
        out.commit()
    return path


class Listener:
    """Images (with their arrival time) and /clock values."""

    def __init__(self, ctx, topic="/cam/image_raw"):
        self.node = ctx.add(Node("listener", context=ctx.context))
        self.images, self.clock, self.lock = [], [], threading.Lock()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, topic, self._image, qos)
        self.node.create_subscription(Clock, "/clock", self._clock, 100)

    def _image(self, msg):
        with self.lock:
            self.images.append((time.monotonic(), codec.stamp_to_sec(msg.header.stamp), int(msg.data[0])))

    def _clock(self, msg):
        with self.lock:
            self.clock.append(codec.stamp_to_sec(msg.clock))


def test_cli_paces_offsets_and_publishes_clock(tmp_path):
    bag = _bag(tmp_path / "bag")
    ctx = RosContext(__name__)
    try:
        listener = Listener(ctx)
        env = {**os.environ, **ros_env(__name__)}
        proc = subprocess.run([sys.executable, "-m", "httm_ros.tools.replay", str(bag), "--rate", "2",
                               "--start-offset", "0.3", "--wait-for-subscribers", "1", "--wait-timeout", "30",
                               "--linger", "0.3"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "published 4 messages" in proc.stdout
        wait_for(lambda: len(listener.images) == 4, TIMEOUT, "4 images")
        arrivals, stamps, values = zip(*listener.images)
        assert stamps == pytest.approx((20.4, 20.6, 20.8, 21.0)) and values == (2, 3, 4, 5)
        assert 0.25 <= arrivals[-1] - arrivals[0] < 1.0            # 0.6 s of bag at rate 2: 0.3 s, paced
        clock = list(listener.clock)
        assert clock == sorted(clock) and clock[0] >= 20.4 - 1e-9 and max(clock) > 21.0     # lingered
        assert all(any(abs(c - s) < 1e-6 for c in clock) for s in stamps)
    finally:
        ctx.close()


def test_player_loops_until_stopped(tmp_path):
    bag = _bag(tmp_path / "bag", frames=3, period=0.01)
    ctx = RosContext(__name__ + "loop")
    try:
        listener = Listener(ctx, "/looped")
        feeder = ctx.add(Node("feeder", context=ctx.context))
        player = Player(feeder, bag, output_topic="/looped", rate=1.0, loop=True, clock=False, depth=50)
        player.wait_for_subscribers(1, TIMEOUT)
        stop = threading.Event()
        thread = threading.Thread(target=player.play, args=(stop,), daemon=True)
        thread.start()
        wait_for(lambda: len(listener.images) >= 7, TIMEOUT, "more images than the bag holds")
        stop.set()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert [v for _, _, v in listener.images[:7]] == [0, 1, 2, 0, 1, 2, 0]
    finally:
        ctx.close()


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    env = {**os.environ, **ros_env(__name__ + "err")}
    bad = subprocess.run([sys.executable, "-m", "httm_ros.tools.replay", str(tmp_path / "nothing")], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "httm-replay: error:" in bad.stderr and "no such bag" in bad.stderr
    assert "Traceback" not in bad.stderr
    rate = subprocess.run([sys.executable, "-m", "httm_ros.tools.replay", "x", "--rate", "0"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert rate.returncode == 2 and "--rate must be > 0" in rate.stderr
