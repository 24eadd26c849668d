"""reconstruct_node in-process over real DDS (shared memory only, a domain of its own).

The node runs with an OraclePredictor (distorted ground truth of a synthetic sequence) so that
windows are accepted and every geometric output exists; test_ros_process.py runs the real
(tiny) model path in a subprocess. Every wait is on an actual message or counter, with a deadline.
"""

import math
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
if __import__("os").environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import make_collector, wait_for  # noqa: E402
from httm_ros.ros.params import ParameterError  # noqa: E402
from httm_ros.ros.reconstruct_node import ReconstructNode  # noqa: E402
from httm_ros.synthetic.oracle import OraclePredictor  # noqa: E402

import node_fixtures  # noqa: E402
from node_fixtures import (H, ORACLE_VALUES, TIMEOUT, W, attach, call_trigger, namespaces,  # noqa: E402
                           node_statuses, start_node)

ros, seq = node_fixtures.ros, node_fixtures.seq       # the module's fixtures
_names = namespaces("n")


def _stamp(i: int) -> Time:
    return Time(sec=1_700_000_000 + i, nanosec=123_456_789)   # exact nanoseconds must survive


class Harness:
    """One node in its own namespace, a collector of its outputs, and a publisher of frames."""

    def __init__(self, ros, seq, predictor=None, **overrides):
        self.ns = next(_names)
        self.node = start_node(ros, ReconstructNode, self.ns, predictor or OraclePredictor(seq, seed=1),
                               {**ORACLE_VALUES, **overrides})
        self.col, self.pub = attach(ros, self.ns, node=self.node)
        self.seq, self.ros = seq, ros

    def diagnostics(self):
        """Statuses of this node on /diagnostics (other nodes publish there too)."""
        return node_statuses(self.col, self.ns)

    def call(self, service: str):
        return call_trigger(self.ros, self.ns, service)

    def send(self, i: int, msg=None, paced: bool = True) -> None:
        msg = msg or codec.rgb_to_image(self.seq.images[i], codec.make_header(_stamp(i), "cam"))
        before = self.node.counters.frames_received
        self.pub.publish(msg)
        if paced:
            wait_for(lambda: self.node.counters.frames_received > before, TIMEOUT, f"frame {i} received")

    def close(self):
        """Stop the node's threads; RosContext.close destroys the nodes once nothing spins."""
        self.node.shutdown()


@pytest.fixture
def harness(ros, seq):
    made = []

    def make(**kwargs):
        made.append(Harness(ros, seq, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_every_output_with_types_frames_stamps_and_sizes(harness):
    h = harness()
    for i in range(14):                                   # windows of 6 (overlap 2): 6 + 4 + 4 new
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 3 and h.col.count("depth") >= 14 and h.col.count("path") >= 3,
             TIMEOUT, "3 windows of outputs")
    m = h.col.messages
    sent = {(s.sec, s.nanosec) for s in map(_stamp, range(14))}
    for topic in ("depth", "depth_confidence", "camera_info", "pose"):
        assert len(m[topic]) == 14, topic
        assert {(x.header.stamp.sec, x.header.stamp.nanosec) for x in m[topic]} == sent, topic
    for img in m["depth"] + m["depth_confidence"]:
        assert (img.encoding, img.height, img.width, img.step, img.header.frame_id) == ("32FC1", H, W, 4 * W,
                                                                                        "cam")
    depth = codec.image_to_float(m["depth"][0])
    assert np.isfinite(depth).mean() > 0.9 and np.nanmin(depth) > 0
    info = m["camera_info"][0]
    assert (info.width, info.height, info.header.frame_id) == (W, H, "cam")
    assert info.k[0] > 0 and info.k[8] == 1.0
    assert all(p.header.frame_id == "vggt_map" for p in m["pose"])
    assert [len(p.poses) for p in m["path"][:3]] == [6, 10, 14]            # path grows by keyframes
    assert m["path"][-1].header.frame_id == "vggt_map"
    first = m["pose"][0].pose
    assert (first.position.x, first.position.y, first.position.z) == pytest.approx((0, 0, 0), abs=1e-6)
    cloud = m["points"][-1]
    assert cloud.header.frame_id == "vggt_map" and cloud.header.stamp == _stamp(13)
    xyz, rgb = codec.decode_pointcloud2_xyzrgb(cloud)
    assert len(xyz) == cloud.width > 100 and np.isfinite(xyz).all() and rgb.std() > 0
    stats = m["stats"]
    assert [s.window_index for s in stats[:3]] == [0, 1, 2]
    s = stats[2]
    assert s.header.frame_id == "vggt_map" and s.header.stamp == _stamp(13)
    assert (s.num_keyframes, s.num_overlap_keyframes, s.image_width, s.image_height) == (6, 2, W, H)
    assert s.alignment_accepted and s.frames_received == 14 and s.keyframes_total == 14
    assert [x.tracking_state for x in stats[:3]] == ["TRACKING"] * 3 and s.map_segment == 0
    assert s.tokens_per_frame == 5 + (H // 14) * (W // 14) and s.tokens_total == 6 * s.tokens_per_frame
    assert s.map_points > 0 and s.latency_publish_ms > 0 and math.isnan(s.gpu_memory_peak_mb)
    # ~/flush runs the queued keyframes as a last, shorter window.
    for i in (14, 15):
        h.send(i)
    assert h.call("flush").success
    wait_for(lambda: h.col.count("stats") >= 4, TIMEOUT, "the flushed window")
    assert h.col.last("stats").num_keyframes == 4 and len(h.col.last("path").poses) == 16
    # ~/map is transient local: a subscriber that joins late still gets it.
    late = h.ros.add(make_collector(h.ros.context, f"{h.ns}/reconstruct_node", name="late", diagnostics=False))
    wait_for(lambda: late.count("map") >= 1 and late.count("path") >= 1, TIMEOUT, "latched map and path")
    map_xyz, _ = codec.decode_pointcloud2_xyzrgb(late.last("map"))
    assert len(map_xyz) == h.col.last("stats").map_points


def test_bad_input_is_counted_and_the_node_goes_on(harness):
    h = harness(qos_reliability="best_effort")            # the default (sensor data) subscription
    good = codec.rgb_to_image(h.seq.images[0], codec.make_header(_stamp(0), "cam"))
    yuv = codec.rgb_to_image(h.seq.images[0], good.header)
    yuv.encoding = "yuv422"
    empty = Image(header=good.header, encoding="rgb8", height=0, width=0, step=0)
    short = codec.rgb_to_image(h.seq.images[0], good.header)
    short.data = short.data[: len(short.data) // 2]
    for msg in (yuv, empty, short):
        h.send(-1, msg)
    assert h.node.counters.frames_bad_input == 3 and "step*height" in h.node.counters.last_bad_input
    wait_for(lambda: any("bad input" in d.message and d.level == b"\x01" for d in h.diagnostics()),
             TIMEOUT, "a WARN diagnostic about bad input")
    for i in range(6):
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 1, TIMEOUT, "a window after bad input")
    s = h.col.last("stats")
    assert s.alignment_accepted and s.frames_dropped_bad_input == 3 and s.frames_received == 9
    assert s.keyframes_total == 6
    assert h.call("reset").success                                     # ~/reset: a new map and path
    wait_for(lambda: h.node.counters.stream_restarts == 1, TIMEOUT, "the reset")
    assert h.node.rec.counters.frames_received == 0 and len(h.node.rec.map) == 0


def test_map_every_n_windows_on_demand_and_cleared_by_reset(harness):
    """~/map every map_publish_every windows and on ~/publish_map; ~/reset publishes an empty
    ~/map and ~/path, so the latched topics no longer show the old map (late joiners included)."""
    h = harness(map_publish_every=2)
    for i in range(6):
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 1, TIMEOUT, "window 0")
    points = h.col.last("stats").map_points
    assert h.col.count("map") == 0 and points > 0                      # every 2nd window: not yet
    assert h.call("publish_map").success
    wait_for(lambda: h.col.count("map") >= 1, TIMEOUT, "~/map on demand")
    assert len(codec.decode_pointcloud2_xyzrgb(h.col.last("map"))[0]) == points
    assert h.col.last("map").header.stamp == _stamp(5) and h.col.last("map").header.frame_id == "vggt_map"
    for i in range(6, 10):
        h.send(i)
    wait_for(lambda: h.col.count("map") >= 2, TIMEOUT, "~/map with window 1 (the 2nd)")
    assert len(codec.decode_pointcloud2_xyzrgb(h.col.last("map"))[0]) == h.col.last("stats").map_points
    assert len(h.col.last("path").poses) == 10
    assert h.call("reset").success
    wait_for(lambda: h.col.count("map") >= 3 and h.col.last("map").width == 0, TIMEOUT, "an empty ~/map")
    wait_for(lambda: len(h.col.last("path").poses) == 0, TIMEOUT, "an empty ~/path")
    late = h.ros.add(make_collector(h.ros.context, f"{h.ns}/reconstruct_node", name=f"late{h.ns[1:]}",
                                    diagnostics=False))
    wait_for(lambda: late.count("map") >= 1 and late.count("path") >= 1, TIMEOUT, "latched map and path")
    assert late.last("map").width == 0 and len(late.last("path").poses) == 0


@pytest.mark.parametrize("policy", ["rescale", "restart"])
def test_image_size_change_mid_stream(harness, policy):
    h = harness(size_change_policy=policy)
    for i in range(3):
        h.send(i)

    def other(i):                                                       # 112x56: another aspect ratio
        rgb = np.ascontiguousarray(h.seq.images[i][:56])
        return codec.rgb_to_image(rgb, codec.make_header(_stamp(i), "cam"))

    if policy == "rescale":                                            # the window goes on as usual
        h.send(3, other(3))
        for i in range(4, 6):
            h.send(i)
        wait_for(lambda: h.col.count("stats") >= 1, TIMEOUT, "the window with a rescaled frame")
        assert h.node.counters.frames_rescaled == 1 and h.col.last("stats").num_keyframes == 6
        assert h.col.last("stats").alignment_accepted and h.col.last("depth").height == H
    else:                                                               # flush, then a new map
        for i in range(3, 6):
            h.send(i, other(i))
        wait_for(lambda: h.node.counters.stream_restarts == 1 and h.col.count("stats") >= 1, TIMEOUT, "restart")
        wait_for(lambda: h.col.count("path") >= 2, TIMEOUT, "the flushed window's path, then the new one")
        assert h.col.last("stats").num_keyframes == 3                  # the new map's ~/path: empty
        assert [len(p.poses) for p in h.col.messages["path"]] == [3, 0]
        wait_for(lambda: h.node.rec.counters.frames_received == 3, TIMEOUT, "the new stream's frames")
        assert h.node.rec.model_hw == (56, 112) and h.node.counters.frames_rescaled == 0


class SlowOracle(OraclePredictor):
    """An oracle that takes ``delay`` seconds per window, like a slow GPU."""

    delay = 0.15

    def predict(self, images, frame_ids):
        time.sleep(self.delay)
        return super().predict(images, frame_ids)


def test_burst_faster_than_inference_drops_oldest_and_counts(harness, seq):
    h = harness(predictor=SlowOracle(seq, seed=2), queue_size=2, window_size=3, window_overlap=2)
    for i in range(20):
        h.send(i, paced=False)
    wait_for(lambda: h.node.counters.frames_received == 20, TIMEOUT, "20 frames received")
    wait_for(lambda: h.node.rec.counters.frames_received + h.node.queue.dropped == 20, TIMEOUT,
             "every frame processed or dropped")
    dropped = h.node.queue.dropped
    assert dropped > 0 and h.node.queue.received == 20
    wait_for(lambda: h.col.count("stats") >= 1 and h.col.last("stats").keyframes_total == 20 - dropped,
             TIMEOUT, "the last window's stats")
    assert h.col.last("stats").frames_dropped_queue_full == dropped      # drop_oldest: the last frame ran
    assert max(s.queue_depth for s in h.col.messages["stats"]) <= 2


def test_parameters_at_run_time_over_the_parameter_services(harness, ros):
    from rclpy.parameter_client import AsyncParameterClient

    h = harness()
    client = AsyncParameterClient(ros.feeder, f"{h.ns}/reconstruct_node")
    assert client.wait_for_services(TIMEOUT)

    def set_(**kv):
        future = client.set_parameters([Parameter(k, value=v) for k, v in kv.items()])
        wait_for(future.done, TIMEOUT, f"set_parameters {kv}")
        return future.result().results[0]

    assert set_(conf_percentile=10.0).successful
    assert set_(world_frame="odom").successful
    assert set_(drop_policy="drop_newest").successful and h.node.queue.policy == "drop_newest"
    refused = set_(window_size=12)
    assert not refused.successful and "read-only" in refused.reason
    refused = set_(conf_percentile=150.0)
    assert not refused.successful and refused.reason
    refused = set_(camera_frame="odom")
    assert not refused.successful and "must differ" in refused.reason
    refused = set_(input_type="compressed")
    assert not refused.successful
    for i in range(6):
        h.send(i)
    wait_for(lambda: h.col.count("pose") >= 6, TIMEOUT, "poses after the update")
    assert h.col.last("pose").header.frame_id == "odom"
    assert h.node.rec.config.filter.conf_percentile == 10.0
    assert h.node.get_parameter("window_size").value == 6


def test_invalid_parameters_fail_at_start_with_the_reason(ros, seq):
    with pytest.raises(ParameterError, match=r"window_overlap must be smaller than window_size: .*"
                                             r"\(got window_overlap=6, window_size=6\)"):
        ReconstructNode(predictor=OraclePredictor(seq), context=ros.context, namespace="/bad",
                        parameter_overrides=[Parameter("window_size", value=6), Parameter("window_overlap", value=6)])


class OomOnce(OraclePredictor):
    """Runs out of GPU memory (twice: first try and retry) in its second window."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.windows = 0

    def predict(self, images, frame_ids):
        import torch

        self.windows += 1
        if self.windows in (2, 3):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().predict(images, frame_ids)


def test_failed_window_is_reported_and_the_stream_goes_on(harness, seq):
    h = harness(predictor=OomOnce(seq, seed=3))
    for i in range(18):
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 3, TIMEOUT, "3 windows")
    stats = h.col.messages["stats"]
    assert [s.alignment_accepted for s in stats[:3]] == [True, False, True]
    assert stats[1].alignment_message.startswith("window failed: GPU out of memory")
    assert stats[1].windows_failed == 1 and h.node.counters.windows_failed == 1
    assert len(h.col.last("path").poses) == 10                       # the failed window's keyframes dropped


class CorruptThenFailing(OraclePredictor):
    """Windows 1 and 2 corrupted (rejected by the checks), window 3 on: the model raises."""

    def __init__(self, *a, **k):
        super().__init__(*a, corrupt={1: "random_depth", 2: "random_depth"}, **k)
        self.windows = 0

    def predict(self, images, frame_ids):
        self.windows += 1
        if self.windows >= 4:
            raise RuntimeError("model exploded")
        return super().predict(images, frame_ids)


def _levels_after(h, start):
    return [(d.level, d.message) for d in h.diagnostics()[start:]]


def test_rejected_windows_in_a_row_warn_and_a_failed_model_is_an_error(harness, seq):
    h = harness(predictor=CorruptThenFailing(seq, seed=1), rejected_windows_warn=2)
    for i in range(14):                                   # windows 0 (accepted), 1 and 2 (rejected)
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 3, TIMEOUT, "3 windows")
    assert [s.alignment_accepted for s in h.col.messages["stats"][:3]] == [True, False, False]
    assert h.node.counters.windows_rejected_in_row == 2
    wait_for(lambda: any(level == b"\x01" and "2 windows rejected in a row" in m for level, m in _levels_after(h, 0)),
             TIMEOUT, "a WARN: 2 windows rejected in a row")
    for i in range(14, 18):                               # window 3: the model raises
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 4, TIMEOUT, "the failed window")
    assert h.col.last("stats").alignment_message.startswith("window failed: RuntimeError: model exploded")
    start = len(h.diagnostics())
    wait_for(lambda: any(level == b"\x02" and "model exploded" in m for level, m in _levels_after(h, start)),
             TIMEOUT, "an ERROR: the model failed")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU fallback")
def test_device_auto_without_cuda_warns_and_diagnostics_say_cpu(harness):
    from httm_ros.ros.model_runner import GpuRequiredError, resolve_device

    logged = []
    assert resolve_device("auto", logged.append).type == "cpu"
    assert len(logged) == 1 and "CUDA is not available, running on CPU" in logged[0]
    with pytest.raises(GpuRequiredError, match="require_gpu is true but CUDA is not available"):
        resolve_device("auto", logged.append, require_gpu=True)
    h = harness(device="auto")
    wait_for(lambda: any({kv.key: kv.value for kv in d.values}.get("device") == "cpu" for d in h.diagnostics()),
             TIMEOUT, "/diagnostics: device cpu")


def test_a_lost_stream_is_never_reported_ok(harness, seq):
    """A corrupted window (every depth wrong) fails its checks: ~/stats says LOST, /diagnostics
    warns with the reason and says nothing OK until tracking is back."""
    h = harness(predictor=OraclePredictor(seq, seed=1, corrupt={1: "random_depth"}))
    for i in range(10):                                   # window 0 (6 keyframes), window 1 (4 new)
        h.send(i)
    wait_for(lambda: h.col.count("stats") >= 2, TIMEOUT, "2 windows")
    stats = h.col.messages["stats"]
    assert [x.tracking_state for x in stats[:2]] == ["TRACKING", "LOST"], [x.tracking_state for x in stats]
    assert not stats[1].alignment_accepted
    lost_at = len(h.diagnostics())
    wait_for(lambda: any("tracking LOST" in d.message for d in h.diagnostics()[lost_at:]), TIMEOUT,
             "a /diagnostics WARN naming the lost state")
    after = [d for d in h.diagnostics()[lost_at:]]
    assert all(d.level != b"\x00" for d in after), [(d.level, d.message) for d in after]
    assert all(d.level == b"\x01" for d in after if "tracking LOST" in d.message)

