"""Conversions between ROS 2 messages and numpy arrays (pure functions, testable without DDS).

Images in:  sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8 and the 16-bit variants rgb16,
            bgr16, rgba16, bgra16, mono16) or sensor_msgs/CompressedImage (jpeg, png)
            -> RGB uint8 [H, W, 3]. 16-bit values are scaled to 8 bits by their high byte.
Messages out: 32FC1 images (depth in metres up to scale, NaN = invalid; confidence), PointCloud2
            x y z rgb (packed, 16 bytes per point, as RViz and PCL read it), CameraInfo,
            Pose / TransformStamped from 4x4 camera-to-world matrices.

Bulk data goes into messages in bulk, never per element: clouds and float images are written in
place into the message's own buffer (``_message_buffer``), other data with one copy of a
contiguous array (``_uint8_array``, the cost of one ``tobytes()``). Assigning a numpy array to
``msg.data`` directly is ~300x slower.
"""

from __future__ import annotations

import array
import collections
import io
import math
import re
import struct
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, TransformStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from httm_ros.geometry import rotmat_to_quat

_BIG_ENDIAN_HOST = sys.byteorder == "big"


class ImageDecodeError(ValueError):
    """An input image that cannot be turned into RGB: ``str(err)`` says why (sizes as width x
    height, no memory addresses), ``reason`` is its key in the drop counters (``DROP_REASONS``)."""

    def __init__(self, message: str, reason: str = "undecodable") -> None:
        super().__init__(message)
        self.reason = reason


# Why the codec refuses an input message: the keys of the node's per-reason drop counters.
DROP_REASONS = {
    "unsupported_encoding": "raw encoding or compressed format the node does not read",
    "empty": "zero width, height or data",
    "bad_step": "raw image whose step is shorter than a row",
    "truncated": "raw image with less data than step x height",
    "too_many_pixels": "width x height above max_input_pixels (checked before decoding)",
    "aspect_ratio": "longer side / shorter side above max_aspect_ratio",
    "model_size": "a size the model input cannot be made from (too elongated for image_size)",
    "undecodable": "compressed data that is not a decodable jpeg or png",
}


@dataclass(frozen=True)
class InputLimits:
    """Bounds checked from the message header, before any decoding work. ``fits`` (optional)
    returns why a width x height frame cannot become a model input, or None."""

    max_pixels: int = 3840 * 2160
    max_aspect_ratio: float = 8.0
    fits: Optional[Callable[[int, int], Optional[str]]] = None

    def check(self, width: int, height: int) -> None:
        """Raise ImageDecodeError when a ``width`` x ``height`` image is out of bounds."""
        if width <= 0 or height <= 0:
            raise ImageDecodeError(f"zero-size image {width}x{height}", "empty")
        if width * height > self.max_pixels:
            raise ImageDecodeError(f"image {width}x{height} has {width * height / 1e6:.1f} Mpx, above "
                                   f"max_input_pixels {self.max_pixels / 1e6:.1f} Mpx", "too_many_pixels")
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            raise ImageDecodeError(f"image {width}x{height} has aspect ratio {ratio:.1f}:1, above "
                                   f"max_aspect_ratio {self.max_aspect_ratio:g}", "aspect_ratio")
        why = self.fits(width, height) if self.fits is not None else None
        if why:
            raise ImageDecodeError(why, "model_size")


NO_LIMITS = InputLimits(max_pixels=1 << 62, max_aspect_ratio=math.inf)


def apply_pillow_limit(limits: InputLimits) -> None:
    """Pillow's own decompression-bomb bound (process-wide) = ``limits.max_pixels``; the codec
    turns its warning into a rejection, so nothing reaches stderr."""
    from PIL import Image as PILImage

    PILImage.MAX_IMAGE_PIXELS = int(limits.max_pixels)


# encoding -> (channels, bytes per channel, channel indices giving R, G, B; None for mono)
IMAGE_ENCODINGS = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "rgba16": (4, 2, (0, 1, 2)),
    "bgra16": (4, 2, (2, 1, 0)),
    "mono16": (1, 2, None),
}
COMPRESSED_FORMATS = ("jpeg", "png")


# ----------------------------------------------------------------------------- helpers
def _uint8_array(arr: np.ndarray) -> array.array:
    """Any numpy array -> array('B') of its bytes in C order, with one bulk copy."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).view(np.uint8).reshape(-1))
    return out


def _message_buffer(shape, dtype) -> Tuple[array.array, np.ndarray]:
    """A zeroed array('B') for a message's ``data`` and a writable numpy view of it as
    ``dtype`` [shape]: filling the view builds the message data in place, with no further copy."""
    dtype = np.dtype(dtype)
    data = array.array("B", b"\0") * (int(np.prod(shape)) * dtype.itemsize)
    return data, np.frombuffer(data, dtype=dtype).reshape(shape)


def _attach(msg, data: array.array):
    """Give ``msg`` its ``data`` without another copy. The generated setter copies an array('B')
    on Kilted unless ROS_PYTHON_CHECK_FIELDS is set (older distros keep it as is), so the
    generated slot behind the property is used when there is one; rclpy reads any buffer."""
    if hasattr(msg, "_data"):
        msg._data = data
    else:  # pragma: no cover - message classes without the slot
        msg.data = data
    return msg


def stamp_to_sec(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds (float64; sub-microsecond precision is lost)."""
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(seconds: float) -> Time:
    """Seconds -> builtin_interfaces/Time (rounded to the nanosecond)."""
    nanos = int(round(seconds * 1e9))
    return Time(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)


class StampBook:
    """Exact ROS stamps of recent frames by their float seconds (the core carries floats)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._items: "collections.OrderedDict[float, Time]" = collections.OrderedDict()
        self.capacity = capacity

    def add(self, seconds: float, stamp: Time) -> None:
        self._items[seconds] = stamp
        self._items.move_to_end(seconds)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, seconds: float) -> Time:
        """The stamp recorded for ``seconds``, else one rebuilt from it."""
        stamp = self._items.get(seconds)
        return stamp if stamp is not None else sec_to_stamp(seconds)


def make_header(stamp: Time, frame_id: str) -> Header:
    """A std_msgs/Header with a copy of ``stamp``."""
    return Header(stamp=Time(sec=stamp.sec, nanosec=stamp.nanosec), frame_id=frame_id)


# ----------------------------------------------------------------------------- images in
def image_to_rgb(msg: Image, limits: InputLimits = NO_LIMITS) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 [H, W, 3] (a fresh array). Encoding, size (``limits``),
    step and data length are checked from the header before the data is touched. Raises
    ImageDecodeError."""
    layout = IMAGE_ENCODINGS.get(msg.encoding.strip().lower())
    if layout is None:
        raise ImageDecodeError(f"unsupported encoding '{_printable(msg.encoding)}' "
                               f"(supported: {', '.join(IMAGE_ENCODINGS)})", "unsupported_encoding")
    channels, depth, order = layout
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    limits.check(width, height)
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} < width*bytes_per_pixel = {row_bytes}", "bad_step")
    if len(msg.data) < step * height:
        raise ImageDecodeError(f"data has {len(msg.data)} bytes, step*height = {step * height}", "truncated")
    dtype = np.dtype(np.uint8) if depth == 1 else np.dtype(">u2" if msg.is_bigendian else "<u2")
    pixels = np.ndarray((height, width, channels), dtype=dtype, buffer=msg.data,
                        strides=(step, channels * depth, depth))       # view, padding skipped
    if depth == 2:
        pixels = (pixels >> 8).astype(np.uint8)                        # high byte: 65535 -> 255
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2):
        return np.array(pixels[:, :, :3], copy=True, order="C")          # rgb8 / rgba8: a plain copy
    return np.array(pixels[:, :, 2::-1], copy=True, order="C")           # bgr8 / bgra8: reversed


def compressed_to_rgb(msg: CompressedImage, limits: InputLimits = NO_LIMITS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> RGB uint8 [H, W, 3]. The size is read from
    the PNG/JPEG header bytes and checked against ``limits`` before decompression; Pillow's
    decompression-bomb warning becomes a rejection. Raises ImageDecodeError."""
    fmt = msg.format.strip().lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"compressedDepth images are not colour input (format '{_printable(msg.format)}')",
                               "unsupported_encoding")
    if fmt and not any(name in fmt for name in COMPRESSED_FORMATS + ("jpg",)):
        raise ImageDecodeError(f"unsupported compressed format '{_printable(msg.format)}' "
                               "(supported: jpeg, png)", "unsupported_encoding")
    if len(msg.data) == 0:
        raise ImageDecodeError("zero-size compressed image (no data)", "empty")
    size = compressed_size(msg.data)
    if size is not None:
        limits.check(*size)
    return _decode_compressed(msg, limits)


def _decode_compressed(msg: CompressedImage, limits: InputLimits) -> np.ndarray:
    from PIL import Image as PILImage

    nbytes = len(msg.data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(msg.data)) as img:
                limits.check(img.width, img.height)                   # headers compressed_size missed
                img.load()
                return _pil_to_rgb(img)
    except ImageDecodeError:
        raise
    except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError) as err:
        raise ImageDecodeError(f"cannot decode '{_printable(msg.format)}' data: decompression bomb "
                               f"({_no_address(str(err))})", "too_many_pixels") from None
    except Exception as err:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"cannot decode '{_printable(msg.format)}' data: {_pil_reason(err, nbytes)}",
                               "undecodable") from None


_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>|0x[0-9a-fA-F]{6,}")


def _no_address(text: str) -> str:
    """``text`` without object reprs or memory addresses."""
    return _ADDRESS.sub("<data>", text)


def _pil_reason(err: Exception, nbytes: int) -> str:
    """A reason for a Pillow failure that names no memory address."""
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return f"not a decodable jpeg/png ({nbytes} bytes)"
    return f"corrupt or truncated jpeg/png ({nbytes} bytes): {_no_address(str(err))}"


def _printable(text: str, limit: int = 40) -> str:
    """A user-supplied string shortened and made printable for a log line."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return text.encode("unicode_escape").decode("ascii")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0..SOF15 but DHT C4, JPG C8 and DAC CC): they carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_size(data) -> Optional[Tuple[int, int]]:
    """(width, height) from PNG (IHDR) or JPEG (SOFn segment) header bytes, without decoding;
    None when the data is neither or the header is cut short (Pillow then decides)."""
    view = memoryview(data).cast("B")
    if bytes(view[:8]) == _PNG_SIGNATURE:
        if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
            return None
        width, height = struct.unpack(">II", view[16:24])
        return int(width), int(height)
    if bytes(view[:2]) == b"\xff\xd8":
        return _jpeg_size(view)
    return None


def _jpeg_size(view: memoryview) -> Optional[Tuple[int, int]]:
    """Walk the JPEG marker segments (each hop skips a whole segment) up to the first SOFn."""
    pos, end = 2, len(view)
    while pos + 4 <= end:
        if view[pos] != 0xFF:
            return None
        marker = view[pos + 1]
        if marker == 0xFF:                                   # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:      # standalone markers: no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):                           # end of image / start of scan: no SOF
            return None
        length = (view[pos + 2] << 8) | view[pos + 3]
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", view[pos + 5:pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


def _pil_to_rgb(img) -> np.ndarray:
    """A decoded PIL image -> RGB uint8 [H, W, 3]; 16-bit greyscale scaled by its high byte."""
    if img.format not in ("JPEG", "PNG"):
        raise ImageDecodeError(f"data is {img.format}, not jpeg or png", "unsupported_encoding")
    if img.width == 0 or img.height == 0:
        raise ImageDecodeError(f"zero-size image {img.width}x{img.height}", "empty")
    if img.mode.startswith("I"):                                       # I;16, I;16B, I (PNG 16-bit)
        grey = (np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def decode_any(msg, limits: InputLimits = NO_LIMITS) -> np.ndarray:
    """Image or CompressedImage -> RGB uint8 [H, W, 3] within ``limits``. Raises ImageDecodeError."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, limits)
    return image_to_rgb(msg, limits)


# ----------------------------------------------------------------------------- images out
def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8",
                 row_padding: int = 0) -> Image:
    """RGB uint8 [H, W, 3] -> sensor_msgs/Image in ``encoding`` (any of IMAGE_ENCODINGS; 16-bit
    values are ``v * 257``; alpha is opaque), rows padded by ``row_padding`` bytes."""
    channels, depth, order = IMAGE_ENCODINGS[encoding]
    rgb = np.asarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    if order is None:
        grey = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        pixels = grey.astype(np.uint8)[:, :, None]
    else:
        pixels = np.full((height, width, channels), 255, np.uint8)
        pixels[:, :, list(order)] = rgb
    if depth == 2:
        pixels = pixels.astype(np.uint16) * 257
        pixels = pixels.astype(">u2" if _BIG_ENDIAN_HOST else "<u2")
    rows = pixels.reshape(height, -1).view(np.uint8)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    return Image(header=header, height=height, width=width, encoding=encoding,
                 is_bigendian=int(_BIG_ENDIAN_HOST), step=rows.shape[1], data=_uint8_array(rows))


def rgb_to_compressed(rgb: np.ndarray, header: Header, fmt: str = "jpeg",
                      quality: int = 90) -> CompressedImage:
    """RGB uint8 [H, W, 3] -> sensor_msgs/CompressedImage (``fmt`` jpeg or png)."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    img = PILImage.fromarray(np.asarray(rgb, dtype=np.uint8), mode="RGB")
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format="PNG")
    data = array.array("B")
    data.frombytes(buf.getvalue())
    return CompressedImage(header=header, format=fmt, data=data)


def float_image(values: np.ndarray, header: Header, valid: Optional[np.ndarray] = None) -> Image:
    """float [H, W] -> sensor_msgs/Image 32FC1; NaN where ``valid`` is False or the value is not
    finite (REP 118). Used for depth (metres, up to scale) and confidence."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"float_image expects [H, W], got {values.shape}")
    data, out = _message_buffer(values.shape, np.float32)
    np.copyto(out, values, casting="same_kind")
    bad = ~np.isfinite(out)
    if valid is not None:
        bad |= ~np.asarray(valid, dtype=bool)
    out[bad] = np.nan
    height, width = values.shape
    return _attach(Image(header=header, height=height, width=width, encoding="32FC1",
                         is_bigendian=int(_BIG_ENDIAN_HOST), step=4 * width), data)


def image_to_float(msg: Image) -> np.ndarray:
    """sensor_msgs/Image 32FC1 -> float32 [H, W] (a view of the message data)."""
    if msg.encoding != "32FC1":
        raise ImageDecodeError(f"expected 32FC1, got '{msg.encoding}'")
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    return np.ndarray((msg.height, msg.width), dtype=dtype, buffer=msg.data, strides=(msg.step, 4))


# ----------------------------------------------------------------------------- point clouds
_XYZRGB_FIELDS = (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))
POINT_STEP = 16


def pointcloud2_xyzrgb(xyz: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """Points xyz float [N, 3] + colours rgb uint8 [N, 3] -> unordered PointCloud2 (height 1).

    Layout: x, y, z float32 at offsets 0, 4, 8; rgb float32 at 12 whose bits are 0x00RRGGBB;
    point_step 16. is_dense is False when any coordinate is not finite.
    """
    xyz = np.asarray(xyz)
    rgb = np.asarray(rgb)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(f"expected xyz [N, 3] and rgb [N, 3], got {xyz.shape} and {rgb.shape}")
    count = xyz.shape[0]
    data, packed = _message_buffer((count, 4), np.float32)             # written in place, no copy
    packed[:, :3] = xyz
    _pack_rgb(packed.view(np.uint8).reshape(count, POINT_STEP)[:, 12:16], np.asarray(rgb, np.uint8))
    fields = [PointField(name=name, offset=off, datatype=PointField.FLOAT32, count=1)
              for name, off in _XYZRGB_FIELDS]
    return _attach(PointCloud2(header=header, height=1, width=count, fields=fields,
                               is_bigendian=_BIG_ENDIAN_HOST, point_step=POINT_STEP,
                               row_step=POINT_STEP * count, is_dense=bool(np.isfinite(xyz).all())), data)


def _pack_rgb(slot: np.ndarray, rgb: np.ndarray) -> None:
    """Write uint32 0x00RRGGBB into the 4-byte ``slot`` [N, 4] of each point (host byte order)."""
    red, green, blue = (1, 2, 3) if _BIG_ENDIAN_HOST else (2, 1, 0)    # little endian: B, G, R, 0
    slot[:, blue] = rgb[:, 2]                                           # one column at a time is
    slot[:, green] = rgb[:, 1]                                          # ~3x faster than a strided
    slot[:, red] = rgb[:, 0]                                            # [N, 3] byte copy


_POINTFIELD_DTYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2",
                      PointField.UINT16: "u2", PointField.INT32: "i4", PointField.UINT32: "u4",
                      PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def decode_pointcloud2(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 -> structured array [height*width] with one field per PointField (count 1)."""
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({
        "names": [f.name for f in msg.fields],
        "formats": [order + _POINTFIELD_DTYPES[f.datatype] for f in msg.fields],
        "offsets": [f.offset for f in msg.fields],
        "itemsize": msg.point_step,
    })
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)
    rows = np.ascontiguousarray(rows[:, :msg.width * msg.point_step])
    return rows.view(dtype).reshape(-1)


def decode_pointcloud2_xyzrgb(msg: PointCloud2) -> Tuple[np.ndarray, np.ndarray]:
    """PointCloud2 with x y z rgb (rgb float32 holding 0x00RRGGBB) -> (xyz float32 [N, 3],
    rgb uint8 [N, 3]), the way RViz and PCL read it."""
    points = decode_pointcloud2(msg)
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1).astype(np.float32)
    bits = np.ascontiguousarray(points["rgb"]).astype(np.float32).view(np.uint32)
    rgb = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)
    return xyz, rgb


# ----------------------------------------------------------------------------- camera, poses
def camera_info(intrinsics: np.ndarray, width: int, height: int, header: Header,
                roi: Optional[Tuple[int, int, int, int]] = None) -> CameraInfo:
    """Pinhole intrinsics [3, 3] at an image of ``width`` x ``height`` -> CameraInfo (no
    distortion, identity rectification, P = [K | 0]). ``roi``: (x_offset, y_offset, width,
    height) written to ``roi`` as is (the node's convention: the source region, docs/ROS.md)."""
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    proj = np.zeros((3, 4))
    proj[:, :3] = k
    msg = CameraInfo(header=header, width=int(width), height=int(height),
                     distortion_model="plumb_bob", d=[0.0] * 5, k=k.reshape(-1).tolist(),
                     r=np.eye(3).reshape(-1).tolist(), p=proj.reshape(-1).tolist())
    if roi is not None:
        msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = (int(v) for v in roi)
    return msg


def _rotations_and_translations(matrices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """[K, 4, 4] (or [K, 3, 4]) rigid/similarity transforms -> (nearest rotations [K, 3, 3],
    translations [K, 3]); any scale in the 3x3 blocks is removed."""
    m = np.asarray(matrices, dtype=np.float64)
    u, _, vt = np.linalg.svd(m[:, :3, :3])
    flip = np.linalg.det(u @ vt) < 0
    u[flip, :, 2] *= -1.0
    return u @ vt, m[:, :3, 3]


def poses_from_matrices(matrices: np.ndarray) -> List[Pose]:
    """camera-to-world [K, 4, 4] -> K geometry_msgs/Pose (one batched quaternion conversion)."""
    rots, trans = _rotations_and_translations(matrices)
    quats = rotmat_to_quat(rots).reshape(-1, 4) if len(rots) else np.zeros((0, 4))
    poses = []
    for t, q in zip(trans.tolist(), quats.tolist()):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = t
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
        poses.append(pose)
    return poses


def transform_from_pose(pose: Pose, header: Header, child_frame_id: str) -> TransformStamped:
    """Pose of ``child_frame_id`` in ``header.frame_id`` -> TransformStamped parent -> child."""
    out = TransformStamped(header=header, child_frame_id=child_frame_id)
    out.transform.translation.x = pose.position.x
    out.transform.translation.y = pose.position.y
    out.transform.translation.z = pose.position.z
    out.transform.rotation = pose.orientation
    return out
