"""The launch description of the launch tests (test/launch/*.launch.py): the installed
reconstruct.launch.py on the tiny model (test weights, CPU), then ReadyToTest."""

import pathlib

import launch
import launch_testing.actions
import launch_testing.asserts
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch_helpers import tiny_params_file


def tiny_reconstruct_launch(folder: pathlib.Path, params=None, **arguments) -> launch.LaunchDescription:
    """reconstruct.launch.py with the launch ``arguments``, ``extra_params_file`` = folder/tiny.yaml
    (the tiny model, ``params`` over launch_helpers.TINY), ``allow_test_weights`` and ``device:=cpu``."""
    extra = tiny_params_file(folder / "tiny.yaml", **(params or {}))
    arguments = {"extra_params_file": str(extra), "allow_test_weights": "true", "device": "cpu", **arguments}
    launch_file = pathlib.Path(get_package_share_directory("httm_ros")) / "launch" / "reconstruct.launch.py"
    include = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                       launch_arguments=arguments.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


def clean_exit_output(test, proc_info, proc_output) -> str:
    """After the launch (a post-shutdown test): every process exited 0 and none printed a
    traceback; returns their output, joined."""
    launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
    text = "".join(o.text.decode(errors="replace") for o in proc_output)
    test.assertNotIn("Traceback", text)
    return text
