"""Side inputs of the image stream: sensor_msgs/CameraInfo and an aligned depth image, paired
with the images by stamp (no message_filters; no rclpy here).

The executor adds each side message, converted and checked, to a :class:`PairingBuffer` (bounded,
thread-safe); the inference thread pairs a keyframe when it takes it (:meth:`PairingBuffer.pair`):

* ``exact``: the buffered message whose stamp is nearest the image's, within ``tolerance``
  seconds; if none is there yet, it waits up to ``wait`` seconds for one to arrive;
* ``latest``: as ``exact``, and when that finds none, the latest message received (any stamp).

Pairings are counted per kind and outcome (``paired.depth.exact``, ``paired.camera_info.unpaired``,
...); a keyframe without a pair goes on without it. Refused messages are counted per reason
(``SIDE_REASONS``) and never reach the buffer:

* camera_info: K with fx, fy <= 0 or not finite (``bad_camera_info``); a non-zero distortion
  (plumb_bob, rational_polynomial or any other model) is ``distorted_camera_info`` - the node does
  not undistort (OpenCV is not a dependency): feed rectified images (image_proc's image_rect) and
  set ``camera_info_rectified``, which reads the rectified image's intrinsics from P and ignores D
  (the CameraInfo convention). Binning and ROI are applied to K as image_geometry does.
* depth: ``16UC1`` (millimetres) and ``32FC1`` (metres); any other encoding is
  ``unsupported_depth_encoding``; a short step or data is ``bad_depth``. 0 and non-finite = no reading.
* a paired message whose size differs from the image's is ``size_mismatch`` (the keyframe goes on
  without it).
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from httm_ros.pipeline.input_mapping import InputMapping, input_mapping

SIDE_REASONS = {
    "bad_camera_info": "camera_info whose K has fx or fy <= 0 or is not finite",
    "distorted_camera_info": "camera_info with non-zero distortion (the node does not undistort)",
    "unsupported_depth_encoding": "depth image that is not 16UC1 (mm) or 32FC1 (m)",
    "bad_depth": "depth image with a step shorter than a row or less data than step x height",
    "size_mismatch": "camera_info or depth whose width x height differs from the paired image's",
}
SYNC_POLICIES = ("exact", "latest")


class SideInputError(ValueError):
    """A side message refused: ``reason`` is its key in ``SIDE_REASONS``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CameraK:
    """A checked camera_info: pinhole K [3, 3] float64 of the image it describes, its size."""

    k: np.ndarray
    hw: Tuple[int, int]


def camera_info_k(msg, rectified: bool = False) -> CameraK:
    """sensor_msgs/CameraInfo -> CameraK (binning and ROI applied to K as image_geometry does).
    ``rectified``: the image is rectified, its intrinsics are P[:, :3] and D does not apply.
    Raises SideInputError (bad_camera_info, distorted_camera_info)."""
    name = "P" if rectified else "K"
    k = (np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3] if rectified
         else np.asarray(msg.k, dtype=np.float64).reshape(3, 3))
    if not (np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0):
        raise SideInputError(f"camera_info {name} has fx={k[0, 0]:g}, fy={k[1, 1]:g} (need finite values > 0)",
                             "bad_camera_info")
    d = np.asarray(msg.d, dtype=np.float64)
    if not rectified and d.size and np.any(d != 0):
        raise SideInputError(f"camera_info has {msg.distortion_model or 'a'} distortion D={np.round(d, 4).tolist()}; "
                             "the node does not undistort: feed rectified images (image_proc's image_rect) "
                             "and set camera_info_rectified: true", "distorted_camera_info")
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    roi = msg.roi
    k = k.copy()
    k[0, 2] -= roi.x_offset
    k[1, 2] -= roi.y_offset
    k[0, :] /= bx
    k[1, :] /= by
    return CameraK(k, (int(msg.height), int(msg.width)))


_DEPTH_ENCODINGS = {"16uc1": ("u2", 1e-3), "32fc1": ("f4", 1.0)}


def depth_metres(msg) -> np.ndarray:
    """sensor_msgs/Image 16UC1 (mm) or 32FC1 (m) -> float32 [H, W] metres, NaN = no reading.
    Raises SideInputError (unsupported_depth_encoding, bad_depth)."""
    layout = _DEPTH_ENCODINGS.get(msg.encoding.strip().lower())
    if layout is None:
        raise SideInputError(f"depth encoding '{msg.encoding[:40]}' is not supported (16UC1 in mm, 32FC1 in m)",
                             "unsupported_depth_encoding")
    kind, unit = layout
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0 or step < 2 * width * (2 if kind == "f4" else 1):
        raise SideInputError(f"depth {width}x{height} with step {step}", "bad_depth")
    if len(msg.data) < step * height:
        raise SideInputError(f"depth has {len(msg.data)} bytes, step*height = {step * height}", "bad_depth")
    dtype = np.dtype((">" if msg.is_bigendian else "<") + kind)
    raw = np.ndarray((height, width), dtype=dtype, buffer=msg.data, strides=(step, dtype.itemsize))
    metres = raw.astype(np.float32) * np.float32(unit)
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


class PairingBuffer:
    """The last ``capacity`` side messages by stamp (seconds), for pairing with images."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._stamps: list = []                       # sorted
        self._items: Dict[float, Any] = {}
        self._latest: Optional[Tuple[float, Any]] = None
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._stamps)

    def add(self, stamp: float, item: Any) -> None:
        """Keep ``item`` under ``stamp``; the oldest stamp goes beyond ``capacity``."""
        with self._cond:
            if stamp not in self._items:
                bisect.insort(self._stamps, stamp)
            self._items[stamp] = item
            while len(self._stamps) > self.capacity:
                self._items.pop(self._stamps.pop(0))
            self._latest = (stamp, item)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._stamps.clear()
            self._items.clear()
            self._latest = None

    def _nearest(self, stamp: float, tolerance: float) -> Optional[Any]:
        i = bisect.bisect_left(self._stamps, stamp)
        near = [s for s in self._stamps[max(0, i - 1):i + 1] if abs(s - stamp) <= tolerance]
        return self._items[min(near, key=lambda s: abs(s - stamp))] if near else None

    def pair(self, stamp: float, sync: str = "exact", tolerance: float = 1e-3,
             wait: float = 0.0) -> Tuple[Optional[Any], str]:
        """(item, how) for an image at ``stamp``: how is ``exact``, ``latest`` or ``unpaired``
        (item None). Waits up to ``wait`` s for an exact match that has not arrived yet."""
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                item = self._nearest(stamp, tolerance)
                if item is not None:
                    return item, "exact"
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    break
            if sync == "latest" and self._latest is not None:
                return self._latest[1], "latest"
            return None, "unpaired"


class SideCounters:
    """Side messages received, refused per reason, and keyframes paired (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: Dict[str, int] = {}            # topic kind -> messages
        self.reasons: Dict[str, int] = {}             # reason -> count
        self.paired: Dict[str, int] = {}              # "camera_info.exact", "depth.latest", ...
        self.last_detail = ""

    def receive(self, kind: str) -> None:
        with self.lock:
            self.received[kind] = self.received.get(kind, 0) + 1

    def refuse(self, reason: str, detail: str = "") -> None:
        with self.lock:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
            self.last_detail = detail or self.last_detail

    def pairing(self, kind: str, how: str) -> None:
        with self.lock:
            key = f"{kind}.{how}"
            self.paired[key] = self.paired.get(key, 0) + 1

    def snapshot(self) -> Dict[str, int]:
        """Every counter as one flat dict (``received.<kind>``, ``refused.<reason>``, ``paired.<kind>.<how>``)."""
        with self.lock:
            out = {f"received.{k}": v for k, v in self.received.items()}
            out.update({f"refused.{k}": v for k, v in self.reasons.items()})
            out.update({f"paired.{k}": v for k, v in self.paired.items()})
        return dict(sorted(out.items()))


def _stamp_sec(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class SideInputs:
    """The node's side inputs: one PairingBuffer per enabled topic (``use_camera_info``,
    ``use_depth``), their counters, and the source size of every keyframe (~/camera_info's roi)."""

    KINDS = (("camera_info", "use_camera_info"), ("depth", "use_depth"))

    def __init__(self, values, capacity: int = 4096) -> None:
        self.counters = SideCounters()
        self.buffers = {kind: PairingBuffer(values["side_input_buffer"]) for kind, flag in self.KINDS if values[flag]}
        self.rectified = bool(values["camera_info_rectified"])
        self._sources: "collections.OrderedDict[float, Tuple[int, int]]" = collections.OrderedDict()
        self._capacity = capacity

    def add(self, kind: str, msg) -> Optional[SideInputError]:
        """A camera_info or depth message from the executor: checked and buffered, or refused
        (counted; the error is returned for the log)."""
        self.counters.receive(kind)
        try:
            item = camera_info_k(msg, self.rectified) if kind == "camera_info" else depth_metres(msg)
        except SideInputError as err:
            self.counters.refuse(err.reason, str(err))
            return err
        self.buffers[kind].add(_stamp_sec(msg), item)
        return None

    def pair(self, stamp: float, src_hw: Tuple[int, int], fit_hw: Tuple[int, int],
             values) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[SideInputError]]:
        """(K [3, 3], depth [H, W] metres, refusal) for a keyframe at ``stamp`` whose decoded frame
        is ``src_hw`` and goes to the core at ``fit_hw`` (the node's rescale of another aspect
        ratio: K and depth follow it). Each is None when unpaired or refused (size_mismatch)."""
        self._note_source(stamp, src_hw)
        found: Dict[str, Any] = {}
        error = None
        for kind, buffer in self.buffers.items():
            item, how = buffer.pair(stamp, values["side_input_sync"], values["side_input_tolerance"],
                                    values["side_input_wait"])
            self.counters.pairing(kind, how)
            hw = None if item is None else (item.hw if kind == "camera_info" else item.shape[:2])
            if hw is not None and tuple(hw) != tuple(src_hw):
                error = SideInputError(f"{kind} is {hw[1]}x{hw[0]} but the image is {src_hw[1]}x{src_hw[0]}",
                                       "size_mismatch")
                self.counters.refuse(error.reason, str(error))
                continue
            if item is not None:
                found[kind] = item
        k = found["camera_info"].k if "camera_info" in found else None
        depth = found.get("depth")
        if tuple(fit_hw) != tuple(src_hw):                        # the node resized the frame
            mapping = InputMapping(tuple(src_hw), tuple(fit_hw), tuple(fit_hw))
            k = None if k is None else mapping.intrinsics(k)
            depth = None if depth is None else mapping.resample(depth)
        return k, depth, error

    def _note_source(self, stamp: float, src_hw: Tuple[int, int]) -> None:
        self._sources[stamp] = (int(src_hw[0]), int(src_hw[1]))
        while len(self._sources) > self._capacity:
            self._sources.popitem(last=False)

    def source_mappings(self, stamps, model_hw: Tuple[int, int], image_width) -> list:
        """The InputMapping of each keyframe stamp (its source -> the model input); None when the
        stamp's source size is unknown."""
        out = []
        for stamp in stamps:
            src = self._sources.get(stamp)
            out.append(None if src is None else input_mapping(src, model_hw, image_width))
        return out
