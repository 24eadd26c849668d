"""rosbag2 bags with the ``rosbags`` library (sqlite3 or MCAP; no rosbag2_py, no ROS CLI).

Reading: :func:`image_topics` lists a bag's camera topics (sensor_msgs/Image or CompressedImage),
:func:`choose_topic` picks one (the only one, or the one asked for, with a clear error otherwise),
:func:`find_topic` finds a topic of any type, :func:`read_messages` yields one topic's serialized
messages (CDR bytes, exactly what rclpy publishes and ``rclpy.serialization.deserialize_message``
reads) and :func:`read_topics` several topics' in recorded (bag time) order. Every failure - a missing path, something
that is not a bag, a truncated or corrupt file - is a :class:`BagError` naming the bag and the
problem.

Writing: :class:`OutputBag` writes an MCAP bag into a temporary directory beside the target and
renames it on success only, so a failed run never leaves a half-written bag under the real name.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

IMAGE_TYPES = {"sensor_msgs/msg/Image": "raw", "sensor_msgs/msg/CompressedImage": "compressed"}
PathLike = Union[str, Path]
_MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


class BagError(RuntimeError):
    """A bag that cannot be used; ``str(err)`` names the bag and the reason."""


@dataclass(frozen=True)
class BagTopic:
    """A topic of a bag: name, message type ('pkg/msg/Name') and message count."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class ImageTopic(BagTopic):
    """A camera topic of a bag (Image or CompressedImage), with the node's input_type."""

    @property
    def input_type(self) -> str:
        return IMAGE_TYPES[self.msgtype]


# ----------------------------------------------------------------------------- reading
def open_reader(path: PathLike):
    """An open ``rosbags.rosbag2.Reader`` (a bag directory, or a single .mcap / .db3 file)."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (a rosbag2 directory or a .mcap / .db3 file)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises many kinds for bad files
        hint = ""
        if "magic" in str(err).lower():
            hint = "; a truncated MCAP file (e.g. from a recorder that was killed) can be repaired with `mcap recover`"
        raise BagError(f"{path}: not a readable rosbag2 bag ({type(err).__name__}: {err}){hint}") from None
    return reader


def image_topics(path: PathLike) -> List[ImageTopic]:
    """The bag's Image / CompressedImage topics, sorted by name."""
    reader = open_reader(path)
    try:
        return sorted((ImageTopic(name, info.msgtype, int(info.msgcount))
                       for name, info in reader.topics.items() if info.msgtype in IMAGE_TYPES),
                      key=lambda t: t.name)
    finally:
        reader.close()


def all_topics(path: PathLike) -> Dict[str, str]:
    """topic -> message type of every topic of the bag."""
    reader = open_reader(path)
    try:
        return {name: info.msgtype for name, info in reader.topics.items()}
    finally:
        reader.close()


def find_topic(path: PathLike, wanted: str, msgtype: Optional[str] = None) -> BagTopic:
    """The bag's topic ``wanted`` (the leading '/' optional), of any type, or of ``msgtype`` when
    given; BagError naming the bag's topics (of that type) otherwise. Image topics come back as
    ImageTopic."""
    reader = open_reader(path)
    try:
        topics = {name: (info.msgtype, int(info.msgcount)) for name, info in reader.topics.items()}
    finally:
        reader.close()
    listed = ", ".join(f"{n} ({t})" for n, (t, _) in sorted(topics.items()) if msgtype in (None, t))
    name = wanted if wanted in topics else "/" + wanted.lstrip("/")
    if name not in topics:
        raise BagError(f"{path}: no topic {wanted}; {msgtype or 'its'} topics: {listed or 'none'}")
    kind, count = topics[name]
    if msgtype is not None and kind != msgtype:
        raise BagError(f"{path}: topic {name} is {kind}, not {msgtype}; {msgtype} topics: {listed or 'none'}")
    return (ImageTopic if kind in IMAGE_TYPES else BagTopic)(name, kind, count)


def choose_topic(path: PathLike, wanted: Optional[str] = None, exclude: Sequence[str] = ()) -> ImageTopic:
    """The image topic to use: ``wanted`` (must be an image topic of the bag) or the only one
    (not counting the topics of ``exclude``, e.g. a depth image topic)."""
    skip = {"/" + name.lstrip("/") for name in exclude}
    topics = [t for t in image_topics(path) if t.name not in skip]
    names = ", ".join(f"{t.name} ({t.msgtype.rsplit('/', 1)[-1]}, {t.count} messages)" for t in topics)
    if wanted:
        for topic in topics:
            if topic.name == wanted or topic.name == "/" + wanted.lstrip("/"):
                return topic
        others = all_topics(path)
        if wanted in others:
            raise BagError(f"{path}: topic {wanted} is {others[wanted]}, not an image topic; "
                           f"image topics: {names or 'none'}")
        raise BagError(f"{path}: no topic {wanted}; image topics: {names or 'none'}")
    if not topics:
        raise BagError(f"{path}: no image topics (sensor_msgs/Image or sensor_msgs/CompressedImage); "
                       f"topics: {', '.join(all_topics(path)) or 'none'}")
    if len(topics) > 1:
        raise BagError(f"{path}: several image topics: {names}; choose one (--topic / image_topic:=; "
                       "an aligned depth image topic goes to depth_topic:=)")
    return topics[0]


def read_messages(path: PathLike, topic: str, start_offset: float = 0.0) -> Iterator[Tuple[int, bytes]]:
    """(bag time in ns, serialized message) of ``topic`` in time order, from ``start_offset``
    seconds after the bag's first message. A bag that breaks while reading raises BagError
    saying how many messages were read."""
    for stamp, _, data in read_topics(path, (topic,), start_offset):
        yield stamp, data


def read_topics(path: PathLike, topics: Sequence[str],
                start_offset: float = 0.0) -> Iterator[Tuple[int, str, bytes]]:
    """(bag time in ns, topic, serialized message) of every topic of ``topics`` in recorded (bag
    time) order, from ``start_offset`` seconds after the bag's first message. BagError for a topic
    the bag lacks, or a bag that breaks while reading (saying how many messages were read)."""
    reader = open_reader(path)
    count = 0
    try:
        connections = [c for c in reader.connections if c.topic in topics]
        missing = sorted(set(topics) - {c.topic for c in connections})
        if missing:
            raise BagError(f"{path}: no topic {', '.join(missing)}")
        start = reader.start_time + int(round(start_offset * 1e9))
        messages = reader.messages(connections=connections, start=start)
        while True:
            try:
                connection, stamp, data = next(messages)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - truncated chunk, bad CRC, sqlite error, ...
                raise BagError(f"{path}: unreadable or truncated after {count} messages of {', '.join(topics)} "
                               f"({type(err).__name__}: {err})") from None
            count += 1
            yield int(stamp), connection.topic, bytes(data)
    finally:
        reader.close()


# ----------------------------------------------------------------------------- types
def typestore():
    """A rosbags typestore with the common ROS 2 messages and httm_ros/msg/WindowStats."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST)
    store.register(get_types_from_msg(_window_stats_definition(), "httm_ros/msg/WindowStats"))
    return store


def _window_stats_definition() -> str:
    """WindowStats.msg from the source tree or the installed share/httm_ros/msg."""
    path = _MSG_DIR / "WindowStats.msg"
    if not path.exists():
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("httm_ros")) / "msg" / "WindowStats.msg"
    return path.read_text()


def exact_cdr(raw: bytes, msgtype: str, store) -> bytes:
    """rclpy's serialized message cut to the bytes its fields use. rmw_fastrtps sizes the buffer
    from an estimate, so a message can end with a few bytes of padding that strict readers (the
    rosbags library) refuse ("CDR message size mismatch"); DDS readers ignore them."""
    msgdef = store.get_msgdef(msgtype)
    if raw[1] != 1:                                     # encapsulation: CDR little endian (x86, Arm)
        return raw
    _, pos = msgdef.deserialize_cdr_le(raw[4:], 0, msgdef.cls, store)
    return raw[:4 + pos]


def msgtype_of(msg) -> str:
    """rclpy message instance -> 'pkg/msg/Name'."""
    return f"{type(msg).__module__.split('.')[0]}/msg/{type(msg).__name__}"


# ----------------------------------------------------------------------------- writing
class OutputBag:
    """An MCAP rosbag2 bag written under a temporary name and renamed to ``path`` by ``commit()``.

    ``write_message(topic, msg, stamp_ns)`` takes rclpy messages, ``write_raw`` serialized ones,
    ``write_tf`` a list of geometry_msgs/TransformStamped as one tf2_msgs/TFMessage (converted
    with rosbags, so tf2_msgs need not be installed). Used as a context manager it commits on
    success and removes the temporary bag on an exception.
    """

    def __init__(self, path: PathLike, store=None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        self._tmp_root = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        shutil.rmtree(self._tmp_root, ignore_errors=True)
        self._tmp_root.mkdir(parents=True)
        self.tmp = self._tmp_root / self.path.name         # the files inside get their final names
        self.store = store or typestore()
        self._writer = Writer(self.tmp, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: Dict[str, object] = {}
        self.counts: Dict[str, int] = {}

    def _connection(self, topic: str, msgtype: str):
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        return self._connections[topic]

    def write_raw(self, topic: str, msgtype: str, stamp_ns: int, data: bytes) -> None:
        """One serialized (CDR) message."""
        self._writer.write(self._connection(topic, msgtype), int(stamp_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_message(self, topic: str, msg, stamp_ns: int) -> None:
        """One rclpy message (serialized by rclpy, cut to its exact CDR size)."""
        from rclpy.serialization import serialize_message

        msgtype = msgtype_of(msg)
        self.write_raw(topic, msgtype, stamp_ns, exact_cdr(serialize_message(msg), msgtype, self.store))

    def write_tf(self, transforms: Sequence, stamp_ns: int, topic: str = "/tf") -> None:
        """rclpy TransformStamped list -> one tf2_msgs/msg/TFMessage."""
        from rclpy.serialization import serialize_message

        store = self.store
        converted = [store.deserialize_cdr(serialize_message(t), "geometry_msgs/msg/TransformStamped")
                     for t in transforms]
        tf_message = store.types["tf2_msgs/msg/TFMessage"](transforms=converted)
        self.write_raw(topic, "tf2_msgs/msg/TFMessage", stamp_ns,
                       bytes(store.serialize_cdr(tf_message, "tf2_msgs/msg/TFMessage")))

    def commit(self, overwrite: bool = False) -> Path:
        """Close and move the bag to its real name (replacing an old one when ``overwrite``)."""
        self._writer.close()
        if self.path.exists():
            if not overwrite:
                raise BagError(f"{self.path} exists; remove it or choose another name")
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        os.replace(self.tmp, self.path)
        shutil.rmtree(self._tmp_root, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Close and remove the temporary bag."""
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the bag is being thrown away
            pass
        shutil.rmtree(self._tmp_root, ignore_errors=True)

    def __enter__(self) -> "OutputBag":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
