"""A textured box room with boxes inside, rendered by analytic ray casting.

World frame: metres, z up (ROS REP-103 style). The room spans ``[-X/2, X/2] x [-Y/2, Y/2] x [0, Z]``
and is seen from inside. Boxes are axis-aligned and never overlap each other. Cameras live in a
free ring around the room centre (normalised elliptical radius between ``INNER_MAX`` and
``OUTER_MIN``) where no box is placed, so every trajectory of :mod:`.trajectory` stays clear.

Rendering: each pixel ray ``o + t d`` with ``d = R K^-1 (u, v, 1)`` (camera z component 1), so the
ray parameter ``t`` of the nearest hit *is* the depth along the optical axis. Surfaces are the 6
inner faces of the room and the 6 faces of every box; each object has a procedural texture (see
:mod:`.textures`) evaluated on the two in-plane world coordinates of the hit face, and a simple
Lambertian shading by face normal.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

from .textures import Texture, random_texture

INNER_MAX = 0.42   # boxes of the central cluster stay inside this normalised elliptical radius
OUTER_MIN = 0.78   # boxes along the walls stay outside it
RING = 0.60        # nominal normalised radius of camera paths
# Edges of a box whose corners are enumerated x-major, then y, then z (index = 4x + 2y + z).
_BOX_EDGES = [(a, a | bit) for a in range(8) for bit in (1, 2, 4) if not a & bit]
_LIGHT = np.array([0.35, -0.45, 0.82])  # default direction towards the light (world)
AMBIENT, DIFFUSE = 0.62, 0.38            # default shading: ambient + diffuse * max(0, n . light)


def to_device(array, device, dtype=torch.float32) -> torch.Tensor:
    """A host array as a tensor on ``device``; to a CUDA device through pinned memory without
    blocking (a plain host->device copy waits for the GPU queue: a host sync per call)."""
    t = torch.as_tensor(np.ascontiguousarray(array), dtype=dtype)
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass
class SceneConfig:
    """Parameters of a random room scene (all lengths in metres).

    room_size: (X, Y, Z) extents; num_inner_boxes: boxes clustered around the centre (what the
    camera looks at); num_outer_boxes: boxes along the walls (some floating, like shelves);
    box_size_range: min/max box edge length; seed: everything random derives from it.
    Variety (defaults reproduce the original scenes exactly): thin_box_prob: chance that a box is
    a slab/plank/pillar (one or two sides shrunk to 10-30%); texture_scale: multiplies every
    texture period; light_dir (towards the light, world; None = the default), ambient, diffuse:
    shading ``ambient + diffuse * max(0, n . light)``.
    """

    room_size: Tuple[float, float, float] = (8.0, 6.0, 3.0)
    num_inner_boxes: int = 6
    num_outer_boxes: int = 6
    box_size_range: Tuple[float, float] = (0.35, 1.3)
    seed: int = 0
    thin_box_prob: float = 0.0
    texture_scale: float = 1.0
    light_dir: Optional[Tuple[float, float, float]] = None
    ambient: float = AMBIENT
    diffuse: float = DIFFUSE

    def __post_init__(self) -> None:
        if len(self.room_size) != 3 or min(self.room_size) <= 0:
            raise ValueError(f"SceneConfig.room_size must be 3 positive lengths, got {self.room_size}")
        if self.room_size[2] < 2.0 or min(self.room_size[:2]) < 3.0:
            raise ValueError("SceneConfig.room_size must be at least (3, 3, 2) m for the camera paths, "
                             f"got {self.room_size}")
        for name in ("num_inner_boxes", "num_outer_boxes"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 40:
                raise ValueError(f"SceneConfig.{name} must be an int in [0, 40], got {v!r}")
        lo, hi = self.box_size_range
        if not 0 < lo <= hi:
            raise ValueError(f"SceneConfig.box_size_range must satisfy 0 < min <= max, got {self.box_size_range}")
        if not 0 <= self.thin_box_prob <= 1 or not self.texture_scale > 0:
            raise ValueError("SceneConfig.thin_box_prob must be in [0, 1] and texture_scale > 0, got "
                             f"{self.thin_box_prob}, {self.texture_scale}")
        if self.light_dir is not None and (len(self.light_dir) != 3 or not np.linalg.norm(self.light_dir) > 0):
            raise ValueError(f"SceneConfig.light_dir must be None or a non-zero 3-vector, got {self.light_dir}")
        if not (self.ambient >= 0 and self.diffuse >= 0 and self.ambient + self.diffuse > 0):
            raise ValueError(f"SceneConfig.ambient/diffuse must be >= 0 with a positive sum, got "
                             f"{self.ambient}, {self.diffuse}")


@dataclass
class Scene:
    """Room bounds, boxes ``[M,2,3]`` (lo, hi corners) and one texture per object.

    textures[0:6] are the room faces in the order (-x, +x, -y, +y, floor, ceiling); textures[6+b] is
    box b (all its faces). light: direction towards the light [3]; ambient, diffuse: shading.
    """

    room: np.ndarray                       # [2,3] lo, hi
    boxes: np.ndarray                      # [M,2,3]
    textures: List[Texture]
    config: Optional[SceneConfig] = None
    light: np.ndarray = field(default_factory=lambda: _LIGHT.copy())
    ambient: float = AMBIENT
    diffuse: float = DIFFUSE
    _tensors: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ basic properties
    @property
    def bounds(self) -> np.ndarray:
        """[2,3] lo/hi corners of the whole scene (the room)."""
        return self.room.copy()

    @property
    def size(self) -> float:
        """Scene size: the diagonal of the room (m); map-accuracy thresholds are relative to it."""
        return float(np.linalg.norm(self.room[1] - self.room[0]))

    @property
    def center(self) -> np.ndarray:
        return self.room.mean(axis=0)

    def _on(self, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """room [2,3], boxes [M,2,3], unit light direction [3] on ``device`` (cached)."""
        key = str(device)
        if key not in self._tensors:
            self._tensors[key] = (to_device(self.room, device), to_device(self.boxes, device).reshape(-1, 2, 3),
                                  to_device(self.light / np.linalg.norm(self.light), device))
        return self._tensors[key]

    # ------------------------------------------------------------------ ray casting
    def cast(self, origin: torch.Tensor, dirs: torch.Tensor,
             box_regions: Optional[List[Optional[Tuple[int, int, int, int]]]] = None
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Nearest hit of rays from one origin [3] along dirs [H,W,3] -> (t [H,W], surface id [H,W]).

        Batched: origins [B,1,1,3] and dirs [B,H,W,3] -> t, ids [B,H,W] (regions apply to all B).

        Surface ids: 2*axis + side for the room faces (side 0 = lo), 6 + 6*box + 2*axis + side for
        boxes. The camera must be inside the room and outside every box. ``box_regions[b]`` is an
        optional pixel rectangle (r0, r1, c0, c1) outside which box b cannot appear (or None to
        skip box b entirely; a loop over the boxes, cheapest on a CPU); by default every box is
        tested on every pixel in one pass over all boxes (no Python loop: for accelerators).
        """
        room, boxes, _ = self._on(dirs.device)
        tiny = dirs.abs() < 1e-12
        inv = 1.0 / torch.where(tiny, torch.full_like(dirs, 1e-12), dirs)      # [H,W,3]
        # Exit of the room (camera inside): per axis, the wall in the direction of travel.
        wall = torch.where(dirs > 0, room[1], room[0])
        t_axes = torch.where(tiny, torch.full_like(dirs, float("inf")), (wall - origin) * inv)
        t_best, axis = t_axes.min(dim=-1)
        sid = 2 * axis + (dirs.gather(-1, axis[..., None])[..., 0] > 0).long()
        if box_regions is None:
            return self._cast_boxes_at_once(origin, dirs, inv, boxes, t_best, sid)
        H, W = dirs.shape[-3:-1]
        for b in range(boxes.shape[0]):
            region = box_regions[b]
            if region is None:
                continue
            r0, r1, c0, c1 = region
            inv_r, d_r = inv[..., r0:r1, c0:c1, :], dirs[..., r0:r1, c0:c1, :]
            t1, t2 = (boxes[b, 0] - origin) * inv_r, (boxes[b, 1] - origin) * inv_r
            t_near, ax = torch.minimum(t1, t2).max(dim=-1)
            t_far = torch.maximum(t1, t2).min(dim=-1).values
            tb = t_best[..., r0:r1, c0:c1]
            hit = (t_near <= t_far) & (t_near > 1e-6) & (t_near < tb)
            side = (d_r.gather(-1, ax[..., None])[..., 0] <= 0).long()        # entering through lo if d>0
            t_best[..., r0:r1, c0:c1] = torch.where(hit, t_near, tb)
            sid[..., r0:r1, c0:c1] = torch.where(hit, 6 + 6 * b + 2 * ax + side, sid[..., r0:r1, c0:c1])
        return t_best, sid

    @staticmethod
    def _cast_boxes_at_once(origin: torch.Tensor, dirs: torch.Tensor, inv: torch.Tensor, boxes: torch.Tensor,
                            t_room: torch.Tensor, sid_room: torch.Tensor,
                            max_elements: int = 1 << 26) -> Tuple[torch.Tensor, torch.Tensor]:
        """Nearest box entry of every ray over all boxes [M,2,3] at once (chunks of boxes bound the
        [..., M, 3] temporaries) -> (t, surface id) with the room's hit where no box is nearer."""
        t_best, sid = t_room, sid_room
        n_box = boxes.shape[0]
        chunk = max(1, max_elements // max(1, 3 * t_room.numel()))
        o, inv_m = origin[..., None, :], inv[..., None, :]                                 # [...,1,3]
        for b0 in range(0, n_box, chunk):
            lo, hi = boxes[b0:b0 + chunk, 0], boxes[b0:b0 + chunk, 1]                   # [m,3]
            t1, t2 = (lo - o) * inv_m, (hi - o) * inv_m                                  # [...,m,3]
            t_near, ax = torch.minimum(t1, t2).max(dim=-1)                               # [...,m]
            t_far = torch.maximum(t1, t2).min(dim=-1).values
            ok = (t_near <= t_far) & (t_near > 1e-6)
            t_hit, k = torch.where(ok, t_near, torch.full_like(t_near, float("inf"))).min(dim=-1)
            ax_k = ax.gather(-1, k[..., None])                                            # [...,1]
            side = (dirs.gather(-1, ax_k)[..., 0] <= 0).long()
            hit = t_hit < t_best
            t_best = torch.where(hit, t_hit, t_best)
            sid = torch.where(hit, 6 + 6 * (b0 + k) + 2 * ax_k[..., 0] + side, sid)
        return t_best, sid

    def box_regions(self, cam_to_world: np.ndarray, intrinsics: np.ndarray, width: int,
                    height: int) -> List[Optional[Tuple[int, int, int, int]]]:
        """Per box, the pixel rectangle (r0, r1, c0, c1) holding its projection (None: not visible).

        The part of a box in front of the plane z = 1 mm (camera frame) is the convex hull of its
        corners there and of the points where its edges cross that plane; their projections bound
        the box's image (hits closer than 1 mm are impossible: cameras keep clear of boxes).
        """
        out: List[Optional[Tuple[int, int, int, int]]] = []
        w2c = np.linalg.inv(cam_to_world)
        near = 1e-3
        for lo, hi in self.boxes.reshape(-1, 2, 3):
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            cam = corners @ w2c[:3, :3].T + w2c[:3, 3]                          # [8,3]
            front = cam[:, 2] >= near
            if not front.any():
                out.append(None)
                continue
            pts = [cam[front]]
            for a, b in _BOX_EDGES:
                if front[a] != front[b]:
                    w = (near - cam[a, 2]) / (cam[b, 2] - cam[a, 2])
                    pts.append((cam[a] + w * (cam[b] - cam[a]))[None])
            cam = np.concatenate(pts)
            uv = cam @ np.asarray(intrinsics, dtype=np.float64).T
            uv = uv[:, :2] / uv[:, 2:]
            c0, r0 = np.floor(uv.min(axis=0)).astype(int) - 1
            c1, r1 = np.ceil(uv.max(axis=0)).astype(int) + 2
            r0, r1, c0, c1 = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
            out.append((int(r0), int(r1), int(c0), int(c1)) if r0 < r1 and c0 < c1 else None)
        return out

    def box_regions_union(self, cam_to_world: np.ndarray, intrinsics: np.ndarray, width: int,
                          height: int) -> List[Optional[Tuple[int, int, int, int]]]:
        """Per box, the bounding rectangle over B views (cam_to_world [B,4,4], intrinsics [B,3,3])
        of :meth:`box_regions` (None: visible in no view), vectorised over views and boxes."""
        boxes = self.boxes.reshape(-1, 2, 3)                                    # [M,2,3]
        if len(boxes) == 0:
            return []
        near = 1e-3
        pick = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=bool)   # [8,3]
        corners = np.where(pick[None], boxes[:, None, 1], boxes[:, None, 0])   # [M,8,3]
        w2c = np.linalg.inv(np.asarray(cam_to_world, dtype=np.float64))        # [B,4,4]
        cam = np.einsum("bij,mkj->bmki", w2c[:, :3, :3], corners) + w2c[:, None, None, :3, 3]   # [B,M,8,3]
        front = cam[..., 2] >= near                                            # [B,M,8]
        a, b = np.array(_BOX_EDGES).T                                           # [12] each
        ca, cb = cam[..., a, :], cam[..., b, :]                                 # [B,M,12,3]
        cross = front[..., a] != front[..., b]
        dz = np.where(cross, cb[..., 2] - ca[..., 2], 1.0)
        crossing = ca + ((near - ca[..., 2]) / dz)[..., None] * (cb - ca)
        pts = np.concatenate([cam, crossing], axis=2)                           # [B,M,20,3]
        ok = np.concatenate([front, cross], axis=2)                             # [B,M,20]
        uvw = np.einsum("bij,bmkj->bmki", np.asarray(intrinsics, dtype=np.float64), pts)
        uv = uvw[..., :2] / np.where(ok, uvw[..., 2], 1.0)[..., None]           # [B,M,20,2]
        lo = np.where(ok[..., None], uv, np.inf).min(axis=2)                    # [B,M,2] (u, v)
        hi = np.where(ok[..., None], uv, -np.inf).max(axis=2)
        seen = ok.any(axis=2)
        lo, hi = np.where(seen[..., None], lo, 0.0), np.where(seen[..., None], hi, 0.0)
        c0 = np.maximum(np.floor(lo[..., 0]) - 1, 0)
        r0 = np.maximum(np.floor(lo[..., 1]) - 1, 0)
        c1 = np.minimum(np.ceil(hi[..., 0]) + 2, width)
        r1 = np.minimum(np.ceil(hi[..., 1]) + 2, height)
        seen &= (r0 < r1) & (c0 < c1)                                           # [B,M]
        out: List[Optional[Tuple[int, int, int, int]]] = []
        for m in range(len(boxes)):
            views = seen[:, m]
            if not views.any():
                out.append(None)
                continue
            out.append((int(r0[views, m].min()), int(r1[views, m].max()),
                        int(c0[views, m].min()), int(c1[views, m].max())))
        return out

    def shade(self, points: torch.Tensor, sid: torch.Tensor) -> torch.Tensor:
        """Colour of surface points [N,3] with surface ids [N] -> rgb float [N,3] in [0,1]."""
        obj = torch.where(sid < 6, sid, 6 + torch.div(sid - 6, 6, rounding_mode="floor"))  # texture index
        axis = torch.where(sid < 6, sid, torch.remainder(sid - 6, 6)) // 2
        # In-plane coordinates: x-faces (y,z), y-faces (x,z), z-faces (x,y).
        x, y, z = points.unbind(-1)
        uv = torch.stack([torch.where(axis == 0, y, x), torch.where(axis == 2, y, z)], -1)
        rgb = self._texture_rgb(uv, obj)
        normal = self._normals(sid, points.device)
        light = self._on(points.device)[2].to(points.dtype)
        lambert = self.ambient + self.diffuse * (normal @ light).clamp_min(0)
        return (rgb * lambert[:, None]).clamp(0, 1)

    def _texture_rgb(self, uv: torch.Tensor, obj: torch.Tensor, grouped: Optional[bool] = None) -> torch.Tensor:
        """Texture colours [N,3] of in-plane coordinates uv [N,2] on objects obj [N].

        CPU: each texture on a contiguous run of the points sorted by object (least work).
        Accelerators: each texture on every point, selected per object (no data-dependent sizes,
        so no host sync; the extra arithmetic is cheap there). Same colours either way;
        ``grouped`` forces one (default: grouped on the CPU).
        """
        if not (uv.device.type == "cpu" if grouped is None else grouped):
            rgb = torch.zeros(uv.shape[0], 3, dtype=uv.dtype, device=uv.device)
            for k, texture in enumerate(self.textures):
                rgb = torch.where((obj == k)[:, None], texture(uv), rgb)
            return rgb
        order = torch.argsort(obj)
        counts = torch.bincount(obj, minlength=len(self.textures)).tolist()
        uv_sorted, chunks, start = uv[order], [], 0
        for k, n in enumerate(counts):
            if n:
                chunks.append(self.textures[k](uv_sorted[start:start + n]))
            start += n
        rgb = torch.empty(uv.shape[0], 3, dtype=uv.dtype, device=uv.device)
        rgb[order] = torch.cat(chunks)
        return rgb

    @staticmethod
    def _normals(sid: torch.Tensor, device) -> torch.Tensor:
        """Normals [N,3] pointing into free space (inwards for the room, outwards for boxes)."""
        is_room = sid < 6
        face = torch.where(is_room, sid, (sid - 6) % 6)
        axis, side = face // 2, face % 2
        sign = torch.where(side == 1, 1.0, -1.0)                              # box: hi face -> +axis
        sign = torch.where(is_room, -sign, sign)                               # room faces look inwards
        n = torch.zeros(sid.shape[0], 3, device=device)
        n.scatter_(1, axis[:, None], sign[:, None].to(n.dtype))
        return n

    def render(self, cam_to_world: np.ndarray, intrinsics: np.ndarray, width: int, height: int,
               device="cpu") -> Tuple[np.ndarray, np.ndarray]:
        """Render one view -> (rgb uint8 [H,W,3], depth float32 [H,W] metres along the optical axis).

        cam_to_world [4,4] (OpenCV camera axes), intrinsics [3,3]; pixel (i, j) is at (u=j, v=i).
        """
        pose = torch.as_tensor(np.asarray(cam_to_world), dtype=torch.float32, device=device)
        k_inv = torch.as_tensor(np.linalg.inv(np.asarray(intrinsics, dtype=np.float64)),
                                dtype=torch.float32, device=device)
        m = pose[:3, :3] @ k_inv                                              # pixel -> world direction
        u = torch.arange(width, dtype=torch.float32, device=device)[None, :, None]
        v = torch.arange(height, dtype=torch.float32, device=device)[:, None, None]
        dirs = u * m[:, 0] + v * m[:, 1] + m[:, 2]                            # [H,W,3], cam z == 1
        origin = pose[:3, 3]
        regions = self.box_regions(np.asarray(cam_to_world, dtype=np.float64), intrinsics, width, height)
        t, sid = self.cast(origin, dirs, regions)
        rgb = self.shade(origin + t.reshape(-1, 1) * dirs.reshape(-1, 3), sid.reshape(-1))
        img = (rgb.reshape(height, width, 3) * 255.0 + 0.5).to(torch.uint8)
        return img.cpu().numpy(), t.cpu().numpy().astype(np.float32)

    def render_batch(self, cam_to_world, intrinsics, width: int, height: int,
                     device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
        """Render B views in one pass -> (rgb uint8 [B,H,W,3], depth float32 [B,H,W]) on ``device``.

        cam_to_world [B,4,4], intrinsics [B,3,3] or [3,3] (numpy or torch). Same pixels as
        :meth:`render` per frame (float32 rounding of the ray directions aside). On the CPU each box
        is tested on the union of its per-frame pixel rectangles; on an accelerator every box on
        every pixel in one pass, with no host sync (inputs go through pinned memory).
        """
        poses64 = np.asarray(torch.as_tensor(cam_to_world).cpu(), dtype=np.float64).reshape(-1, 4, 4)
        k64 = np.asarray(torch.as_tensor(intrinsics).cpu(), dtype=np.float64)
        k64 = np.broadcast_to(k64, (len(poses64), 3, 3))
        pose = to_device(poses64, device)
        k_inv = to_device(np.linalg.inv(k64), device)
        m = (pose[:, :3, :3] @ k_inv)[:, None, None]                          # [B,1,1,3,3]
        u = torch.arange(width, dtype=torch.float32, device=device)[None, None, :, None]
        v = torch.arange(height, dtype=torch.float32, device=device)[None, :, None, None]
        dirs = u * m[..., 0] + v * m[..., 1] + m[..., 2]                      # [B,H,W,3], cam z == 1
        origin = pose[:, None, None, :3, 3]                                    # [B,1,1,3]
        # CPU: each box only on the union of its per-view pixel rectangles; elsewhere all boxes at once
        regions = self.box_regions_union(poses64, k64, width, height) if pose.device.type == "cpu" else None
        t, sid = self.cast(origin, dirs, regions)
        rgb = self.shade((origin + t[..., None] * dirs).reshape(-1, 3), sid.reshape(-1))
        img = (rgb.reshape(*t.shape, 3) * 255.0 + 0.5).to(torch.uint8)
        return img, t

    # ------------------------------------------------------------------ ground-truth geometry
    def distance_to_surface(self, points: np.ndarray) -> np.ndarray:
        """Exact Euclidean distance [N] from points [N,3] to the nearest scene surface.

        The surfaces are the boundaries of the room and of every box (including hidden faces such
        as a box's bottom resting on the floor). Uses |SDF| of each box, float64, chunked.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty(len(pts))
        allboxes = np.concatenate([self.room[None], self.boxes.reshape(-1, 2, 3)], axis=0)  # [M+1,2,3]
        center = allboxes.mean(axis=1)
        half = (allboxes[:, 1] - allboxes[:, 0]) / 2
        for s in range(0, len(pts), 65536):
            p = pts[s:s + 65536]
            q = np.abs(p[:, None, :] - center[None]) - half[None]                # [n,M+1,3]
            outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
            inside = np.minimum(q.max(axis=-1), 0)
            out[s:s + 65536] = np.abs(outside + inside).min(axis=1)
        return out

    def sample_surface(self, n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Uniform (area-weighted) samples of the *visible* surfaces -> (points [n,3], normals [n,3]).

        Faces hidden by construction (a box's bottom on the floor, the floor under a box) are
        excluded: a sample is kept only if a point 1 mm off the surface along its normal is inside
        the room and outside every box.
        """
        rng = np.random.default_rng(seed)
        faces = self._faces()                                                 # list of (lo, hi, normal)
        areas = np.array([np.prod(np.delete(hi - lo, np.argmax(np.abs(nrm))))
                          for lo, hi, nrm in faces])
        pts_out, nrm_out, have = [], [], 0
        while have < n:
            m = max(2 * (n - have), 1024)
            idx = rng.choice(len(faces), size=m, p=areas / areas.sum())
            lo = np.stack([faces[i][0] for i in idx])
            hi = np.stack([faces[i][1] for i in idx])
            nrm = np.stack([faces[i][2] for i in idx])
            p = lo + rng.uniform(size=(m, 3)) * (hi - lo)
            keep = self._free(p + 1e-3 * nrm)
            pts_out.append(p[keep])
            nrm_out.append(nrm[keep])
            have += int(keep.sum())
        return (np.concatenate(pts_out)[:n].astype(np.float32),
                np.concatenate(nrm_out)[:n].astype(np.float32))

    def _faces(self) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """All faces as degenerate boxes (lo, hi) + normal into free space."""
        out = []
        for boxes, sign in ((self.room[None], -1.0), (self.boxes.reshape(-1, 2, 3), 1.0)):
            for lo, hi in boxes:
                for axis in range(3):
                    for side in range(2):
                        flo, fhi = lo.copy(), hi.copy()
                        flo[axis] = fhi[axis] = (lo, hi)[side][axis]
                        nrm = np.zeros(3)
                        nrm[axis] = sign * (1.0 if side else -1.0)
                        out.append((flo, fhi, nrm))
        return out

    def _free(self, p: np.ndarray) -> np.ndarray:
        """Bool [N]: points strictly inside the room and outside every box."""
        ok = np.all((p > self.room[0]) & (p < self.room[1]), axis=1)
        for lo, hi in self.boxes.reshape(-1, 2, 3):
            ok &= ~np.all((p > lo) & (p < hi), axis=1)
        return ok

    def is_free(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Bool [N]: points at least ``margin`` inside the room and ``margin`` away from boxes."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        ok = np.all((p > self.room[0] + margin) & (p < self.room[1] - margin), axis=1)
        for lo, hi in self.boxes.reshape(-1, 2, 3):
            ok &= ~np.all((p > lo - margin) & (p < hi + margin), axis=1)
        return ok


# ---------------------------------------------------------------------------- construction
def _ellipse_radius(xy: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Normalised elliptical radius of xy [...,2] in a room of half extents half [2]."""
    return np.sqrt(((xy / half) ** 2).sum(-1))


_GRID_X, _GRID_Y = (g.ravel() for g in np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5)))


def _footprint(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """5x5 grid of points [25,2] on a box footprint (for clearance tests)."""
    return np.stack([lo[0] + _GRID_X * (hi[0] - lo[0]), lo[1] + _GRID_Y * (hi[1] - lo[1])], 1)


def _place_box(rng: np.random.Generator, cfg: SceneConfig, inner: bool,
               placed: List[np.ndarray]) -> Optional[np.ndarray]:
    """Rejection-sample one box [2,3] clear of the camera ring and of the other boxes."""
    X, Y, Z = cfg.room_size
    half = np.array([X / 2, Y / 2])
    for _ in range(400):
        size = rng.uniform(*cfg.box_size_range, size=3)
        size[2] = rng.uniform(cfg.box_size_range[0], min(cfg.box_size_range[1] * 1.2, Z - 0.8))
        if cfg.thin_box_prob > 0 and rng.uniform() < cfg.thin_box_prob:
            thin = rng.choice(3, size=int(rng.integers(1, 3)), replace=False)   # slab, plank or pillar
            size[thin] *= rng.uniform(0.1, 0.3, size=len(thin))
        if inner:
            ang, rad = rng.uniform(0, 2 * math.pi), rng.uniform(0, INNER_MAX * 0.8)
            c = np.array([math.cos(ang), math.sin(ang)]) * rad * half
            z0 = 0.0 if rng.uniform() < 0.85 else rng.uniform(0.0, 0.6)
        else:
            c = rng.uniform(-half + size[:2] / 2, half - size[:2] / 2)
            z0 = 0.0 if rng.uniform() < 0.6 else rng.uniform(0.4, Z - size[2] - 0.2)
        lo = np.array([c[0] - size[0] / 2, c[1] - size[1] / 2, z0])
        hi = np.array([c[0] + size[0] / 2, c[1] + size[1] / 2, z0 + size[2]])
        if np.any(lo[:2] < -half + 0.05) or np.any(hi[:2] > half - 0.05) or hi[2] > Z - 0.1:
            continue
        r = _ellipse_radius(_footprint(lo, hi), half)
        if (inner and r.max() > INNER_MAX) or (not inner and r.min() < OUTER_MIN):
            continue
        if any(np.all(lo < b[1] + 0.1) and np.all(hi > b[0] - 0.1) for b in placed):
            continue
        return np.stack([lo, hi])
    return None


def make_scene(config: Optional[SceneConfig] = None, seed: Optional[int] = None) -> Scene:
    """Build a deterministic random scene from ``config`` (``seed`` overrides ``config.seed``)."""
    cfg = config or SceneConfig()
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    rng = np.random.default_rng(cfg.seed)
    X, Y, Z = cfg.room_size
    room = np.array([[-X / 2, -Y / 2, 0.0], [X / 2, Y / 2, Z]])
    boxes: List[np.ndarray] = []
    for inner, count in ((True, cfg.num_inner_boxes), (False, cfg.num_outer_boxes)):
        for _ in range(count):
            box = _place_box(rng, cfg, inner, boxes)
            if box is not None:
                boxes.append(box)
    wall_kinds = ["bricks", "stripes", "noise", "gradient", "tiles", "checkers"]
    textures = [random_texture(rng, str(rng.choice(wall_kinds)), (0.3, 0.8)) for _ in range(4)]
    textures.append(random_texture(rng, str(rng.choice(["checkers", "tiles", "noise"])), (0.3, 0.6)))
    textures.append(random_texture(rng, str(rng.choice(["noise", "gradient", "tiles"])), (0.4, 0.9)))
    textures += [random_texture(rng) for _ in boxes]
    if cfg.texture_scale != 1.0:
        for tex in textures:
            tex.period *= cfg.texture_scale
    box_arr = np.stack(boxes) if boxes else np.zeros((0, 2, 3))
    light = _LIGHT.copy() if cfg.light_dir is None else np.asarray(cfg.light_dir, dtype=np.float64)
    return Scene(room=room, boxes=box_arr, textures=textures, config=cfg, light=light,
                 ambient=cfg.ambient, diffuse=cfg.diffuse)
