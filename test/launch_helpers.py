"""What the launch tests (test/launch/*.launch.py) and the launch-process tests
(test_launch_process.py, test_launch_rgbd_process.py) share: a parameters file for the tiny model,
a bag of the synthetic renderer's frames (image, JPEG, camera_info, 16UC1 depth), and the installed
node as a process.

Launch tests are run as files (`python -m launch_testing.launch_test FILE`): they put this folder on
sys.path before importing this module.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Dict, Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from httm_ros.ros import codec
from httm_ros.synthetic import demo_sequence
from httm_ros.tools import launch_plan
from httm_ros.tools.bag_io import OutputBag
from httm_ros.tools.local_dds import ros_env

W, H = 112, 84                   # the camera; the tiny model's input is 56x42
TINY = dict(model_config="tiny", image_size=56, window_size=4, window_overlap=2, keyframe_policy="every",
            qos_reliability="reliable", qos_depth=20)


def tiny_params_file(path: pathlib.Path, **overrides) -> pathlib.Path:
    """A ROS parameters file (for every node, ``/**``) with TINY and ``overrides``; returns ``path``."""
    lines = [f"    {name}: {json.dumps(value)}" for name, value in {**TINY, **overrides}.items()]
    path.write_text("/**:\n  ros__parameters:\n" + "\n".join(lines) + "\n")
    return path


def camera_sequence(frames: int):
    """``frames`` frames of the demo scene at the camera's size (W x H)."""
    return demo_sequence(num_frames=frames, width=W, height=H, seed=0)


def depth_mm(seq) -> np.ndarray:
    """The sequence's true depth as 16UC1 millimetres [S, H, W] (0: no depth)."""
    return np.round(np.nan_to_num(seq.depth, nan=0.0) * 1000.0).astype(np.uint16)


def write_camera_bag(path: pathlib.Path, seq, t0: float, period: float = 0.1, frame_id: str = "camera", *,
                     image: str, compressed: Optional[str] = None, camera_info: Optional[str] = None,
                     depth: Optional[str] = None, depth_frames: Optional[np.ndarray] = None) -> pathlib.Path:
    """Every frame i of ``seq``, stamped t0 + period * i (one header for all its messages), on the
    topics given: ``camera_info`` (2 us before the image in bag time), ``depth``: ``depth_frames``
    [S, H, W] uint16 mm (1 us before), ``image`` (rgb8) and ``compressed`` (JPEG). Returns ``path``."""
    with OutputBag(path) as out:
        for i in range(len(seq)):
            header = codec.make_header(codec.sec_to_stamp(t0 + period * i), frame_id)
            ns = int(round((t0 + period * i) * 1e9))
            if camera_info:
                out.write_message(camera_info, _camera_info(header, seq.intrinsics[i]), ns - 2000)
            if depth:
                out.write_message(depth, _depth_image(header, depth_frames[i]), ns - 1000)
            out.write_message(image, codec.rgb_to_image(seq.images[i], header), ns)
            if compressed:
                out.write_message(compressed, codec.rgb_to_compressed(seq.images[i], header), ns)
        out.commit()
    return path


def _camera_info(header, k: np.ndarray) -> CameraInfo:
    """Rectified camera_info (zero distortion) with K [3, 3]."""
    return CameraInfo(header=header, width=W, height=H, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=k.astype(float).reshape(-1).tolist())


def _depth_image(header, mm: np.ndarray) -> Image:
    """16UC1 depth [H, W] mm."""
    return Image(header=header, height=H, width=W, encoding="16UC1", is_bigendian=0, step=2 * W,
                 data=np.ascontiguousarray(mm).tobytes())


def process_env(name: str) -> Dict[str, str]:
    """The environment of a node process in the DDS domain of ``name`` (unbuffered log)."""
    return {**os.environ, **ros_env(name), "PYTHONUNBUFFERED": "1"}


def start_installed_node(plan: "launch_plan.LaunchPlan", env: Dict[str, str]) -> subprocess.Popen:
    """The installed reconstruct_node with ``plan``'s ros-args; its log (text) on stdout."""
    exe = launch_plan.installed_executable()
    assert exe is not None, "reconstruct_node is not installed in the sourced workspace"
    return subprocess.Popen([sys.executable, str(exe), *plan.ros_args()], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def interrupt(proc: subprocess.Popen, timeout: float) -> str:
    """SIGINT, then the process's whole output once it exited."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=timeout)[0]
