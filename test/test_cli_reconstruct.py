"""httm-reconstruct end to end on a tiny network (the full-size path differs only in the config)."""

import json

import numpy as np
import pytest

from httm_ros.io.ply import load_ply
from httm_ros.io.tum import load_tum
from httm_ros.synthetic import demo_sequence
from httm_ros.tools.reconstruct import main


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    code = main(["--config", "tiny", "--allow-test-weights", "--size", "126", "--out", str(out), *extra])
    return code, out


@pytest.mark.parametrize("merge", ["none", "uniform", "httm"])
def test_demo_sequence_writes_three_outputs(tmp_path, merge):
    code, out = _run(tmp_path, "--frames", "4", "--merge", merge)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 4 and report["model_input_hw"] == [98, 126]
    assert report["merge"] == merge and "model_s" in report["timings_s"]
    assert "meaningless" in report["weights"]
    xyz, rgb = load_ply(out / "points.ply")
    assert xyz.shape[1] == 3 and rgb.shape == xyz.shape and report["points"] == len(xyz) > 0
    stamps, poses = load_tum(out / "trajectory.tum")
    assert len(stamps) == 4 and poses.shape == (4, 4, 4)
    rot = poses[:, :3, :3]                                           # rigid camera-to-world poses
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-4)
    if merge != "none":
        assert 0 < report["merge_stats"]["kept_q"] < 1


def test_image_folder_input_with_stride(tmp_path):
    folder = demo_sequence(num_frames=6, width=140, height=112, seed=1).save(tmp_path / "seq")
    code, out = _run(tmp_path, str(folder / "images"), "--stride", "2", "--frames", "10")
    assert code == 0
    assert json.loads((out / "report.json").read_text())["frames"] == 3


def test_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    code = main(["--config", "tiny", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no checkpoint given" in err and "VGGT-1B" in err
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_is_reported(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["--config", "tiny", "--weights", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--size", "100"], ["--frames", "0"], ["--conf-percentile", "100"],
                                 ["/nonexistent/folder"]])
def test_bad_arguments_exit_with_usage_error(tmp_path, bad):
    with pytest.raises(SystemExit) as exc:
        main(["--config", "tiny", "--allow-test-weights", "--out", str(tmp_path), *bad])
    assert exc.value.code == 2
