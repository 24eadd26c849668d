"""Frame accounting of reconstruct_node over real DDS (in-process node, shared memory, a domain of
its own): good, bad and bursty input; every ~/stats message and the node's counters balance
(received = processed + skipped + queued + dropped by reason) and the per-reason counts are exact.

The inference thread is held inside a window (a gated oracle) while a burst arrives, so the queue
drops are exact too: queue_size 2, a burst of 10 -> 8 dropped (drop_oldest), 2 waiting, 1 in flight.
"""

import threading

import numpy as np
import pytest

pytest.importorskip("rclpy")
if __import__("os").environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from sensor_msgs.msg import Image  # noqa: E402

from httm_ros.ros import codec  # noqa: E402
from httm_ros.tools.local_dds import wait_for  # noqa: E402
from httm_ros.ros.reconstruct_node import ReconstructNode  # noqa: E402
from httm_ros.synthetic.oracle import OraclePredictor  # noqa: E402

import node_fixtures  # noqa: E402
from node_fixtures import (ORACLE_VALUES, TIMEOUT, attach, call_trigger, namespaces, node_statuses,  # noqa: E402
                           start_node)

ros, seq = node_fixtures.ros, node_fixtures.seq       # the module's fixtures
_names = namespaces("acc")


class GatedOracle(OraclePredictor):
    """An oracle whose window waits while ``gate`` is closed; ``entered`` says one is waiting."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def predict(self, images, frame_ids):
        self.entered.set()
        assert self.gate.wait(TIMEOUT), "gate never opened"
        return super().predict(images, frame_ids)


class Feed:
    """One node, a collector of its outputs and a publisher; message k is stamped 0.1 k s."""

    def __init__(self, ros, seq, predictor, **overrides):
        self.ns = next(_names)
        self.node = start_node(ros, ReconstructNode, self.ns, predictor,
                               {**ORACLE_VALUES, "diagnostics_period": 0.1, "queue_size": 2, **overrides})
        self.col, self.pub = attach(ros, self.ns, node=self.node)
        self.seq, self.ros, self.sent = seq, ros, 0

    def header(self):
        return codec.make_header(codec.sec_to_stamp(1000.0 + 0.1 * self.sent), "cam")

    def good(self, i=0):
        return codec.rgb_to_image(self.seq.images[i % len(self.seq)], self.header())

    def raw(self, width, height, encoding="rgb8", data=True):
        msg = Image(header=self.header(), width=width, height=height, encoding=encoding, step=3 * width)
        if data:
            msg.data = bytes(3 * width * height)
        return msg

    def send(self, msg, paced=True):
        before = self.node.counters.frames_received
        self.pub.publish(msg)
        self.sent += 1
        if paced:
            wait_for(lambda: self.node.counters.frames_received > before, TIMEOUT, f"message {self.sent}")

    def diagnostics(self):
        return node_statuses(self.col, self.ns)


def _balanced(s) -> bool:
    return s.frames_received == s.frames_processed + s.frames_skipped + s.frames_queued + sum(s.drop_counts)


def test_good_bad_and_burst_input_all_accounted_exactly(ros, seq):
    predictor = GatedOracle(seq, seed=1)
    f = Feed(ros, seq, predictor, max_aspect_ratio=20.0)
    bad = {  # reason -> messages (model_size: 340x20 cannot become a 112-wide model input)
        "unsupported_encoding": [f.raw(8, 8, "yuv422"), f.raw(8, 8, "32FC1")],
        "empty": [f.raw(0, 0)],
        "bad_step": [Image(header=f.header(), width=8, height=8, encoding="rgb8", step=2, data=bytes(16))],
        "truncated": [f.raw(8, 8, data=False)],
        "too_many_pixels": [f.raw(5000, 5000, data=False)],          # header only: never read
        "aspect_ratio": [f.raw(20000, 1)],
        "model_size": [f.raw(340, 20)],
    }
    for i in range(5):                                   # good and bad, interleaved, paced
        f.send(f.good(i))
        for msg in list(bad.values())[i::5]:
            for m in msg:
                m.header = f.header()
                f.send(m)
    predictor.gate.clear()
    f.send(f.good(5))                                    # completes window 0: the worker waits in it
    wait_for(predictor.entered.is_set, TIMEOUT, "window 0 in the model")
    for i in range(10):
        f.send(f.good(6 + i), paced=False)
    wait_for(lambda: f.node.counters.frames_received == 24, TIMEOUT, "the burst received")
    held = f.node.counters.snapshot()
    assert held.balanced and held.queued == 3 and held.drops["queue_full"] == 8 and held.processed == 5
    predictor.gate.set()
    wait_for(lambda: f.node.counters.snapshot().queued == 0, TIMEOUT, "the queue drained")
    f.send(f.good(16))
    f.sent += 3                                          # a gap of 3 stamps: 3 frames never sent
    f.send(f.good(17))                                   # keyframe 10: window 1
    wait_for(lambda: f.col.count("stats") >= 2, TIMEOUT, "windows 0 and 1")
    f.send(f.good(18))
    assert _call(f, "flush")
    wait_for(lambda: f.col.count("stats") >= 3, TIMEOUT, "the flushed window")

    final = f.node.counters.snapshot()
    expected = {reason: len(msgs) for reason, msgs in bad.items()}
    expected["queue_full"] = 8
    assert final.balanced and final.queued == 0 and final.drops == expected
    assert (final.received, final.processed, final.skipped) == (27, 11, 0)
    assert f.node.counters.frames_estimated_missing == 3 and f.node.counters.frames_lost_in_transport == 0
    stats = f.col.messages["stats"]
    assert all(_balanced(s) for s in stats), [(s.frames_received, s.frames_processed, s.frames_queued,
                                               list(s.drop_counts)) for s in stats]
    first, last = stats[0], stats[-1]
    assert first.frames_queued == 2 and dict(zip(first.drop_reasons, first.drop_counts))["queue_full"] == 8
    assert last.frames_received == 27 and last.frames_queued == 0 and last.frames_processed == 11
    assert dict(zip(last.drop_reasons, last.drop_counts)) == expected and list(last.drop_reasons) == sorted(expected)
    assert last.frames_dropped_bad_input == 8 and last.frames_dropped_queue_full == 8
    assert last.frames_estimated_missing == 3 and last.frames_lost_in_transport == 0
    assert {line.split(" x ")[0] for line in last.recent_drops} == set(expected)       # 8 distinct reasons
    assert last.recent_drops[0].startswith("queue_full x 8: ")
    assert any(line.startswith("aspect_ratio x 1: image 20000x1 has aspect ratio 20000.0:1") for line in last.recent_drops)
    wait_for(lambda: _diag_matches(f, expected, 27), TIMEOUT, "/diagnostics with the final accounting")


def _call(f, service):
    return call_trigger(f.ros, f.ns, service).success


def _diag_matches(f, expected, received) -> bool:
    statuses = f.diagnostics()
    if not statuses:
        return False
    values = {kv.key: kv.value for kv in statuses[-1].values}
    return (values.get("frames_received") == str(received) and values.get("frames_accounted") == "True"
            and values.get("frames_queued") == "0" and values.get("frames_estimated_missing") == "3"
            and all(values.get(f"dropped.{r}") == str(n) for r, n in expected.items()))


def test_skipped_frames_and_bad_input_warn_per_reason(ros, seq):
    f = Feed(ros, seq, OraclePredictor(seq, seed=3), keyframe_policy="motion", keyframe_min_motion=1.0,
             keyframe_max_gap=3)
    for _ in range(7):                                   # the same image: keyframes only by max gap
        f.send(f.good(0))
    f.send(f.raw(20000, 1))
    f.send(f.raw(8, 8, "yuv422"))
    wait_for(lambda: f.node.counters.snapshot().queued == 0, TIMEOUT, "the queue drained")
    account = f.node.counters.snapshot()
    assert account.balanced and account.received == 9 and account.skipped > 0
    assert account.processed + account.skipped == 7
    assert account.drops == {"aspect_ratio": 1, "unsupported_encoding": 1}
    for reason in account.drops:                         # each named (new since the previous status)
        wait_for(lambda: any(d.level == b"\x01" and f"{reason} x 1" in d.message for d in f.diagnostics()),
                 TIMEOUT, f"a WARN naming {reason}")


def test_keyframes_selected_before_the_queue_no_gaps_while_inference_lags(ros, seq):
    """Keyframe selection runs in the subscription callback (issue 17): while a window is held in
    the model, a burst of 24 frames (no motion keyframes, max gap 3) puts only its 8 keyframes in a
    queue of 8: nothing is dropped, the other frames are counted as skipped, and the keyframes
    published (one ~/pose each) are every 3rd frame, with no gap beyond keyframe_max_gap."""
    predictor = GatedOracle(seq, seed=2)
    f = Feed(ros, seq, predictor, keyframe_policy="motion", keyframe_min_motion=1.0, keyframe_max_gap=3,
             queue_size=8)
    for i in range(15):
        f.send(f.good(i))
    predictor.gate.clear()
    f.send(f.good(15))                                   # keyframe 5 completes window 0: held in the model
    wait_for(predictor.entered.is_set, TIMEOUT, "window 0 in the model")
    for i in range(16, 40):
        f.send(f.good(i), paced=False)
    wait_for(lambda: f.node.counters.frames_received == 40, TIMEOUT, "the burst received")
    held = f.node.counters.snapshot()
    assert held.balanced and held.drops == {}, held
    assert (held.processed, held.skipped, held.queued) == (5, 26, 9)       # 8 waiting + 1 in flight
    predictor.gate.set()
    wait_for(lambda: f.node.counters.snapshot().queued == 0, TIMEOUT, "the queue drained")
    assert _call(f, "flush")
    wait_for(lambda: f.col.count("pose") >= 14, TIMEOUT, "a pose per keyframe")
    final = f.node.counters.snapshot()
    assert final.balanced and final.drops == {} and (final.received, final.processed, final.skipped) == (40, 14, 26)
    stamps = sorted({round(codec.stamp_to_sec(p.header.stamp) - 1000.0, 3) for p in f.col.messages["pose"]})
    assert stamps == [round(0.1 * k, 3) for k in range(0, 40, 3)]
    assert max(np.diff(stamps)) <= 0.3 + 1e-6                              # keyframe_max_gap frames
