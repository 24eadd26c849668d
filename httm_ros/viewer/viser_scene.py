"""ReconstructionScene: the viewer's 3D scene and GUI on a viser server, fed with numpy arrays.

No ROS here: the message side (msg_adapter.py) turns messages into the arrays below. Frames
follow the node's conventions: world = the first camera (OpenCV: x right, y down, z forward),
poses are camera-to-world, quaternions are given as wxyz (viser's order).
"""

from __future__ import annotations

import threading
from typing import Dict, Mapping, Optional

import numpy as np

MAX_FRUSTUMS = 60                 # keyframe frustums drawn along the trajectory (evenly spaced)
_STATS_ROWS = (                   # (WindowStats field, label) shown in the GUI
    ("window_index", "window"), ("num_keyframes", "keyframes in window"), ("merge_mode", "merge"),
    ("kept_q_ratio", "kept queries"), ("kept_kv_ratio", "kept keys/values"),
    ("latency_total_ms", "latency total [ms]"), ("latency_model_ms", "latency model [ms]"),
    ("map_points", "map points"), ("frames_received", "frames received"),
    ("keyframes_total", "keyframes total"), ("queue_depth", "queue depth"),
    ("frames_dropped_queue_full", "dropped (queue full)"), ("frames_dropped_bad_input", "dropped (bad input)"),
    ("windows_failed", "windows failed"), ("tracking_state", "tracking state"), ("map_segment", "map segment"),
)


def tracking_state(stats: Mapping) -> str:
    """'accepted', 'rejected: <reason>' or 'failed: <reason>' for one window's stats."""
    if stats.get("alignment_accepted"):
        return "accepted"
    reason = str(stats.get("alignment_message") or "no reason given")
    if reason.startswith("window failed"):
        return "failed: " + reason[len("window failed"):].lstrip(": ")
    return "rejected: " + reason


def stats_markdown(stats: Mapping, windows_seen: int) -> str:
    """The GUI's status text for the latest ~/stats."""
    lines = [f"**tracking:** {tracking_state(stats)}", "", "| | |", "|---|---|"]
    for field, label in _STATS_ROWS:
        if field in stats:
            value = stats[field]
            lines.append(f"| {label} | {_number(value)} |")
    lines.append(f"| stats messages | {windows_seen} |")
    return "\n".join(lines)


def _number(value) -> str:
    """A stats value as text: floats with 4 significant digits, large ones without an exponent."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _extent(xyz: np.ndarray) -> float:
    """Robust size of a cloud [N, 3]: the diagonal of its 5-95 percentile box."""
    if len(xyz) == 0:
        return 1.0
    lo, hi = np.percentile(xyz, [5, 95], axis=0)
    return float(max(np.linalg.norm(hi - lo), 1e-3))


class ReconstructionScene:
    """Map cloud, latest window cloud, trajectory + frustums, latest camera, depth image, stats.

    Every ``set_*`` replaces what it shows; ``counts`` says what the scene holds (for tests and
    the screenshot helper). Thread-safe: feeds call it from their own threads.
    """

    def __init__(self, server) -> None:
        self.server = server
        self._lock = threading.Lock()
        self.counts: Dict[str, int] = {"map": 0, "window": 0, "path": 0, "frustums": 0, "depth": 0, "stats": 0}
        self.extent: Optional[float] = None
        self.fov_aspect = (np.deg2rad(60.0), 4.0 / 3.0)
        self._frustums: list = []
        self._path_wxyz = np.zeros((0, 4))
        self._path_xyz = np.zeros((0, 3))
        server.scene.set_up_direction("-y")
        self._status = server.gui.add_markdown("**tracking:** waiting for ~/stats")
        self._depth = None

    # ------------------------------------------------------------------ clouds
    def set_map(self, xyz: np.ndarray, rgb: np.ndarray) -> None:
        """The map: xyz float [N, 3], rgb uint8 [N, 3]."""
        with self._lock:
            xyz, rgb = _finite(xyz, rgb)
            first = self.extent is None and len(xyz) > 0
            if len(xyz):
                self.extent = _extent(xyz)
            self.server.scene.add_point_cloud("/map", points=xyz, colors=rgb,
                                              point_size=self._point_size(), point_shape="rounded")
            self.counts["map"] = len(xyz)
            if first:
                self._frame_view(np.median(xyz, axis=0))

    def set_window(self, xyz: np.ndarray, rgb: np.ndarray) -> None:
        """The latest window's new points: xyz [N, 3], rgb uint8 [N, 3] (drawn a little larger)."""
        with self._lock:
            xyz, rgb = _finite(xyz, rgb)
            self.server.scene.add_point_cloud("/window", points=xyz, colors=rgb,
                                              point_size=1.5 * self._point_size(), point_shape="rounded")
            self.counts["window"] = len(xyz)

    def _point_size(self) -> float:
        return (self.extent or 1.0) / 250.0

    # ------------------------------------------------------------------ cameras
    def set_camera_model(self, fov_y: float, aspect: float) -> None:
        """Vertical field of view (radians) and width / height of the frustums."""
        with self._lock:
            self.fov_aspect = (float(fov_y), float(aspect))

    def set_path(self, xyz: np.ndarray, wxyz: np.ndarray) -> None:
        """All keyframe poses: positions [K, 3], orientations wxyz [K, 4] (camera -> world)."""
        with self._lock:
            self._path_xyz, self._path_wxyz = np.asarray(xyz, np.float64), np.asarray(wxyz, np.float64)
            self.counts["path"] = len(xyz)
            if len(xyz) >= 2:
                segments = np.stack([xyz[:-1], xyz[1:]], axis=1).astype(np.float32)      # [K-1, 2, 3]
                self.server.scene.add_line_segments("/trajectory/line", points=segments, colors=(230, 60, 20),
                                                    thickness=2.0, thickness_units="screen")
            self._draw_frustums()

    def _draw_frustums(self) -> None:
        keep = np.unique(np.linspace(0, len(self._path_xyz) - 1, min(MAX_FRUSTUMS, len(self._path_xyz))).astype(int))
        fov, aspect = self.fov_aspect
        scale = 0.05 * (self.extent or _extent(self._path_xyz))
        for i, k in enumerate(keep):
            handle = self.server.scene.add_camera_frustum(
                f"/trajectory/frustum_{i:03d}", fov=fov, aspect=aspect, scale=scale, color=(40, 90, 220),
                thickness=1.0, thickness_units="screen", wxyz=self._path_wxyz[k], position=self._path_xyz[k])
            if i >= len(self._frustums):
                self._frustums.append(handle)
        for handle in self._frustums[len(keep):]:
            handle.remove()
        del self._frustums[len(keep):]
        self.counts["frustums"] = len(keep)

    def set_pose(self, xyz: np.ndarray, wxyz: np.ndarray) -> None:
        """The latest keyframe camera: position [3], orientation wxyz [4]."""
        with self._lock:
            fov, aspect = self.fov_aspect
            self.server.scene.add_camera_frustum("/camera", fov=fov, aspect=aspect, scale=0.06 * (self.extent or 1.0),
                                                 color=(230, 60, 20), thickness=2.0, thickness_units="screen",
                                                 wxyz=np.asarray(wxyz), position=np.asarray(xyz))

    # ------------------------------------------------------------------ GUI
    def set_depth(self, rgb: np.ndarray) -> None:
        """The latest depth image, already coloured: uint8 [H, W, 3]."""
        with self._lock:
            if self._depth is None:
                self._depth = self.server.gui.add_image(rgb, label="latest depth", format="png")
            else:
                self._depth.image = rgb
            self.counts["depth"] += 1

    def set_stats(self, stats: Mapping) -> None:
        """The latest ~/stats (WindowStats fields by name)."""
        with self._lock:
            self.counts["stats"] += 1
            self._status.content = stats_markdown(stats, self.counts["stats"])

    # ------------------------------------------------------------------ view
    def _frame_view(self, center: np.ndarray) -> None:
        """Point the initial (and every connected client's) camera at the map, from behind and
        above the first camera (world -z, -y)."""
        position = center + np.array([0.0, -0.6, -1.0]) * self.extent
        self.server.initial_camera.position = position
        self.server.initial_camera.look_at = center
        for client in self.server.get_clients().values():
            client.camera.position = position
            client.camera.look_at = center


def _finite(xyz: np.ndarray, rgb: np.ndarray):
    """Drop points with a non-finite coordinate: (xyz float32 [M, 3], rgb uint8 [M, 3])."""
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
    ok = np.isfinite(xyz).all(axis=1)
    return xyz[ok], rgb[ok]
