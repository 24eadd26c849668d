"""httm-replay: play a bag's camera topic (and its side topics) into a running node over DDS, with /clock.

    httm-replay BAG [--topic T ...] [--remap SRC:=DST ...] [--rate R] [--loop] [--start-offset S]
                [--flush /reconstruct_node]

For machines without ``ros2 bag`` (e.g. the PyPI ROS wheels): reads a rosbag2 bag (sqlite3 or
MCAP) with the ``rosbags`` library and publishes its topics (the bag's serialized messages as they
are, in recorded order, each topic with a publisher of its own) at the recorded pace times
``--rate``, and rosgraph_msgs/Clock on /clock with the bag time (like ``ros2 bag play --clock``),
so a node with use_sim_time follows the bag. Without ``--topic`` it plays the bag's only image topic
(sensor_msgs/Image or CompressedImage); ``--topic`` (repeatable) names the topics to play, of any
installed message type, e.g. an RGB-D camera's image, camera_info and depth/image topics.

``--remap SRC:=DST`` publishes the bag's SRC under DST (repeatable); ``--remap DST`` (the short
form) renames the one topic played. ``--wait-for-subscribers N`` holds the first message until N
subscribers have matched on every topic played (e.g. a node still loading its model); ``--flush
NODE`` calls NODE/flush (std_srvs/Trigger) at the end so reconstruct_node runs its last, partial
window; ``--linger S`` keeps /clock running S seconds after the last message so that timers of a
sim-time node keep firing while it finishes. ROS arguments go after ``--ros-args`` (e.g.
``--ros-args -r __ns:=/robot``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .bag_io import BagError, BagTopic, choose_topic, find_topic, read_topics

CLOCK_HZ = 25.0


def _qos(reliability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the installed rclpy message class; ValueError when it is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ValueError(f"cannot publish {msgtype}: the message type is not installed here") from None


def bag_topics(bag, topics: Union[str, Sequence[str], None]) -> List[BagTopic]:
    """The topics to play: the bag's only image topic (None), or each named one (a str or a list;
    any message type)."""
    if topics is None:
        return [choose_topic(bag)]
    found = [find_topic(bag, name) for name in ([topics] if isinstance(topics, str) else topics)]
    if not found:
        raise ValueError("no topic to play")
    if len({t.name for t in found}) < len(found):
        raise ValueError(f"a topic is named twice: {', '.join(t.name for t in found)}")
    return found


def output_names(topics: Sequence[BagTopic], remap: Union[str, Mapping[str, str], None]) -> Dict[str, str]:
    """bag topic -> published name: the bag's name unless ``remap`` says otherwise (a str: the one
    topic's new name; a mapping SRC -> DST, SRC with or without its leading '/')."""
    names = {t.name: t.name for t in topics}
    if remap is None:
        return names
    if isinstance(remap, str):
        if len(topics) != 1:
            raise ValueError(f"--remap {remap}: several topics are played; use --remap SRC:=DST")
        return {topics[0].name: remap}
    for src, dst in remap.items():
        name = src if src in names else "/" + src.lstrip("/")
        if name not in names:
            raise ValueError(f"--remap {src}:={dst}: {src} is not a topic played ({', '.join(names)})")
        names[name] = dst
    return names


@dataclass
class Track:
    """One topic played: what the bag holds, the name it is published under, its publisher."""

    topic: BagTopic
    output: str
    publisher: Any
    sent: int = 0


class Player:
    """Publishes topics of ``bag`` (and /clock) from the rclpy ``node``, in recorded order.

    ``topic``: None (the bag's only image topic), a topic or a list of topics (any type); ``output_topic``: the new name of the one topic, or a mapping bag topic -> published
    name. Every topic gets its own publisher with the same QoS (``reliability``, ``depth``).
    ``play()`` blocks until the bag (or ``stop``) ends and returns the number of messages sent;
    ``last_time_ns`` is the bag time of the last one. Publishing is paced by wall-clock deadlines
    (bag time / rate); /clock is published at CLOCK_HZ in between and with every message.
    ``topic``, ``output_topic`` and ``publisher`` are the first track's.
    """

    def __init__(self, node, bag, topic: Union[str, Sequence[str], None] = None,
                 output_topic: Union[str, Mapping[str, str], None] = None, rate: float = 1.0,
                 loop: bool = False, start_offset: float = 0.0, clock: bool = True,
                 reliability: str = "reliable", depth: int = 10) -> None:
        from rosgraph_msgs.msg import Clock

        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if start_offset < 0:
            raise ValueError(f"start offset must be >= 0, got {start_offset}")
        self.node, self.bag, self.rate, self.loop, self.start_offset = node, bag, rate, loop, start_offset
        topics = bag_topics(bag, topic)
        outputs = output_names(topics, output_topic)
        qos = _qos(reliability, depth)
        self.tracks: Dict[str, Track] = {
            t.name: Track(t, outputs[t.name], node.create_publisher(message_class(t.msgtype), outputs[t.name], qos))
            for t in topics}
        first = self.tracks[topics[0].name]
        self.topic, self.output_topic, self.publisher = first.topic, first.output, first.publisher
        self._clock_class = Clock
        self.clock_publisher = node.create_publisher(Clock, "/clock", 10) if clock else None
        self.last_time_ns: Optional[int] = None
        self.sent = 0

    def describe(self) -> str:
        """'SRC (type, N messages) -> DST' of every track, for the log."""
        return ", ".join(f"{t.topic.name} ({t.topic.msgtype}, {t.topic.count} messages) -> {t.output}"
                         for t in self.tracks.values())

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

    def wait_acknowledged(self, timeout: float) -> bool:
        """Block until every matched subscriber acknowledged every message published (reliable
        QoS; best effort returns at once): a player that exits earlier can take the bag's last
        messages with it. False when ``timeout`` seconds passed first."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout
        for track in self.tracks.values():
            left = max(0.0, deadline - time.monotonic())
            if not track.publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                return False
        return True

    # ------------------------------------------------------------------ playing
    def wait_for_subscribers(self, count: int, timeout: float, stop: Optional[threading.Event] = None) -> None:
        """Block until ``count`` subscriptions match the publisher of every topic played (frames
        sent before would be lost); TimeoutError naming the topics still short after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            short = [t for t in self.tracks.values() if t.publisher.get_subscription_count() < count]
            if not short or (stop is not None and stop.is_set()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("no subscriber on " + ", ".join(
                    f"{t.output} ({t.publisher.get_subscription_count()} of {count})" for t in short)
                    + f" after {timeout:.0f} s")
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
        for stamp_ns, topic, data in read_topics(self.bag, list(self.tracks), self.start_offset):
            if wall0 is None:
                wall0, bag0 = time.monotonic(), stamp_ns
            if not self._wait_until(wall0 + (stamp_ns - bag0) / 1e9 / self.rate, wall0, bag0, stop):
                break
            self.publish_clock(stamp_ns)
            track = self.tracks[topic]
            track.publisher.publish(data)               # serialized CDR, published as it is
            track.sent += 1
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
    p.add_argument("--topic", action="append", metavar="TOPIC",
                   help="a topic of the bag to play (repeatable: image, camera_info, depth/image, ...); "
                   "default: the bag's only image topic")
    p.add_argument("--remap", action="append", metavar="SRC:=DST",
                   help="publish the bag's SRC under DST (repeatable); a bare DST renames the one topic played")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate, > 0 (default: %(default)s)")
    p.add_argument("--loop", action="store_true", help="play again and again until Ctrl-C")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                   help="skip the first S seconds of the bag (default: 0)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                   help="reliability of the publishers (default: %(default)s)")
    p.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="hold the first message until N subscribers matched on every topic played (default: 0)")
    p.add_argument("--wait-timeout", type=float, default=300.0, metavar="S",
                   help="give up waiting for subscribers after S seconds (default: %(default)s)")
    p.add_argument("--ack-timeout", type=float, default=10.0, metavar="S",
                   help="after the last message, wait up to S seconds until every subscriber acknowledged "
                   "it (reliable QoS) before the flush and the exit (default: %(default)s)")
    p.add_argument("--flush", metavar="NODE", help="call NODE/flush when the bag has been played, "
                   "e.g. /reconstruct_node")
    p.add_argument("--linger", type=float, default=0.0, metavar="S",
                   help="keep /clock running S seconds after the last message (default: 0)")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be > 0")
    if args.start_offset < 0 or args.linger < 0:
        p.error("--start-offset and --linger must be >= 0")
    if args.ack_timeout < 0:
        p.error("--ack-timeout must be >= 0")
    try:
        args.remap = parse_remaps(args.remap)
    except ValueError as err:
        p.error(str(err))
    return args


def parse_remaps(values: Optional[Sequence[str]]) -> Union[None, str, Dict[str, str]]:
    """``--remap`` values -> None, the one topic's new name (a bare DST), or {SRC: DST}."""
    if not values:
        return None
    pairs = [v.split(":=", 1) for v in values]
    if all(len(pair) == 1 for pair in pairs) and len(values) == 1:
        return values[0]
    if any(len(pair) == 1 or not pair[0] or not pair[1] for pair in pairs):
        raise ValueError(f"--remap {' '.join(values)}: with several remaps each is SRC:=DST")
    return {src: dst for src, dst in pairs}


def run(args: argparse.Namespace, ros_args: Sequence[str] = ()) -> int:
    """Play as ``args`` says; returns the exit status."""
    import rclpy

    rclpy.init(args=["httm-replay", *ros_args])
    node = rclpy.create_node("httm_replay")
    stop = threading.Event()
    try:
        player = Player(node, args.bag, args.topic, args.remap, args.rate, args.loop, args.start_offset,
                        not args.no_clock, args.qos)
        print(f"httm-replay: {player.describe()} at rate {args.rate:g}{', looping' if args.loop else ''}",
              flush=True)
        if args.wait_for_subscribers:
            player.wait_for_subscribers(args.wait_for_subscribers, args.wait_timeout)
        sent = player.play(stop)
        print(f"httm-replay: published {sent} messages{_per_topic(player)}", flush=True)
        if not player.wait_acknowledged(args.ack_timeout):
            print(f"httm-replay: warning: not every subscriber acknowledged the last messages within "
                  f"{args.ack_timeout:g} s (--ack-timeout)", file=sys.stderr, flush=True)
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


def _per_topic(player: Player) -> str:
    """' (/a: 4, /b: 4)' when several topics were played."""
    if len(player.tracks) < 2:
        return ""
    return " (" + ", ".join(f"{t.output}: {t.sent}" for t in player.tracks.values()) + ")"


def split_ros_args(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(our arguments, the ``--ros-args ... [--]`` sections). Not rclpy's remove_ros_args: it
    also takes a bare ``SRC:=DST`` (the old remap syntax) away from ``--remap SRC:=DST``."""
    ours: List[str] = []
    ros: List[str] = []
    inside = False
    for arg in argv:
        if arg == "--ros-args":
            inside = True
            ros.append(arg)
        elif inside and arg == "--":
            inside = False
        else:
            (ros if inside else ours).append(arg)
    return ours, ros


def main(argv: Optional[Sequence[str]] = None) -> int:
    ours, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    return run(parse_args(ours), ros_args)


if __name__ == "__main__":
    sys.exit(main())
