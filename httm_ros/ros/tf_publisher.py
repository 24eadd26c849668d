"""/tf and /tf_static: tf2_ros's broadcasters when tf2_ros is importable (a ROS install), otherwise
tf2_msgs/msg/TFMessage published directly with rclpy, with the QoS tf2_ros uses.

    tf = make_tf_publisher(node)          # None when neither tf2_ros nor tf2_msgs is importable
    tf.send([TransformStamped, ...])      # /tf: reliable, volatile, keep last 100
    tf.send_static([TransformStamped])    # /tf_static: reliable, transient local, depth 1; the whole
                                          # set of static frames is re-sent, one per child frame

Without tf2_ros, tf2_msgs is generated in the colcon workspace (from ../shared/ros-tooling/src).
"""

from typing import Dict, Optional, Sequence

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
# tf2_ros.DynamicBroadcasterQoS and tf2_ros.StaticBroadcasterQoS
DYNAMIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Tf2RosPublisher:
    """tf2_ros's TransformBroadcaster / StaticTransformBroadcaster (created on first use)."""

    backend = "tf2_ros"

    def __init__(self, node):
        import tf2_ros

        self._node, self._tf2_ros = node, tf2_ros
        self._dynamic = tf2_ros.TransformBroadcaster(node)
        self._static = None

    def send(self, transforms: Sequence) -> None:
        self._dynamic.sendTransform(list(transforms))

    def send_static(self, transforms: Sequence) -> None:
        if self._static is None:
            self._static = self._tf2_ros.StaticTransformBroadcaster(self._node)
        self._static.sendTransform(list(transforms))


class TfMessagePublisher:
    """The same topics and QoS with rclpy and tf2_msgs/msg/TFMessage, no tf2_ros."""

    backend = "tf2_msgs"

    def __init__(self, node):
        from tf2_msgs.msg import TFMessage

        self._node, self._message = node, TFMessage
        self._dynamic = node.create_publisher(TFMessage, TF_TOPIC, DYNAMIC_QOS)
        self._static = None
        self._static_frames: Dict[str, object] = {}       # child_frame_id -> TransformStamped

    def send(self, transforms: Sequence) -> None:
        self._dynamic.publish(self._message(transforms=list(transforms)))

    def send_static(self, transforms: Sequence) -> None:
        if self._static is None:
            self._static = self._node.create_publisher(self._message, TF_STATIC_TOPIC, STATIC_QOS)
        self._static_frames.update({t.child_frame_id: t for t in transforms})
        self._static.publish(self._message(transforms=list(self._static_frames.values())))


def make_tf_publisher(node) -> Optional[object]:
    """tf2_ros's broadcasters if importable, else TFMessage with rclpy, else None (logged)."""
    for cls in (Tf2RosPublisher, TfMessagePublisher):
        try:
            publisher = cls(node)
        except ImportError:
            continue
        node.get_logger().info(f"/tf published with {publisher.backend}")
        return publisher
    node.get_logger().warning("neither tf2_ros nor tf2_msgs is importable: /tf is NOT published "
                              "(the same poses are on ~/pose and ~/path)")
    return None
