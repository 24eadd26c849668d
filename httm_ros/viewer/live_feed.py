"""rclpy subscriptions to a running reconstruct_node's output topics -> SceneFeed.

QoS matches the node's publishers: ~/map and ~/path are latched (reliable, transient local,
depth 1), so a viewer started after the node still gets the map and the whole path; the others
are reliable and volatile.
"""

from __future__ import annotations

import importlib
from typing import Dict

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .msg_adapter import LOG, TOPIC_TYPES, SceneFeed

_LATCHED = ("map", "path")


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def output_qos(name: str) -> QoSProfile:
    """The subscription QoS for output ``name`` (see the module docstring)."""
    latched = name in _LATCHED
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if latched else 10,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def subscribe(node: Node, feed: SceneFeed, target: str = "/reconstruct_node") -> Dict[str, str]:
    """Subscribe ``node`` to ``<target>/<name>`` for every output; returns name -> topic.
    An output whose message type is not importable (httm_ros/WindowStats before a colcon build)
    is left out with a warning."""
    topics: Dict[str, str] = {}
    for name, msgtype in TOPIC_TYPES.items():
        try:
            cls = message_class(msgtype)
        except ImportError as err:
            LOG.warning("httm-view: not showing ~/%s (%s is not importable: %s)", name, msgtype, err)
            continue
        topic = f"{target.rstrip('/')}/{name}"
        node.create_subscription(cls, topic, lambda msg, n=name: feed.apply(n, msg), output_qos(name))
        topics[name] = topic
    return topics
