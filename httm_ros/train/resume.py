"""Resumable training state: one torch file, split into parts of at most PART_BYTES.

The state holds only tensors and plain Python values, so it loads with ``weights_only=True``.
Files leaving the GPU machine are limited to 16 MiB each, so a larger state is written as
``resume-00.pt``, ``resume-01.pt``, ... (byte slices of one torch file, joined on load).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import List, Union

import torch

PART_BYTES = 15 * 2 ** 20
_PART = re.compile(r"resume-(\d{2})\.pt$")


def _old_files(folder: Path) -> List[Path]:
    return [p for p in folder.glob("resume*.pt") if p.name == "resume.pt" or _PART.match(p.name)]


def save_resume(state: dict, folder: Union[str, Path], part_bytes: int = PART_BYTES) -> List[Path]:
    """Write ``state`` as resume.pt, or as resume-NN.pt parts if larger than ``part_bytes``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    chunks = [data] if len(data) <= part_bytes else [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)]
    names = ["resume.pt"] if len(chunks) == 1 else [f"resume-{i:02d}.pt" for i in range(len(chunks))]
    tmp = [folder / (n + ".tmp") for n in names]
    for path, chunk in zip(tmp, chunks):
        path.write_bytes(chunk)
    for old in _old_files(folder):
        old.unlink()
    out = []
    for path, name in zip(tmp, names):
        out.append(path.rename(folder / name))
    return out


def resume_files(path: Union[str, Path]) -> List[Path]:
    """The file(s) of a saved state: ``path`` is resume.pt, any part, or the folder holding them."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and not _PART.match(path.name):
        return [path]
    if path.is_dir() and (folder / "resume.pt").is_file():
        return [folder / "resume.pt"]
    parts = sorted((p for p in folder.glob("resume-*.pt") if _PART.match(p.name)), key=lambda p: p.name)
    if not parts:
        raise FileNotFoundError(f"{path}: no resume.pt or resume-NN.pt parts")
    numbers = [int(_PART.match(p.name).group(1)) for p in parts]
    if numbers != list(range(len(parts))):
        raise ValueError(f"{folder}: resume parts are not numbered 00..{len(parts) - 1}: {[p.name for p in parts]}")
    return parts


def load_resume(path: Union[str, Path]) -> dict:
    """Join the parts and load the state (weights_only, on CPU); clear errors for bad files."""
    files = resume_files(path)
    data = b"".join(p.read_bytes() for p in files)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{files[0].parent}: cannot load the resume state from {len(files)} file(s) "
                         f"({type(exc).__name__}: {exc}); a part may be missing or truncated") from exc
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise ValueError(f"{files[0]}: not an httm-train resume state")
    return state
