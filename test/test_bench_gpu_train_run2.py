"""bench/gpu_train_run2.sh, the script that runs httm-train chains across device calls: two chains
side by side (RUNS), STAGE=start then STAGE=finish, each chain's outputs in one tar per stage and
stage B's resume parts beside them, a chain started from those parts (RESUME) and one started from
a trained checkpoint's weights (INIT). Tiny network on
the CPU, a few seconds per stage."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
TINY = ("--device cpu --config tiny --seed 0 --batch-frames 8 --steps 6 --warmup 1 --pool-size 2 "
        "--clip-frames 8 --curriculum-frames 2 --heldout 1 --workers 0")


def _run(tmp_path: Path, out: Path, stage: str, **env) -> str:
    full = {**os.environ, "HTTM_GIT_COMMIT": "0" * 40, "OUT": str(out), "STAGE": stage, "ROOT": str(tmp_path / "chains"),
            "A_S": "3", "B_S": "3", "WAIT_S": "240", "TRAIN_OPTS": TINY,
            "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
    done = subprocess.run(["bash", str(ROOT / "bench/gpu_train_run2.sh")], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_two_chains_start_finish_and_resume(tmp_path):
    runs = {"RUNS": "plain=--layerscale-init 1.0|base=--layerscale-init 1.0 --camera-base-pose"}
    first, second = tmp_path / "call1", tmp_path / "call2"
    log = _run(tmp_path, first, "start", **runs)
    assert "=== plain" in log and "=== base" in log and log.count("stage exit status: 0") == 2
    log = _run(tmp_path, second, "finish", **runs)
    assert log.count("stage exit status: 0") == 2
    for name in ("plain", "base"):
        for call, stage in ((first, "a"), (second, "b")):
            with tarfile.open(call / f"{name}_{stage}.tar") as tar:
                names = set(tar.getnames())
                card = json.load(tar.extractfile(f"{stage}/httm-vggt-synth.json"))
            assert {f"{stage}.log", f"{stage}/httm-vggt-synth.safetensors", f"{stage}/train_log.json"} <= names
            assert card["config"]["layerscale_init"] == 1.0
            assert card["config"]["camera_base_pose"] is (name == "base")     # each chain got its options
        assert sorted(second.glob(f"{name}_resume*.pt"))                     # stage B can go on later
    assert len(list(first.iterdir())) <= 8 and len(list(second.iterdir())) <= 8   # a device call returns 8
    resume = tmp_path / "resume"
    resume.mkdir()
    for part in second.glob("base_resume*.pt"):
        (resume / part.name.replace("base_", "")).write_bytes(part.read_bytes())
    _run(tmp_path, tmp_path / "call3", "start", RESUME=str(resume), EXTRA="--camera-base-pose")
    assert "resumed from" in (tmp_path / "chains" / "a.log").read_text()
    with tarfile.open(second / "plain_b.tar") as tar:
        tar.extract("b/httm-vggt-synth.safetensors", tmp_path / "trained")
    _run(tmp_path, tmp_path / "call4", "start", INIT=str(tmp_path / "trained/b/httm-vggt-synth.safetensors"))
    assert "initialised from" in (tmp_path / "chains" / "a.log").read_text()
