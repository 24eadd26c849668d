"""Pieces of the demo: test weights give finite cameras, idle detection, settings, preview, summary."""

import types

import numpy as np
import pytest
import torch

from httm_ros.synthetic.sequence import FPS
from httm_ros.tools import run_summary
from httm_ros.tools.demo import artifacts, console, demo_settings, preview, recorder


def test_test_weights_give_finite_cameras_and_an_accepted_first_window():
    from httm_ros.pipeline import (KeyframeConfig, ModelPredictor, StreamConfig, StreamingReconstructor,
                                   WindowConfig)
    from httm_ros.synthetic import demo_sequence
    from httm_ros.vggt.factory import TEST_WEIGHTS_FOV, build_model

    model = build_model("tiny", allow_test_weights=True, device="cpu")
    seq = demo_sequence(num_frames=4, width=112, height=84, seed=0)
    rec = StreamingReconstructor(ModelPredictor(model, device="cpu"),
                                 StreamConfig(keyframes=KeyframeConfig(enabled=False),
                                              window=WindowConfig(size=4, overlap=2), image_width=56))
    results = [r for i in range(4) for r in rec.push(seq.images[i], float(i))]
    assert len(results) == 1 and results[0].accepted, results[0].alignment.reason
    assert torch.isfinite(results[0].intrinsics).all() and len(rec.map) > 0
    focal = results[0].intrinsics[:, 0, 0]
    expected = 28.0 / np.tan(TEST_WEIGHTS_FOV / 2)                     # 56 px wide, FoV ~1 rad
    assert torch.allclose(focal, torch.full_like(focal, expected), rtol=0.1)


def _stats(windows, keyframes_total):
    return [types.SimpleNamespace(keyframes_total=keyframes_total)] * windows


def test_node_idle_before_and_after_the_flush():
    diag = {"frames_received": "10", "queue_depth": "0", "windows": "2", "keyframes": "7"}
    assert recorder.node_idle(diag, _stats(2, 6), 10, flushed=False)
    assert not recorder.node_idle(diag, _stats(2, 6), 10, flushed=True)          # a keyframe still waits
    assert recorder.node_idle(diag, _stats(2, 7), 10, flushed=True)
    assert not recorder.node_idle({**diag, "windows": "3"}, _stats(2, 7), 10, flushed=True)   # window running
    assert not recorder.node_idle({**diag, "queue_depth": "1"}, _stats(2, 6), 10, flushed=False)
    assert not recorder.node_idle({**diag, "frames_received": "9"}, _stats(2, 6), 10, flushed=False)
    assert not recorder.node_idle({}, [], 10, flushed=False)
    assert recorder.node_idle({**diag, "windows": "0", "keyframes": "0"}, [], 10, flushed=True)


def test_settings_by_machine_and_params_file(tmp_path):
    import yaml

    from httm_ros.weights import synth_weights

    synth = synth_weights()
    assert synth is not None, "the package ships httm_ros/weights/httm-vggt-synth.safetensors"
    for cuda in (False, True):                                           # the default: the shipped model
        s = demo_settings.choose_settings(cuda, None, synth)
        assert (s.model_config, s.checkpoint, s.test_weights) == ("synth", str(synth), False)
        assert (s.width, s.height, s.image_size, s.device) == (168, 126, 168, "cuda" if cuda else "cpu")
        assert (s.window_size, s.window_overlap, s.keyframe_policy) == (16, 6, "every")
        assert "httm-vggt-synth (trained on synthetic rooms only; not VGGT-1B)" in demo_settings.describe(s)
    cpu = demo_settings.choose_settings(False, None)                     # shipped weights missing / asked for
    assert (cpu.model_config, cpu.device, cpu.checkpoint, cpu.test_weights) == ("tiny", "cpu", None, True)
    assert demo_settings.choose_settings(False, "/m.safetensors", synth).model_config == "1b"
    gpu = demo_settings.choose_settings(True, "/m.safetensors", synth)
    assert (gpu.model_config, gpu.image_size, gpu.device, gpu.model) == ("1b", 518, "cuda", "VGGT-1B")
    assert demo_settings.choose_settings(True, None).test_weights
    assert "tiny test network" in demo_settings.describe(cpu) and "VGGT-1B" in demo_settings.describe(gpu)
    path = demo_settings.write_params_file(tmp_path / "p.yaml", demo_settings.node_params(cpu, 60))
    values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
    assert values["model_config"] == "tiny" and values["queue_size"] == 60 and values["qos_reliability"] == "reliable"


def test_command_line_picks_the_shipped_model_unless_test_weights_are_asked_for(monkeypatch):
    from httm_ros.tools.demo import run
    from httm_ros.weights import synth_weights

    monkeypatch.delenv("WEIGHTS", raising=False)
    assert run._synth(run.parse_args([])) == synth_weights() is not None
    assert run._synth(run.parse_args(["--model-config", "synth"])) == synth_weights()
    assert run._synth(run.parse_args(["--model-config", "tiny"])) is None         # plumbing: test weights
    assert run._synth(run.parse_args(["--weights", "/m.safetensors"])) is None
    args = run.parse_args(["--model-config", "tiny"])
    s = demo_settings.choose_settings(False, None, run._synth(args))
    demo_settings.apply_overrides(s, args)
    assert s.test_weights and s.model_config == "tiny" and s.model == "the tiny test network"


def test_the_shipped_model_reconstructs_the_demo_sequence():
    """The demo's node settings with httm-vggt-synth, through the streaming core on 26 frames (two
    windows): both accepted, the path close to the ground truth (measured: ATE 11.2 %; test weights
    or a model that ignores the images give a path unrelated to the orbit)."""
    from httm_ros.ros import params
    from httm_ros.ros.model_runner import build_model_runner
    from httm_ros.synthetic import demo_sequence
    from httm_ros.tools.demo import accuracy
    from httm_ros.weights import synth_weights

    frames = 26
    s = demo_settings.choose_settings(False, None, synth_weights())
    values = {**params.defaults(), **demo_settings.node_params(s, frames), "checkpoint": s.checkpoint,
              "device": "cpu", "warmup_forwards": 0}
    runner = build_model_runner(values)
    assert not runner.test_weights and runner.description.startswith("httm-vggt-synth on cpu")
    rec = runner.reconstructor
    seq = demo_sequence(num_frames=frames, width=s.width, height=s.height, seed=0)
    stamps = accuracy.ground_truth(frames)[2]                            # the demo bag's stamps
    results = [r for i in range(frames) for r in rec.push(seq.images[i], float(stamps[i]))] + rec.flush()
    assert [r.accepted for r in results] == [True, True], [r.alignment.reason for r in results]
    acc = accuracy.demo_accuracy(np.asarray(rec.trajectory.stamps), np.asarray(rec.trajectory.cam_to_world()),
                                 rec.map.points()[0], frames)
    assert acc["keyframes"] == frames and acc["ate_percent"] < 20.0, acc
    assert acc["map_points_measured"] > 1000 and np.isfinite(acc["map_median_m"])


def test_ground_truth_is_the_demo_sequences_and_a_perfect_path_scores_zero():
    from httm_ros.synthetic import demo_sequence
    from httm_ros.tools.demo import accuracy

    seq = demo_sequence(num_frames=6, width=28, height=21, seed=0)
    scene, poses, stamps = accuracy.ground_truth(6)
    np.testing.assert_allclose(poses, seq.cam_to_world)
    moved = poses.copy()                                                 # another frame and scale
    moved[:, :3, 3] = 3.0 * poses[:, :3, 3] @ preview.OPTICAL_FROM_WORLD.T + 1.0
    surface = np.array([[scene.room[0][0], 0.3, 0.7], [0.2, scene.room[1][1], 0.4]])   # on two walls
    acc = accuracy.demo_accuracy(stamps, moved, 3.0 * surface @ preview.OPTICAL_FROM_WORLD.T + 1.0, 6)
    assert acc["ate_percent"] < 1e-6 and acc["scale"] == pytest.approx(1 / 3, rel=1e-4)
    assert acc["map_median_m"] < 1e-6 and "ATE 0.0 %" in console.accuracy_line(acc)
    assert accuracy.demo_accuracy(stamps[:2], moved[:2], surface, 6) is None
    truth = accuracy.true_path_in_world(stamps[::2], moved[::2], 6)          # every frame, in the node's world
    np.testing.assert_allclose(truth, moved[:, :3, 3], atol=1e-6)
    assert accuracy.true_path_in_world(stamps[:2], moved[:2], 6) is None
    with pytest.raises(ValueError, match="stamps"):
        accuracy.demo_accuracy(stamps + 0.4 / FPS, moved, surface, 6)


def test_path_to_matrices_round_trip():
    pytest.importorskip("nav_msgs")
    from nav_msgs.msg import Path
    from httm_ros.ros import codec
    from ros_poses import pose_stamped

    mats = np.tile(np.eye(4), (2, 1, 1))
    mats[1, :3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    mats[1, :3, 3] = (1, 2, 3)
    poses = [pose_stamped(m, codec.make_header(codec.sec_to_stamp(5.0 + i), "map")) for i, m in enumerate(mats)]
    stamps, back = artifacts.path_to_matrices(Path(poses=poses))
    np.testing.assert_allclose(back, mats, atol=1e-9)
    assert list(stamps) == [5.0, 6.0]
    assert artifacts.path_to_matrices(None)[1].shape == (0, 4, 4)


def test_preview_draws_points_trajectory_and_frames():
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(5000, 3)) * [1.0, 1.0, 0.3] + [3, 0, 0]       # REP-103 world: 3 m ahead
    rgb = np.tile(np.array([[0, 200, 255]], np.uint8), (5000, 1))
    cams = np.tile(np.eye(4), (4, 1, 1))
    cams[:, :3, :3] = preview.OPTICAL_FROM_WORLD.T                        # optical camera axes in the world
    cams[:, 1, 3] = -np.linspace(0, 1, 4)                                # moving to the right
    thumbs = [("input frame 0", np.zeros((30, 40, 3), np.uint8))]
    img = preview.render_preview(xyz, rgb, cams, thumbs, "title", ["line"], "WARNING")
    arr = np.asarray(img)
    assert img.width == preview.WIDTH and img.height > preview.PANEL_H
    assert ((arr == [0, 200, 255]).all(-1)).sum() > 1000                  # splatted map points
    assert ((arr == preview.TRAJ).all(-1)).sum() > 50                      # trajectory
    assert not ((arr == preview.TRUTH).all(-1)).any()
    truth = cams[:, :3, 3] + [0.0, 0.0, 0.5]                              # the true path, 0.5 m higher
    drawn = np.asarray(preview.render_preview(xyz, rgb, cams, thumbs, "title", ["line"], None, truth))
    assert ((drawn == preview.TRUTH).all(-1)).sum() > 50                   # the line and its legend dot
    empty = preview.render_preview(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros((0, 4, 4)))
    assert empty.width == preview.WIDTH


def test_splat_keeps_the_nearest_point():
    canvas = np.zeros((4, 4, 3), np.uint8)
    uv = np.array([[1.2, 1.2], [1.3, 1.1], [3.5, 3.5]])
    preview.splat(canvas, uv, np.array([2.0, 1.0, np.nan]), np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8),
                  size=1)
    assert tuple(canvas[1, 1]) == (0, 255, 0) and canvas.reshape(-1, 3).any(1).sum() == 1


def test_summary_lines():
    def msg(i, accepted, reason=""):
        return types.SimpleNamespace(window_index=i, num_keyframes=6, num_overlap_keyframes=0 if i == 0 else 2,
                                     alignment_accepted=accepted, alignment_message=reason, tokens_total=1182,
                                     kept_q_ratio=0.3, kept_kv_ratio=0.32, latency_model_ms=150.0,
                                     latency_total_ms=float("nan") if i else 200.0, map_points=1000,
                                     keyframes_total=6 + 4 * i, frames_received=30, merge_mode="httm",
                                     image_width=224, image_height=168)
    s = run_summary.summarize([msg(0, True), msg(1, False, "inconsistent window")], {"extra": 1})
    assert (s["windows"], s["windows_accepted"], s["keyframes"], s["keyframes_in_map"], s["extra"]) == (2, 1, 10, 6, 1)
    lines = run_summary.format_summary(s)
    assert lines[0].startswith("frames received 30, keyframes 10 (6 in the map), windows 2 (1 accepted, 1 rejected)")
    assert "rejected: inconsistent window" in lines[-1] and lines[-2].rstrip().endswith("accepted")
    assert run_summary.format_summary(run_summary.summarize([]))[0].startswith("frames received 0")


def test_verdicts_say_what_the_window_counts_mean():
    base = {"windows": 3, "windows_accepted": 1, "test_weights": True, "node_exit_status": 0}
    assert "as expected" in console.verdict_lines(base)[0]
    assert "did not align" in console.verdict_lines({**base, "test_weights": False})[0]
    assert "map is empty" in console.verdict_lines({**base, "windows_accepted": 0})[0]
    assert console.verdict_lines({**base, "windows_accepted": 3}) == []
    assert "status -9" in console.verdict_lines({**base, "windows_accepted": 3, "node_exit_status": -9})[0]


def test_a_viewer_screenshot_that_cannot_be_made_is_a_warning_line(tmp_path, monkeypatch, capsys):
    from httm_ros.viewer import screenshot

    assert artifacts.write_viewer_screenshot(tmp_path) is None                  # no outputs_bag/: BagError
    assert "WARNING: no viewer screenshot" in capsys.readouterr().out

    def no_chromium(source, png, *args, **kwargs):
        raise screenshot.ScreenshotError("no chromium on PATH (Debian: apt-get install chromium)")

    monkeypatch.setattr(screenshot, "write_screenshot", no_chromium)
    assert artifacts.write_viewer_screenshot(tmp_path) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no chromium on PATH" in out and not (tmp_path / "viewer.png").exists()
