"""The ROS 2 package itself: manifest, build metadata and the generated message."""

import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALLED = os.environ.get("HTTM_ROS_INSTALLED") == "1"


def _setup_py_version() -> str:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "version":
            return node.value.value
    raise AssertionError("setup.py has no version")


def test_package_xml_is_valid_and_matches_setup_py():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    pkg.validate()
    assert pkg.name == "httm_ros"
    assert pkg.get_build_type() == "ament_cmake"
    assert pkg.version == _setup_py_version()
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]


def test_top_level_init_only_extends_path():
    # colcon installs the rosidl-generated __init__.py instead of ours: anything else here is lost.
    code = [ln for ln in (ROOT / "httm_ros" / "__init__.py").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    assert code == ['__path__ = __import__("pkgutil").extend_path(__path__, __name__)']


@pytest.mark.skipif(not INSTALLED, reason="needs the colcon-built messages (run via scripts/test)")
def test_window_stats_message_roundtrip():
    from rclpy.serialization import deserialize_message, serialize_message

    from httm_ros.msg import WindowStats

    msg = WindowStats()
    msg.header.frame_id = "map"
    msg.window_index = 7
    msg.merge_mode = "httm"
    msg.kept_q_ratio = 0.2
    msg.alignment_accepted = True
    msg.gpu_memory_peak_mb = float("nan")
    back = deserialize_message(serialize_message(msg), WindowStats)
    assert (back.header.frame_id, back.window_index, back.merge_mode) == ("map", 7, "httm")
    assert back.kept_q_ratio == pytest.approx(0.2)
    assert back.alignment_accepted
