"""Launch test: reconstruct.launch.py lifecycle:=true (autostart default) starts the managed
variant, which the launch configures and activates; it then takes frames and publishes windows;
SIGINT at the end runs its shutdown transition and it exits 0 without a traceback.

Run by `colcon test` (CMakeLists.txt registers every test/launch/test_*.py), or by hand:
`python -m launch_testing.launch_test test/launch/test_lifecycle.launch.py` with the workspace sourced.
"""

import os
import pathlib
import tempfile
import unittest

import launch
import launch_testing.actions
import launch_testing.asserts
import pytest
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from lifecycle_msgs.srv import GetState
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from httm_ros.ros import codec
from httm_ros.synthetic import demo_sequence
from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for

TIMEOUT = 120.0
NODE = "/reconstruct_node"
TOPIC = "/lifecycle_test/image_raw"
FRAMES = 3
TINY = """/**:
  ros__parameters:
    model_config: "tiny"
    image_size: 56
    window_size: 3
    window_overlap: 2
    keyframe_policy: "every"
    qos_reliability: "reliable"
    qos_depth: 10
"""
os.environ.update(ros_env(__name__))        # the node (a child process) and this test: one domain


@pytest.mark.launch_test
def generate_test_description():
    extra = pathlib.Path(tempfile.mkdtemp()) / "tiny.yaml"
    extra.write_text(TINY)
    launch_file = pathlib.Path(get_package_share_directory("httm_ros")) / "launch" / "reconstruct.launch.py"
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"lifecycle": "true", "extra_params_file": str(extra), "allow_test_weights": "true",
                          "device": "cpu", "image_topic": TOPIC}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


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
        seq = demo_sequence(num_frames=FRAMES, width=112, height=84, seed=0)
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
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
        text = "".join(o.text.decode(errors="replace") for o in proc_output)
        self.assertNotIn("Traceback", text)
        for line in ("configured: ", "ready: ", "stop requested (SIGINT): stopping"):
            self.assertIn(line, text)
