"""/tf from reconstruct_node (in-process, oracle predictor, real DDS) and httm_ros.ros.tf_publisher.

Without tf2_ros (here) the node publishes tf2_msgs/TFMessage itself, with tf2's QoS; with tf2_ros
(a ROS install) its broadcaster does. Either way: one world -> camera transform per new keyframe,
stamped like the keyframe's image, equal to the ~/pose of that keyframe.
"""

import os

import pytest

pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)
pytest.importorskip("tf2_msgs", reason="tf2_msgs is built from ../shared/ros-tooling or a ROS install")

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import RosContext, make_collector, wait_for, wait_matched  # noqa: E402
from httm_ros.ros.reconstruct_node import ReconstructNode  # noqa: E402
from httm_ros.ros.tf_publisher import DYNAMIC_QOS, STATIC_QOS, make_tf_publisher  # noqa: E402
from httm_ros.synthetic import demo_sequence  # noqa: E402
from httm_ros.synthetic.oracle import OraclePredictor  # noqa: E402

W, H = 112, 84
TIMEOUT = 30.0
FRAMES = 10                                   # windows of 6, overlap 2: 6 + 4 new keyframes


@pytest.fixture(scope="module")
def ros():
    ctx = RosContext(__name__)
    yield ctx
    ctx.close()


def _stamp(i: int) -> Time:
    return Time(sec=1_700_000_000 + i, nanosec=987_654_321)


def _pose_of(t: TransformStamped):
    tr, q = t.transform.translation, t.transform.rotation
    return (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)


def test_node_tf_chain_equals_pose_with_frames_and_stamps(ros):
    seq = demo_sequence(num_frames=FRAMES, width=W, height=H, seed=0, speed=0.05)
    values = dict(image_size=W, window_size=6, window_overlap=2, keyframe_policy="every", qos_reliability="reliable",
                  qos_depth=100, device="cpu", world_frame="odom", camera_frame="cam_optical", tf_child_frame="cam_vggt_test")
    node = ros.add(ReconstructNode(predictor=OraclePredictor(seq, seed=1), context=ros.context, namespace="/tf_test",
                                   parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    try:
        col = ros.add(make_collector(ros.context, "/tf_test/reconstruct_node", name="tf_col", diagnostics=False))
        feeder = ros.add(Node("tf_feeder", context=ros.context))
        tf = []
        feeder.create_subscription(TFMessage, "/tf", tf.append, DYNAMIC_QOS)
        pub = feeder.create_publisher(Image, "/tf_test/image", 100)
        wait_matched(pub)
        wait_for(lambda: col.matched("pose") and node.count_subscribers("/tf") >= 1, TIMEOUT, "~/pose and /tf matched")
        for i in range(FRAMES):
            pub.publish(codec.rgb_to_image(seq.images[i], codec.make_header(_stamp(i), "cam")))
        wait_for(lambda: col.count("pose") >= FRAMES and sum(len(m.transforms) for m in tf) >= FRAMES, TIMEOUT,
                 "a pose and a transform per keyframe")
        transforms = [t for m in tf for t in m.transforms]
        poses = col.messages["pose"]
        assert len(transforms) == len(poses) == FRAMES
        assert {(t.header.frame_id, t.child_frame_id) for t in transforms} == {("odom", "cam_vggt_test")}
        assert [t.header.stamp for t in transforms] == [p.header.stamp for p in poses] == list(map(_stamp, range(FRAMES)))
        for t, p in zip(transforms, poses):
            position, orientation = _pose_of(t)
            assert position == (p.pose.position.x, p.pose.position.y, p.pose.position.z)
            assert orientation == (p.pose.orientation.x, p.pose.orientation.y, p.pose.orientation.z,
                                   p.pose.orientation.w)
    finally:
        node.shutdown()


def test_tf_mode_none_publishes_no_tf_and_odom_needs_tf2_ros(ros):
    seq = demo_sequence(num_frames=6, width=W, height=H, seed=0, speed=0.05)
    values = dict(image_size=W, window_size=6, window_overlap=2, keyframe_policy="every", qos_reliability="reliable",
                  qos_depth=100, device="cpu", tf_mode="none")
    node = ros.add(ReconstructNode(predictor=OraclePredictor(seq, seed=1), context=ros.context, namespace="/tf_none",
                                   parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    try:
        col = ros.add(make_collector(ros.context, "/tf_none/reconstruct_node", name="tf_none_col", diagnostics=False))
        feeder = ros.add(Node("tf_none_feeder", context=ros.context))
        tf = []
        feeder.create_subscription(TFMessage, "/tf", lambda m: tf.extend(m.transforms), DYNAMIC_QOS)
        pub = feeder.create_publisher(Image, "/tf_none/image", 100)
        wait_matched(pub)
        wait_for(lambda: col.matched("pose"), TIMEOUT, "~/pose matched")
        for i in range(6):
            pub.publish(codec.rgb_to_image(seq.images[i], codec.make_header(_stamp(i), "")))
        wait_for(lambda: col.count("pose") >= 6 and col.count("depth") >= 6, TIMEOUT, "a pose per keyframe")
        assert node.window_publisher.tf is None
        assert not [t for t in tf if t.header.frame_id == "vggt_map"]
        assert {m.header.frame_id for m in col.messages["depth"]} == {"camera_optical_frame"}   # empty header
    finally:
        node.shutdown()
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="tf_mode odom needs tf2_ros"):
            ReconstructNode(predictor=OraclePredictor(seq, seed=1), context=ros.context, namespace="/tf_odom",
                            parameter_overrides=[Parameter("device", value="cpu"), Parameter("tf_mode", value="odom")])


def test_static_frames_are_latched_and_kept_per_child_frame(ros):
    owner = ros.add(Node("tf_static_owner", context=ros.context))
    publisher = make_tf_publisher(owner)
    assert publisher is not None

    def frame(child: str, x: float) -> TransformStamped:
        t = TransformStamped(header=codec.make_header(_stamp(0), "base_link"), child_frame_id=child)
        t.transform.translation.x, t.transform.rotation.w = x, 1.0
        return t

    publisher.send_static([frame("camera_link", 1.0)])
    publisher.send_static([frame("imu_link", 2.0), frame("camera_link", 3.0)])      # camera_link replaced
    got = []
    late = ros.add(Node("tf_static_late", context=ros.context))                     # joins afterwards
    late.create_subscription(TFMessage, "/tf_static", got.append, STATIC_QOS)
    wait_for(lambda: got, TIMEOUT, "the latched /tf_static")
    latest = {t.child_frame_id: t.transform.translation.x for t in got[-1].transforms}
    assert latest == {"camera_link": 3.0, "imu_link": 2.0}
    assert STATIC_QOS.durability == DurabilityPolicy.TRANSIENT_LOCAL and STATIC_QOS.depth == 1
    assert DYNAMIC_QOS.depth == 100 and DYNAMIC_QOS.durability == DurabilityPolicy.VOLATILE
    assert isinstance(STATIC_QOS, QoSProfile)
