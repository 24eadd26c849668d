"""Launch test: `ros2 launch httm_ros reconstruct.launch.py` with bad arguments ends with one clear
error line and a non-zero status, never a Python traceback: a checkpoint that is not a file (found
by the launch file before the node starts) and an unknown merge mode (refused by the node).
"""

import os
import pathlib
import tempfile
import unittest

import launch
import launch_testing.actions
import launch_testing.util
import pytest
from launch.actions import ExecuteProcess

from httm_ros.tools.local_dds import ros_env

os.environ.update(ros_env(__name__))
BAD_MERGE = """/**:
  ros__parameters:
    model_config: "tiny"
    merge_mode: "sideways"
"""
MISSING = "/nonexistent/vggt.safetensors"


def _ros2_launch(name, *args):
    return ExecuteProcess(cmd=["ros2", "launch", "httm_ros", "reconstruct.launch.py", "device:=cpu", *args],
                          name=name, output="screen")


@pytest.mark.launch_test
def generate_test_description():
    bad = pathlib.Path(tempfile.mkdtemp()) / "bad_merge.yaml"
    bad.write_text(BAD_MERGE)
    missing = _ros2_launch("missing_checkpoint", f"checkpoint:={MISSING}")
    merge = _ros2_launch("unknown_merge_mode", f"extra_params_file:={bad}", "allow_test_weights:=true")
    return launch.LaunchDescription([missing, merge, launch_testing.util.KeepAliveProc(),
                                     launch_testing.actions.ReadyToTest()]), \
        {"missing": missing, "merge": merge}


class TestBothEnd(unittest.TestCase):
    def test_both_launches_end_by_themselves(self, proc_info, missing, merge):
        proc_info.assertWaitForShutdown(process=missing, timeout=60)
        proc_info.assertWaitForShutdown(process=merge, timeout=120)


def _errors(proc_output, process):
    text = "".join(o.text.decode(errors="replace") for o in proc_output[process])
    return text, [line for line in text.splitlines() if "[ERROR]" in line or "[FATAL]" in line]


@launch_testing.post_shutdown_test()
class TestOneClearLine(unittest.TestCase):
    def test_missing_checkpoint(self, proc_info, proc_output, missing):
        self.assertEqual(proc_info[missing].returncode, 1)
        text, errors = _errors(proc_output, missing)
        self.assertNotIn("Traceback", text)
        self.assertEqual(len(errors), 1, text)
        self.assertIn(f"launch argument checkpoint:={MISSING}: no such file", errors[0])
        self.assertNotIn("process started", text)                 # refused before the node starts

    def test_unknown_merge_mode(self, proc_info, proc_output, merge):
        self.assertEqual(proc_info[merge].returncode, 1)
        text, errors = _errors(proc_output, merge)
        self.assertNotIn("Traceback", text)
        reason = [line for line in errors if "cannot start" in line]
        self.assertEqual(len(reason), 1, text)
        self.assertIn("merge_mode must be one of auto, none, uniform, httm; got 'sideways'", reason[0])
