"""Ground-truth geometry from PLY files: point clouds as they are, triangle meshes sampled by area.

Reads ASCII and binary (little / big endian) PLY with a ``vertex`` element (x, y, z of any numeric
type, other properties ignored) and an optional ``face`` element whose first list property holds
the vertex indices (binary: triangles only). Writes nothing: clouds are written with
:func:`httm_ros.pipeline.map.save_ply`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

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


def read_ply(path: Union[str, Path]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """-> (vertices float64 [N,3], triangles int64 [F,3] or None)."""
    raw = Path(path).read_bytes()
    fmt, elements, offset = _parse_header(raw, path)
    if fmt == "ascii":
        return _read_ascii(raw[offset:].decode("ascii", "replace").split("\n"), elements, path)
    return _read_binary(raw, offset, elements, "<" if fmt == "binary_little_endian" else ">", path)


def _read_ascii(lines: List[str], elements: List[dict], path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    verts, faces, row = None, None, 0
    lines = [ln for ln in lines if ln.strip()]
    for el in elements:
        block = lines[row:row + el["count"]]
        row += el["count"]
        if el["name"] == "vertex":
            names = [p[0] for p in el["props"]]
            data = np.array([ln.split()[:len(names)] for ln in block], dtype=np.float64).reshape(-1, len(names))
            verts = data[:, [names.index(c) for c in "xyz"]]
        elif el["name"] == "face" and block:
            tris = [ln.split() for ln in block]
            faces = _triangulate([[int(v) for v in t[1:1 + int(t[0])]] for t in tris])
    if verts is None:
        raise PLYError(f"{path}: no vertex element")
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
            verts = np.stack([data[c].astype(np.float64) for c in "xyz"], 1)
    if verts is None:
        raise PLYError(f"{path}: no vertex element")
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


def sample_mesh(vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points drawn uniformly (by area) on the triangles -> float64 [n,3]."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]              # [F,3,3]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    if not area.sum() > 0:
        raise PLYError("mesh has no area")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(v), n, p=area / area.sum())
    a, b = rng.random(n), rng.random(n)
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    t = v[tri]
    return t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])


def load_reference(path: Union[str, Path], samples: int = 1_000_000, seed: int = 0) -> Tuple[np.ndarray, str]:
    """Ground-truth points from a PLY: mesh -> ``samples`` area-uniform points; cloud -> its vertices.

    Returns (points float64 [N,3], description).
    """
    verts, faces = read_ply(path)
    if faces is not None and len(faces):
        return sample_mesh(verts, faces, samples, seed), f"mesh {path} ({len(faces)} triangles, {samples} samples)"
    return verts, f"cloud {path} ({len(verts)} points)"
