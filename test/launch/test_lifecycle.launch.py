"""Launch test: reconstruct.launch.py lifecycle:=true (autostart default) starts the managed
variant, which the launch configures and activates; it then takes frames and publishes windows;
SIGINT at the end runs its shutdown transition and it exits 0 without a traceback.

Run by `colcon test` (CMakeLists.txt registers every test/launch/test_*.py), or by hand:
`python -m launch_testing.launch_test test/launch/test_lifecycle.launch.py` with the workspace sourced.
"""

import os
import pathlib
import sys
import tempfile
import unittest

import launch_testing
import pytest
from lifecycle_msgs.srv import GetState
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from httm_ros.ros import codec
from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))      # test/: the shared helpers
from launch_helpers import camera_sequence  # noqa: E402
from reconstruct_launch import clean_exit_output, tiny_reconstruct_launch  # noqa: E402

TIMEOUT = 120.0
NODE = "/reconstruct_node"
TOPIC = "/lifecycle_test/image_raw"
FRAMES = 3
os.environ.update(ros_env(__name__))        # the node (a child process) and this test: one domain


@pytest.mark.launch_test
def generate_test_description():
    return tiny_reconstruct_launch(pathlib.Path(tempfile.mkdtemp()), dict(window_size=3, qos_depth=10),
                                   lifecycle="true", image_topic=TOPIC)


class TestManagedNodeComesUpActive(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ctx = RosContext(__name__, domain=int(os.environ["ROS_DOMAIN_ID"]))
        cls.col = cls.ctx.add(make_collector(cls.ctx.context, NODE, diagnostics=False))
        cls.feeder = cls.ctx.add(Node("lifecycle_test_feeder", context=cls.ctx.context))
        cls.pub = cls.feeder.create_publisher(Image, TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    @classmethod
    def tearDownClass(cls):
        cls.ctx.close()

    def _state(self) -> str:
        client = self.feeder.create_client(GetState, f"{NODE}/get_state")
        self.assertTrue(client.wait_for_service(TIMEOUT))
        future = client.call_async(GetState.Request())
        wait_for(future.done, TIMEOUT, "~/get_state")
        return future.result().current_state.label

    def test_autostart_activates_and_the_node_publishes(self):
        wait_for(lambda: self.pub.get_subscription_count() > 0, TIMEOUT, "the image subscription (active)")
        self.assertEqual(self._state(), "active")
        wait_for(lambda: self.col.matched("stats"), TIMEOUT, "~/stats")
        seq = camera_sequence(FRAMES)
        stamps = [codec.sec_to_stamp(10.0 + 0.1 * i) for i in range(FRAMES)]
        for i in range(FRAMES):
            self.pub.publish(codec.rgb_to_image(seq.images[i], codec.make_header(stamps[i], "cam")))
        wait_for(lambda: self.col.count("stats") >= 1 and self.col.count("pose") >= FRAMES, TIMEOUT,
                 "a window of outputs")
        stats = self.col.messages["stats"][0]
        self.assertEqual((stats.num_keyframes, stats.header.stamp), (FRAMES, stamps[-1]))
        self.assertEqual([p.header.stamp for p in self.col.messages["pose"][:FRAMES]], stamps)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_sigint_exits_0_without_traceback(self, proc_info, proc_output):
        text = clean_exit_output(self, proc_info, proc_output)
        for line in ("configured: ", "ready: ", "stop requested (SIGINT): stopping"):
            self.assertIn(line, text)
