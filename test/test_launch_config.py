"""config/reconstruct.yaml, config/reconstruct.rviz and the launch arguments -> LaunchPlan (no DDS, no launch)."""

import pathlib

import numpy as np
import pytest
import yaml

from httm_ros.tools import launch_plan, params_yaml
from httm_ros.tools.launch_plan import LaunchArgumentError, resolve_launch_arguments
from httm_ros.ros import params

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARE = str(ROOT)                       # the source tree has launch/ and config/ where share/httm_ros has them
OUTPUT_LATCHED = {"points": False, "map": True, "depth": False, "depth_confidence": False,
                  "camera_info": False, "pose": False, "path": True, "stats": False}


# ----------------------------------------------------------------------------- reconstruct.yaml
def test_yaml_is_what_the_parameter_table_generates():
    assert (ROOT / "config" / "reconstruct.yaml").read_text() == params_yaml.render(), \
        "config/reconstruct.yaml is stale: run python -m httm_ros.tools.params_yaml --write"


def test_yaml_holds_every_default_with_its_type_and_a_comment():
    text = (ROOT / "config" / "reconstruct.yaml").read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert values == params.defaults()
    assert all(type(values[p.name]) is p.type for p in params.PARAMS)
    lines = text.splitlines()
    for p in params.PARAMS:
        i = next(k for k, line in enumerate(lines) if line.strip().startswith(f"{p.name}:"))
        assert lines[i - 1].strip().startswith("#"), f"{p.name} has no comment"


@pytest.mark.parametrize("value, text", [(0.005, "0.005"), (1e-6, "0.000001"), (2_000_000, "2000000"),
                                         (True, "true"), ("1b", '"1b"'), ("", '""'), (1.0, "1.0")])
def test_yaml_values_keep_their_types(value, text):
    assert params_yaml.yaml_value(value) == text
    assert yaml.safe_load(text) == value and type(yaml.safe_load(text)) is type(value)


# ----------------------------------------------------------------------------- reconstruct.rviz
def _displays(config):
    return config["Visualization Manager"]["Displays"]


def test_rviz_config_shows_the_node_topics_in_the_world_frame():
    config = yaml.safe_load((ROOT / "config" / "reconstruct.rviz").read_text())
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == params.BY_NAME["world_frame"].default
    topics = {}
    for display in _displays(config):
        if "Topic" in display:
            topics[display["Class"].rsplit("/", 1)[-1], display["Topic"]["Value"]] = display["Topic"]
    node = "/" + launch_plan.NODE_NAME
    wanted = {("PointCloud2", f"{node}/map"), ("PointCloud2", f"{node}/points"), ("Path", f"{node}/path"),
              ("Pose", f"{node}/pose"), ("Image", f"{node}/depth")}
    assert wanted <= set(topics)
    for (_, topic), qos in topics.items():
        name = topic.rsplit("/", 1)[-1]
        assert topic == f"{node}/{name}" and name in OUTPUT_LATCHED
        assert (qos["Durability Policy"] == "Transient Local") == OUTPUT_LATCHED[name], topic
        assert qos["Reliability Policy"] == "Reliable"


# ----------------------------------------------------------------------------- launch arguments
def test_defaults_start_the_node_with_the_installed_yaml_on_a_camera_topic():
    p = resolve_launch_arguments({}, SHARE)
    assert p.params_files == [str(ROOT / "config" / "reconstruct.yaml")]
    assert p.overrides == {"input_type": "raw", "use_sim_time": False}
    assert p.remappings == [("image", "/camera/image_raw")]
    assert p.bag_command is None and p.rviz_command is None and p.viewer_command is None
    assert p.node_parameters() == [str(ROOT / "config" / "reconstruct.yaml"), p.overrides]
    assert p.flush_command == ["ros2", "service", "call", "/reconstruct_node/flush", "std_srvs/srv/Trigger"]


def test_compressed_input_remaps_the_compressed_topic():
    for topic in ("/cam/image_raw/compressed", "/cam/image_raw"):
        kind = "compressed" if topic.endswith("raw") else "auto"
        p = resolve_launch_arguments({"image_topic": topic, "input_type": kind}, SHARE)
        assert p.input_type == "compressed" and p.overrides["input_type"] == "compressed"
        assert p.remappings == [("image/compressed", "/cam/image_raw/compressed")]


def test_overrides_and_ros_args(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("/**:\n  ros__parameters:\n    window_size: 4\n")
    p = resolve_launch_arguments({"checkpoint": "/models/VGGT 1B.safetensors", "device": "cuda:0",
                                  "allow_test_weights": "false", "use_sim_time": "true",
                                  "extra_params_file": str(extra), "rviz": "true", "log_level": "WARN"}, SHARE)
    assert p.overrides == {"input_type": "raw", "use_sim_time": True, "checkpoint": "/models/VGGT 1B.safetensors",
                           "allow_test_weights": False, "device": "cuda:0"}
    assert p.params_files[-1] == str(extra.resolve())
    assert p.rviz_command == ["-d", str(ROOT / "config" / "reconstruct.rviz")]
    args = p.ros_args()
    assert args[:5] == ["--ros-args", "--params-file", p.params_files[0], "--params-file", str(extra.resolve())]
    assert 'checkpoint:="/models/VGGT 1B.safetensors"' in args and 'device:="cuda:0"' in args and "use_sim_time:=true" in args and "allow_test_weights:=false" in args
    assert args[-4:] == ["-r", "image:=/camera/image_raw", "--log-level", "warn"]


def test_viewer_starts_httm_view_on_the_node_topics():
    import sys

    p = resolve_launch_arguments({"viewer": "true"}, SHARE)
    assert p.viewer_command == [sys.executable, "-m", "httm_ros.viewer", "--node", "/reconstruct_node",
                                "--host", "127.0.0.1", "--port", "8080"]
    assert launch_plan.viewer_url(p.viewer_command) == "http://127.0.0.1:8080"
    p = resolve_launch_arguments({"viewer": "true", "viewer_host": "0.0.0.0", "viewer_port": "8123"}, SHARE)
    assert p.viewer_command[-4:] == ["--host", "0.0.0.0", "--port", "8123"]
    assert launch_plan.viewer_url(p.viewer_command) == "http://127.0.0.1:8123"


@pytest.mark.parametrize("values, message", [
    ({"rviz": "maybe"}, "rviz:='maybe' must be true or false"),
    ({"viewer": "true", "viewer_port": "80a"}, "viewer_port:='80a' must be a port number"),
    ({"viewer": "true", "viewer_port": "70000"}, "viewer_port:='70000' must be a port number"),
    ({"input_type": "theora"}, "input_type:='theora' must be one of auto, raw, compressed"),
    ({"params_file": "/nonexistent.yaml"}, "params_file:=/nonexistent.yaml: no such file"),
    ({"imagetopic": "/x"}, "unknown launch argument(s): imagetopic"),
    ({"log_level": "loud"}, "log_level:='loud' must be one of"),
])
def test_bad_launch_arguments_are_named(values, message):
    with pytest.raises(LaunchArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_launch_arguments(values, SHARE)


def test_every_argument_is_documented():
    names = [a.name for a in launch_plan.ARGUMENTS]
    assert len(names) == len(set(names))
    assert {"params_file", "image_topic", "input_type", "checkpoint", "device", "use_sim_time", "rviz",
            "bag"} <= set(names)
    assert all(a.description.endswith(".") for a in launch_plan.ARGUMENTS)


def test_workflow_doc_lists_every_launch_argument():
    doc = (ROOT / "docs" / "WORKFLOW.md").read_text()
    missing = [a.name for a in launch_plan.ARGUMENTS if f"| `{a.name}` |" not in doc]
    assert not missing, f"docs/WORKFLOW.md does not document {missing}"


def test_bag_without_rosbags_needs_an_image_topic(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "rosbags", None)                # import rosbags -> ImportError
    with pytest.raises(LaunchArgumentError, match="pass image_topic:="):
        resolve_launch_arguments({"bag": str(tmp_path)}, SHARE)
    p = resolve_launch_arguments({"bag": str(tmp_path), "image_topic": "/cam/image_raw/compressed"}, SHARE)
    assert p.input_type == "compressed" and p.use_sim_time and p.bag_command[:4] == ["ros2", "bag", "play", str(tmp_path)]


def test_lifecycle_selects_the_managed_executable_and_autostart():
    plain = resolve_launch_arguments({}, SHARE)
    assert (plain.lifecycle, plain.executable) == (False, launch_plan.NODE_NAME)
    managed = resolve_launch_arguments({"lifecycle": "true"}, SHARE)
    assert (managed.lifecycle, managed.autostart, managed.executable) == (True, True, "reconstruct_lifecycle_node")
    assert managed.node_parameters() == plain.node_parameters() and managed.remappings == plain.remappings
    assert not resolve_launch_arguments({"lifecycle": "true", "autostart": "false"}, SHARE).autostart
    with pytest.raises(LaunchArgumentError, match="autostart:='later' must be true or false"):
        resolve_launch_arguments({"lifecycle": "true", "autostart": "later"}, SHARE)
    assert (ROOT / "bin" / managed.executable).is_file()       # installed to lib/httm_ros like reconstruct_node


# ----------------------------------------------------------------------------- RGB-D: camera_info and depth
def _rgbd_bag(path, depth_type="sensor_msgs/msg/Image"):
    """A bag (written with rosbags' own serializer: no rclpy) with a colour image, its camera_info
    and a depth topic (of ``depth_type``), one message each."""
    from httm_ros.tools.bag_io import OutputBag

    with OutputBag(path) as out:
        store = out.store
        header = store.types["std_msgs/msg/Header"](stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                                   frame_id="cam")
        image = store.types["sensor_msgs/msg/Image"](header=header, height=1, width=1, encoding="rgb8",
                                                     is_bigendian=0, step=3, data=np.zeros(3, np.uint8))
        info = store.types["sensor_msgs/msg/CameraInfo"]
        roi = store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        info = info(header=header, height=1, width=1, distortion_model="", d=np.zeros(0), k=np.eye(3).ravel(),
                    r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0, roi=roi)
        compressed = store.types["sensor_msgs/msg/CompressedImage"](header=header, format="16UC1; compressedDepth",
                                                                    data=np.zeros(4, np.uint8))
        for topic, msgtype, msg in (("/cam/color/image_raw", "sensor_msgs/msg/Image", image),
                                    ("/cam/color/camera_info", "sensor_msgs/msg/CameraInfo", info),
                                    ("/cam/depth/image_raw", depth_type,
                                     image if depth_type.endswith("/Image") else compressed)):
            out.write_raw(topic, msgtype, 1_000_000_000, bytes(store.serialize_cdr(msg, msgtype)))
        out.commit()
    return str(path)


RGBD = {"camera_info_topic": "/cam/color/camera_info", "depth_topic": "/cam/depth/image_raw"}


def test_camera_info_and_depth_topics_remap_and_switch_the_side_inputs_on():
    p = resolve_launch_arguments({"image_topic": "/cam/color/image_raw", **RGBD}, SHARE)
    assert p.remappings == [("image", "/cam/color/image_raw"), ("camera_info", "/cam/color/camera_info"),
                            ("depth/image", "/cam/depth/image_raw")]
    assert p.overrides == {"input_type": "raw", "use_sim_time": False, "use_camera_info": True, "use_depth": True}
    assert (p.camera_info_topic, p.depth_topic) == ("/cam/color/camera_info", "/cam/depth/image_raw")
    args = p.ros_args()
    assert "use_camera_info:=true" in args and "use_depth:=true" in args
    assert args[-8:-2] == ["-r", "image:=/cam/color/image_raw", "-r", "camera_info:=/cam/color/camera_info",
                           "-r", "depth/image:=/cam/depth/image_raw"]
    only_info = resolve_launch_arguments({"camera_info_topic": "/cam/color/camera_info"}, SHARE)
    assert only_info.remappings == [("image", "/camera/image_raw"), ("camera_info", "/cam/color/camera_info")]
    assert "use_depth" not in only_info.overrides and only_info.overrides["use_camera_info"] is True
    compressed = resolve_launch_arguments({"image_topic": "/cam/color/image_raw/compressed", **RGBD}, SHARE)
    assert compressed.remappings[0] == ("image/compressed", "/cam/color/image_raw/compressed")
    assert compressed.remappings[1:] == p.remappings[1:]


def test_bag_plays_the_image_camera_info_and_depth_topics(tmp_path):
    pytest.importorskip("rosbags")
    import sys

    bag = _rgbd_bag(tmp_path / "rgbd")
    # the depth topic is no candidate for the image topic: the bag's colour image is chosen alone
    p = resolve_launch_arguments({"bag": bag, "camera_info_topic": "cam/color/camera_info",
                                  "depth_topic": "/cam/depth/image_raw", "bag_rate": "0.5"}, SHARE)
    assert (p.image_topic, p.input_type, p.use_sim_time) == ("/cam/color/image_raw", "raw", True)
    assert p.camera_info_topic == "/cam/color/camera_info"              # as the bag names it
    assert p.bag_command == ["ros2", "bag", "play", bag, "--clock", "--rate", "0.5", "--topics",
                             "/cam/color/image_raw", "/cam/color/camera_info", "/cam/depth/image_raw"]
    assert p.bag_replay_command == [sys.executable, "-m", "httm_ros.tools.replay", bag, "--rate", "0.5",
                                    "--topic", "/cam/color/image_raw", "--topic", "/cam/color/camera_info",
                                    "--topic", "/cam/depth/image_raw", "--wait-for-subscribers", "1"]
    assert p.overrides["use_camera_info"] and p.overrides["use_depth"]
    assert ("depth/image", "/cam/depth/image_raw") in p.remappings
    plain = resolve_launch_arguments({"bag": bag, "image_topic": "/cam/color/image_raw"}, SHARE)
    assert plain.bag_command[-2:] == ["--topics", "/cam/color/image_raw"]      # as before: the image only
    assert plain.bag_replay_command[-4:] == ["--topic", "/cam/color/image_raw", "--wait-for-subscribers", "1"]


@pytest.mark.parametrize("values, message", [
    ({"depth_topic": "/cam/depth/image_raw/compressedDepth"}, "depth_topic:=/cam/depth/image_raw/compressedDepth "
                                                              "is a compressed image_transport topic"),
    ({"depth_topic": "/cam/depth/image_raw/compressed"}, "is a compressed image_transport topic"),
    ({"depth_topic": "/cam/x", "camera_info_topic": "/cam/x"}, "are the same topic /cam/x"),
    ({"depth_topic": "/camera/image_raw"}, "the image topic /camera/image_raw is also"),
])
def test_bad_side_topics_are_named(values, message):
    with pytest.raises(LaunchArgumentError, match=message):
        resolve_launch_arguments(values, SHARE)


def test_side_topics_must_be_in_the_bag_with_their_types(tmp_path):
    pytest.importorskip("rosbags")
    bag = _rgbd_bag(tmp_path / "rgbd")
    with pytest.raises(LaunchArgumentError, match=r"depth_topic:=/cam/depth/nope: .*no topic /cam/depth/nope; "
                                                  r"sensor_msgs/msg/Image topics: /cam/color/image_raw \(sensor_msgs"
                                                  r"/msg/Image\), /cam/depth/image_raw \(sensor_msgs/msg/Image\)"):
        resolve_launch_arguments({"bag": bag, "depth_topic": "/cam/depth/nope"}, SHARE)
    with pytest.raises(LaunchArgumentError, match="camera_info_topic:=/cam/depth/image_raw: .*topic "
                                                  "/cam/depth/image_raw is sensor_msgs/msg/Image, not "
                                                  "sensor_msgs/msg/CameraInfo"):
        resolve_launch_arguments({"bag": bag, "image_topic": "/cam/color/image_raw",
                                  "camera_info_topic": "/cam/depth/image_raw"}, SHARE)
    packed = _rgbd_bag(tmp_path / "packed", depth_type="sensor_msgs/msg/CompressedImage")
    with pytest.raises(LaunchArgumentError, match="depth_topic:=/cam/depth/image_raw: .*is "
                                                  "sensor_msgs/msg/CompressedImage, not sensor_msgs/msg/Image"):
        resolve_launch_arguments({"bag": packed, "image_topic": "/cam/color/image_raw",
                                  "depth_topic": "/cam/depth/image_raw"}, SHARE)


def test_side_topics_without_rosbags_are_passed_on_unchecked(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "rosbags", None)
    p = resolve_launch_arguments({"bag": str(tmp_path), "image_topic": "/cam/image_raw", **RGBD}, SHARE)
    assert p.bag_command[-4:] == ["--topics", "/cam/image_raw", "/cam/color/camera_info", "/cam/depth/image_raw"]
