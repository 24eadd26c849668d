"""PLY files: binary coloured point clouds written here; point clouds and meshes read.

:func:`save_ply` writes binary little-endian ``float x y z`` (+ ``uchar red green blue``).
The one reader accepts ASCII and binary (little / big endian) PLY with a ``vertex`` element
(x, y, z and optional red, green, blue of any numeric type; other properties ignored) and an
optional ``face`` element whose first list property holds the vertex indices (binary: triangles
only). Two views of it: :func:`load_ply` (coloured cloud: xyz float32, rgb uint8) and
:func:`read_ply` (geometry: vertices float64, triangles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

PathLike = Union[str, Path]


def save_ply(path: PathLike, xyz: np.ndarray, rgb: Optional[np.ndarray] = None) -> Path:
    """Binary little-endian PLY: float x y z (+ uchar red green blue). xyz [N,3], rgb [N,3] uint8."""
    xyz = np.ascontiguousarray(np.asarray(xyz, dtype=np.float32).reshape(-1, 3))
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        rgb = np.asarray(rgb).reshape(-1, 3)
        if rgb.shape[0] != xyz.shape[0]:
            raise ValueError(f"save_ply: {xyz.shape[0]} points but {rgb.shape[0]} colours")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(xyz.shape[0], dtype=fields)
    data["x"], data["y"], data["z"] = xyz.T
    if rgb is not None:
        data["red"], data["green"], data["blue"] = np.clip(rgb, 0, 255).astype(np.uint8).T
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {xyz.shape[0]}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {n}" for n, t in fields] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())
    return path


_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


class PLYError(ValueError):
    """A PLY file this reader cannot use (the message says why)."""


def _parse_header(raw: bytes, path) -> Tuple[str, List[dict], int]:
    """-> (format, elements [{name, count, props: [(name, type) | (name, (count_t, item_t))]}], data offset)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise PLYError(f"{path}: not a PLY file")
    offset = raw.index(b"\n", end) + 1
    fmt, elements = "", []
    for line in raw[:end].decode("ascii", "replace").splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append({"name": tok[1], "count": int(tok[2]), "props": []})
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                elements[-1]["props"].append((tok[4], (_TYPES[tok[2]], _TYPES[tok[3]])))
            else:
                elements[-1]["props"].append((tok[2], _TYPES[tok[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PLYError(f"{path}: unknown PLY format {fmt!r}")
    return fmt, elements, offset


def load_ply(path: PathLike) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Coloured cloud of a PLY -> (xyz float32 [N,3], rgb uint8 [N,3] or None when uncoloured)."""
    vertex, _ = _read(path)
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1).astype(np.float32)
    rgb = None
    if all(c in vertex for c in ("red", "green", "blue")):
        rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1).astype(np.uint8)
    return xyz, rgb


def read_ply(path: PathLike) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Geometry of a PLY -> (vertices float64 [N,3], triangles int64 [F,3] or None)."""
    vertex, faces = _read(path)
    return np.stack([vertex[c].astype(np.float64) for c in "xyz"], 1), faces


def _read(path: PathLike) -> Tuple[Dict[str, np.ndarray], Optional[np.ndarray]]:
    """-> (vertex property name -> values [N], triangles int64 [F,3] or None)."""
    raw = Path(path).read_bytes()
    fmt, elements, offset = _parse_header(raw, path)
    if fmt == "ascii":
        return _read_ascii(raw[offset:].decode("ascii", "replace").split("\n"), elements, path)
    return _read_binary(raw, offset, elements, "<" if fmt == "binary_little_endian" else ">", path)


def _read_ascii(lines: List[str], elements: List[dict], path):
    verts, faces, row = None, None, 0
    lines = [ln for ln in lines if ln.strip()]
    for el in elements:
        block = lines[row:row + el["count"]]
        row += el["count"]
        if el["name"] == "vertex":
            names = [p[0] for p in el["props"]]
            data = np.array([ln.split()[:len(names)] for ln in block], dtype=np.float64).reshape(-1, len(names))
            verts = {name: data[:, k] for k, name in enumerate(names)}
        elif el["name"] == "face" and block:
            tris = [ln.split() for ln in block]
            faces = _triangulate([[int(v) for v in t[1:1 + int(t[0])]] for t in tris])
    if verts is None or any(c not in verts for c in "xyz"):
        raise PLYError(f"{path}: no vertex element with x, y, z")
    return verts, faces


def _read_binary(raw: bytes, offset: int, elements: List[dict], order: str, path):
    verts, faces = None, None
    for el in elements:
        if any(isinstance(t, tuple) for _, t in el["props"]):
            if el["name"] != "face":
                raise PLYError(f"{path}: list property in element {el['name']!r} is not supported")
            dtype, nbytes = _face_dtype(el["props"], order)
            data = np.frombuffer(raw, dtype=dtype, count=el["count"], offset=offset)
            if el["count"] and not (data["count"] == 3).all():
                raise PLYError(f"{path}: binary meshes must be triangles only")
            faces = data["idx"].astype(np.int64)
            offset += nbytes * el["count"]
            continue
        dtype = np.dtype([(n, order + t) for n, t in el["props"]])
        data = np.frombuffer(raw, dtype=dtype, count=el["count"], offset=offset)
        offset += dtype.itemsize * el["count"]
        if el["name"] == "vertex":
            verts = {name: data[name] for name in data.dtype.names}
    if verts is None or any(c not in verts for c in "xyz"):
        raise PLYError(f"{path}: no vertex element with x, y, z")
    return verts, faces


def _face_dtype(props, order: str):
    """Structured dtype of a triangle face record (the list is the first property)."""
    fields = []
    for k, (name, t) in enumerate(props):
        if isinstance(t, tuple):
            if fields:
                raise PLYError("the vertex index list must be the first face property")
            fields += [("count", order + t[0]), ("idx", order + t[1], (3,))]
        else:
            fields.append((name, order + t))
    dtype = np.dtype(fields)
    return dtype, dtype.itemsize


def _triangulate(polys: List[List[int]]) -> np.ndarray:
    """Fan-triangulate polygons -> [F,3]."""
    tris = [(p[0], p[k], p[k + 1]) for p in polys for k in range(1, len(p) - 1)]
    return np.array(tris, dtype=np.int64).reshape(-1, 3)
