"""bench/camera_feature_probe.py (issue 15's diagnosis): the ridge read-out finds a linear
relation where there is one and none in noise, and the script runs end to end on a tiny
checkpoint and writes its rows."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from httm_ros.vggt import VGGT, VGGTConfig
from httm_ros.vggt.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("camera_feature_probe", ROOT / "bench/camera_feature_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_ridge_finds_a_linear_relation_and_none_in_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20))
    w = rng.normal(size=(20, 6))
    y = x @ w + 0.05 * rng.normal(size=(600, 6))
    r2 = probe.ridge_r2(x[:400], y[:400], x[400:], y[400:], alpha=1e-3)
    assert (r2 > 0.99).all(), r2
    noise = rng.normal(size=(600, 6))
    r2 = probe.ridge_r2(x[:400], noise[:400], x[400:], noise[400:], alpha=1.0)
    assert (r2 < 0.05).all(), r2
    assert np.allclose(probe.r2_of(y, y), 1.0)


def test_runs_on_a_checkpoint_and_writes_every_row(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(VGGT(VGGTConfig.tiny()), tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({"image_hw": [42, 56]}))       # the model card's size
    out = tmp_path / "probe.json"
    assert probe.main(["--weights", str(tmp_path / "m.safetensors"), "--train", "32", "--test", "16",
                       "--batch", "16", "--alphas", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["image_hw"] == [42, 56] and result["train_windows"] == 32 and result["test_windows"] == 16
    assert len(result["r2_test"]) == 4
    assert all(len(v) == 6 and all(np.isfinite(v)) for v in result["r2_test"].values())
