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
    ("window_size", "24", "window_size must be an integer, got a string '24'"),
    ("conf_threshold", "2", "conf_threshold must be a double"),
    ("device", "gpu0", "device must be auto, cpu, cuda or cuda:N"),
    ("image_size", 500, "multiple of 14"),
    ("world_frame", "/map", "without a leading '/'"),
    ("conf_percentile", 100.0, r"conf_percentile must be in \[0.0, 99.9\]"),
    ("window_overlap", 24, r"window_overlap must be smaller than window_size: .* \(got window_overlap=24, "
                           r"window_size=24\)"),
    ("window_overlap", 1, r"window_overlap must be 0 \(the model card's value\) or at least 2, got 1"),
    ("window_size", 2, r"window_size must be 0 \(the model card's value\) or at least 3, got 2"),
    ("keyframe_policy", "sometimes", "keyframe_policy must be one of auto, motion, every"),
    ("httm_q_outlier", 0.95, "httm_q_outlier must not exceed httm_q_merge"),
    ("merge_layers", "0,x", "merge_layers"),
    ("camera_frame", "vggt_map", "world_frame and camera_frame must differ"),
    ("tf_mode", "map", "tf_mode must be one of camera, odom, none"),
    ("tf_child_frame", "/cam_vggt", "without a leading '/'"),
    ("odom_frame", "", "non-empty frame id"),
    ("image_size", 4102, r"image_size must be in \[0, 4088\]"),
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
    assert params.check_update(current, {"window_size": 0}) == []             # unchanged: fine
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


def test_image_size_0_is_the_checkpoint_cards_width(tmp_path):
    import json

    from httm_ros.ros.core_config import DEFAULT_IMAGE_SIZE, image_width
    from httm_ros.vggt.checkpoint import checkpoint_image_hw
    from httm_ros.weights import synth_weights

    values = params.defaults()
    assert values["image_size"] == 0 and image_width(values) == (DEFAULT_IMAGE_SIZE, "default") == (518, "default")
    assert image_width({**values, "image_size": 224}) == (224, "image_size")
    synth = synth_weights()
    if synth is not None:                                    # the shipped model: card image_hw [126, 168]
        width, source = image_width({**values, "checkpoint": str(synth)})
        assert width == checkpoint_image_hw(synth)[1] == 168 and synth.name in source
        assert stream_config({**values, "checkpoint": str(synth)}).image_width == 168
        assert image_width({**values, "checkpoint": str(synth), "image_size": 112})[0] == 112
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"")
    assert image_width({**values, "checkpoint": str(weights)})[0] == 518                 # no card
    (tmp_path / "m.json").write_text(json.dumps({"image_hw": [98, 126]}))
    assert image_width({**values, "checkpoint": str(weights)})[0] == 126
    (tmp_path / "m.json").write_text(json.dumps({"image_hw": [98]}))
    errors = params.validate({**values, "checkpoint": str(weights)})
    assert any("image_size 0 takes the checkpoint's model card width" in e for e in errors), errors
    assert params.validate({**values, "checkpoint": str(weights), "image_size": 56}) == []


def test_the_checkpoint_cards_stream_profile_sets_the_checks_unless_switched_off(tmp_path):
    import json

    from httm_ros.weights import synth_weights

    values = params.defaults()
    library = stream_config(values)
    assert values["card_stream_profile"] is True and library.tracking.anchor_policy == "first"
    synth = synth_weights()
    if synth is not None:                                    # the shipped card: wider depth tolerances
        cfg = stream_config({**values, "checkpoint": str(synth)})
        assert cfg.tracking.anchor_policy == "last_window" and cfg.align.max_residual > library.align.max_residual
        from httm_ros.ros.core_config import profile_mismatch, stream_profile
        with_synth = {**values, "checkpoint": str(synth)}
        resolved = params.resolved(with_synth)                # windows left at 0/auto: the card's
        assert {k: resolved[k] for k in ("window_size", "window_overlap", "keyframe_policy", "window_mode",
                                         "merge_mode")} == \
            {"window_size": 16, "window_overlap": 6, "keyframe_policy": "every", "window_mode": "anchored",
             "merge_mode": "none"}
        assert merge_config(with_synth) is None and type(merge_config(values)).__name__ == "HTTMConfig"
        assert profile_mismatch(resolved, stream_profile(resolved)) == []
        assert (cfg.window.size, cfg.window.overlap, cfg.window.mode, cfg.keyframes.enabled) == (16, 6, "anchored", False)
        vggt_windows = {**with_synth, "window_size": 24, "window_overlap": 8, "keyframe_policy": "motion",
                        "merge_mode": "httm"}
        mismatch = profile_mismatch(vggt_windows, stream_profile(vggt_windows))   # given explicitly: kept, warned
        assert any(m.startswith("window_size=24 (measured with 16)") for m in mismatch), mismatch
        assert "merge_mode='httm' (measured with 'none')" in mismatch, mismatch
        assert params.resolved(vggt_windows)["window_size"] == 24 and stream_config(vggt_windows).window.size == 24
        measured = {**with_synth, "window_size": 16, "window_overlap": 6, "keyframe_policy": "every",
                    "window_mode": "anchored", "merge_mode": "none"}
        assert profile_mismatch(measured, stream_profile(measured)) == []
        off = {**with_synth, "card_stream_profile": False}
        assert stream_profile(off) is None and profile_mismatch(off, stream_profile(off)) == []
        assert (stream_config(off).window.size, stream_config(off).window.mode) == (24, "anchored")
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"")
    card = {"image_hw": [98, 126], "stream_profile": {"_why": "notes are skipped", "align": {"max_residual": 0.09},
                                                      "tracking": {"anchor_policy": "last_window"}}}
    (tmp_path / "m.json").write_text(json.dumps(card))
    cfg = stream_config({**values, "checkpoint": str(weights)})
    assert cfg.align.max_residual == 0.09 and cfg.tracking.anchor_policy == "last_window"
    assert cfg.align.min_points == library.align.min_points
    off = stream_config({**values, "checkpoint": str(weights), "card_stream_profile": False})
    assert off.align == library.align and off.tracking == library.tracking
    card["stream_profile"]["tracking"] = {"anchor_policy": "oldest"}
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert any("anchor_policy" in e for e in params.validate({**values, "checkpoint": str(weights)}))
    (tmp_path / "m.json").write_text(json.dumps({**card, "stream_profile": [1]}))
    assert any("card_stream_profile" in e for e in params.validate({**values, "checkpoint": str(weights)}))


def test_descriptors_carry_ranges_and_read_only():
    desc = params.descriptor(params.BY_NAME["window_size"])
    assert desc.read_only and desc.integer_range[0].from_value == 0          # 0: the model card's
    desc = params.descriptor(params.BY_NAME["conf_percentile"])
    assert not desc.read_only and desc.floating_point_range[0].to_value == pytest.approx(99.9)
    assert "raw" in params.descriptor(params.BY_NAME["input_type"]).additional_constraints
    desc = params.descriptor(params.BY_NAME["image_size"])
    assert (desc.integer_range[0].from_value, desc.integer_range[0].step) == (0, 14)
    assert all(params.descriptor(p).dynamic_typing for p in params.PARAMS)   # type errors: check_value's


# ----------------------------------------------------------------------------- one source of truth
def _satisfy_rules(values, name):
    """Other parameters moved so that ``name``'s own value is the only thing tested."""
    if name == "window_overlap" and values["window_overlap"]:             # 0: the card's / 24/8
        values["window_size"] = min(1024, max(24, values["window_overlap"] + 1))
    if name == "window_size" and values["window_size"]:
        values["window_overlap"] = min(8, values["window_size"] - 1)
    if name == "httm_q_outlier":
        values["httm_q_merge"] = max(values["httm_q_merge"], values["httm_q_outlier"])
    if name == "httm_q_merge":
        values["httm_q_outlier"] = min(values["httm_q_outlier"], values["httm_q_merge"])
    return values


@pytest.mark.parametrize("param", [p for p in params.PARAMS if p.range], ids=lambda p: p.name)
def test_declared_ranges_are_what_is_accepted(param):
    """Both ends of every declared range pass validate() - the core's configuration objects
    included - and the numbers just outside fail with the range in the reason."""
    lo, hi = param.range
    for end in (lo, hi):
        values = _satisfy_rules({**params.defaults(), param.name: end}, param.name)
        assert params.validate(values) == [], (param.name, end)
    eps = 1 if param.type is int else 1e-9 * max(1.0, abs(hi))
    for outside in (lo - eps, hi + eps):
        errors = params.validate({**params.defaults(), param.name: outside})
        assert errors == [f"{param.name} must be in [{lo}, {hi}], got {outside!r}"], errors


def test_window_overlap_range_starts_at_the_alignment_minimum():
    from httm_ros.pipeline.stream_config import AlignConfig

    assert params.BY_NAME["window_overlap"].range[0] == params.BY_NAME["window_size"].range[0] == 0   # 0: the card's
    assert params._EXPLICIT_MIN["window_overlap"] == AlignConfig().min_overlap_frames
    assert params._EXPLICIT_MIN["window_size"] == AlignConfig().min_overlap_frames + 1


@pytest.mark.parametrize("rule", params.RULES, ids=lambda r: "-".join(r.names[:2]))
def test_cross_rules_are_reported_in_words_with_the_values(rule):
    broken = {"window_size": {"window_overlap": 30, "window_size": 30},
              "httm_q_outlier": {"httm_q_outlier": 0.5, "httm_q_merge": 0.4},
              "camera_frame": {"world_frame": "cam", "camera_frame": "cam"},
              "odom_frame": {"world_frame": "odom", "tf_mode": "odom"},
              "tf_child_frame": {"world_frame": "cam_vggt", "tf_child_frame": "cam_vggt"},
              "window_mode": {"loop_closure": True, "window_mode": "chained"}}[rule.names[1]]
    values = params.resolved({**params.defaults(), **broken})            # rules see the resolved windows
    errors = params.validate(values)
    assert errors == [rule.check(values)]
    assert errors[0].startswith(rule.text) and all(f"{n}={values[n]!r}" in errors[0] for n in rule.names)
    assert params.validate({**values, "merge_mode": "uniform"}) == [] or rule.names[0] != "merge_mode"


def test_type_errors_name_the_expected_type():
    d = params.defaults()
    assert params.validate({**d, "pixel_stride": "abc"}) == ["pixel_stride must be an integer, got a string 'abc'"]
    assert params.validate({**d, "publish_map": 1}) == ["publish_map must be a bool, got an integer 1"]
    assert "conf_threshold must be a double" in params.validate({**d, "conf_threshold": True})[0]
    assert params.check_update(d, {"conf_threshold": 2}) == []
    assert params.updates_from([_Param("conf_threshold", 2)]) == {"conf_threshold": 2.0}


class _Param:
    def __init__(self, name, value):
        self.name, self.value = name, value


# ----------------------------------------------------------------------------- command line
def test_command_line_overrides_are_read_in_order_for_this_node():
    argv = ["node", "--ros-args", "-p", "pixel_stride:=abc", "--params-file", "f.yaml", "-r", "a:=b",
            "--param", "reconstruct_node:conf_threshold:=2", "-p", "other_node:window_size:=4",
            "-p", "/ns/reconstruct_node:image_size:=56", "--", "-p", "not_ros:=1",
            "--ros-args", "-p", "pixel_stride:=3"]
    assert params.command_line_overrides(argv, "reconstruct_node") == {
        "pixel_stride": "3", "conf_threshold": "2", "image_size": "56"}


def test_overrides_a_later_params_file_replaced_are_reported():
    values = params.defaults()                          # the params file set pixel_stride back to 2
    argv = ["n", "--ros-args", "-p", "pixel_stride:=abc", "-p", "conf_threshold:=1", "-p", "publish_map:=true",
            "-p", "no_such:=1", "--params-file", "my.yaml"]
    warnings = params.ignored_overrides(argv, "reconstruct_node", values)
    assert len(warnings) == 2, warnings                 # conf_threshold 1 == 1.0, publish_map true: applied
    assert warnings[0].startswith("-p pixel_stride:=abc was not applied: pixel_stride is 2")
    assert "last one wins" in warnings[0]
    assert warnings[1] == "-p no_such:=1 is ignored: reconstruct_node has no parameter 'no_such'"


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


# ----------------------------------------------------------------------------- on a node
@pytest.fixture
def node():
    """A ReconstructNode (oracle predictor, no model) in a context of its own: set_parameters is
    the path of the parameter services (ros2 param set)."""
    if __import__("os").environ.get("HTTM_ROS_INSTALLED") != "1":
        pytest.skip("needs the colcon-built messages (run via scripts/test)")
    import rclpy
    from rclpy.parameter import Parameter

    from httm_ros.tools.local_dds import ros_env
    from httm_ros.ros.reconstruct_node import ReconstructNode
    from httm_ros.synthetic import demo_sequence
    from httm_ros.synthetic.oracle import OraclePredictor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env(__name__)["ROS_DOMAIN_ID"]))
    made = ReconstructNode(predictor=OraclePredictor(demo_sequence(num_frames=3, width=56, height=42)),
                           context=context, parameter_overrides=[
                               Parameter("device", value="cpu"), Parameter("conf_threshold", value=2),
                               Parameter("window_size", value=4), Parameter("window_overlap", value=2)])
    yield made
    made.shutdown(timeout=5.0)
    made.destroy_node()
    rclpy.try_shutdown(context=context)


def test_integers_for_doubles_and_named_type_errors_on_a_node(node):
    from rclpy.parameter import Parameter

    assert node.get_parameter("conf_threshold").type_ == Parameter.Type.DOUBLE       # -p conf_threshold:=2
    assert node.values["conf_threshold"] == 2.0
    result = node.set_parameters([Parameter("conf_threshold", Parameter.Type.INTEGER, 3)])[0]
    assert result.successful, result.reason                                          # ros2 param set ... 3
    assert node.get_parameter("conf_threshold").type_ == Parameter.Type.DOUBLE
    assert node.get_parameter("conf_threshold").value == 3.0 and node.values["conf_threshold"] == 3.0
    result = node.set_parameters([Parameter("pixel_stride", Parameter.Type.STRING, "abc")])[0]
    assert not result.successful and result.reason == "pixel_stride must be an integer, got a string 'abc'"
    assert node.describe_parameter("pixel_stride").type == Parameter.Type.INTEGER.value   # still an integer
    result = node.set_parameters([Parameter("conf_percentile", Parameter.Type.DOUBLE, 100.0)])[0]
    assert not result.successful and "99.9" in result.reason
    result = node.set_parameters([Parameter("window_size", Parameter.Type.INTEGER, 8)])[0]
    assert not result.successful and "read-only" in result.reason
