"""The launch scenario without `ros2 launch`: the installed reconstruct_node executable as a process,
with exactly the parameters and remaps reconstruct.launch.py gives it (httm_ros.tools.launch_plan),
fed from a bag by httm-replay's Player over DDS with /clock, flushed at the end of the bag.

Covers what test_launch_reconstruct.py (launch_testing) covers on a ROS install, and more: a bag
with two image topics (the compressed one chosen), input_type=auto -> compressed, the remap,
use_sim_time from bag:= (diagnostics carry the bag's time), the params file + extra params file,
the "ready: " line the launch file waits for, ~/flush of the last window, SIGINT exit status 0.
"""

import os
import threading

import numpy as np
import pytest

pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built package (run via scripts/test)", allow_module_level=True)

from rclpy.node import Node  # noqa: E402

from httm_ros.tools import launch_plan  # noqa: E402
from httm_ros.tools.replay import Player, call_flush  # noqa: E402
from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import RosContext, make_collector, wait_for  # noqa: E402
from launch_helpers import (camera_sequence, interrupt, process_env, start_installed_node,  # noqa: E402
                            tiny_params_file, write_camera_bag)

TIMEOUT = 60.0
FRAMES = 5
T0 = 100.0


def _bag(path):
    """FRAMES frames on two topics: raw and (what the test chooses) JPEG-compressed."""
    return write_camera_bag(path, camera_sequence(FRAMES), T0, image="/cam/image_raw",
                            compressed="/cam/image_raw/compressed")


def test_node_name_matches_the_node():
    from httm_ros.ros.reconstruct_node import NODE_NAME

    assert launch_plan.NODE_NAME == NODE_NAME


def test_installed_node_with_the_launch_plan_replayed_bag_and_flush(tmp_path):
    bag = _bag(tmp_path / "bag")
    extra = tiny_params_file(tmp_path / "tiny.yaml", diagnostics_period=0.1)
    plan = launch_plan.resolve_launch_arguments({"bag": str(bag), "image_topic": "/cam/image_raw/compressed",
                                                 "device": "cpu", "allow_test_weights": "true",
                                                 "extra_params_file": str(extra)})
    assert plan.input_type == "compressed" and plan.use_sim_time
    assert plan.remappings == [("image/compressed", "/cam/image_raw/compressed")]
    ctx = RosContext(__name__)
    proc = start_installed_node(plan, process_env(__name__))
    stop = threading.Event()
    try:
        col = ctx.add(make_collector(ctx.context, "/reconstruct_node"))
        feeder = ctx.add(Node("feeder", context=ctx.context))
        player = Player(feeder, bag, plan.image_topic, rate=2.0, depth=20)
        wait_for(lambda: player.publisher.get_subscription_count() > 0 and col.matched("stats"), TIMEOUT,
                 "the node's image subscription and ~/stats")
        assert player.play() == FRAMES
        clock = threading.Thread(target=player.hold_clock, args=(stop,), daemon=True)
        clock.start()
        wait_for(lambda: col.count("stats") >= 1, TIMEOUT, "the first window (4 keyframes)")
        first = col.messages["stats"][0]
        assert (first.num_keyframes, first.image_width, first.image_height, first.merge_mode) == (4, 56, 42, "httm")
        assert first.header.stamp == codec.sec_to_stamp(T0 + 0.3) and first.header.frame_id == "vggt_map"
        assert first.alignment_accepted, first.alignment_message          # finite test-weight cameras
        wait_for(lambda: col.count("diagnostics") >= 1 and int(_diag(col)["frames_received"]) == FRAMES
                 and int(_diag(col)["queue_depth"]) == 0, TIMEOUT, "all frames taken")
        call_flush(feeder, "/reconstruct_node", TIMEOUT)
        wait_for(lambda: col.count("stats") >= 2, TIMEOUT, "the flushed last window")
        last = col.messages["stats"][1]
        assert (last.num_keyframes, last.num_overlap_keyframes) == (3, 2)
        wait_for(lambda: col.count("map") >= 1 and col.count("path") >= 1, TIMEOUT, "~/map and ~/path")
        xyz, _ = codec.decode_pointcloud2_xyzrgb(col.messages["map"][0])
        assert len(xyz) > 100 and np.isfinite(xyz).all()
        assert len(col.messages["path"][-1].poses) == 4
        stamps = [a.header.stamp.sec for a in list(col.messages["diagnostics"])[-3:]]
        assert all(T0 <= s < T0 + 600 for s in stamps), f"diagnostics not on the bag's clock: {stamps}"
    finally:
        stop.set()
        out = interrupt(proc, TIMEOUT)
        ctx.close()
    assert proc.returncode == 0, out
    assert launch_args_ready_line(out) and "subscribed to /cam/image_raw/compressed" in out


def _diag(col) -> dict:
    for array in reversed(list(col.messages["diagnostics"])):
        for status in array.status:
            if status.name.startswith("/reconstruct_node:"):
                return {kv.key: kv.value for kv in status.values}
    return {"frames_received": "-1", "queue_depth": "-1"}


def launch_args_ready_line(output: str) -> bool:
    """The node prints the line reconstruct.launch.py waits for before it plays a bag."""
    return any(" ready: " in line for line in output.splitlines())
