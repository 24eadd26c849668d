"""bench/match_accuracy.py (issue 15's diagnosis): a frame matched against itself finds every
patch, and the script runs end to end on a tiny checkpoint with one row per camera path kind."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from httm_ros.train.data import KIND_WEIGHTS, TRAIN_SEED_BASE, random_clip_spec, render_clip
from httm_ros.vggt import VGGT, VGGTConfig
from httm_ros.vggt.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("match_accuracy", ROOT / "bench/match_accuracy.py")
match = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(match)
HW = (42, 56)


def test_a_frame_against_itself_finds_every_patch():
    torch.manual_seed(0)
    model = VGGT(VGGTConfig.tiny()).eval()
    clip = render_clip(random_clip_spec(np.random.default_rng(3), TRAIN_SEED_BASE + 3, ["walk"]), 3, HW, "cpu")
    same = match.pair_accuracy(model, clip, 0, 0, 1, HW)
    assert same["valid"] > 0 and same["correct"] == same["valid"] and same["dx"] == same["dy"] == 0.0
    moved = match.pair_accuracy(model, clip, 0, 2, 1, HW)
    assert 0 <= moved["correct"] <= moved["valid"]


def test_runs_on_a_checkpoint_with_a_row_per_path_kind(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(VGGT(VGGTConfig.tiny()), tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({"image_hw": list(HW)}))       # the model card's size
    out = tmp_path / "match.json"
    assert match.main(["--weights", str(tmp_path / "m.safetensors"), "--clips", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["image_hw"] == list(HW) and [r["kind"] for r in result["rows"]] == list(KIND_WEIGHTS)
    assert all(0.0 <= r["top1"] <= 1.0 and r["pairs"] == 3 for r in result["rows"])
