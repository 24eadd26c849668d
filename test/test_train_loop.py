"""httm-train: the losses fall when overfitting one batch; the smoke run writes every output."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from httm_ros.train.data import ClipPool
from httm_ros.train.loop import TrainOptions, forward_train, make_optimizer
from httm_ros.train.losses import training_loss
from httm_ros.vggt import VGGT, VGGTConfig


def test_overfit_one_batch_lowers_the_loss(one_torch_thread):
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).train()
    opt = make_optimizer(model, TrainOptions(lr=2e-3, weight_decay=0.0))
    batch = ClipPool((42, 56), "cpu", seed=3, size=1, reuse=100, clip_frames=4).batch(np.random.default_rng(0), 3, 2)
    losses = []
    for _ in range(25):
        parts = training_loss(forward_train(model, batch["images"]), batch)
        opt.zero_grad()
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(parts["loss"].item())
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses


def test_correspondence_term_trains_the_aggregator_tokens(one_torch_thread):
    """--match-weight: the patch tokens of the chosen block come out [B,S,h*w,2C], the term is in
    the loss, and a few steps on one batch lower it."""
    from httm_ros.train.losses import first_frame_patch_targets

    torch.manual_seed(0)
    cfg = VGGTConfig.tiny()
    model = VGGT(cfg).train()
    opt = make_optimizer(model, TrainOptions(lr=2e-3, weight_decay=0.0))
    batch = ClipPool((42, 56), "cpu", seed=3, size=1, reuse=100, clip_frames=4).batch(np.random.default_rng(0), 3, 2)
    batch["match_target"] = first_frame_patch_targets(batch["points"], batch["intrinsics"], batch["valid"],
                                                      cfg.patch_size)
    assert (batch["match_target"][:, 1:] >= 0).any()
    terms = []
    for _ in range(15):
        out = forward_train(model, batch["images"], match_layer=1)
        assert out["match_tokens"].shape == (2, 3, (42 // cfg.patch_size) * (56 // cfg.patch_size), 2 * cfg.embed_dim)
        parts = training_loss(out, batch, match_weight=1.0)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        terms.append(parts["match"].item())
    assert np.mean(terms[-3:]) < 0.8 * np.mean(terms[:3]), terms
    with pytest.raises(ValueError, match="match_layer"):
        forward_train(model, batch["images"], match_layer=cfg.depth)


def test_displacement_term_trains_two_channels_of_the_chosen_block(one_torch_thread):
    """--flow-weight: block ``flow_layer``'s patch tokens give [B,S,h*w,2] (channels FLOW_CHANNELS of
    the global half), the term and its predict-zero bar are in the parts, and a few steps on one
    batch bring the term under the bar."""
    from httm_ros.train.loop import FLOW_CHANNELS
    from httm_ros.train.losses import first_frame_displacement_targets

    torch.manual_seed(0)
    cfg = VGGTConfig.tiny()
    model = VGGT(cfg).train()
    opt = make_optimizer(model, TrainOptions(lr=2e-3, weight_decay=0.0))
    batch = ClipPool((42, 56), "cpu", seed=3, size=1, reuse=100, clip_frames=4).batch(np.random.default_rng(0), 3, 2)
    batch["flow_target"], batch["flow_valid"] = first_frame_displacement_targets(
        batch["points"], batch["intrinsics"], batch["valid"], cfg.patch_size)
    assert batch["flow_valid"][:, 1:].any()
    terms = []
    for _ in range(20):
        out = forward_train(model, batch["images"], flow_layer=2)
        layer = model.aggregator(batch["images"], keep_layers=[2])[2] if not terms else None
        if layer is not None:                               # the read-out is those channels, nothing else
            c0 = cfg.embed_dim + FLOW_CHANNELS[0]
            torch.testing.assert_close(out["flow"], layer[:, :, model.aggregator.patch_start:, c0:c0 + 2])
        parts = training_loss(out, batch, flow_weight=1.0)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        terms.append((parts["flow"].item(), parts["flow_zero"].item()))
    assert out["flow"].shape == (2, 3, (42 // cfg.patch_size) * (56 // cfg.patch_size), 2)
    assert np.mean([f for f, _ in terms[-3:]]) < 0.7 * terms[-1][1], terms
    with pytest.raises(ValueError, match="flow_layer"):
        forward_train(model, batch["images"], flow_layer=-1)


def test_smoke_run_writes_all_outputs_without_ros(tmp_path):
    code = ("import sys; from httm_ros.train.train_cli import main; main(['--smoke', '--layerscale-init', '1.0', '--camera-base-pose', '--out', sys.argv[1]]); "
            "assert not [m for m in sys.modules if m.startswith('rclpy')], 'training imported rclpy'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=240)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["httm-vggt-synth.json", "httm-vggt-synth.safetensors", "resume.pt", "train_curves.png",
                     "train_log.json"] or names == [n for n in names if n != "train_curves.png"]
    card = json.loads((tmp_path / "httm-vggt-synth.json").read_text())
    assert card["image_hw"] == [42, 56] and "NOT VGGT-1B" in card["statement"]
    assert card["training"]["steps"] == 4 and set(card["heldout"]["summary"]) >= {"abs_rel", "ate_percent"}
    assert "MISSED" in card["status"] and card["targets_met"] is False                  # 4 steps: honest
    assert set(card["heldout"]["baselines"]) >= {"abs_rel_constant_depth", "rot_err_median_deg_identity"}
    log = json.loads((tmp_path / "train_log.json").read_text())["entries"]
    assert [e["step"] for e in log] == [1, 2, 3, 4] and all("rot_err_deg" in e for e in log)
    assert all(0 < e["rot_identity_deg"] < 180 for e in log)                       # the no-rotation bar
    model = VGGT.from_checkpoint(tmp_path / "httm-vggt-synth.safetensors")
    assert model.config == VGGTConfig.tiny(layerscale_init=1.0, camera_base_pose=True)   # both options travel
    for block in (model.aggregator.frame_blocks[0], model.camera_head.trunk[0]):   # the camera trunk too
        assert abs(float(block.ls1.gamma.float().mean()) - 1.0) < 0.05             # 4 steps from 1.0, not 0.01


def test_init_weights_starts_from_a_checkpoint_with_its_config(tmp_path, one_torch_thread):
    """--init-weights: the network (config included) comes from a checkpoint, the optimizer and the
    schedule start anew, and the model card names the weights it started from."""
    from httm_ros.provenance import file_sha256
    from httm_ros.train.train_cli import main

    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--smoke", "--layerscale-init", "1.0", "--camera-base-pose", "--out", str(first)]) == 0
    start = first / "httm-vggt-synth.safetensors"
    assert main(["--smoke", "--init-weights", str(start), "--seed", "3", "--out", str(second)]) == 0
    card = json.loads((second / "httm-vggt-synth.json").read_text())
    assert card["training"]["init_weights"] == {"path": str(start), "sha256": file_sha256(start)}
    assert card["training"]["steps"] == 4                                   # a new schedule, counted from 0
    before, after = VGGT.from_checkpoint(start), VGGT.from_checkpoint(second / "httm-vggt-synth.safetensors")
    assert after.config == before.config == VGGTConfig.tiny(layerscale_init=1.0, camera_base_pose=True)
    fresh = VGGT(before.config)
    moved = max((a - b).abs().max().item() for a, b in zip(after.state_dict().values(), before.state_dict().values()))
    apart = max((a - b).abs().max().item() for a, b in zip(fresh.state_dict().values(), before.state_dict().values()))
    assert moved < 0.1 < apart                 # 4 small steps from the checkpoint, far from a new init


def test_out_of_memory_halves_the_batch_and_goes_on(tmp_path, monkeypatch, one_torch_thread):
    """A step that runs out of GPU memory is retried with half the frames per step; the run goes on
    to its end and the model card records when and how much it cut."""
    from httm_ros.train import loop

    real, calls = loop.forward_train, []

    def first_call_runs_out(model, images, **kw):
        calls.append(tuple(images.shape[:2]))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, images, **kw)

    monkeypatch.setattr(loop, "forward_train", first_call_runs_out)
    result = loop.train(loop.smoke_options(tmp_path, batch_frames=8))
    training = result["training"]
    assert training["steps"] == 4 and training["out_of_memory"] == [
        {"step": 0, "from_batch_frames": 8, "to_batch_frames": 4}]
    assert training["options"]["batch_frames"] == 4
    card = json.loads((tmp_path / "httm-vggt-synth.json").read_text())
    assert card["training"]["out_of_memory"] == training["out_of_memory"]
    with pytest.raises(RuntimeError, match="smallest batch"):
        loop._halve_after_oom(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                              loop.smoke_options(tmp_path, batch_frames=3), 0, torch.device("cpu"), [])


def test_merge_trains_through_httm_in_its_share_of_the_steps(tmp_path, one_torch_thread):
    """--merge httm: the drawn steps run with HTTM patched in (its torch path carries gradients),
    the log says which, the saved network is the dense one and the card holds both held-out sets."""
    from httm_ros.httm import merge_stats
    from httm_ros.train import loop

    seen = []
    real = loop.forward_train

    def spy(model, images, **kw):
        seen.append(merge_stats(model) is not None)
        return real(model, images, **kw)

    loop.forward_train, saved = spy, loop.forward_train
    try:
        result = loop.train(loop.smoke_options(tmp_path, steps=6, merge="httm", merge_frac=0.5))
    finally:
        loop.forward_train = saved
    log = json.loads((tmp_path / "train_log.json").read_text())["entries"]
    assert [e["merged"] for e in log] == seen and any(seen) and not all(seen)       # drawn, both kinds
    assert set(result["heldout"]["merged"]) >= {"abs_rel", "ate_percent"}
    card = json.loads((tmp_path / "httm-vggt-synth.json").read_text())
    assert card["training"]["options"]["merge"] == "httm" and "merged" in card["heldout"]
    assert merge_stats(VGGT.from_checkpoint(tmp_path / "httm-vggt-synth.safetensors")) is None


@pytest.mark.parametrize("argv, named", [
    (["--heldout", "0"], "--heldout must be >= 1, got 0"),
    (["--lr", "-1", "--curriculum-frac", "2"], "--lr must be > 0, got -1.0; --curriculum-frac must be <= 1"),
    (["--batch-frames", "1"], "--batch-frames must be >= 2"),
    (["--curriculum-frames", "30"], "--curriculum-frames must be in 2..24, got 30"),
    (["--layerscale-init", "0"], "--layerscale-init must be > 0"),
    (["--init-weights", "w.safetensors", "--resume", "r.pt"], "--init-weights and --resume exclude each other"),
    (["--init-weights", "w.safetensors", "--camera-base-pose"], "--init-weights takes the network's config"),
    (["--merge-frac", "1.5"], "--merge-frac must be in [0, 1], got 1.5"),
])
def test_out_of_range_options_are_refused_before_anything_runs(tmp_path, capsys, argv, named):
    from httm_ros.train.train_cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "run")] + argv)
    assert stop.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()                 # refused before training made its folder


def test_eval_refuses_an_empty_held_out_set(capsys):
    from httm_ros.train.train_cli import main

    with pytest.raises(SystemExit) as stop:
        main(["eval", "--weights", "unused.safetensors", "--n", "0"])
    assert stop.value.code == 2 and "--n must be >= 1" in capsys.readouterr().err
