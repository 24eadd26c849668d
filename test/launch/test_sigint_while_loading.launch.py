"""Launch test: Ctrl-C (SIGINT from launch's shutdown) while reconstruct_node is still importing
and building its model ends it with status 0 and no traceback."""

import os
import time
import unittest

import launch
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch_ros.actions import Node

from httm_ros.tools.local_dds import ros_env
from httm_ros.tools import launch_plan

os.environ.update(ros_env(__name__))


@pytest.mark.launch_test
def generate_test_description():
    plan = launch_plan.resolve_launch_arguments({"allow_test_weights": "true", "device": "cpu"})
    node = Node(package=launch_plan.PACKAGE, executable=launch_plan.NODE_NAME, name=launch_plan.NODE_NAME,
                output="screen", parameters=[*plan.node_parameters(), {"model_config": "tiny"}])
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"node": node}


class TestInterruptEarly(unittest.TestCase):
    def test_shutdown_right_after_start(self, proc_info, node):
        proc_info.assertWaitForStartup(process=node, timeout=30)
        time.sleep(0.3)                                 # in the imports / model build: SIGINT next


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    def test_exit_0_without_traceback_before_ready(self, proc_info, proc_output, node):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0], process=node)
        text = "".join(o.text.decode(errors="replace") for o in proc_output[node])
        self.assertNotIn("Traceback", text)
        self.assertNotIn("KeyboardInterrupt", text)
        self.assertNotIn("ready: ", text)               # it was stopped while loading
