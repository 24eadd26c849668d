"""Launch test: `reconstruct.launch.py bag:=PATH` without `ros2 bag` (no ROS install): the launch
file plays the bag with httm-replay once the node is ready (/clock, rate), says so in its log, and
calls ~/flush at the end; the node's outputs carry the bag's stamps."""

import os
import pathlib
import sys
import tempfile
import unittest

import launch.logging
import launch_testing
import numpy as np
import pytest

from httm_ros.ros import codec
from httm_ros.tools import launch_plan
from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))      # test/: the shared helpers
from launch_helpers import camera_sequence, write_camera_bag  # noqa: E402
from reconstruct_launch import clean_exit_output, tiny_reconstruct_launch  # noqa: E402

TIMEOUT = 120.0
FRAMES = 5
T0 = 200.0
TOPIC = "/cam/image_raw"
os.environ.update(ros_env(__name__))
STAMPS = [codec.sec_to_stamp(T0 + 0.1 * i) for i in range(FRAMES)]


@pytest.mark.launch_test
def generate_test_description():
    folder = pathlib.Path(tempfile.mkdtemp())
    bag = write_camera_bag(folder / "bag", camera_sequence(FRAMES), T0, image=TOPIC)
    return tiny_reconstruct_launch(folder, bag=str(bag), bag_rate="2")


class TestReplayedBag(unittest.TestCase):
    def test_windows_of_the_bag_and_the_flushed_last_one(self, proc_info):
        self.assertFalse(launch_plan.ros2_bag_available())       # this test is about the fallback
        ctx = RosContext(__name__, domain=int(os.environ["ROS_DOMAIN_ID"]))
        try:
            col = ctx.add(make_collector(ctx.context, "/reconstruct_node", diagnostics=False))
            wait_for(lambda: col.count("stats") >= 2, TIMEOUT, "the bag's window and the flushed last one")
            first, last = col.messages["stats"][:2]
            self.assertEqual((first.num_keyframes, first.header.stamp, first.header.frame_id), (4, STAMPS[3], "vggt_map"))
            self.assertEqual((last.num_keyframes, last.num_overlap_keyframes), (3, 2))
            wait_for(lambda: col.count("map") >= 1 and col.count("pose") >= 4, 30.0,
                     f"~/map and ~/pose ({ {t: len(m) for t, m in col.messages.items()} })")
            self.assertEqual([p.header.stamp for p in col.messages["pose"]], STAMPS[:col.count("pose")])
            xyz, _ = codec.decode_pointcloud2_xyzrgb(col.messages["map"][-1])
            self.assertTrue(len(xyz) > 100 and np.isfinite(xyz).all())
            proc_info.assertWaitForShutdown(process="flush", timeout=TIMEOUT)     # the ~/flush call
        finally:
            ctx.close()


@launch_testing.post_shutdown_test()
class TestReplayLog(unittest.TestCase):
    def test_replay_played_the_bag_and_the_log_says_why(self, proc_info, proc_output):
        text = clean_exit_output(self, proc_info, proc_output)
        self.assertIn(f"httm-replay: published {FRAMES} messages", text)
        log = pathlib.Path(launch.logging.launch_config.log_dir) / "launch.log"
        self.assertIn("`ros2 bag` is not available: the bag is played with httm-replay", log.read_text())
