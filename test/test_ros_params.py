"""reconstruct_node's parameter table, frame queue and OOM-safe predictor, without DDS."""

import math
import threading

import pytest
import torch

pytest.importorskip("rclpy")

from httm_ros.pipeline import WindowPrediction  # noqa: E402
from httm_ros.ros import params  # noqa: E402
from httm_ros.ros.core_config import merge_config, stream_config  # noqa: E402
from httm_ros.ros.frame_queue import Frame, FrameQueue  # noqa: E402
from httm_ros.ros.model_runner import SafePredictor  # noqa: E402


def test_table_is_complete_and_documented():
    names = [p.name for p in params.PARAMS]
    assert len(names) == len(set(names))
    for p in params.PARAMS:
        assert p.description and p.type in (bool, int, float, str)
        if p.choices:
            assert p.default in p.choices
        if p.range:
            assert p.range[0] <= p.default <= p.range[1]
    required = {"checkpoint", "device", "dtype", "window_size", "window_overlap", "keyframe_policy",
                "merge_mode", "httm_q_merge", "conf_threshold", "voxel_size", "map_max_points",
                "world_frame", "camera_frame", "publish_points", "publish_map", "queue_size", "drop_policy",
                "input_type", "qos_reliability", "qos_depth", "allow_test_weights"}
    assert required <= set(names)
    assert params.validate(params.defaults()) == []


@pytest.mark.parametrize("name, value, reason", [
    ("input_type", "theora", "input_type must be one of raw, compressed"),
    ("qos_depth", 0, r"qos_depth must be in \[1, 1000\]"),
    ("window_size", "24", "window_size must be int"),
    ("device", "gpu0", "device must be auto, cpu, cuda or cuda:N"),
    ("image_size", 500, "multiple of 14"),
    ("world_frame", "/map", "without a leading '/'"),
    ("conf_percentile", 100.0, r"conf_percentile must be in \[0.0, 99.9\]"),
    ("window_overlap", 24, r"WindowConfig.overlap must be an int in \[1, 23\]"),
    ("httm_q_outlier", 0.95, "q_outlier must be in"),
    ("merge_layers", "0,x", "merge_layers"),
    ("camera_frame", "map", "world_frame and camera_frame must differ"),
])
def test_invalid_values_are_rejected_with_reason(name, value, reason):
    errors = params.validate({**params.defaults(), name: value})
    assert errors and any(__import__("re").search(reason, e) for e in errors), errors


def test_ints_are_accepted_for_float_parameters():
    assert params.validate({**params.defaults(), "conf_threshold": 2}) == []


def test_runtime_updates_and_read_only():
    current = params.defaults()
    assert params.check_update(current, {"conf_percentile": 10.0, "world_frame": "odom"}) == []
    assert "read-only" in params.check_update(current, {"window_size": 12})[0]
    assert params.check_update(current, {"window_size": 24}) == []            # unchanged: fine
    assert "unknown" in params.check_update(current, {"nope": 1})[0]
    assert params.check_update(current, {"conf_percentile": -1.0})


def test_values_translate_to_core_configs():
    values = {**params.defaults(), "keyframe_policy": "every", "window_size": 6, "window_overlap": 2,
              "voxel_size": 0.0, "merge_mode": "uniform", "merge_layers": "0-1"}
    cfg = stream_config(values)
    assert not cfg.keyframes.enabled and (cfg.window.size, cfg.window.overlap) == (6, 2)
    assert cfg.map.voxel_size is None and cfg.image_width == 518
    merge = merge_config(values)
    assert type(merge).__name__ == "UniformMergeConfig" and merge.layers == (0, 1)
    assert merge_config({**values, "merge_mode": "none"}) is None


def test_descriptors_carry_ranges_and_read_only():
    desc = params.descriptor(params.BY_NAME["window_size"])
    assert desc.read_only and desc.integer_range[0].from_value == 2
    desc = params.descriptor(params.BY_NAME["conf_percentile"])
    assert not desc.read_only and desc.floating_point_range[0].to_value == pytest.approx(99.9)
    assert "raw" in params.descriptor(params.BY_NAME["input_type"]).additional_constraints


# ----------------------------------------------------------------------------- frame queue
def _frame(i):
    return Frame(rgb=None, stamp=None, stamp_sec=float(i))


@pytest.mark.parametrize("policy, kept", [("drop_oldest", [3.0, 4.0]), ("drop_newest", [0.0, 1.0])])
def test_queue_drop_policies_are_counted(policy, kept):
    q = FrameQueue(2, policy)
    results = [q.put(_frame(i)) for i in range(5)]
    assert (q.received, q.dropped, len(q)) == (5, 3, 2)
    assert results == ([True] * 5 if policy == "drop_oldest" else [True, True, False, False, False])
    assert [q.get(0).stamp_sec for _ in range(2)] == kept
    assert q.get(0.01) is None


def test_queue_get_wakes_on_put_and_close():
    q = FrameQueue(4)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(5.0)))
    t.start()
    q.put(_frame(7))
    t.join(5.0)
    assert got[0].stamp_sec == 7.0
    q.close()
    assert q.get(5.0) is None
    with pytest.raises(ValueError):
        q.policy = "drop_random"


# ----------------------------------------------------------------------------- OOM handling
class _Flaky:
    """Predictor raising ``errors`` in turn, then returning a valid prediction."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def predict(self, images, frame_ids):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        s, _, h, w = images.shape
        extr = torch.eye(4)[:3].repeat(s, 1, 1)
        return WindowPrediction(extr, torch.eye(3).repeat(s, 1, 1), torch.ones(s, h, w), torch.ones(s, h, w))


def test_out_of_memory_is_retried_then_reported():
    images = torch.zeros(3, 3, 14, 28)
    logged = []
    safe = SafePredictor(_Flaky(torch.cuda.OutOfMemoryError("CUDA out of memory")), log=logged.append)
    pred = safe.predict(images, [0, 1, 2])
    assert "recovered" in pred.stats and safe.oom_events == 1 and safe.failures == 0
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory")
    safe = SafePredictor(_Flaky(oom, torch.cuda.OutOfMemoryError("again")), log=logged.append)
    pred = safe.predict(images, [0, 1, 2])
    assert safe.failures == 1 and pred.stats["error"].startswith("GPU out of memory")
    assert math.isnan(float(pred.depth[0, 0, 0])) and pred.depth.shape == (3, 14, 28)
    safe = SafePredictor(_Flaky(RuntimeError("boom")), log=logged.append)
    assert safe.predict(images, [0, 1, 2]).stats["error"] == "RuntimeError: boom"
    assert any("skipped" in line for line in logged)
