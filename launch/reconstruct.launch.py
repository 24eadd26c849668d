"""Start reconstruct_node with config/reconstruct.yaml; optionally RViz and a bag to replay.

    ros2 launch httm_ros reconstruct.launch.py image_topic:=/camera/image_raw checkpoint:=/path/model.safetensors
    ros2 launch httm_ros reconstruct.launch.py rviz:=true bag:=/path/to/bag checkpoint:=...
    ros2 launch httm_ros reconstruct.launch.py viewer:=true bag:=/path/to/bag ...   # browser: http://127.0.0.1:8080
    ros2 launch httm_ros reconstruct.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info depth_topic:=/camera/aligned_depth_to_color/image_raw
    ros2 launch httm_ros reconstruct.launch.py lifecycle:=true    # the managed (lifecycle) variant
    ros2 launch httm_ros reconstruct.launch.py --show-args        # every argument, with its default

What the arguments mean and how they become node parameters and remappings is computed by
httm_ros.tools.launch_plan (pure Python, shared with the tests and the demo); this file only turns
that LaunchPlan into launch actions:
- the node, with the params file(s), the overrides and the remapping of ``image`` /
  ``image/compressed`` to the camera topic, and of ``camera_info`` / ``depth/image`` to
  camera_info_topic / depth_topic when given (which also set use_camera_info / use_depth true);
  the launch ends when the node exits;
- with lifecycle:=true the node is reconstruct_lifecycle_node as a launch_ros LifecycleNode (same
  name and topics); with autostart:=true (default) the launch emits its configure transition once
  the process runs and activate once configure succeeded; autostart:=false leaves both to a Nav2
  lifecycle_manager or a ~/change_state call (docs/ROS.md "Lifecycle node");
- RViz with config/reconstruct.rviz when rviz:=true;
- httm-view (the browser viewer) on the node's topics when viewer:=true (viewer_host, viewer_port);
- with bag:=PATH: once the node logs that it is ready (model loaded), ``ros2 bag play PATH --clock``
  of the image topic, and of camera_info_topic / depth_topic when given (use_sim_time is set on
  the node), then the node's ~/flush when the bag ends.
  Where ``ros2 bag`` is missing (no ROS install) httm-replay plays it the same way (/clock, rate),
  and the log says so;
- a launch argument error (or checkpoint:= naming no file) ends the launch with one error line and
  a non-zero status, as does the node failing to start.
"""

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, LogInfo, OpaqueFunction,
                            RegisterEventHandler, TimerAction)
from launch.event_handlers import OnProcessExit, OnProcessIO, OnProcessStart
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition
from launch_ros.parameter_descriptions import ParameterValue

from httm_ros.tools import launch_plan

READY_MARK = b"ready: "          # reconstruct_node logs "ready: <model> ..." once it can take images


def _bag_actions(plan, node):
    """Play the bag once the node is ready; flush the node when the bag has been played."""
    notes = []
    if launch_plan.ros2_bag_available():
        player = ExecuteProcess(cmd=plan.bag_command, output="screen", name="bag_play")
    else:
        player = ExecuteProcess(cmd=plan.bag_replay_command, output="screen", name="httm_replay")
        notes = [LogInfo(msg="`ros2 bag` is not available: the bag is played with httm-replay "
                             "(same /clock, rate and ~/flush at the end)")]
    flush = ExecuteProcess(cmd=plan.flush_command, output="screen", name="flush")
    started = []

    def on_output(event):
        if started or READY_MARK not in event.text:
            return None
        started.append(True)
        return [RegisterEventHandler(OnProcessExit(target_action=player, on_exit=[flush])),
                TimerAction(period=plan.bag_delay, actions=[player])]

    return notes + [RegisterEventHandler(OnProcessIO(target_action=node, on_stdout=on_output, on_stderr=on_output))]


def _node_exited(event, context):
    """End the launch with the node; a failed start (the node logged why) makes it fail too. No
    second Shutdown while one runs: launch_ros's ROS adapter (lifecycle:=true) refuses a second stop."""
    if context.is_shutdown:
        return None
    if event.returncode not in (0, None):
        raise RuntimeError(f"reconstruct_node exited with status {event.returncode}")
    return [EmitEvent(event=Shutdown(reason="reconstruct_node exited"))]


def _typed(parameters):
    """The plan's parameters for launch_ros: string overrides stay strings (launch_ros would read
    a str value as YAML, e.g. a checkpoint path "123" as an int)."""
    return [{k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in p.items()}
            if isinstance(p, dict) else p for p in parameters]


def _node(plan):
    """The node action: reconstruct_node, or its lifecycle variant with lifecycle:=true."""
    kwargs = dict(package=launch_plan.PACKAGE, executable=plan.executable, name=launch_plan.NODE_NAME,
                  output="screen", emulate_tty=True, parameters=_typed(plan.node_parameters()),
                  remappings=plan.remappings, arguments=["--ros-args", "--log-level", plan.log_level])
    return LifecycleNode(namespace="", **kwargs) if plan.lifecycle else Node(**kwargs)


def _autostart(node):
    """configure once the process runs, activate once configure succeeded (a FAILURE stays
    unconfigured: the node logged why)."""

    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    return [RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, start_state="configuring",
                                                   goal_state="inactive",
                                                   entities=[change(Transition.TRANSITION_ACTIVATE)])),
            RegisterEventHandler(OnProcessStart(target_action=node,
                                                on_start=[change(Transition.TRANSITION_CONFIGURE)]))]


def _launch_setup(context, *args, **kwargs):
    """Evaluate the arguments and build the actions (httm_ros.tools.launch_plan)."""
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_plan.ARGUMENTS}
    plan = launch_plan.resolve_launch_arguments(values)
    launch_plan.check_files(plan)
    node = _node(plan)
    actions = [RegisterEventHandler(OnProcessExit(        # handlers first, then the processes they watch
        target_action=node, on_exit=_node_exited))]
    if plan.lifecycle and plan.autostart:
        actions += _autostart(node)
    if plan.bag_command:
        actions += _bag_actions(plan, node)
    actions.append(node)
    if plan.rviz_command:
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=plan.rviz_command, parameters=[{"use_sim_time": plan.use_sim_time}]))
    if plan.viewer_command:
        actions += [LogInfo(msg=f"httm-view: open {launch_plan.viewer_url(plan.viewer_command)} in a browser"),
                    ExecuteProcess(cmd=plan.viewer_command, output="screen", name="httm_view")]
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in launch_plan.ARGUMENTS]
        + [OpaqueFunction(function=_launch_setup)])
