"""Launch test: `reconstruct.launch.py bag:=PATH viewer:=true` (tiny model, CPU): httm-view starts with
the node, its page answers on viewer_port, its scene receives the node's ~/map (read as a viser
client over its websocket, as the browser gets it), and headless chromium renders it: the
screenshot's 3D view is not blank. SIGINT at the end stops every process with status 0."""

import os
import pathlib
import sys
import tempfile
import time
import unittest
import urllib.request

import launch_testing
import numpy as np
import pytest

from httm_ros.tools.local_dds import ros_env, wait_for
from httm_ros.viewer.screenshot import find_chromium, scene_pixels, write_screenshot
from httm_ros.viewer.server import free_port

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))      # test/: the shared helpers
from launch_helpers import camera_sequence, write_camera_bag  # noqa: E402
from reconstruct_launch import clean_exit_output, tiny_reconstruct_launch  # noqa: E402

TIMEOUT = 40.0
FRAMES = 5
T0 = 300.0
TOPIC = "/cam/image_raw"
MIN_SCENE_PIXELS = 2000
os.environ.update(ros_env(__name__))
PORT = free_port()
URL = f"http://127.0.0.1:{PORT}"
FOLDER = pathlib.Path(tempfile.mkdtemp(prefix="httm-viewer-launch-"))


def page_answers() -> bool:
    try:
        with urllib.request.urlopen(URL, timeout=1.0) as page:
            return page.status == 200 and b"<html" in page.read(4096).lower()
    except OSError:
        return False


def viewer_map_points(timeout: float = 5.0) -> int:
    """Points of the ``/map`` cloud in the scene the viewer sends a new viser client (0: none):
    the backlog of scene messages up to ReplayDoneMessage, decoded as viser's client does (8-byte
    sizes, zstd msgpack, then the binary buffers the placeholders index)."""
    import msgspec
    import viser
    import zstandard
    from websockets.sync.client import connect

    points, end = 0, time.monotonic() + timeout
    with connect(f"ws://127.0.0.1:{PORT}", subprotocols=[f"viser-v{viser.__version__}"], open_timeout=timeout,
                 max_size=None) as ws:
        while time.monotonic() < end:
            try:
                raw = ws.recv(timeout=max(0.01, end - time.monotonic()))
            except TimeoutError:
                break
            size, packed = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
            body = msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(raw[16:16 + packed], size))
            for msg in body["messages"]:
                if msg.get("type") == "PointCloudMessage" and msg.get("name") == "/map":
                    ref = msg["props"]["points"]                 # float [N, 3] as a binary buffer
                    points = body["binaryBufferLengths"][ref["__binary_index"]] // (3 * np.dtype(ref["dtype"]).itemsize)
                if msg.get("type") == "ReplayDoneMessage":
                    return points
    return points


@pytest.mark.launch_test
def generate_test_description():
    bag = write_camera_bag(FOLDER / "bag", camera_sequence(FRAMES), T0, image=TOPIC)
    return tiny_reconstruct_launch(FOLDER, bag=str(bag), bag_rate="2", viewer="true", viewer_port=str(PORT))


class TestViewerOnTheLaunchedNode(unittest.TestCase):
    def test_page_map_and_a_screenshot_that_is_not_blank(self, proc_info):
        wait_for(page_answers, TIMEOUT, f"the viewer page at {URL}", interval=0.2)
        counts = []
        try:
            wait_for(lambda: counts.append(viewer_map_points()) or counts[-1] > 100, TIMEOUT,
                     "the node's ~/map in the viewer's scene", interval=0.5)
        finally:
            print(f"viewer at {URL}: /map points seen by a viser client: {counts[-5:]}")
        # the launch's ~/flush call after the bag ends, before the launch is shut down (a SIGINT
        # would end `ros2 service call` with exit code 2)
        proc_info.assertWaitForShutdown(process="flush", timeout=TIMEOUT)
        chromium = find_chromium()
        if chromium is None:
            if os.environ.get("CI") and os.geteuid() == 0:
                self.fail("chromium missing in CI (scripts/install_venv.sh installs it as root)")
            self.skipTest("no chromium (Debian: apt-get install chromium, as root)")
        png = write_screenshot(URL, FOLDER / "viewer.png", timeout=TIMEOUT)
        pixels = scene_pixels(png)
        print(f"viewer screenshot: {png} ({pixels} scene pixels; map {counts[-1]} points)")
        self.assertGreaterEqual(pixels, MIN_SCENE_PIXELS)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_node_viewer_and_player_exit_0_without_traceback(self, proc_info, proc_output):
        text = clean_exit_output(self, proc_info, proc_output)
        self.assertIn("httm-view: subscribed to /reconstruct_node/map", text)
