"""Launch test: reconstruct.launch.py with its YAML, the tiny model on CPU; frames in, every output
out; the ros2 CLI sees the node as users do; every display of config/reconstruct.rviz subscribes to
a topic the running node advertises, with its type and a QoS it offers; SIGINT at the end stops it
cleanly.

Run by `colcon test` (CMakeLists.txt: `python -m launch_testing.launch_test FILE --junit-xml ...`),
or by hand: `python -m launch_testing.launch_test test/launch/test_reconstruct.launch.py` with the
workspace sourced.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import time
import unittest

import yaml
import launch_testing
import pytest
from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from httm_ros.ros import codec
from httm_ros.tools.local_dds import OUTPUTS, RosContext, make_collector, ros_env, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))      # test/: the shared helpers
from launch_helpers import camera_sequence  # noqa: E402
from reconstruct_launch import clean_exit_output, tiny_reconstruct_launch  # noqa: E402

TIMEOUT = 120.0
NODE = "/reconstruct_node"
TOPIC = "/launch_test/image_raw"
FRAMES = 3
T0 = 50.0
os.environ.update(ros_env(__name__))        # the node (a child process) and this test: one domain
CAMERA_TOPICS = ("depth", "depth_confidence", "camera_info")     # in the input frame_id; the rest in world_frame
RVIZ_TYPES = {     # RViz display class -> the message type it subscribes to (rviz_default_plugins); None: no topic
    "rviz_default_plugins/Grid": None, "rviz_default_plugins/TF": "tf2_msgs/msg/TFMessage",
    "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2", "rviz_default_plugins/Path": "nav_msgs/msg/Path",
    "rviz_default_plugins/Pose": "geometry_msgs/msg/PoseStamped", "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/Camera": "sensor_msgs/msg/Image", "rviz_default_plugins/Odometry": "nav_msgs/msg/Odometry",
}


def rviz_subscriptions(path: pathlib.Path):
    """(display name, topic, message type, its Topic settings) of every display of an RViz config
    that subscribes to something (the TF display: /tf). KeyError for a display class not in RVIZ_TYPES."""
    displays = yaml.safe_load(path.read_text())["Visualization Manager"]["Displays"]
    out = []
    for display in displays:
        msgtype = RVIZ_TYPES[display["Class"]]
        if display["Class"].endswith("/TF"):
            out.append((display["Name"], "/tf", msgtype, {}))
        elif msgtype:
            out.append((display["Name"], display["Topic"]["Value"], msgtype, display["Topic"]))
    return out


@pytest.mark.launch_test
def generate_test_description():
    return tiny_reconstruct_launch(pathlib.Path(tempfile.mkdtemp()),
                                   dict(window_size=3, qos_depth=10, diagnostics_period=0.2), image_topic=TOPIC)


def _ros2(*args: str, until=lambda out: "Node not found" not in out.stdout + out.stderr,
          timeout: float = 30.0) -> subprocess.CompletedProcess:
    """The ros2 CLI as a user runs it, without the daemon. Without a daemon each run discovers the
    graph anew in --spin-time (0.5 s by default), which on a busy machine sometimes ends before the
    node is seen ("Node not found", an empty topic list): run it again until ``until(result)``."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["ros2", *args, "--no-daemon", "--spin-time", "1"], capture_output=True, text=True,
                             timeout=60, env=os.environ.copy())
        if until(out) or time.monotonic() > deadline:
            return out


class TestFramesInOutputsOut(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ctx = RosContext(__name__, domain=int(os.environ["ROS_DOMAIN_ID"]))
        cls.col = cls.ctx.add(make_collector(cls.ctx.context, NODE))
        cls.tf = []
        cls.feeder = feeder = cls.ctx.add(Node("launch_test_feeder", context=cls.ctx.context))
        from tf2_msgs.msg import TFMessage
        feeder.create_subscription(TFMessage, "/tf", cls.tf.append, QoSProfile(depth=100))
        cls.pub = feeder.create_publisher(Image, TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: cls.pub.get_subscription_count() > 0 and cls.col.matched("stats"), TIMEOUT,
                 "the launched node's image subscription and ~/stats")
        seq = camera_sequence(FRAMES)
        cls.stamps = [codec.sec_to_stamp(T0 + 0.1 * i) for i in range(FRAMES)]
        for i in range(FRAMES):
            cls.pub.publish(codec.rgb_to_image(seq.images[i], codec.make_header(cls.stamps[i], "cam")))
        wait_for(lambda: all(cls.col.count(t) >= 1 for t in OUTPUTS) and cls.col.count("pose") >= FRAMES
                 and sum(len(m.transforms) for m in cls.tf) >= FRAMES, TIMEOUT, "every output and /tf")

    @classmethod
    def tearDownClass(cls):
        cls.ctx.close()

    def test_stats_of_the_window(self):
        stats = self.col.messages["stats"][0]
        self.assertEqual((stats.num_keyframes, stats.image_width, stats.merge_mode), (FRAMES, 56, "httm"))
        self.assertEqual((stats.header.frame_id, stats.header.stamp), ("vggt_map", self.stamps[-1]))

    def test_every_output_has_its_frame_id_and_the_input_stamps(self):
        for topic in OUTPUTS:
            msgs = self.col.messages[topic]
            frame = "cam" if topic in CAMERA_TOPICS else "vggt_map"
            self.assertTrue(all(m.header.frame_id == frame for m in msgs), topic)
            self.assertTrue(all(m.header.stamp in self.stamps for m in msgs), topic)
        self.assertEqual([p.header.stamp for p in self.col.messages["pose"][:FRAMES]], self.stamps)
        self.assertEqual(self.col.messages["depth"][0].encoding, "32FC1")

    def test_tf_chain_equals_pose(self):
        transforms = [t for m in self.tf for t in m.transforms][:FRAMES]
        for t, pose in zip(transforms, self.col.messages["pose"][:FRAMES]):
            self.assertEqual((t.header.frame_id, t.child_frame_id), ("vggt_map", "cam_vggt"))
            self.assertEqual(t.header.stamp, pose.header.stamp)
            tr, p = t.transform, pose.pose
            self.assertEqual((tr.translation.x, tr.translation.y, tr.translation.z),
                             (p.position.x, p.position.y, p.position.z))
            self.assertEqual((tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w),
                             (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w))

    def test_ros2_topic_list_shows_every_output_with_its_type(self):
        expected = {f"{NODE}/{t}": f"[{path.replace('.', '/')}]" for t, (path, _) in OUTPUTS.items()}
        expected.update({"/diagnostics": "[diagnostic_msgs/msg/DiagnosticArray]", "/tf": "[tf2_msgs/msg/TFMessage]",
                         TOPIC: "[sensor_msgs/msg/Image]"})
        out = _ros2("topic", "list", "-t", until=lambda out: all(name + " " in out.stdout for name in expected))
        self.assertEqual(out.returncode, 0, out.stderr)
        listed = dict(line.split(" ", 1) for line in out.stdout.splitlines())
        self.assertEqual({k: listed.get(k) for k in expected}, expected)

    def test_every_rviz_display_matches_a_topic_the_node_advertises(self):
        config = pathlib.Path(get_package_share_directory("httm_ros")) / "config" / "reconstruct.rviz"
        displays = rviz_subscriptions(config)             # what `rviz:=true` opens
        self.assertGreaterEqual(len(displays), 6)
        advertised = dict(self.feeder.get_publisher_names_and_types_by_node(NODE.lstrip("/"), "/"))   # over DDS
        for name, topic, msgtype, settings in displays:
            self.assertIn(msgtype, advertised.get(topic, []),
                          f"RViz display {name!r}: {topic} [{msgtype}]; the node advertises {advertised}")
            offered = [p.qos_profile for p in self.feeder.get_publishers_info_by_topic(topic)
                       if p.node_name == NODE.lstrip("/")]
            self.assertTrue(offered, topic)
            for qos in offered:               # an RViz subscription that asks for more than is offered gets nothing
                if settings.get("Reliability Policy") == "Reliable":
                    self.assertEqual(qos.reliability, ReliabilityPolicy.RELIABLE, topic)
                if settings.get("Durability Policy") == "Transient Local":
                    self.assertEqual(qos.durability, DurabilityPolicy.TRANSIENT_LOCAL, topic)

    def test_ros2_param_set_of_an_invalid_value_is_rejected_with_the_reason(self):
        out = _ros2("param", "set", NODE, "drop_policy", "sideways")
        said = out.stdout + out.stderr
        self.assertIn("Setting parameter failed", said)
        self.assertIn("drop_policy must be one of drop_oldest, drop_newest; got 'sideways'", said)
        frozen = _ros2("param", "set", NODE, "window_size", "5")
        self.assertIn("read-only parameter: window_size", frozen.stdout + frozen.stderr)
        self.assertIn("drop_oldest", _ros2("param", "get", NODE, "drop_policy").stdout)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_sigint_exits_0_without_traceback(self, proc_info, proc_output):
        text = clean_exit_output(self, proc_info, proc_output)
        self.assertIn("ready: ", text)
