"""Readers of RGB-D sequences with ground-truth poses: 7-Scenes, Neural RGB-D, TUM RGB-D, folders.

Every reader returns a :class:`DatasetIndex` (file lists, poses and intrinsics; no pixels read
yet). ``index.select(stride)`` picks keyframes and ``index.load(ids)`` reads them into a
:class:`httm_ros.synthetic.Sequence` (RGB uint8, depth float32 metres, intrinsics, camera-to-world
float64 in OpenCV axes: x right, y down, z forward). Layouts (see docs/EVALUATION.md):

7scenes   one sequence folder ``seq-XX/``: ``frame-NNNNNN.color.png``, ``frame-NNNNNN.depth.png``
          (uint16 mm, 0 and 65535 invalid), ``frame-NNNNNN.pose.txt`` (4x4 camera-to-world).
          Intrinsics are not in the data: fx = fy = 585, cx = 320, cy = 240 at 640x480 (the
          values the 7-Scenes authors give), scaled to the actual image size. 30 fps stamps.
nrgbd     Neural RGB-D scene folder: ``images/img{i}.png``, ``depth/depth{i}.png`` (uint16 mm),
          ``poses.txt`` (4 lines per frame: 4x4 camera-to-world in OpenGL axes, converted here by
          negating the camera y and z axes; frames whose pose holds "nan" are dropped),
          ``focal.txt`` (fx = fy; principal point at the image centre), optional ``gt_mesh.ply``.
tum       TUM RGB-D folder: ``rgb.txt`` / ``depth.txt`` (stamp path), ``groundtruth.txt``
          (stamp tx ty tz qx qy qz qw); depth uint16 / 5000. Each RGB frame takes the nearest
          depth and ground-truth stamps (dropped if either is more than ``max_dt`` = 0.02 s away).
          Intrinsics: the freiburg1/2/3 values of the dataset page, chosen by the folder name,
          else the ROS default 525/525/319.5/239.5 (pass ``intrinsics`` to override).
folder    what :meth:`httm_ros.synthetic.Sequence.save` writes: ``images/`` (sorted by name),
          ``poses.txt`` (TUM lines, camera-to-world OpenCV axes, one per image in order),
          ``intrinsics.txt`` (``t fx fy cx cy [w h]``, one line per image or one for all),
          optional ``depth/`` (uint16 mm, same names order) and optional ``gt.ply`` (cloud or mesh).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence as Seq, Tuple, Union

import numpy as np
from PIL import Image

from ..io.images import list_images
from ..io.tum import load_tum, poses_from_tum
from ..synthetic import Sequence

LOG = logging.getLogger("httm_ros.eval")
PathLike = Union[str, Path]
LAYOUTS = ("7scenes", "nrgbd", "tum", "folder")

SEVEN_SCENES_K = (585.0, 585.0, 320.0, 240.0, 640, 480)            # fx fy cx cy width height
TUM_K = {"freiburg1": (517.3, 516.5, 318.6, 255.3), "freiburg2": (520.9, 521.0, 325.1, 249.7),
         "freiburg3": (535.4, 539.2, 320.1, 247.6)}
TUM_DEFAULT_K = (525.0, 525.0, 319.5, 239.5)
GT_FILES = ("gt.ply", "gt_mesh.ply", "gt_mesh_culled.ply")


class DatasetError(ValueError):
    """A dataset folder that does not match the layout it was read as (message says what is missing)."""


@dataclass
class DatasetIndex:
    """Frames of one sequence: paths, ground-truth poses and intrinsics (no pixels read).

    rgb [N] paths; depth [N] paths or None (no ground-truth depth); cam_to_world float64 [N,4,4]
    (OpenCV axes); intrinsics float64 [N,3,3] at the native image size, or None if unknown;
    timestamps float64 [N] (s); depth_scale: raw depth units per metre; depth_invalid: raw values
    that mean "no depth" besides 0; gt_file: ground-truth mesh / cloud (PLY) or None.
    """

    name: str
    layout: str
    root: Path
    rgb: List[Path]
    depth: Optional[List[Path]]
    cam_to_world: np.ndarray
    intrinsics: Optional[np.ndarray]
    timestamps: np.ndarray
    depth_scale: float = 1000.0
    depth_invalid: Tuple[int, ...] = ()
    gt_file: Optional[Path] = None
    notes: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rgb)

    def select(self, stride: int = 1, start: int = 0, max_frames: Optional[int] = None) -> np.ndarray:
        """Keyframe indices start, start+stride, ... (at most max_frames) -> int64 [K]."""
        if stride < 1 or start < 0:
            raise ValueError(f"stride must be >= 1 and start >= 0, got {stride}, {start}")
        ids = np.arange(start, len(self), stride, dtype=np.int64)
        return ids[:max_frames] if max_frames else ids

    def load(self, ids: Optional[Seq[int]] = None, max_depth: float = math.inf,
             depth_scale: Optional[float] = None) -> Sequence:
        """Read frames ``ids`` (default all) -> Sequence (depth zeros where invalid or > max_depth).

        Sequence.info holds the layout, the name and the dataset indices of the frames ("frames").
        """
        ids = np.arange(len(self)) if ids is None else np.asarray(list(ids), dtype=np.int64)
        if len(ids) == 0:
            raise DatasetError(f"{self.root}: no frames selected")
        images = np.stack([_read_rgb(self.rgb[i]) for i in ids])
        h, w = images.shape[1:3]
        depth = np.zeros((len(ids), h, w), dtype=np.float32)
        if self.depth is not None:
            for k, i in enumerate(ids):
                depth[k] = self._read_depth(self.depth[i], (h, w), max_depth, depth_scale or self.depth_scale)
        if self.intrinsics is None:
            if self.depth is not None:
                raise DatasetError(f"{self.root}: ground-truth depth but no intrinsics (add intrinsics.txt "
                                   "or pass --intrinsics fx,fy,cx,cy)")
            K = np.tile(np.eye(3, dtype=np.float32), (len(ids), 1, 1))
        else:
            K = self.intrinsics[ids].astype(np.float32)
        info = {"layout": self.layout, "name": self.name, "frames": ids.tolist(), "root": str(self.root)}
        return Sequence(images, depth, K, self.cam_to_world[ids].copy(), self.timestamps[ids].copy(), None, info)

    def _read_depth(self, path: Path, hw: Tuple[int, int], max_depth: float, scale: float) -> np.ndarray:
        with Image.open(path) as im:
            raw = np.asarray(im).astype(np.float64)
        if raw.shape != hw:
            raise DatasetError(f"{path}: depth is {raw.shape[1]}x{raw.shape[0]} but its image is {hw[1]}x{hw[0]}")
        bad = ~np.isfinite(raw) | (raw <= 0)
        for v in self.depth_invalid:
            bad |= raw == v
        d = raw / scale
        bad |= d > max_depth
        d[bad] = 0.0
        return d.astype(np.float32)

    def with_intrinsics(self, fx: float, fy: float, cx: float, cy: float) -> "DatasetIndex":
        """The same index with one pinhole camera for every frame (native pixels)."""
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
        self.intrinsics = np.repeat(K[None], len(self), 0)
        self.notes.append(f"intrinsics overridden: fx={fx} fy={fy} cx={cx} cy={cy}")
        return self


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _image_size(path: Path) -> Tuple[int, int]:
    """(width, height) from the header only."""
    with Image.open(path) as im:
        return im.size


def _pinhole(fx: float, fy: float, cx: float, cy: float, n: int) -> np.ndarray:
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    return np.repeat(K[None], n, 0)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{path.parent}: missing {path.name} ({what})")
    return path


def _numeric_key(path: Path) -> Tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def _finite_poses(poses: np.ndarray) -> np.ndarray:
    """Mask [N] of poses without nan/inf."""
    return np.isfinite(poses).all(axis=(1, 2))


# ---------------------------------------------------------------------------- 7-Scenes
def read_7scenes(root: PathLike) -> DatasetIndex:
    """One 7-Scenes sequence folder (``seq-XX``); see the module docstring."""
    root = Path(root)
    colors = sorted(root.glob("frame-*.color.*"))
    if not colors:
        seqs = sorted(p.name for p in root.glob("seq-*") if p.is_dir())
        hint = f"; pass one sequence folder, e.g. {root / seqs[0]} (found {', '.join(seqs)})" if seqs else ""
        raise DatasetError(f"{root}: no frame-NNNNNN.color.png files (7-Scenes layout){hint}")
    stems = [p.name.split(".")[0] for p in colors]
    depth = [_require(root / f"{s}.depth.png", "7-Scenes depth") for s in stems]
    poses = np.stack([np.loadtxt(_require(root / f"{s}.pose.txt", "7-Scenes pose")).reshape(4, 4) for s in stems])
    fx, fy, cx, cy, w0, h0 = SEVEN_SCENES_K
    w, h = _image_size(colors[0])
    sx, sy = w / w0, h / h0
    K = _pinhole(fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5, len(stems))
    stamps = np.array([int(re.sub(r"\D", "", s) or 0) for s in stems], dtype=np.float64) / 30.0
    index = DatasetIndex(f"7scenes/{root.parent.name}/{root.name}", "7scenes", root, colors, depth, poses, K,
                         stamps, depth_scale=1000.0, depth_invalid=(65535,))
    if (w, h) != (w0, h0):
        index.notes.append(f"images are {w}x{h}: the 640x480 intrinsics were scaled")
    return _drop_invalid(index)


# ---------------------------------------------------------------------------- Neural RGB-D
def read_nrgbd(root: PathLike) -> DatasetIndex:
    """A Neural RGB-D scene folder; see the module docstring."""
    root = Path(root)
    images = sorted((root / "images").glob("img*.png"), key=_numeric_key)
    if not images:
        raise DatasetError(f"{root}: no images/img{{i}}.png (Neural RGB-D layout)")
    numbers = [int(re.sub(r"\D", "", p.stem)) for p in images]
    text = _require(root / "poses.txt", "Neural RGB-D poses").read_text()
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(rows) % 4:
        raise DatasetError(f"{root / 'poses.txt'}: {len(rows)} lines, not 4 per frame")
    all_poses = np.array([[float(v) for v in r] for r in rows], dtype=np.float64).reshape(-1, 4, 4)
    if max(numbers) >= len(all_poses):
        raise DatasetError(f"{root}: image img{max(numbers)}.png but only {len(all_poses)} poses in poses.txt")
    poses = all_poses[numbers]
    poses[:, :3, 1:3] *= -1.0                       # OpenGL (y up, z backward) -> OpenCV camera axes
    focal = float(_require(root / "focal.txt", "Neural RGB-D focal length").read_text().split()[0])
    w, h = _image_size(images[0])
    depth = [root / "depth" / f"depth{i}.png" for i in numbers]
    has_depth = (root / "depth").is_dir()
    if has_depth:
        for p in depth:
            _require(p, "Neural RGB-D depth")
    gt = next((root / n for n in GT_FILES if (root / n).exists()), None)
    index = DatasetIndex(f"nrgbd/{root.name}", "nrgbd", root, images, depth if has_depth else None, poses,
                         _pinhole(focal, focal, w / 2.0, h / 2.0, len(images)), np.array(numbers, float) / 30.0,
                         depth_scale=1000.0, gt_file=gt)
    return _drop_invalid(index)


# ---------------------------------------------------------------------------- TUM RGB-D
def _read_list(path: Path) -> Tuple[np.ndarray, List[str]]:
    """TUM ``stamp value...`` lines -> (stamps [N], rest of each line)."""
    stamps, rest = [], []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            parts = line.split()
            stamps.append(float(parts[0]))
            rest.append(" ".join(parts[1:]))
    return np.array(stamps, dtype=np.float64), rest


def associate(query: np.ndarray, reference: np.ndarray, max_dt: float) -> np.ndarray:
    """Index of the nearest reference stamp for every query stamp (-1 if > max_dt away) -> [N]."""
    if len(reference) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    order = np.argsort(reference)
    ref = reference[order]
    pos = np.clip(np.searchsorted(ref, query), 1, max(len(ref) - 1, 1))
    left, right = ref[pos - 1], ref[np.minimum(pos, len(ref) - 1)]
    pick = np.where(np.abs(query - left) <= np.abs(right - query), pos - 1, np.minimum(pos, len(ref) - 1))
    out = order[pick]
    out[np.abs(reference[out] - query) > max_dt] = -1
    return out.astype(np.int64)


def read_tum(root: PathLike, max_dt: float = 0.02) -> DatasetIndex:
    """A TUM RGB-D folder; see the module docstring."""
    root = Path(root)
    t_rgb, rgb = _read_list(_require(root / "rgb.txt", "TUM RGB list"))
    t_gt, gt_rows = _read_list(_require(root / "groundtruth.txt", "TUM ground truth"))
    has_depth = (root / "depth.txt").exists()
    t_d, dep = _read_list(root / "depth.txt") if has_depth else (np.zeros(0), [])
    i_gt = associate(t_rgb, t_gt, max_dt)
    i_d = associate(t_rgb, t_d, max_dt) if has_depth else np.zeros(len(t_rgb), dtype=np.int64)
    keep = np.flatnonzero((i_gt >= 0) & (i_d >= 0))
    if len(keep) == 0:
        raise DatasetError(f"{root}: no RGB frame has ground truth{' and depth' if has_depth else ''} "
                           f"within {max_dt} s")
    vals = np.array([[float(v) for v in gt_rows[i].split()] for i in i_gt[keep]], dtype=np.float64)
    poses = poses_from_tum(vals[:, :7])
    key = next((k for k in TUM_K if k in root.name), None)
    fx, fy, cx, cy = TUM_K[key] if key else TUM_DEFAULT_K
    index = DatasetIndex(f"tum/{root.name}", "tum", root, [root / rgb[i] for i in keep],
                         [root / dep[i_d[i]] for i in keep] if has_depth else None, poses,
                         _pinhole(fx, fy, cx, cy, len(keep)), t_rgb[keep], depth_scale=5000.0)
    index.notes.append(f"intrinsics: {key or 'ROS default (no freiburg1/2/3 in the folder name)'}")
    if len(keep) < len(t_rgb):
        index.notes.append(f"{len(t_rgb) - len(keep)} RGB frames without ground truth/depth within {max_dt} s dropped")
    return index


# ---------------------------------------------------------------------------- generic folder
def read_folder(root: PathLike) -> DatasetIndex:
    """The layout :meth:`httm_ros.synthetic.Sequence.save` writes (+ optional gt.ply)."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: no images/ folder (generic folder layout)")
    images = list_images(root / "images")
    stamps, poses = load_tum(_require(root / "poses.txt", "TUM poses, one line per image"))
    if len(poses) != len(images):
        raise DatasetError(f"{root}: {len(images)} images but {len(poses)} poses in poses.txt")
    K = _folder_intrinsics(root / "intrinsics.txt", len(images))
    depth = None
    if (root / "depth").is_dir():
        depth = list_images(root / "depth")
        if len(depth) != len(images):
            raise DatasetError(f"{root}: {len(images)} images but {len(depth)} depth maps")
    gt = root / "gt.ply" if (root / "gt.ply").exists() else None
    index = DatasetIndex(f"folder/{root.name}", "folder", root, images, depth, poses, K, stamps,
                         depth_scale=1000.0, gt_file=gt)
    if depth is None and gt is None:
        index.notes.append("no depth/ and no gt.ply: only camera metrics (ATE/RPE) can be computed")
    return _drop_invalid(index)


def _folder_intrinsics(path: Path, n: int) -> Optional[np.ndarray]:
    if not path.exists():
        return None
    rows = np.loadtxt(path, comments="#", ndmin=2)
    if len(rows) not in (1, n) or rows.shape[1] < 5:
        raise DatasetError(f"{path}: expected 1 or {n} lines of 't fx fy cx cy [w h]', got {rows.shape}")
    K = np.tile(np.eye(3), (len(rows), 1, 1))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    return np.repeat(K, n, 0) if len(rows) == 1 else K


def _drop_invalid(index: DatasetIndex) -> DatasetIndex:
    """Remove frames whose ground-truth pose is not finite."""
    ok = _finite_poses(index.cam_to_world)
    if ok.all():
        return index
    keep = np.flatnonzero(ok)
    index.notes.append(f"{len(ok) - len(keep)} frames with non-finite ground-truth poses dropped")
    index.rgb = [index.rgb[i] for i in keep]
    index.depth = None if index.depth is None else [index.depth[i] for i in keep]
    index.cam_to_world = index.cam_to_world[keep]
    index.intrinsics = None if index.intrinsics is None else index.intrinsics[keep]
    index.timestamps = index.timestamps[keep]
    if not len(keep):
        raise DatasetError(f"{index.root}: no frame has a finite ground-truth pose")
    return index


# ---------------------------------------------------------------------------- dispatch
READERS = {"7scenes": read_7scenes, "nrgbd": read_nrgbd, "tum": read_tum, "folder": read_folder}


def detect_layout(root: PathLike) -> str:
    """Which of :data:`LAYOUTS` the folder looks like (DatasetError if none)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    if (root / "rgb.txt").exists() and (root / "groundtruth.txt").exists():
        return "tum"
    if (root / "focal.txt").exists() and any((root / "images").glob("img*.png")):
        return "nrgbd"
    if any(root.glob("frame-*.color.*")):
        return "7scenes"
    if (root / "images").is_dir() and (root / "poses.txt").exists():
        return "folder"
    if any(p.is_dir() for p in root.glob("seq-*")):
        return "7scenes"                      # read_7scenes explains that one sequence is needed
    raise DatasetError(f"{root}: not a 7-Scenes sequence (frame-*.color.png), Neural RGB-D scene (images/img*.png + "
                       "focal.txt), TUM RGB-D folder (rgb.txt + groundtruth.txt) or generic folder (images/ + "
                       "poses.txt); see docs/EVALUATION.md")


def open_dataset(root: PathLike, layout: str = "auto") -> DatasetIndex:
    """Read the index of the sequence at ``root`` (layout "auto" detects it)."""
    layout = detect_layout(root) if layout == "auto" else layout
    if layout not in READERS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    index = READERS[layout](root)
    for note in index.notes:
        LOG.info("%s: %s", index.name, note)
    return index
