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
    ack = subprocess.run([sys.executable, "-m", "httm_ros.tools.replay", "x", "--ack-timeout", "-1"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ack.returncode == 2 and "--ack-timeout must be >= 0" in ack.stderr


# ----------------------------------------------------------------------------- several topics (RGB-D)
RGBD_TOPICS = ("/cam/color/image_raw", "/cam/color/camera_info", "/cam/depth/image_raw")
RGBD_T0 = 30.0


def _rgbd_bag(path, frames=6, period=0.1):
    """Per frame i: camera_info at bag time t, depth (16UC1 mm) at t + 0.01 s, the image at
    t + 0.02 s (header stamps all t); written topic by topic, so the file's order is not the
    recorded order."""
    from sensor_msgs.msg import CameraInfo

    times = [RGBD_T0 + period * i for i in range(frames)]
    with OutputBag(path) as out:
        for i, t in enumerate(times):
            rgb = np.full((4, 6, 3), i, np.uint8)
            out.write_message(RGBD_TOPICS[0], codec.rgb_to_image(rgb, codec.make_header(codec.sec_to_stamp(t), "c")),
                              int(round((t + 0.02) * 1e9)))
        for i, t in enumerate(times):
            info = CameraInfo(header=codec.make_header(codec.sec_to_stamp(t), "c"), width=6, height=4,
                              k=[100.0 + i, 0.0, 3.0, 0.0, 100.0 + i, 2.0, 0.0, 0.0, 1.0])
            out.write_message(RGBD_TOPICS[1], info, int(round(t * 1e9)))
        for i, t in enumerate(times):
            mm = np.full((4, 6), 1000 + i, np.uint16)
            depth = Image(header=codec.make_header(codec.sec_to_stamp(t), "c"), height=4, width=6, encoding="16UC1",
                          is_bigendian=0, step=12, data=mm.tobytes())
            out.write_message(RGBD_TOPICS[2], depth, int(round((t + 0.01) * 1e9)))
        out.commit()
    return path, times


def test_read_topics_merges_the_topics_in_recorded_order(tmp_path):
    from httm_ros.tools.bag_io import read_topics

    bag, times = _rgbd_bag(tmp_path / "bag", frames=3)
    got = [(stamp, topic) for stamp, topic, _ in read_topics(bag, RGBD_TOPICS)]
    want = sorted((int(round((t + dt) * 1e9)), topic) for t in times
                  for dt, topic in ((0.0, RGBD_TOPICS[1]), (0.01, RGBD_TOPICS[2]), (0.02, RGBD_TOPICS[0])))
    assert got == want
    assert [topic for _, topic, _ in read_topics(bag, RGBD_TOPICS[1:], start_offset=0.105)] == \
        [RGBD_TOPICS[2], RGBD_TOPICS[1], RGBD_TOPICS[2]]


class RgbdListener:
    """Every message of the three topics (the depth one under its remapped name), per topic in
    arrival order: (header stamp, a value that identifies the frame)."""

    def __init__(self, ctx, depth_topic):
        from sensor_msgs.msg import CameraInfo

        self.node = ctx.add(Node("rgbd_listener", context=ctx.context))
        self.got = {"image": [], "camera_info": [], "depth": []}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, RGBD_TOPICS[0], lambda m: self._add("image", m, int(m.data[0])), qos)
        self.node.create_subscription(CameraInfo, RGBD_TOPICS[1], lambda m: self._add("camera_info", m, m.k[0]), qos)
        self.node.create_subscription(Image, depth_topic, lambda m: self._add(
            "depth", m, (m.encoding, int(np.frombuffer(bytes(m.data), "<u2")[0]))), qos)

    def _add(self, kind, msg, value):
        self.got[kind].append((codec.stamp_to_sec(msg.header.stamp), value))


def test_cli_plays_image_camera_info_and_16uc1_depth_each_on_its_topic_in_stamp_order(tmp_path):
    bag, times = _rgbd_bag(tmp_path / "bag")
    ctx = RosContext(__name__ + "rgbd")
    try:
        listener = RgbdListener(ctx, "/robot/depth")
        env = {**os.environ, **ros_env(__name__ + "rgbd")}
        topics = [a for t in RGBD_TOPICS for a in ("--topic", t)]
        proc = subprocess.run([sys.executable, "-m", "httm_ros.tools.replay", str(bag), *topics,
                               "--remap", "/cam/depth/image_raw:=/robot/depth", "--rate", "2",
                               "--wait-for-subscribers", "1", "--wait-timeout", "30"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "acknowledged" not in proc.stderr                       # every message acked before the exit
        assert ("published 18 messages (/cam/color/image_raw: 6, /cam/color/camera_info: 6, /robot/depth: 6)"
                in proc.stdout), proc.stdout
        assert "/cam/depth/image_raw (sensor_msgs/msg/Image, 6 messages) -> /robot/depth" in proc.stdout
        wait_for(lambda: all(len(v) == 6 for v in listener.got.values()), TIMEOUT, "6 messages on each topic")
        assert listener.got["image"] == [pytest.approx((t, i)) for i, t in enumerate(times)]
        assert listener.got["camera_info"] == [pytest.approx((t, 100.0 + i)) for i, t in enumerate(times)]
        assert [s for s, _ in listener.got["depth"]] == pytest.approx(times)
        assert [v for _, v in listener.got["depth"]] == [("16UC1", 1000 + i) for i in range(6)]
    finally:
        ctx.close()


def test_player_waits_for_a_subscriber_on_every_topic(tmp_path):
    bag, _ = _rgbd_bag(tmp_path / "bag", frames=2)
    ctx = RosContext(__name__ + "wait")
    try:
        Listener(ctx, RGBD_TOPICS[0])                                   # the image topic only
        feeder = ctx.add(Node("feeder", context=ctx.context))
        player = Player(feeder, bag, list(RGBD_TOPICS[:2]), clock=False)
        wait_for(lambda: player.publisher.get_subscription_count() == 1, TIMEOUT, "the image subscriber")
        with pytest.raises(TimeoutError, match=r"no subscriber on /cam/color/camera_info \(0 of 1\) after"):
            player.wait_for_subscribers(1, 0.5)
    finally:
        ctx.close()


def test_remap_forms():
    from httm_ros.tools.replay import output_names, parse_remaps
    from httm_ros.tools.bag_io import BagTopic

    assert parse_remaps(None) is None and parse_remaps(["/x"]) == "/x"
    assert parse_remaps(["a:=/b", "/c:=/d"]) == {"a": "/b", "/c": "/d"}
    with pytest.raises(ValueError, match="each is SRC:=DST"):
        parse_remaps(["/x", "/y"])
    topics = [BagTopic("/a", "sensor_msgs/msg/Image", 1), BagTopic("/c", "sensor_msgs/msg/CameraInfo", 1)]
    assert output_names(topics, {"a": "/b"}) == {"/a": "/b", "/c": "/c"}
    assert output_names(topics[:1], "/z") == {"/a": "/z"}
    with pytest.raises(ValueError, match="several topics are played; use --remap SRC:=DST"):
        output_names(topics, "/z")
    with pytest.raises(ValueError, match="/q is not a topic played"):
        output_names(topics, {"/q": "/r"})


def test_ros_args_are_split_off_without_eating_remaps():
    from httm_ros.tools.replay import split_ros_args

    assert split_ros_args(["bag", "--remap", "/a:=/b", "--ros-args", "-r", "__ns:=/robot", "--", "--rate", "2"]) == (
        ["bag", "--remap", "/a:=/b", "--rate", "2"], ["--ros-args", "-r", "__ns:=/robot"])
    assert split_ros_args(["bag"]) == (["bag"], [])
