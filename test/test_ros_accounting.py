"""Frame accounting without DDS: NodeCounters + FrameQueue keep received = processed + skipped +
queued + dropped at every reading, and StampGaps estimates frames missing between stamps."""

import threading

import numpy as np
import pytest

from httm_ros.ros.frame_queue import Frame, FrameQueue
from httm_ros.ros.node_counters import RECENT_DROPS, NodeCounters, StampGaps


def _frame(i=0):
    return Frame(np.zeros((2, 2, 3), np.uint8), None, float(i))


def test_every_path_of_a_frame_balances():
    counters = NodeCounters()
    queue = FrameQueue(2, "drop_oldest", counters)
    counters.reject("too_many_pixels", "image 9500x9500 ...")
    for i in range(4):                                       # 2 waiting, 2 oldest dropped
        queue.put(_frame(i))
    queue.policy = "drop_newest"
    assert not queue.put(_frame(4))                          # the incoming one dropped
    assert queue.get(0).stamp_sec == 2.0
    counters.finish("processed")
    assert queue.get(0).stamp_sec == 3.0                     # in flight until finished
    account = counters.snapshot()
    assert (account.received, account.processed, account.queued, account.dropped) == (6, 1, 1, 4)
    assert account.balanced and account.drops == {"too_many_pixels": 1, "queue_full": 3}
    counters.finish("inference_error", "ValueError: x")
    queue.put(_frame(5))
    assert queue.discard() == 1
    account = counters.snapshot()
    assert account.balanced and account.queued == 0 and account.received == 7
    assert account.drops == {"too_many_pixels": 1, "queue_full": 3, "inference_error": 1, "shutdown": 1}
    assert queue.received == 6 and queue.dropped == 3 and counters.frames_bad_input == 1


def test_recent_drops_keep_the_last_distinct_reasons_newest_first():
    counters = NodeCounters()
    for i in range(RECENT_DROPS + 2):
        counters.reject(f"r{i}", f"detail {i}")
    counters.reject("r5", "again")
    recent = counters.snapshot().recent
    assert len(recent) == RECENT_DROPS
    assert recent[0] == ("r5", 2, "again") and recent[1] == (f"r{RECENT_DROPS + 1}", 1, f"detail {RECENT_DROPS + 1}")
    assert "r0" not in {r for r, _, _ in recent} and "r1" not in {r for r, _, _ in recent}


def test_balanced_at_every_reading_under_concurrent_producer_and_consumer():
    counters = NodeCounters()
    queue = FrameQueue(4, "drop_oldest", counters)
    stop = threading.Event()
    unbalanced = []

    def produce():
        for i in range(3000):
            if i % 7 == 0:
                counters.reject("undecodable")
            else:
                queue.put(_frame(i))
        stop.set()

    def consume():
        while not (stop.is_set() and len(queue) == 0):
            if queue.get(0.01) is not None:
                counters.finish("skipped" if np.random.rand() < 0.5 else "processed")

    def read():
        while not stop.is_set():
            account = counters.snapshot()
            if not account.balanced:
                unbalanced.append(account)

    threads = [threading.Thread(target=f) for f in (produce, consume, read, read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    final = counters.snapshot()
    assert not unbalanced and final.balanced and final.received == 3000 and final.queued == 0


@pytest.mark.parametrize("stamps, missing", [
    ([i * 0.1 for i in range(20)], 0),                                       # steady 10 Hz
    ([i * 0.1 for i in range(10)] + [i * 0.1 for i in range(13, 20)], 3),   # 10, 11 and 12 missing
    ([i * 0.1 for i in range(12)] + [1.4 + i * 0.1 for i in range(5)], 2),   # a step of 3 periods
    ([i * 0.1 for i in range(12)] + [200.0 + i * 0.1 for i in range(5)], 0),  # a pause, not a loss
    ([i * 0.1 for i in range(12)] + [0.0 + i * 0.1 for i in range(5)], 0),    # back in time (new bag)
    ([0.0, 0.5, 1.0], 0),                                                     # too few steps to say
    ([0.0, 0.1, 0.2, 5.0] + [5.0 + i * 0.1 for i in range(1, 10)], 47),       # counted once the period is known
])
def test_stamp_gaps(stamps, missing):
    gaps = StampGaps()
    assert sum(gaps.add(s) for s in stamps) == missing


def test_stamp_gaps_survive_heavy_loss():
    """A burst where most frames vanish in bunches: the period stays the true one."""
    rng = np.random.default_rng(0)
    kept = sorted(set(range(500)) - set(rng.choice(500, 300, replace=False)) | set(range(20)))
    gaps = StampGaps()
    estimated = sum(gaps.add(i / 30.0) for i in kept)
    assert gaps.period == pytest.approx(1 / 30.0)
    assert abs(estimated - (kept[-1] + 1 - len(kept))) <= 2
