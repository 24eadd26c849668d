"""httm-replay: play a bag's camera topic into a running node over DDS, with /clock.

    httm-replay BAG [--topic T] [--rate R] [--loop] [--start-offset S] [--flush /reconstruct_node]

For machines without ``ros2 bag`` (e.g. the PyPI ROS wheels): reads a rosbag2 bag (sqlite3 or
MCAP) with the ``rosbags`` library and publishes one image topic (sensor_msgs/Image or
CompressedImage, the bag's serialized messages as they are) at the recorded pace times ``--rate``,
and rosgraph_msgs/Clock on /clock with the bag time (like ``ros2 bag play --clock``), so a node
with use_sim_time follows the bag. A bag with several image topics needs ``--topic``.

``--wait-for-subscribers N`` holds the first message until N subscribers have matched (e.g. a node
still loading its model); ``--flush NODE`` calls NODE/flush (std_srvs/Trigger) at the end so
reconstruct_node runs its last, partial window; ``--linger S`` keeps /clock running S seconds
after the last message so that timers of a sim-time node keep firing while it finishes.
ROS arguments go after ``--ros-args`` (e.g. ``--ros-args -r __ns:=/robot``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Optional, Sequence

from .bag_io import BagError, choose_topic, read_messages

CLOCK_HZ = 25.0


def _qos(reliability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)


class Player:
    """Publishes one image topic of ``bag`` (and /clock) from the rclpy ``node``.

    ``play()`` blocks until the bag (or ``stop``) ends and returns the number of messages sent;
    ``last_time_ns`` is the bag time of the last one. Publishing is paced by wall-clock deadlines
    (bag time / rate); /clock is published at CLOCK_HZ in between and with every message.
    """

    def __init__(self, node, bag, topic: Optional[str] = None, output_topic: Optional[str] = None,
                 rate: float = 1.0, loop: bool = False, start_offset: float = 0.0, clock: bool = True,
                 reliability: str = "reliable", depth: int = 10) -> None:
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image

        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if start_offset < 0:
            raise ValueError(f"start offset must be >= 0, got {start_offset}")
        self.node, self.bag, self.rate, self.loop, self.start_offset = node, bag, rate, loop, start_offset
        self.topic = choose_topic(bag, topic)
        msg_class = CompressedImage if self.topic.input_type == "compressed" else Image
        self.output_topic = output_topic or self.topic.name
        self.publisher = node.create_publisher(msg_class, self.output_topic, _qos(reliability, depth))
        self._clock_class = Clock
        self.clock_publisher = node.create_publisher(Clock, "/clock", 10) if clock else None
        self.last_time_ns: Optional[int] = None
        self.sent = 0

    # ------------------------------------------------------------------ clock
    def publish_clock(self, stamp_ns: int) -> None:
        """One /clock message with bag time ``stamp_ns`` (nothing when the clock is off)."""
        if self.clock_publisher is None:
            return
        msg = self._clock_class()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self.clock_publisher.publish(msg)

    def hold_clock(self, stop: threading.Event, seconds: Optional[float] = None) -> None:
        """After the bag: keep /clock advancing in real time (times the rate) from the last
        message's time until ``stop`` is set or ``seconds`` have passed."""
        if self.clock_publisher is None or self.last_time_ns is None:
            return
        start, base = time.monotonic(), self.last_time_ns
        while not stop.is_set():
            elapsed = time.monotonic() - start
            if seconds is not None and elapsed >= seconds:
                return
            self.publish_clock(base + int(elapsed * self.rate * 1e9))
            stop.wait(1.0 / CLOCK_HZ)

    # ------------------------------------------------------------------ playing
    def wait_for_subscribers(self, count: int, timeout: float, stop: Optional[threading.Event] = None) -> None:
        """Block until ``count`` subscriptions match the image publisher; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.publisher.get_subscription_count() < count:
            if stop is not None and stop.is_set():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscriber on {self.output_topic} after {timeout:.0f} s "
                                   f"({self.publisher.get_subscription_count()} of {count})")
            time.sleep(0.02)

    def play(self, stop: Optional[threading.Event] = None) -> int:
        """Publish the topic (again and again with ``loop``); returns the messages sent."""
        stop = stop or threading.Event()
        while not stop.is_set():
            sent = self._play_once(stop)
            if not self.loop or sent == 0:
                break
        return self.sent

    def _play_once(self, stop: threading.Event) -> int:
        wall0 = bag0 = None
        sent = 0
        for stamp_ns, data in read_messages(self.bag, self.topic.name, self.start_offset):
            if wall0 is None:
                wall0, bag0 = time.monotonic(), stamp_ns
            if not self._wait_until(wall0 + (stamp_ns - bag0) / 1e9 / self.rate, wall0, bag0, stop):
                break
            self.publish_clock(stamp_ns)
            self.publisher.publish(data)                # serialized CDR, published as it is
            self.last_time_ns = stamp_ns
            sent += 1
            self.sent += 1
        return sent

    def _wait_until(self, due: float, wall0: float, bag0: int, stop: threading.Event) -> bool:
        """Sleep until the wall-clock time ``due``, publishing /clock meanwhile; False if stopped."""
        while True:
            now = time.monotonic()
            if stop.is_set():
                return False
            if now >= due:
                return True
            self.publish_clock(bag0 + int((now - wall0) * self.rate * 1e9))
            time.sleep(min(due - now, 1.0 / CLOCK_HZ))


class FlushError(RuntimeError):
    """The node's ~/flush could not be called; ``str(err)`` says why."""


def call_flush(node, target: str, timeout: float = 30.0) -> str:
    """Call ``target``/flush (std_srvs/Trigger) and return its message; FlushError on failure.
    A ``node`` that an executor spins (e.g. in a background thread) is left to it; otherwise the
    call spins ``node`` itself until the answer comes."""
    import rclpy
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, target.rstrip("/") + "/flush")
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise FlushError(f"service {client.srv_name} not available after {timeout:.0f} s")
        future = client.call_async(Trigger.Request())
        if node.executor is None:
            rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        else:
            _wait_done(future, timeout)
        if not future.done() or future.result() is None:
            raise FlushError(f"no answer from {client.srv_name} within {timeout:.0f} s")
        return future.result().message
    finally:
        node.destroy_client(client)


def _wait_done(future, timeout: float) -> None:
    """Poll ``future`` (completed by another thread's executor) for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)


# ----------------------------------------------------------------------------- command line
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="httm-replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--topic", help="image topic of the bag (needed when it has several)")
    p.add_argument("--remap", metavar="TOPIC", help="publish under this name instead of the bag's")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate, > 0 (default: %(default)s)")
    p.add_argument("--loop", action="store_true", help="play again and again until Ctrl-C")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                   help="skip the first S seconds of the bag (default: 0)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                   help="reliability of the image publisher (default: %(default)s)")
    p.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="hold the first message until N subscribers matched (default: 0)")
    p.add_argument("--wait-timeout", type=float, default=300.0, metavar="S",
                   help="give up waiting for subscribers after S seconds (default: %(default)s)")
    p.add_argument("--flush", metavar="NODE", help="call NODE/flush when the bag has been played, "
                   "e.g. /reconstruct_node")
    p.add_argument("--linger", type=float, default=0.0, metavar="S",
                   help="keep /clock running S seconds after the last message (default: 0)")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be > 0")
    if args.start_offset < 0 or args.linger < 0:
        p.error("--start-offset and --linger must be >= 0")
    return args


def run(args: argparse.Namespace, ros_args: Sequence[str] = ()) -> int:
    """Play as ``args`` says; returns the exit status."""
    import rclpy

    rclpy.init(args=["httm-replay", *ros_args])
    node = rclpy.create_node("httm_replay")
    stop = threading.Event()
    try:
        player = Player(node, args.bag, args.topic, args.remap, args.rate, args.loop, args.start_offset,
                        not args.no_clock, args.qos)
        print(f"httm-replay: {player.topic.name} ({player.topic.msgtype}, {player.topic.count} messages) "
              f"-> {player.output_topic} at rate {args.rate:g}{', looping' if args.loop else ''}", flush=True)
        if args.wait_for_subscribers:
            player.wait_for_subscribers(args.wait_for_subscribers, args.wait_timeout)
        sent = player.play(stop)
        print(f"httm-replay: published {sent} messages", flush=True)
        if args.flush:
            print(f"httm-replay: {args.flush}/flush: {call_flush(node, args.flush)}", flush=True)
        player.hold_clock(stop, args.linger)
        return 0
    except KeyboardInterrupt:
        return 130
    except (BagError, TimeoutError, RuntimeError, ValueError) as err:
        print(f"httm-replay: error: {err}", file=sys.stderr)
        return 2
    finally:
        stop.set()
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    args = parse_args(remove_ros_args(["httm-replay", *argv])[1:])
    return run(args, ros_args)


if __name__ == "__main__":
    sys.exit(main())
