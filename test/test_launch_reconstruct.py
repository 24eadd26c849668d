"""launch_testing: reconstruct.launch.py with the tiny model; frames in, WindowStats out.

Runs where launch_testing exists (a ROS 2 install: `colcon test` of the package). It is skipped on
machines without it (our CI's PyPI ROS wheels have no launch packages); there the same scenario -
the installed node with the launch file's parameters and remaps, frames in, outputs out - is
test_launch_process.py, which is the thorough one.
"""

import os
import pathlib
import tempfile
import time
import unittest

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from httm_ros.msg import WindowStats  # noqa: E402
from httm_ros.ros import codec  # noqa: E402
from httm_ros.ros.local_dds import ros_env  # noqa: E402
from httm_ros.synthetic import demo_sequence  # noqa: E402

TOPIC = "/launch_test/image_raw"
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
os.environ.update(ros_env(__name__))                 # this host only, a domain of its own


@pytest.mark.launch_test
def generate_test_description():
    extra = pathlib.Path(tempfile.mkdtemp()) / "tiny.yaml"
    extra.write_text(TINY)
    launch_file = pathlib.Path(get_package_share_directory("httm_ros")) / "launch" / "reconstruct.launch.py"
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"extra_params_file": str(extra), "allow_test_weights": "true", "device": "cpu",
                          "image_topic": TOPIC}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestFramesInStatsOut(unittest.TestCase):
    def test_one_window_of_three_frames_gives_stats(self):
        rclpy.init()
        node = rclpy.create_node("launch_test_feeder")
        try:
            stats = []
            pub = node.create_publisher(Image, TOPIC, 10)
            node.create_subscription(WindowStats, "/reconstruct_node/stats", stats.append, 10)
            self._spin_until(node, lambda: pub.get_subscription_count() > 0, 120.0)
            seq = demo_sequence(num_frames=3, width=112, height=84, seed=0)
            for i in range(3):
                pub.publish(codec.rgb_to_image(seq.images[i], codec.make_header(codec.sec_to_stamp(1.0 + i), "cam")))
            self._spin_until(node, lambda: stats, 120.0)
            self.assertEqual((stats[0].num_keyframes, stats[0].image_width, stats[0].merge_mode), (3, 56, "httm"))
        finally:
            node.destroy_node()
            rclpy.shutdown()

    def _spin_until(self, node, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            self.assertLess(time.monotonic(), deadline, "timed out")
            rclpy.spin_once(node, timeout_sec=0.1)
