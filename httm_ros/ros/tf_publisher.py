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


def make_odom_lookup(node, timeout_s: float = 0.05):
    """tf_mode odom: a callable (stamp, camera_frame) -> odom_T_camera float64 [4, 4] or None (not
    in TF at that stamp, logged), with a tf2_ros Buffer and TransformListener on ``node``.
    Raises RuntimeError (one line) where tf2_ros is not importable."""
    try:
        import tf2_ros
    except ImportError:
        raise RuntimeError("tf_mode odom needs tf2_ros (a ROS 2 install) to look up the robot's "
                           "odom -> camera transform; it is not importable here: use tf_mode camera or none") from None
    import numpy as np
    from rclpy.duration import Duration
    from rclpy.time import Time

    from httm_ros.geometry import quat_to_rotmat

    buffer = tf2_ros.Buffer()
    node._tf_listener = tf2_ros.TransformListener(buffer, node)        # kept alive with the node
    odom = node.values["odom_frame"]

    def lookup(stamp, camera_frame: str):
        try:
            t = buffer.lookup_transform(node.values["odom_frame"] or odom, camera_frame, Time.from_msg(stamp),
                                        timeout=Duration(seconds=timeout_s)).transform
        except tf2_ros.TransformException as err:
            node.get_logger().warning(f"tf_mode odom: no /tf this keyframe: {err}", throttle_duration_sec=5.0)
            return None
        out = np.eye(4)
        out[:3, :3] = quat_to_rotmat(np.array([t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w]))
        out[:3, 3] = (t.translation.x, t.translation.y, t.translation.z)
        return out

    return lookup
