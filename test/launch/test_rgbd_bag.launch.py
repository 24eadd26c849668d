"""Launch test: `reconstruct.launch.py bag:=PATH camera_info_topic:=... depth_topic:=...` without
`ros2 bag`: the launch file remaps camera_info and depth/image, switches the side inputs on and
plays all three topics of the bag with httm-replay (the synthetic renderer's frames, camera_info
and 16UC1 depth in millimetres); the node pairs every keyframe with both and reports metric
windows. (test/test_launch_rgbd_process.py checks the metric values themselves.)"""

import os
import pathlib
import tempfile
import unittest

import launch
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from sensor_msgs.msg import CameraInfo, Image

from httm_ros.ros import codec
from httm_ros.synthetic import demo_sequence
from httm_ros.tools.bag_io import OutputBag
from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for

TIMEOUT = 120.0
FRAMES = 5
T0 = 400.0
TOPICS = {"image": "/cam/color/image_raw", "camera_info": "/cam/color/camera_info",
          "depth": "/cam/aligned_depth_to_color/image_raw"}
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


def _bag(folder: pathlib.Path) -> pathlib.Path:
    """camera_info, depth (16UC1 mm) and image of each frame, with the frame's stamp."""
    seq = demo_sequence(num_frames=FRAMES, width=112, height=84, seed=0)
    with OutputBag(folder / "bag") as out:
        for i in range(FRAMES):
            ns = int(round((T0 + 0.1 * i) * 1e9))
            header = codec.make_header(codec.sec_to_stamp(T0 + 0.1 * i), "camera")
            out.write_message(TOPICS["camera_info"], CameraInfo(header=header, width=112, height=84,
                                                                k=seq.intrinsics[i].astype(float).ravel().tolist()),
                              ns - 2000)
            mm = np.round(np.nan_to_num(seq.depth[i], nan=0.0) * 1000.0).astype(np.uint16)
            out.write_message(TOPICS["depth"], Image(header=header, height=84, width=112, encoding="16UC1",
                                                     step=224, data=mm.tobytes()), ns - 1000)
            out.write_message(TOPICS["image"], codec.rgb_to_image(seq.images[i], header), ns)
        out.commit()
    return folder / "bag"


@pytest.mark.launch_test
def generate_test_description():
    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "tiny.yaml").write_text(TINY)
    launch_file = pathlib.Path(get_package_share_directory("httm_ros")) / "launch" / "reconstruct.launch.py"
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"bag": str(_bag(folder)), "camera_info_topic": TOPICS["camera_info"],
                          "depth_topic": TOPICS["depth"], "bag_rate": "2", "extra_params_file": str(folder / "tiny.yaml"),
                          "allow_test_weights": "true", "device": "cpu"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


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
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
        text = "".join(o.text.decode(errors="replace") for o in proc_output)
        self.assertIn(f"httm-replay: published {3 * FRAMES} messages ({TOPICS['image']}: {FRAMES}, "
                      f"{TOPICS['camera_info']}: {FRAMES}, {TOPICS['depth']}: {FRAMES})", text)
        self.assertNotIn("Traceback", text)
