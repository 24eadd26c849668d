"""config/reconstruct.yaml, config/reconstruct.rviz and the launch arguments -> LaunchPlan (no DDS, no launch)."""

import pathlib

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
