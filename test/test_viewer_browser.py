"""httm-view for real: fed from an output bag of httm-reconstruct-bag's run (oracle predictor on the
demo sequence), Debian's headless chromium loads the page and renders it (SwiftShader WebGL); the
screenshot's 3D view is not blank and the viewer holds the map. Also: the live rclpy path with the
node's QoS (a latched map published before the viewer starts), and Ctrl-C exits 0."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("viser")
pytest.importorskip("rclpy")
if os.environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from oracle_outputs import oracle_outputs  # noqa: E402

from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import RosContext, ros_env, wait_for  # noqa: E402
from httm_ros.viewer.bag_feed import last_messages, load_bag  # noqa: E402
from httm_ros.viewer.server import free_port, start_viewer  # noqa: E402
from httm_ros.viewer.screenshot import ScreenshotError, capture, find_chromium  # noqa: E402

MIN_SCENE_PIXELS = 5000          # the map alone covers tens of thousands of pixels at 1024x768


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return oracle_outputs(tmp_path_factory.mktemp("oracle"))


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail("chromium missing in CI (scripts/install_venv.sh installs it as root)")
        pytest.skip("no chromium (Debian: apt-get install chromium, as root; scripts/install_venv.sh does it)")
    return path


def test_chromium_renders_the_bag_in_the_viewer(outputs, chromium, tmp_path):
    server, feed = start_viewer("127.0.0.1", 0)
    try:
        topics = load_bag(feed, outputs.out / "bag")
        assert set(topics) == {"map", "points", "path", "pose", "depth", "camera_info", "stats"}
        xyz, _ = codec.decode_pointcloud2_xyzrgb(last_messages(outputs.out / "bag")["map"][1])
        assert feed.scene.counts["map"] == len(xyz) == outputs.report["summary"]["map_points"] > 0
        assert feed.scene.counts["path"] == outputs.report["summary"]["keyframes"]
        assert "tracking:** accepted" in feed.scene._status.content
        connected = []
        server.on_client_connect(lambda client: connected.append(client.client_id))
        png = tmp_path / "viewer.png"
        pixels = capture(f"http://127.0.0.1:{server.get_port()}", png, timeout=45, min_pixels=MIN_SCENE_PIXELS,
                         chromium=chromium)
    finally:
        server.stop()
    assert connected, "chromium never opened the viewer's websocket"
    assert pixels >= MIN_SCENE_PIXELS
    shutil.copy(png, os.environ.get("HTTM_VIEWER_SCREENSHOT", tmp_path / "kept.png"))


def test_blank_page_is_reported(chromium, tmp_path):
    server, _ = start_viewer("127.0.0.1", 0)                          # nothing to show
    try:
        with pytest.raises(ScreenshotError, match="stayed blank"):
            capture(f"http://127.0.0.1:{server.get_port()}", tmp_path / "blank.png", timeout=6,
                    min_pixels=MIN_SCENE_PIXELS, chromium=chromium)
    finally:
        server.stop()


def test_live_topics_with_the_nodes_qos(outputs):
    """A latched map and path published before the viewer subscribes still arrive; stats too."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from httm_ros.msg import WindowStats
    from httm_ros.viewer.live_feed import message_class, subscribe

    messages = {name: msg for name, (_, msg) in last_messages(outputs.out / "bag").items()}
    ctx = RosContext("viewer_live")
    server, feed = start_viewer("127.0.0.1", 0)
    try:
        node = ctx.add(rclpy.create_node("reconstruct_node", context=ctx.context))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for name in ("map", "path"):
            raw = _cdr(messages[name], name)
            pub = node.create_publisher(message_class(_TYPES[name]), f"~/{name}", latched)
            pub.publish(_rclpy_message(raw, _TYPES[name]))
        stats_pub = node.create_publisher(WindowStats, "~/stats", 10)
        viewer = ctx.add(rclpy.create_node("httm_view", context=ctx.context))
        subscribe(viewer, feed)
        wait_for(lambda: feed.scene.counts["map"] > 0 and feed.scene.counts["path"] > 0, 20, "the latched map and path")
        assert feed.scene.counts["map"] == outputs.report["summary"]["map_points"]
        wait_for(lambda: stats_pub.get_subscription_count() > 0, 20, "the viewer's stats subscription")
        stats_pub.publish(WindowStats(window_index=3, alignment_accepted=True, map_points=7))
        wait_for(lambda: feed.scene.counts["stats"] == 1, 20, "the stats message")
        assert "| window | 3 |" in feed.scene._status.content
    finally:
        server.stop()
        ctx.close()


_TYPES = {"map": "sensor_msgs/msg/PointCloud2", "path": "nav_msgs/msg/Path"}


def _cdr(msg, name):
    from httm_ros.tools.bag_io import typestore

    return bytes(typestore().serialize_cdr(msg, _TYPES[name]))


def _rclpy_message(raw, msgtype):
    from rclpy.serialization import deserialize_message

    from httm_ros.viewer.live_feed import message_class

    return deserialize_message(raw, message_class(msgtype))


@pytest.mark.parametrize("mode", ["bag", "live"])
def test_httm_view_serves_the_page_and_ctrl_c_exits_0(outputs, mode, tmp_path):
    port = free_port()
    args = ["--bag", str(outputs.out / "bag")] if mode == "bag" else []
    proc = subprocess.Popen([sys.executable, "-m", "httm_ros.viewer", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **ros_env("viewer_cli")})
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "httm-view:" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=10).read().decode()
        assert "<html" in page.lower()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
