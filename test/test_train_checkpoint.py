"""httm-vggt-synth checkpoints: config in the safetensors metadata, model card, split resume state."""

import json

import pytest
import torch

from httm_ros.vggt import VGGT, VGGTConfig
from httm_ros.vggt.checkpoint import (CheckpointError, checkpoint_config, checkpoint_image_hw, model_card_path,
                                      save_checkpoint)
from httm_ros.vggt.factory import build_model
from httm_ros.train.resume import load_resume, resume_files, save_resume


def test_presets_are_one_table():
    assert VGGTConfig.preset("tiny") == VGGTConfig.tiny() and VGGTConfig.preset("1b") == VGGTConfig()
    synth = VGGTConfig.preset("synth")
    params = sum(p.numel() for p in VGGT(synth).parameters())
    assert 4e6 < params < 6e6                                               # fp16 file well under 16 MiB
    with pytest.raises(ValueError, match="unknown model config"):
        VGGTConfig.preset("huge")


def test_config_travels_with_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = VGGTConfig.tiny(depth=3, dpt_layers=(0, 1, 2, 2))
    model = VGGT(cfg).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    assert checkpoint_config(path) == cfg
    loaded = VGGT.from_checkpoint(path)                                     # no config argument
    assert loaded.config == cfg
    x = torch.rand(2, 3, 28, 42)
    with torch.no_grad():
        a, b = model(x, heads=("depth",))["depth"], loaded(x, heads=("depth",))["depth"]
    torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)                  # fp16 weights
    assert build_model("1b", weights=str(path), device="cpu").config == cfg


def test_model_card_image_hw(tmp_path):
    path = save_checkpoint(VGGT(VGGTConfig.tiny()), tmp_path / "m.safetensors")
    assert checkpoint_image_hw(path) is None
    model_card_path(path).write_text(json.dumps({"image_hw": [126, 168]}))
    assert checkpoint_image_hw(path) == (126, 168)
    model_card_path(path).write_text(json.dumps({"image_hw": [126]}))
    with pytest.raises(CheckpointError, match="image_hw"):
        checkpoint_image_hw(path)
    model_card_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint_image_hw(path)


def test_bad_config_metadata_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"httm_vggt_config": json.dumps({"embed_dim": 7, "bogus": 1})})
    with pytest.raises(CheckpointError, match="invalid model config"):
        VGGT.from_checkpoint(path)


def test_resume_state_split_and_joined(tmp_path):
    state = {"model": {"w": torch.arange(300_000, dtype=torch.float32)}, "step": 7, "log": [{"loss": 1.5}],
             "rng": {"torch": torch.get_rng_state()}}
    files = save_resume(state, tmp_path, part_bytes=400_000)
    assert [f.name for f in files] == [f"resume-{i:02d}.pt" for i in range(len(files))] and len(files) >= 3
    assert all(f.stat().st_size <= 400_000 for f in files)
    for source in (tmp_path, files[1]):
        back = load_resume(source)
        assert back["step"] == 7 and torch.equal(back["model"]["w"], state["model"]["w"])
    files = save_resume(state, tmp_path)                                     # one file replaces the parts
    assert [f.name for f in files] == ["resume.pt"] and resume_files(tmp_path) == files
    files = save_resume(state, tmp_path, part_bytes=400_000)
    files[-1].unlink()                                                       # last part lost
    with pytest.raises(ValueError, match="missing or truncated"):
        load_resume(tmp_path)
    files = save_resume(state, tmp_path, part_bytes=400_000)
    files[1].unlink()                                                        # a middle part lost
    with pytest.raises(ValueError, match="not numbered"):
        load_resume(tmp_path)
