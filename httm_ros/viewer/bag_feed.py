"""An output bag (MCAP or sqlite3 rosbag2, e.g. outputs/demo/outputs_bag/ or httm-reconstruct-bag's
bag/) into the viewer: the last message of each output topic, which is the run's final state
(the map, the whole path, the latest window cloud, depth image and stats)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

from httm_ros.tools.bag_io import BagError, open_reader, typestore

from .msg_adapter import TOPIC_TYPES, SceneFeed

_ORDER = ("camera_info", "map", "points", "path", "pose", "depth", "stats")   # camera model before frustums


def output_topic_names(topics: Dict[str, str], node: str) -> Dict[str, str]:
    """output name -> topic of the bag: ``/<node>/<name>`` (node relative names get a leading /),
    or else the only topic of the right type ending in ``/<name>``."""
    prefix = "/" + node.strip("/")
    found = {}
    for name, msgtype in TOPIC_TYPES.items():
        exact = f"{prefix}/{name}"
        candidates = [t for t, ty in topics.items() if ty == msgtype and t.endswith("/" + name)]
        if topics.get(exact) == msgtype:
            found[name] = exact
        elif len(candidates) == 1:
            found[name] = candidates[0]
    return found


def last_messages(bag: Union[str, Path], node: str = "reconstruct_node") -> Dict[str, Tuple[str, object]]:
    """output name -> (topic, deserialized last message) for the output topics in ``bag``."""
    store = typestore()
    reader = open_reader(bag)
    try:
        names = output_topic_names({t: c.msgtype for t, c in reader.topics.items()}, node)
        if not names:
            raise BagError(f"{bag}: none of reconstruct_node's output topics ({', '.join(TOPIC_TYPES)})")
        by_topic = {topic: name for name, topic in names.items()}
        connections = [c for c in reader.connections if c.topic in by_topic]
        raw: Dict[str, tuple] = {}
        for connection, _, data in reader.messages(connections=connections):
            raw[by_topic[connection.topic]] = (connection, data)                    # keep the last
        return {name: (conn.topic, store.deserialize_cdr(bytes(data), conn.msgtype))
                for name, (conn, data) in raw.items()}
    finally:
        reader.close()


def load_bag(feed: SceneFeed, bag: Union[str, Path], node: str = "reconstruct_node") -> Dict[str, str]:
    """Show the final state of ``bag`` in ``feed``'s scene; returns output name -> topic used."""
    messages = last_messages(bag, node)
    for name in _ORDER:
        if name in messages:
            feed.apply(name, messages[name][1])
    return {name: topic for name, (topic, _) in messages.items()}
