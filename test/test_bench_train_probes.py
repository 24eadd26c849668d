"""bench/train_probes.py: the probe pairs say what they claim (issue 15's learnability probes)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train_probes", ROOT / "bench/train_probes.py")
probes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probes)


@pytest.mark.parametrize("task", ["texture_shift", "texture_sign"])
def test_texture_pairs_are_the_first_crop_moved_by_the_target(task):
    wide = torch.rand(6, 3, probes.H, probes.W + 2 * probes.SHIFT)        # [B,3,H,W+2S]
    images, target, matches = probes.make_pair(task, wide, np.random.default_rng(7))
    assert images.shape == (6, 2, 3, probes.H, probes.W)
    if task == "texture_sign":
        assert set(target.abs().tolist()) == {28.0}
    for i, k in enumerate(target.long().tolist()):
        assert torch.equal(images[i, 0], wide[i, :, :, probes.SHIFT:probes.SHIFT + probes.W])
        assert torch.equal(images[i, 1], wide[i, :, :, probes.SHIFT + k:probes.SHIFT + k + probes.W])
        # frame 1's patch (r, c) sees frame 0's patch (r, c + k / 14) (centre column), where it exists
        w = probes.W // 14
        for c in range(w):
            col = c * 14 + 7 + k
            want = -1 if not 0 <= col < probes.W else col // 14
            got = matches[i, 1, c]                                              # row 0
            assert int(got) == want
        assert torch.equal(matches[i, 0], torch.arange(matches.shape[2]))


def test_plain_vit_control_trains_on_the_cpu():
    torch.manual_seed(0)
    res = probes.run_task("brightness", steps=3, lr=1e-3, batch=2, seed=0, log=lambda m: None,
                          model_name="plain-vit")
    assert res["steps"] == 3 and res["model"] == "plain-vit" and np.isfinite(res["final_error"])


def test_match_weight_needs_a_texture_task_and_the_synth_model():
    with pytest.raises(ValueError, match="correspondences"):
        probes.run_task("brightness", 1, 1e-3, 2, 0, print, match_weight=1.0)
    with pytest.raises(ValueError, match="correspondences"):
        probes.run_task("texture_sign", 1, 1e-3, 2, 0, print, match_weight=1.0, model_name="plain-vit")


@pytest.mark.parametrize("readout,layerscale", [("linear", 1.0), ("camera-entry", None), ("camera-frame1", 1.0)])
def test_synth_ablations_train_and_say_what_they_ran(readout, layerscale):
    """--readout / --layerscale-init: the synth VGGT trains through the chosen read-out and loss."""
    res = probes.run_task("texture_sign", steps=2, lr=1e-3, batch=2, seed=0, log=lambda m: None,
                          readout=readout, layerscale_init=layerscale)
    assert res["steps"] == 2 and res["readout"] == readout and res["layerscale_init"] == layerscale
    assert np.isfinite(res["final_error"])


def test_gpu_probes_script_smoke(tmp_path):
    """bench/gpu_probes.sh --smoke: the seven variants run on the CPU, the table names each, and
    their JSON and logs come back in one tar."""
    import os
    import subprocess

    env = {**os.environ, "OUT": str(tmp_path), "PROBE_S": "2", "PYTHON": __import__("sys").executable}
    out = subprocess.run(["bash", str(ROOT / "bench/gpu_probes.sh"), "--smoke"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    names = ("plainvit", "synth_head", "synth_head_ls1", "synth_head_huber", "synth_head_ls1_huber", "synth_entry_ls1",
             "synth_linear_ls1")
    import tarfile
    with tarfile.open(tmp_path / "probes.tar") as tar:           # one file back from a device call
        members = {Path(m).name for m in tar.getnames()}
    summary = (tmp_path / "probes_summary.txt").read_text()
    for name in names:
        assert {f"probe_{name}.json", f"probe_{name}.log"} <= members, name
        assert f"probe_{name}.json" in out.stdout and f"probe_{name}.json" in summary
