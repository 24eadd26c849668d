"""reconstruct_node as a separate process: the real (tiny) model path, start-up failures, SIGINT.

The node process and this test share a DDS domain of their own and the shared-memory-only
Fast DDS profile (config/fastdds_shm.xml), so nothing leaves the host.
"""

import os
import pathlib
import signal
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import RosContext, make_collector, ros_env, wait_for, wait_matched  # noqa: E402
from httm_ros.synthetic import demo_sequence  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 60.0


def _start(*ros_args: str, script: bool = False) -> subprocess.Popen:
    """The node in a subprocess (``bin/reconstruct_node`` or ``python -m``), in this module's domain."""
    entry = [str(ROOT / "bin" / "reconstruct_node")] if script else ["-m", "httm_ros.ros.reconstruct_node"]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))   # this checkout first
    env = {**os.environ, **ros_env(__name__), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    return subprocess.Popen([sys.executable, *entry, "--ros-args", *ros_args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_missing_checkpoint_is_one_clear_error_and_a_nonzero_exit():
    missing = _start("-p", "checkpoint:=/nonexistent/model.safetensors", "-p", "device:=cpu", script=True)
    none_given = _start("-p", "device:=cpu")
    outputs = [p.communicate(timeout=TIMEOUT)[0] for p in (missing, none_given)]
    assert missing.returncode == 2 and none_given.returncode == 2, outputs
    assert "cannot start: CheckpointError: /nonexistent/model.safetensors: no such checkpoint file" in outputs[0]
    assert "no checkpoint given" in outputs[1] and "facebook/VGGT-1B" in outputs[1]
    assert all("Traceback" not in out for out in outputs)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_require_gpu_without_cuda_is_one_clear_error_and_exit_2():
    proc = _start("-p", "require_gpu:=true", "-p", "allow_test_weights:=true", "-p", "model_config:=tiny",
                  script=True)
    out = proc.communicate(timeout=TIMEOUT)[0]
    assert proc.returncode == 2, out
    assert "cannot start: GpuRequiredError: require_gpu is true but CUDA is not available" in out, out
    assert "Traceback" not in out and sum("[FATAL]" in line or "[ERROR]" in line for line in out.splitlines()) == 1


def test_real_tiny_model_in_a_subprocess_with_compressed_input():
    ctx = RosContext(__name__)
    node = _start("-r", "__ns:=/proc", "-p", "allow_test_weights:=true", "-p", "model_config:=tiny",
                  "-p", "device:=cpu", "-p", "input_type:=compressed", "-p", "qos_reliability:=reliable",
                  "-p", "qos_depth:=20", "-p", "image_size:=56", "-p", "window_size:=3", "-p", "window_overlap:=2",
                  "-p", "keyframe_policy:=every", "-p", "merge_mode:=httm", "-p", "diagnostics_period:=0.2")
    try:
        feeder = ctx.add(Node("feeder", context=ctx.context))
        col = ctx.add(make_collector(ctx.context, "/proc/reconstruct_node"))
        pub = feeder.create_publisher(CompressedImage, "/proc/image/compressed", 20)
        wait_matched(pub, 1, TIMEOUT)
        wait_for(lambda: col.matched("stats"), TIMEOUT, "the node's ~/stats publisher")
        seq = demo_sequence(num_frames=3, width=112, height=84, seed=0)
        for i in range(3):
            pub.publish(codec.rgb_to_compressed(seq.images[i], codec.make_header(codec.sec_to_stamp(5.0 + i), "cam")))
        wait_for(lambda: col.count("stats") >= 1, TIMEOUT, "stats of the model's window")
        s = col.last("stats")
        assert (s.num_keyframes, s.image_width, s.image_height, s.merge_mode) == (3, 56, 42, "httm")
        assert s.tokens_per_frame == 5 + 3 * 4 and s.tokens_total == 3 * s.tokens_per_frame
        assert 0 < s.kept_q_ratio < 1 and 0 < s.kept_kv_ratio < 1 and s.latency_model_ms > 0
        assert s.frames_received == 3 and s.header.stamp == codec.sec_to_stamp(7.0)
        wait_for(lambda: any("TEST WEIGHTS" in st.message for a in list(col.messages["diagnostics"])
                             for st in a.status if st.name.startswith("/proc/")), TIMEOUT, "a test-weights warning")
    finally:
        node.send_signal(signal.SIGINT)
        out = node.communicate(timeout=TIMEOUT)[0]
        ctx.close()
    assert node.returncode == 0, out
    assert "NO CHECKPOINT" in out and "MEANINGLESS" in out
