"""Launch test: `reconstruct.launch.py bag:=PATH` without `ros2 bag` (no ROS install): the launch
file plays the bag with httm-replay once the node is ready (/clock, rate), says so in its log, and
calls ~/flush at the end; the node's outputs carry the bag's stamps."""

import os
import pathlib
import tempfile
import unittest

import launch
import launch.logging
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from httm_ros.ros import codec
from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for
from httm_ros.synthetic import demo_sequence
from httm_ros.tools import launch_plan
from httm_ros.tools.bag_io import OutputBag

TIMEOUT = 120.0
FRAMES = 5
T0 = 200.0
TOPIC = "/cam/image_raw"
TINY = """/**:
  ros__parameters:
    model_config: "tiny"
    image_size: 56
    window_size: 4
    window_overlap: 2
    keyframe_policy: "every"
    qos_reliability: "reliable"
    qos_depth: 20
"""
os.environ.update(ros_env(__name__))
STAMPS = [codec.sec_to_stamp(T0 + 0.1 * i) for i in range(FRAMES)]


def _bag(folder: pathlib.Path) -> pathlib.Path:
    seq = demo_sequence(num_frames=FRAMES, width=112, height=84, seed=0)
    with OutputBag(folder / "bag") as out:
        for i in range(FRAMES):
            out.write_message(TOPIC, codec.rgb_to_image(seq.images[i], codec.make_header(STAMPS[i], "camera")),
                              int(round((T0 + 0.1 * i) * 1e9)))
        out.commit()
    return folder / "bag"


@pytest.mark.launch_test
def generate_test_description():
    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "tiny.yaml").write_text(TINY)
    launch_file = pathlib.Path(get_package_share_directory("httm_ros")) / "launch" / "reconstruct.launch.py"
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"bag": str(_bag(folder)), "bag_rate": "2", "extra_params_file": str(folder / "tiny.yaml"),
                          "allow_test_weights": "true", "device": "cpu"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


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
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
        text = "".join(o.text.decode(errors="replace") for o in proc_output)
        self.assertIn(f"httm-replay: published {FRAMES} messages", text)
        self.assertNotIn("Traceback", text)
        log = pathlib.Path(launch.logging.launch_config.log_dir) / "launch.log"
        self.assertIn("`ros2 bag` is not available: the bag is played with httm-replay", log.read_text())
