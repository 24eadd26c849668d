"""Launch test: `reconstruct.launch.py bag:=PATH camera_info_topic:=... depth_topic:=...` without
`ros2 bag`: the launch file remaps camera_info and depth/image, switches the side inputs on and
plays all three topics of the bag with httm-replay (the synthetic renderer's frames, camera_info
and 16UC1 depth in millimetres); the node pairs every keyframe with both and reports metric
windows. (test/test_launch_rgbd_process.py checks the metric values themselves.)"""

import os
import pathlib
import sys
import tempfile
import unittest

import launch_testing
import numpy as np
import pytest

from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))      # test/: the shared helpers
from launch_helpers import camera_sequence, depth_mm, write_camera_bag  # noqa: E402
from reconstruct_launch import clean_exit_output, tiny_reconstruct_launch  # noqa: E402

TIMEOUT = 120.0
FRAMES = 5
T0 = 400.0
TOPICS = {"image": "/cam/color/image_raw", "camera_info": "/cam/color/camera_info",
          "depth": "/cam/aligned_depth_to_color/image_raw"}
os.environ.update(ros_env(__name__))


@pytest.mark.launch_test
def generate_test_description():
    """camera_info, depth (16UC1 mm) and image of each frame in the bag, with the frame's stamp."""
    folder = pathlib.Path(tempfile.mkdtemp())
    seq = camera_sequence(FRAMES)
    bag = write_camera_bag(folder / "bag", seq, T0, image=TOPICS["image"], camera_info=TOPICS["camera_info"],
                           depth=TOPICS["depth"], depth_frames=depth_mm(seq))
    return tiny_reconstruct_launch(folder, bag=str(bag), camera_info_topic=TOPICS["camera_info"],
                                   depth_topic=TOPICS["depth"], bag_rate="2")


class TestRgbdBag(unittest.TestCase):
    def test_every_keyframe_is_paired_with_camera_info_and_depth(self, proc_info):
        ctx = RosContext(__name__, domain=int(os.environ["ROS_DOMAIN_ID"]))
        try:
            col = ctx.add(make_collector(ctx.context, "/reconstruct_node", diagnostics=False))
            wait_for(lambda: col.count("stats") >= 2, TIMEOUT, "the bag's window and the flushed last one")
            first, last = col.messages["stats"][:2]
            self.assertEqual((first.num_keyframes, first.keyframes_with_depth, first.keyframes_with_camera_info),
                             (4, 4, 4))
            self.assertTrue(first.metric and np.isfinite(first.metric_scale) and first.metric_scale > 0)
            counts = dict(zip(last.side_input_counts_names, last.side_input_counts))
            self.assertEqual({k: counts.get(k) for k in ("received.camera_info", "received.depth",
                                                         "paired.camera_info.exact", "paired.depth.exact")},
                             {"received.camera_info": FRAMES, "received.depth": FRAMES,
                              "paired.camera_info.exact": FRAMES, "paired.depth.exact": FRAMES})
            proc_info.assertWaitForShutdown(process="flush", timeout=TIMEOUT)     # the ~/flush call
        finally:
            ctx.close()


@launch_testing.post_shutdown_test()
class TestRgbdLog(unittest.TestCase):
    def test_replay_played_the_three_topics(self, proc_info, proc_output):
        text = clean_exit_output(self, proc_info, proc_output)
        self.assertIn(f"httm-replay: published {3 * FRAMES} messages ({TOPICS['image']}: {FRAMES}, "
                      f"{TOPICS['camera_info']}: {FRAMES}, {TOPICS['depth']}: {FRAMES})", text)
