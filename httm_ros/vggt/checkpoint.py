"""Loading the official VGGT checkpoint (``model.safetensors`` or ``model.pt``) into our model.

Never runs arbitrary pickle: ``.pt`` files go through ``torch.load(weights_only=True)``.
Every problem (missing/unexpected tensor, wrong shape, corrupt or foreign file) raises
``CheckpointError`` naming the file and the offending keys *before* the model is touched.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

import torch
from torch import nn

LOG = logging.getLogger("httm_ros.vggt")

SKIPPED_PREFIXES = ("track_head.",)   # in the official checkpoint, but not built here
_SHOW = 5                             # offending keys named per category


class CheckpointError(ValueError):
    """A file that cannot be loaded as VGGT weights into the given model."""


# ------------------------------------------------------------------------ reading


def _sniff(path: Path) -> str:
    """'safetensors', 'torch' (zip or legacy pickle) or 'unknown', from the first bytes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= size - 8:
            return "safetensors"
        raise CheckpointError(f"{path}: truncated safetensors file (header of {header_len} bytes, file {size})")
    if head[:1] == b"\x80":
        return "torch"
    return "unknown"


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


class _SafetensorsFile:
    """Lazy view of a .safetensors file: shapes from the header, tensors read one by one."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.path = path
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            self.meta = {k: self._meta_tensor(k) for k in self._file.keys()}
        except CheckpointError:
            raise
        except Exception as exc:  # SafetensorError, OSError, ...
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc

    def _meta_tensor(self, key: str) -> torch.Tensor:
        sl = self._file.get_slice(key)
        dtype = _SAFETENSORS_DTYPES.get(sl.get_dtype())
        if dtype is None:
            raise CheckpointError(f"{self.path}: tensor {key} has unsupported dtype {sl.get_dtype()}")
        return torch.empty(sl.get_shape(), dtype=dtype, device="meta")

    def metadata(self) -> Dict[str, str]:
        """The file's ``__metadata__`` strings ({} when absent)."""
        return dict(self._file.metadata() or {})

    def get(self, key: str) -> torch.Tensor:
        try:
            return self._file.get_tensor(key)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: cannot read tensor {key} ({exc})") from exc


class _InMemory:
    def __init__(self, tensors: Dict[str, torch.Tensor]) -> None:
        self._tensors = tensors
        self.meta = tensors

    def get(self, key: str) -> torch.Tensor:
        return self._tensors[key]


def _read_torch(path: Path) -> Dict[str, torch.Tensor]:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / refused pickles
        raise CheckpointError(f"{path}: unreadable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    return _unwrap(obj, path)


def _unwrap(obj, path: Path) -> Dict[str, torch.Tensor]:
    """A plain state dict, or one wrapped under "model"/"state_dict" (tensors only)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path)
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not named tensors: {bad[:_SHOW]}")
    return dict(obj)


def _open(path: Path):
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = _sniff(path)
    if kind == "safetensors":
        return _SafetensorsFile(path)
    if kind == "torch":
        return _InMemory(_read_torch(path))
    raise CheckpointError(f"{path}: not a checkpoint (neither safetensors nor a torch save file)")


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, on CPU (no key checks)."""
    source = _open(Path(path))
    return {k: source.get(k) for k in source.meta}


# ----------------------------------------------------------------------- checking


def _kept_names(names: Iterable[str], prefixes: Tuple[str, ...]) -> Tuple[list, int]:
    names = list(names)
    kept = [k for k in names if not k.startswith(prefixes)]
    return kept, len(names) - len(kept)


def _problems(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> list:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(got[k].shape)}"
              for k in expected if k in got and got[k].shape != expected[k].shape]
    dtypes = [f"{k}: {got[k].dtype}" for k in expected if k in got and not got[k].is_floating_point()]
    out = []
    if missing and len(missing) == len(expected):
        out.append(f"not a VGGT checkpoint for this model: none of its {len(expected)} tensors present")
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape", shapes), ("non-float", dtypes)):
        if items:
            out.append(f"{len(items)} {label} (first: {items[:_SHOW]})")
    return out


def check_state_dict(model: nn.Module, tensors: Mapping[str, torch.Tensor], path="<state dict>") -> None:
    """Raise CheckpointError unless ``tensors`` has exactly the model's names and shapes."""
    problems = _problems(model.state_dict(), tensors)
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))


# ------------------------------------------------------------------------ loading


def load_checkpoint(model: nn.Module, path: Union[str, Path],
                    skip_prefixes: Tuple[str, ...] = SKIPPED_PREFIXES) -> nn.Module:
    """Load a VGGT checkpoint into ``model`` (in place; returns it).

    ``track_head.*`` tensors are dropped with one log line. A model built on the meta device
    receives the file's tensors directly (``assign``), otherwise they are copied into its
    parameters (converted to the parameter dtype/device).
    """
    path = Path(path)
    source = _open(path)
    kept, skipped = _kept_names(source.meta, tuple(skip_prefixes))
    if skipped:
        LOG.info("%s: skipped %d tensors of %s (not built)", path, skipped, ", ".join(skip_prefixes))
    check_state_dict(model, {k: source.meta[k] for k in kept}, path)
    expected = model.state_dict()
    if any(t.is_meta for t in expected.values()):
        model.load_state_dict({k: source.get(k).to(expected[k].dtype) for k in expected},
                              strict=True, assign=True)
    else:
        with torch.no_grad():
            for name, target in expected.items():
                target.copy_(source.get(name))
    return model


# ------------------------------------------------- config in the file, model card beside it

CONFIG_METADATA_KEY = "httm_vggt_config"   # safetensors __metadata__ entry: VGGTConfig as JSON


def save_checkpoint(model: nn.Module, path: Union[str, Path], dtype: torch.dtype = torch.float16,
                    metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``model``'s tensors as a safetensors file in ``dtype``, its config in ``__metadata__``.

    ``VGGT.from_checkpoint(path)`` then rebuilds the same network without a config argument.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    config = getattr(model, "config", None)
    if config is not None:
        meta[CONFIG_METADATA_KEY] = json.dumps(config.to_dict(), sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def checkpoint_config(path: Union[str, Path]):
    """The VGGTConfig stored in a safetensors file's metadata, or None (none stored / .pt file)."""
    from .config import VGGTConfig

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if _sniff(path) != "safetensors":
        return None
    meta = _SafetensorsFile(path).metadata()
    if CONFIG_METADATA_KEY not in meta:
        return None
    try:
        return VGGTConfig.from_dict(json.loads(meta[CONFIG_METADATA_KEY]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid model config in its metadata ({exc})") from exc


def model_card_path(weights: Union[str, Path]) -> Path:
    """The model card beside a checkpoint: ``<name>.json`` for ``<name>.safetensors``."""
    return Path(weights).with_suffix(".json")


def read_model_card(weights: Union[str, Path]) -> Optional[dict]:
    """The model card of a checkpoint as a dict, or None when there is none."""
    card = model_card_path(weights)
    if not card.is_file():
        return None
    try:
        data = json.loads(card.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{card}: model card is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{card}: model card must be a JSON object")
    return data


def checkpoint_stream_profile(weights: Union[str, Path]) -> Optional[dict]:
    """The model card's ``stream_profile`` (the streaming checks calibrated to this network, for
    :func:`httm_ros.pipeline.stream_config.apply_profile`); None without a card or a profile."""
    card = read_model_card(weights)
    if card is None or "stream_profile" not in card:
        return None
    profile = card["stream_profile"]
    if not isinstance(profile, dict):
        raise CheckpointError(f"{model_card_path(weights)}: stream_profile must be an object, got {profile!r}")
    return {k: v for k, v in profile.items() if not k.startswith("_")}


def checkpoint_image_hw(weights: Union[str, Path]) -> Optional[Tuple[int, int]]:
    """(H, W) the checkpoint was trained at, from its model card's ``image_hw``; None if unknown."""
    card = read_model_card(weights)
    if card is None or "image_hw" not in card:
        return None
    hw = card["image_hw"]
    if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)):
        raise CheckpointError(f"{model_card_path(weights)}: image_hw must be [H, W] positive ints, got {hw!r}")
    return int(hw[0]), int(hw[1])
