"""Checkpoint loading: round trips, track_head skipping, and every failure as CheckpointError."""

import logging
from fractions import Fraction

import pytest
import torch
from safetensors.torch import save_file

from httm_ros.vggt import CheckpointError, VGGT, VGGTConfig, load_checkpoint

CFG = VGGTConfig.tiny()


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return VGGT(CFG).eval()


@pytest.fixture()
def state(source):
    return {k: v.clone() for k, v in source.state_dict().items()}


def _same_params(a, b):
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path, source, state, suffix):
    path = tmp_path / f"w{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_checkpoint(VGGT(CFG), path)
    assert _same_params(source, loaded)
    meta_built = VGGT.from_checkpoint(path, CFG)
    assert _same_params(source, meta_built)
    x = torch.rand(2, 3, 56, 70)
    with torch.no_grad():
        assert torch.equal(source(x)["depth"], meta_built(x)["depth"])


def test_wrapped_pt(tmp_path, source, state):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": state, "epoch": 3}, path)
    assert _same_params(source, load_checkpoint(VGGT(CFG), path))


def test_track_head_skipped_with_one_log_line(tmp_path, state, caplog):
    state["track_head.fnet.weight"] = torch.zeros(3, 3)
    state["track_head.fnet.bias"] = torch.zeros(3)
    path = tmp_path / "with_track.safetensors"
    save_file(state, str(path))
    with caplog.at_level(logging.INFO, logger="httm_ros.vggt"):
        load_checkpoint(VGGT(CFG), path)
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "2 tensors" in lines[0] and "track_head" in lines[0]


def _expect_error(tmp_path, state, *needles, suffix=".safetensors"):
    path = tmp_path / f"bad{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(VGGT(CFG), path)
    for needle in needles + (str(path),):
        assert needle in str(info.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_missing_key(tmp_path, state, suffix):
    del state["camera_head.embed_pose.weight"]
    _expect_error(tmp_path, state, "missing", "camera_head.embed_pose.weight", suffix=suffix)


def test_unexpected_key(tmp_path, state):
    state["aggregator.extra_token"] = torch.zeros(4)
    _expect_error(tmp_path, state, "unexpected", "aggregator.extra_token")


def test_wrong_shape(tmp_path, state):
    state["depth_head.norm.weight"] = torch.zeros(7)
    _expect_error(tmp_path, state, "wrong shape", "depth_head.norm.weight", "(128,)", "(7,)")


def test_model_untouched_on_error(tmp_path, state):
    model = VGGT(CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state["depth_head.norm.weight"] = torch.zeros(7)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError):
        load_checkpoint(model, path)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated(tmp_path, state, suffix):
    path = tmp_path / f"full{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut"):
        load_checkpoint(VGGT(CFG), cut)


def test_non_vggt_file(tmp_path):
    foreign = {"encoder.weight": torch.randn(8, 8), "encoder.bias": torch.randn(8)}
    _expect_error(tmp_path, foreign, "not a VGGT checkpoint", "encoder.weight")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(VGGT(CFG), path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(VGGT(CFG), tmp_path / "absent.safetensors")


def test_pickle_with_code_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1), "obj": Fraction(1, 3)}, path)  # a class weights_only refuses
    with pytest.raises(CheckpointError):
        load_checkpoint(VGGT(CFG), path)


def test_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)
