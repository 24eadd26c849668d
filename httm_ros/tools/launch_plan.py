"""Launch arguments of ``reconstruct.launch.py`` -> what to start (pure Python, no ``launch`` import).

One source of truth for the launch file and for everything that starts the node without
``ros2 launch`` (the process test, the demo): :func:`resolve_launch_arguments` turns the launch
arguments (strings, as ``ros2 launch`` passes them) into a :class:`LaunchPlan` - the node's parameter files and
overrides, its remappings, the command lines of the bag player, RViz and the browser viewer
(httm-view). ``LaunchPlan.ros_args()``
gives the same parameters and remappings as a ``--ros-args`` command line.

Arguments (``ros2 launch httm_ros reconstruct.launch.py --show-args`` lists them too):
see :data:`ARGUMENTS`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .bag_io import BagError, choose_topic, find_topic
from .params_yaml import yaml_value

NODE_NAME = "reconstruct_node"
LIFECYCLE_EXECUTABLE = "reconstruct_lifecycle_node"     # the managed variant, same node name
PACKAGE = "httm_ros"
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
INPUT_TYPES = ("auto", "raw", "compressed")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass(frozen=True)
class Argument:
    """One launch argument: name, default (a string, as launch passes it) and description."""

    name: str
    default: str
    description: str


ARGUMENTS: Tuple[Argument, ...] = (
    Argument("params_file", "", "Node parameter file (default: share/httm_ros/config/reconstruct.yaml, "
             "every parameter with its default and a comment)."),
    Argument("extra_params_file", "", "A second parameter file applied after params_file (site or "
             "test overrides); empty: none."),
    Argument("image_topic", "", "Camera topic to subscribe to, e.g. /camera/image_raw or "
             "/camera/image_raw/compressed. Empty: the bag's image topic with bag:=, else "
             f"{DEFAULT_IMAGE_TOPIC}."),
    Argument("input_type", "auto", "raw (sensor_msgs/Image), compressed (CompressedImage) or auto: "
             "the bag topic's type with bag:=, else compressed when image_topic ends in /compressed."),
    Argument("camera_info_topic", "", "sensor_msgs/CameraInfo topic of the images (rectified: D all zero), "
             "e.g. /camera/color/camera_info: the node's camera_info is remapped to it and use_camera_info "
             "set true; with bag:= it must be in the bag and is played too. Empty: none."),
    Argument("depth_topic", "", "Aligned depth image topic (sensor_msgs/Image 16UC1 mm or 32FC1 m; not "
             "compressed), e.g. /camera/aligned_depth_to_color/image_raw: the node's depth/image is "
             "remapped to it and use_depth set true (metric mode); with bag:= it must be in the bag and "
             "is played too. Empty: none."),
    Argument("checkpoint", "", "VGGT checkpoint (.safetensors or .pt); empty: the params file's value."),
    Argument("allow_test_weights", "", "true: run without a checkpoint on deterministic test weights "
             "(meaningless geometry; demos and tests); empty: the params file's value."),
    Argument("device", "", "auto, cpu, cuda or cuda:N; empty: the params file's value."),
    Argument("use_sim_time", "auto", "true, false or auto (= true when bag:= is given)."),
    Argument("rviz", "false", "true: start RViz with rviz_config."),
    Argument("rviz_config", "", "RViz configuration (default: share/httm_ros/config/reconstruct.rviz)."),
    Argument("viewer", "false", "true: start httm-view, the browser viewer (viser), on the node's topics: "
             "open http://<viewer_host>:<viewer_port>."),
    Argument("viewer_host", "127.0.0.1", "Address httm-view serves on (127.0.0.1: this host only; 0.0.0.0: "
             "every interface)."),
    Argument("viewer_port", "8080", "HTTP port of httm-view."),
    Argument("bag", "", "A rosbag2 to play into the node with `ros2 bag play --clock` (httm-replay where "
             "ros2 bag is missing) once the node is ready (sets use_sim_time); the node's ~/flush is "
             "called when the bag ends."),
    Argument("bag_rate", "1.0", "Playback rate of bag:= (1.0 = recorded speed)."),
    Argument("bag_delay", "1.0", "Seconds between the node being ready and the bag starting (DDS discovery)."),
    Argument("log_level", "info", "Node log level: " + ", ".join(LOG_LEVELS) + "."),
    Argument("lifecycle", "false", f"true: start the managed (lifecycle) variant {LIFECYCLE_EXECUTABLE} "
             "(same node name, topics and parameters), which starts unconfigured."),
    Argument("autostart", "true", "With lifecycle:=true: true makes the launch configure and then activate "
             "the node; false leaves the transitions to a Nav2 lifecycle_manager or a ChangeState call. "
             "Without lifecycle:=true it has no effect."),
)
BY_NAME = {a.name: a for a in ARGUMENTS}


class LaunchArgumentError(ValueError):
    """A launch argument with a bad value; ``str(err)`` names it."""


@dataclass
class LaunchPlan:
    """What the launch starts. ``params_files`` then ``overrides`` (later wins) are the node's
    parameters; ``remappings`` its topic remaps."""

    params_files: List[str]
    overrides: Dict[str, Any]
    remappings: List[Tuple[str, str]]
    image_topic: str
    input_type: str
    use_sim_time: bool
    log_level: str = "info"
    rviz_command: Optional[List[str]] = None
    viewer_command: Optional[List[str]] = None       # httm-view on the node's topics
    bag_command: Optional[List[str]] = None          # ros2 bag play ... (a ROS install)
    bag_replay_command: Optional[List[str]] = None   # the same playback with httm-replay
    bag_delay: float = 1.0
    camera_info_topic: Optional[str] = None          # camera_info_topic:= (remapped, played with bag:=)
    depth_topic: Optional[str] = None                # depth_topic:= (remapped, played with bag:=)
    flush_command: List[str] = field(default_factory=list)
    lifecycle: bool = False                          # the managed variant (launch_ros LifecycleNode)
    autostart: bool = True                           # lifecycle: configure + activate from the launch

    @property
    def executable(self) -> str:
        """The executable in lib/httm_ros that the launch starts."""
        return LIFECYCLE_EXECUTABLE if self.lifecycle else NODE_NAME

    def node_parameters(self) -> List[Any]:
        """``parameters=`` of launch_ros' Node: the files, then the overrides (a dict)."""
        return [*self.params_files, dict(self.overrides)]

    def ros_args(self) -> List[str]:
        """The same parameters and remappings as a ``--ros-args ...`` command-line tail."""
        args = ["--ros-args"]
        for path in self.params_files:
            args += ["--params-file", path]
        for name, value in self.overrides.items():
            args += ["-p", f"{name}:={yaml_value(value)}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args + ["--log-level", self.log_level]


# ----------------------------------------------------------------------------- parsing
def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise LaunchArgumentError(f"launch argument {name}:={text!r} must be true or false")


def _positive(name: str, text: str, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LaunchArgumentError(f"launch argument {name}:={text!r} must be a number") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise LaunchArgumentError(f"launch argument {name}:={text!r} must be {'>= 0' if allow_zero else '> 0'}")
    return value


def _port(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 < value < 65536:
        raise LaunchArgumentError(f"launch argument {name}:={text!r} must be a port number (1-65535)")
    return value


def _existing_file(name: str, text: str) -> str:
    path = Path(text).expanduser()
    if not path.is_file():
        raise LaunchArgumentError(f"launch argument {name}:={text}: no such file")
    return str(path.resolve())


def with_defaults(values: Mapping[str, str]) -> Dict[str, str]:
    """All arguments: ``values`` over the defaults. Unknown names are an error."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise LaunchArgumentError(f"unknown launch argument(s): {', '.join(unknown)}; "
                                  f"known: {', '.join(BY_NAME)}")
    return {a.name: str(values.get(a.name, a.default)) for a in ARGUMENTS}


# ----------------------------------------------------------------------------- resolving
def compressed_topic(topic: str) -> str:
    """The CompressedImage topic of a camera topic (image_transport naming)."""
    return topic if topic.rstrip("/").endswith("/compressed") else topic.rstrip("/") + "/compressed"


def _rosbags_available() -> bool:
    try:
        import rosbags  # noqa: F401 - reads the bag's topics
    except ImportError:
        return False
    return True


def _input(values: Dict[str, str], bag: Optional[str], side: Dict[str, str]) -> Tuple[str, str]:
    """(image topic, input type) from image_topic, input_type and the bag (whose depth topic,
    ``side``'s, is not a candidate camera topic)."""
    wanted, kind = values["image_topic"].strip(), values["input_type"].strip().lower()
    if kind not in INPUT_TYPES:
        raise LaunchArgumentError(f"launch argument input_type:={kind!r} must be one of {', '.join(INPUT_TYPES)}")
    if bag:
        if _rosbags_available():
            topic = choose_topic(bag, wanted or None, exclude=list(side.values()))
            return topic.name, topic.input_type if kind == "auto" else kind
        if not wanted:
            raise LaunchArgumentError("bag:= without image_topic:= needs the rosbags library to find "
                                      "the bag's image topic (pip install rosbags), or pass image_topic:=")
    topic = wanted or DEFAULT_IMAGE_TOPIC
    if kind == "auto":
        kind = "compressed" if topic.rstrip("/").endswith("/compressed") else "raw"
    return topic, kind


# launch argument -> (the node's relative topic, the parameter it sets, the message type)
SIDE_TOPICS = {"camera_info_topic": ("camera_info", "use_camera_info", "sensor_msgs/msg/CameraInfo"),
               "depth_topic": ("depth/image", "use_depth", "sensor_msgs/msg/Image")}
COMPRESSED_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd")     # image_transport plugins


def _side_topics(values: Dict[str, str], bag: Optional[str]) -> Dict[str, str]:
    """camera_info_topic / depth_topic -> topic, for those given; checked (a compressed depth topic
    is refused; with bag:= each must be in the bag with its type)."""
    out = {}
    for name, (_, _, msgtype) in SIDE_TOPICS.items():
        topic = values[name].strip()
        if not topic:
            continue
        if name == "depth_topic" and topic.rstrip("/").rsplit("/", 1)[-1] in COMPRESSED_SUFFIXES:
            raise LaunchArgumentError(f"launch argument depth_topic:={topic} is a compressed image_transport "
                                      "topic; the node takes raw depth (sensor_msgs/Image 16UC1 or 32FC1): "
                                      "pass the raw topic (e.g. .../image_raw)")
        out[name] = _side_in_bag(name, topic, msgtype, bag) if bag and _rosbags_available() else topic
    if len(set(out.values())) < len(out):
        raise LaunchArgumentError(f"launch arguments camera_info_topic and depth_topic are the same topic "
                                  f"{out['depth_topic']}")
    return out


def _side_in_bag(name: str, topic: str, msgtype: str, bag: str) -> str:
    """``topic`` as the bag names it; LaunchArgumentError when the bag has no such topic of ``msgtype``."""
    try:
        return find_topic(bag, topic, msgtype).name
    except BagError as err:
        raise LaunchArgumentError(f"launch argument {name}:={topic}: {err}") from None


def _remappings(topic: str, kind: str, side: Dict[str, str]) -> List[Tuple[str, str]]:
    """The node subscribes to ``image`` or ``image/compressed``; remap that to ``topic``, and
    ``camera_info`` / ``depth/image`` to the ``side`` topics given."""
    out = [("image/compressed", compressed_topic(topic))] if kind == "compressed" else [("image", topic)]
    return out + [(SIDE_TOPICS[name][0], target) for name, target in side.items()]


def _overrides(values: Dict[str, str], kind: str, sim_time: bool, side: Dict[str, str]) -> Dict[str, Any]:
    """Parameters set by launch arguments (only those given; the params files keep the rest)."""
    out: Dict[str, Any] = {"input_type": kind, "use_sim_time": sim_time}
    out.update({SIDE_TOPICS[name][1]: True for name in side})
    if values["checkpoint"].strip():
        out["checkpoint"] = str(Path(values["checkpoint"].strip()).expanduser())
    if values["allow_test_weights"].strip():
        out["allow_test_weights"] = _bool("allow_test_weights", values["allow_test_weights"])
    if values["device"].strip():
        out["device"] = values["device"].strip()
    return out


def resolve_launch_arguments(values: Mapping[str, str], share_dir: Optional[str] = None) -> LaunchPlan:
    """Launch arguments (strings) -> LaunchPlan. ``share_dir``: the package's share directory
    (default: looked up with ament_index_python, else this source tree)."""
    values = with_defaults(values)
    share = Path(share_dir) if share_dir else share_directory()
    bag = values["bag"].strip() or None
    if bag:
        bag = str(Path(bag).expanduser().resolve())
    side = _side_topics(values, bag)
    topic, kind = _input(values, bag, side)
    if topic in side.values():
        raise LaunchArgumentError(f"launch arguments: the image topic {topic} is also camera_info_topic or depth_topic")
    sim = values["use_sim_time"].strip().lower()
    sim_time = bool(bag) if sim == "auto" else _bool("use_sim_time", sim)
    files = [_existing_file("params_file", values["params_file"]) if values["params_file"].strip()
             else str(share / "config" / "reconstruct.yaml")]
    if values["extra_params_file"].strip():
        files.append(_existing_file("extra_params_file", values["extra_params_file"]))
    level = values["log_level"].strip().lower()
    if level not in LOG_LEVELS:
        raise LaunchArgumentError(f"launch argument log_level:={level!r} must be one of {', '.join(LOG_LEVELS)}")
    result = LaunchPlan(files, _overrides(values, kind, sim_time, side), _remappings(topic, kind, side), topic,
                        kind, sim_time, level, flush_command=flush_command(),
                        camera_info_topic=side.get("camera_info_topic"), depth_topic=side.get("depth_topic"),
                        lifecycle=_bool("lifecycle", values["lifecycle"]),
                        autostart=_bool("autostart", values["autostart"]))
    if _bool("rviz", values["rviz"]):
        config = values["rviz_config"].strip() or str(share / "config" / "reconstruct.rviz")
        result.rviz_command = ["-d", config]
    if _bool("viewer", values["viewer"]):
        result.viewer_command = viewer_command(values["viewer_host"].strip(), _port("viewer_port", values["viewer_port"]))
    if bag:
        rate = _positive("bag_rate", values["bag_rate"])
        result.bag_delay = _positive("bag_delay", values["bag_delay"], allow_zero=True)
        result.bag_command, result.bag_replay_command = bag_commands(bag, topic, rate, list(side.values()))
    return result


def bag_commands(bag: str, topic: str, rate: float, side: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
    """The bag player, one description for both: ``ros2 bag play`` (C++ rosbag2, a ROS install) and
    httm-replay (rosbags + rclpy, everywhere): ``topic`` and the ``side`` topics (camera_info,
    depth) of ``bag`` in recorded order at ``rate`` with /clock from the bag time; the node's
    ~/flush (:func:`flush_command`) follows when the player exits."""
    topics = [topic, *side]
    ros2_bag = ["ros2", "bag", "play", bag, "--clock", "--rate", f"{rate:g}", "--topics", *topics]
    replay = [sys.executable, "-m", "httm_ros.tools.replay", bag, "--rate", f"{rate:g}"]
    for name in topics:
        replay += ["--topic", name]
    return ros2_bag, replay + ["--wait-for-subscribers", "1"]     # frames sent before discovery would be lost


def viewer_command(host: str, port: int, node: str = "/" + NODE_NAME) -> List[str]:
    """httm-view (httm_ros.viewer) subscribed to ``node``'s topics, serving on ``host``:``port``."""
    return [sys.executable, "-m", "httm_ros.viewer", "--node", node, "--host", host, "--port", str(port)]


def viewer_url(command: List[str]) -> str:
    """The address a browser opens for :func:`viewer_command`'s viewer."""
    host, port = command[command.index("--host") + 1], command[command.index("--port") + 1]
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def ros2_bag_available() -> bool:
    """True when ``ros2 bag`` exists (the ros2bag verb of a ROS install)."""
    return importlib.util.find_spec("ros2bag") is not None and shutil.which("ros2") is not None


def check_files(plan: LaunchPlan) -> None:
    """LaunchArgumentError when checkpoint:= names no file: found before the node starts, so the
    launch ends with that one line and a non-zero status."""
    checkpoint = plan.overrides.get("checkpoint")
    if checkpoint and not Path(checkpoint).is_file():
        raise LaunchArgumentError(f"launch argument checkpoint:={checkpoint}: no such file")


def flush_command(node: str = "/" + NODE_NAME) -> List[str]:
    """``ros2 service call`` of the node's ~/flush (runs the keyframes still queued as a window)."""
    return ["ros2", "service", "call", f"{node}/flush", "std_srvs/srv/Trigger"]


# ----------------------------------------------------------------------------- locations
def share_directory() -> Path:
    """share/httm_ros of the install that is sourced, else this source tree (launch/ and config/
    lie at the same relative places)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[2]


def installed_executable(name: str = NODE_NAME) -> Optional[Path]:
    """lib/httm_ros/<name> (default reconstruct_node) of the sourced install (what
    ``Node(package=..., executable=...)`` runs), or None when the package is not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        exe = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / name
    except PackageNotFoundError:
        return None
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None
