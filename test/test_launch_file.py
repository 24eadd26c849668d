"""launch/reconstruct.launch.py wired to its LaunchPlan, checked against stand-ins for launch / launch_ros.

launch is not installable here; these stand-ins record what the launch file builds (the real thing
runs in test_launch_reconstruct.py where launch_testing exists). They check that the file declares
every argument, evaluates them through httm_ros.tools.launch_plan.resolve_launch_arguments, gives the node exactly the
plan's parameters and remappings, starts RViz on rviz:=true and plays the bag only after the node
logged that it is ready, then calls ~/flush.
"""

import importlib.util
import pathlib
import sys
import types

import pytest

from httm_ros.tools import launch_plan

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "reconstruct.launch.py"


class Recorded:
    """Any launch class: keeps its positional and keyword arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stand_ins():
    """Module objects named like the parts of launch / launch_ros the launch file imports."""
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "EmitEvent", "ExecuteProcess", "OpaqueFunction",
                           "RegisterEventHandler", "TimerAction"],
        "launch.event_handlers": ["OnProcessExit", "OnProcessIO"],
        "launch.events": ["Shutdown"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.parameter_descriptions": ["ParameterValue"],
    }
    modules = {}
    for module, classes in names.items():
        mod = types.ModuleType(module)
        for cls in classes:
            setattr(mod, cls, type(cls, (Recorded,), {}))
        modules[module] = mod

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration
    modules["launch.substitutions"] = subs
    return modules


@pytest.fixture
def launch_file(monkeypatch):
    for name, module in _stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("reconstruct_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _actions(module, **values):
    """Run the launch file's OpaqueFunction with the defaults overridden by ``values``."""
    description = module.generate_launch_description()
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert declared == {a.name: a.default for a in launch_plan.ARGUMENTS}
    opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    context = {**declared, **values}
    return opaque[0].kwargs["function"](context), launch_plan.resolve_launch_arguments(context)


def _by_type(actions, name):
    return [a for a in actions if type(a).__name__ == name]


def test_node_gets_the_plans_parameters_and_remaps(launch_file):
    actions, plan = _actions(launch_file, image_topic="/cam/image_raw/compressed", device="cpu")
    nodes = _by_type(actions, "Node")
    assert len(nodes) == 1
    node = nodes[0].kwargs
    assert (node["package"], node["executable"], node["name"]) == ("httm_ros", "reconstruct_node", "reconstruct_node")
    assert node["parameters"][:-1] == plan.node_parameters()[:-1]           # the params file(s)
    overrides = {k: v.args[0] if type(v).__name__ == "ParameterValue" else v
                 for k, v in node["parameters"][-1].items()}
    assert overrides == plan.overrides and overrides["input_type"] == "compressed" and overrides["device"] == "cpu"
    assert all(node["parameters"][-1][k].kwargs == {"value_type": str} for k in ("input_type", "device"))
    assert node["parameters"][-1]["use_sim_time"] is False
    assert node["remappings"] == [("image/compressed", "/cam/image_raw/compressed")]
    shutdown = _by_type(actions, "RegisterEventHandler")[0].args[0]
    assert shutdown.kwargs["target_action"] is nodes[0]


def test_rviz_true_starts_rviz_with_the_config(launch_file):
    actions, plan = _actions(launch_file, rviz="true")
    rviz = [n for n in _by_type(actions, "Node") if n.kwargs["package"] == "rviz2"]
    assert len(rviz) == 1 and rviz[0].kwargs["arguments"][0] == "-d"
    assert rviz[0].kwargs["arguments"][1].endswith("config/reconstruct.rviz")


def test_bag_plays_once_the_node_is_ready_then_flushes(launch_file, tmp_path):
    from httm_ros.tools.bag_io import OutputBag
    from httm_ros.ros import codec
    import numpy as np

    pytest.importorskip("sensor_msgs")
    bag = tmp_path / "bag"
    with OutputBag(bag) as out:
        out.write_message("/cam/image_raw", codec.rgb_to_image(np.zeros((4, 4, 3), np.uint8),
                                                               codec.make_header(codec.sec_to_stamp(1.0), "c")), 1)
        out.commit()
    actions, plan = _actions(launch_file, bag=str(bag), bag_rate="2")
    node = _by_type(actions, "Node")[0]
    assert node.kwargs["parameters"][-1]["use_sim_time"] is True and plan.overrides["use_sim_time"] is True
    assert node.kwargs["remappings"] == [("image", "/cam/image_raw")]
    on_io = [h.args[0] for h in _by_type(actions, "RegisterEventHandler") if type(h.args[0]).__name__ == "OnProcessIO"]
    assert len(on_io) == 1 and on_io[0].kwargs["target_action"] is node
    handler = on_io[0].kwargs["on_stderr"]
    assert handler(types.SimpleNamespace(text=b"[INFO] loading the model")) is None
    started = handler(types.SimpleNamespace(text=b"[INFO] [reconstruct_node]: ready: VGGT tiny on cpu"))
    timer = _by_type(started, "TimerAction")[0]
    player = timer.kwargs["actions"][0]
    assert player.kwargs["cmd"] == ["ros2", "bag", "play", str(bag.resolve()), "--clock", "--rate", "2",
                                    "--topics", "/cam/image_raw"]
    on_exit = _by_type(started, "RegisterEventHandler")[0].args[0]
    assert on_exit.kwargs["target_action"] is player
    assert on_exit.kwargs["on_exit"][0].kwargs["cmd"] == plan.flush_command
    assert on_io[0].kwargs["on_stdout"](types.SimpleNamespace(text=b"ready: again")) is None   # once only
