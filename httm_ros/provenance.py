"""Where a result came from: commit, source hash, versions, device, command (every benchmark and
evaluation JSON of the package records these through this module)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """$HTTM_GIT_COMMIT when set (a copied tree may carry a stale .git: the GPU machine's did),
    else HEAD (+ "+dirty" when httm_ros/ differs from it), else "unknown"."""
    given = os.environ.get("HTTM_GIT_COMMIT")
    if given:
        return given
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "httm_ros"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_hash() -> str:
    """sha256 (16 hex) over httm_ros/**/*.py: identifies the code where git is absent."""
    h = hashlib.sha256()
    for path in sorted((REPO / "httm_ros").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def file_sha256(path) -> str:
    """sha256 (hex) of one file's bytes: which weights a result was measured with."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> Dict[str, Optional[str]]:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"python": platform.python_version(), "torch": torch.__version__, "triton": triton_version,
            "cuda": torch.version.cuda, "cudnn": str(torch.backends.cudnn.version())}


def device_name(device: torch.device) -> str:
    """GPU name with memory and SM count, or the CPU architecture and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB, {props.multi_processor_count} SMs)"
    return f"CPU {cpu_model()} ({platform.machine()}, {torch.get_num_threads()} torch threads)"


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device, argv: Optional[List[str]] = None,
                program: str = "python -m httm_ros.bench") -> Dict:
    args = sys.argv[1:] if argv is None else argv
    return {
        "commit": git_commit(), "source_sha256": source_hash(), "device": device_name(device),
        **versions(), "command": " ".join([program, *args]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, data: Dict) -> None:
    """Atomic write (a timeout never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
