"""Hostile camera inputs for the fuzz suite (issue 20): seeded, deterministic, no DDS needed.

Each hostile message comes as a ``Case(name, msg, expect)``: ``expect`` is "ok" (a frame must come
out), "any" (decoded or refused, both fine: only the accounting is checked) or the drop reason the
node must count it under (a key of ``codec.DROP_REASONS``).

- ``raw_cases(rgb)`` / ``compressed_cases(rgb)``: the fixed hostile sets for sensor_msgs/Image and
  CompressedImage (encodings, sizes, steps, truncations, garbage, lying headers, bombs);
- ``png_bomb(side)``: a constant grey PNG, tiny compressed, ``side`` x ``side`` decoded (Pillow);
- ``random_image(rng, base)`` / ``random_compressed(rng, seeds)``: one random header + data each,
  for the in-process decoder fuzz.
"""

from __future__ import annotations

import array
import functools
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from httm_ros.ros import codec

# A reason must not leak a memory address (e.g. "<_io.BytesIO object at 0x7f...>").
# (An all-decimal "0x4294967295" is a size, width 0 x height 4294967295.)
ADDRESS = re.compile(r"object at|\bat 0x[0-9a-f]+|(?<![0-9a-z])0x(?=[0-9a-f]*[a-f])[0-9a-f]{6,}", re.I)

UNKNOWN_ENCODINGS = ("", " ", "yuv422", "YUV422_YUY2", "bayer_rggb8", "32FC1", "16UC1", "8UC3", "8UC4",
                     "rgb", "rgb9", "jpeg", "\u00e9ncoding", "r" * 300)
MIXED_CASE_ENCODINGS = ("RGB8", "Bgr8", " rgb8 ", "MONO8", "Rgba16")


@dataclass(frozen=True)
class Case:
    """One hostile input: its name, the message and what the node must do with it."""

    name: str
    msg: Any
    expect: str


def stamp(i: int, rate_hz: float = 30.0, start: float = 1_700_000_000.0) -> Time:
    """The stamp of frame ``i`` of a regular stream at ``rate_hz``."""
    return codec.sec_to_stamp(start + i / rate_hz)


def header(i: int) -> Header:
    return codec.make_header(stamp(i), "cam")


# ----------------------------------------------------------------------------- compressed bytes
def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 [H, W] or [H, W, 3] -> PNG bytes."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    """RGB uint8 [H, W, 3] -> JPEG bytes."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@functools.lru_cache(maxsize=2)
def png_bomb(side: int = 9500) -> bytes:
    """A constant grey PNG of ``side`` x ``side`` pixels built with Pillow: ~90 KB compressed,
    ``side**2`` bytes (x3 as RGB) decoded."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("L", (side, side), 128).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def png_with_ihdr(png: bytes, width: int, height: int) -> bytes:
    """``png`` whose IHDR claims ``width`` x ``height`` (CRC fixed, so only the size lies)."""
    assert png[12:16] == b"IHDR"
    body = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF)
    return png[:16] + body + crc + png[33:]


def _bytes_array(data: bytes) -> array.array:
    out = array.array("B")
    out.frombytes(data)
    return out


def compressed(i: int, data: bytes, fmt: str) -> CompressedImage:
    return CompressedImage(header=header(i), format=fmt, data=_bytes_array(data))


def raw(i: int, data: bytes, encoding: str, height: int, width: int, step: int, bigendian: int = 0) -> Image:
    return Image(header=header(i), height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                 step=step, data=_bytes_array(data))


# ----------------------------------------------------------------------------- fixed hostile sets
def good_raw(rgb: np.ndarray, i: int, encoding: str = "rgb8", padding: int = 0) -> Image:
    return codec.rgb_to_image(rgb, header(i), encoding, row_padding=padding)


def good_compressed(rgb: np.ndarray, i: int, fmt: str = "jpeg") -> CompressedImage:
    return codec.rgb_to_compressed(rgb, header(i), fmt)


def raw_cases(rgb: np.ndarray, first: int = 0) -> List[Case]:
    """Hostile sensor_msgs/Image messages built around one good RGB uint8 [H, W, 3] frame;
    stamps ``first``, ``first + 1``, ... in order."""
    height, width = rgb.shape[:2]
    cases: List[Tuple[str, Callable[[int], Any], str]] = []
    for enc in codec.IMAGE_ENCODINGS:                                  # every valid encoding
        cases.append((f"valid {enc}", functools.partial(good_raw, rgb, encoding=enc), "ok"))
    cases.append(("padded rows", functools.partial(good_raw, rgb, padding=7), "ok"))
    for enc in MIXED_CASE_ENCODINGS:                                   # the codec folds case and blanks
        cases.append((f"mixed case {enc!r}", functools.partial(_reencoded, rgb, enc), "ok"))
    for enc in UNKNOWN_ENCODINGS:
        cases.append((f"unknown encoding {enc[:12]!r}", functools.partial(_reencoded, rgb, enc),
                      "unsupported_encoding"))
    # DDS strings end at a NUL: "rgb8\0x" arrives as "rgb8" (a frame), in-process it is refused.
    cases.append(("NUL inside the encoding", functools.partial(_reencoded, rgb, "rgb8\0x"), "any"))
    row = width * 3
    frame = rgb.tobytes()
    cases += [
        ("0x0", lambda i: raw(i, b"", "rgb8", 0, 0, 0), "empty"),
        ("0 rows", lambda i: raw(i, b"", "rgb8", 0, width, row), "empty"),
        ("0 columns", lambda i: raw(i, b"", "rgb8", height, 0, 0), "empty"),
        ("1x1", lambda i: raw(i, b"\x80\x40\x20", "rgb8", 1, 1, 3), "any"),
        ("20000x1", lambda i: raw(i, bytes(60000), "rgb8", 1, 20000, 60000), "aspect_ratio"),
        ("1x20000", lambda i: raw(i, bytes(60000), "rgb8", 20000, 1, 3), "aspect_ratio"),
        ("step < width*channels", lambda i: raw(i, frame, "rgb8", height, width, row - 3), "bad_step"),
        ("step 0", lambda i: raw(i, frame, "rgb8", height, width, 0), "bad_step"),
        ("data truncated", lambda i: raw(i, frame[: len(frame) // 2], "rgb8", height, width, row), "truncated"),
        ("data empty", lambda i: raw(i, b"", "rgb8", height, width, row), "truncated"),
        ("step too large for data", lambda i: raw(i, frame, "rgb8", height, width, row + 1), "truncated"),
        ("data too long", lambda i: raw(i, frame + bytes(999), "rgb8", height, width, row), "ok"),
        ("header 9500x9500, data of one frame", lambda i: raw(i, frame, "rgb8", 9500, 9500, 9500 * 3),
         "too_many_pixels"),
        ("header 2^31-1 rows", lambda i: raw(i, frame, "mono8", 2**31 - 1, width, width), "too_many_pixels"),
        ("header 2^32-1 x 2^32-1", lambda i: raw(i, frame, "rgb8", 2**32 - 1, 2**32 - 1, 2**32 - 1),
         "too_many_pixels"),
        ("another aspect ratio (size change)", lambda i: good_raw(np.ascontiguousarray(rgb[: height // 2]), i), "ok"),
        ("twice the size (size change)", lambda i: good_raw(np.repeat(np.repeat(rgb, 2, 0), 2, 1), i), "ok"),
        ("big endian rgb16", lambda i: _big_endian16(rgb, i), "ok"),
    ]
    return [Case(name, make(first + k), expect) for k, (name, make, expect) in enumerate(cases)]


def _reencoded(rgb: np.ndarray, encoding: str, i: int) -> Image:
    """A frame in ``encoding`` folded to a known one (rgb8 otherwise), labelled ``encoding``."""
    known = encoding.strip().lower()
    msg = good_raw(rgb, i, known if known in codec.IMAGE_ENCODINGS else "rgb8")
    msg.encoding = encoding
    return msg


def _big_endian16(rgb: np.ndarray, i: int) -> Image:
    data = (rgb.astype(">u2") * 257).tobytes()
    return raw(i, data, "rgb16", rgb.shape[0], rgb.shape[1], rgb.shape[1] * 6, bigendian=1)


def compressed_cases(rgb: np.ndarray, first: int = 0) -> List[Case]:
    """Hostile sensor_msgs/CompressedImage messages around one good RGB uint8 [H, W, 3] frame."""
    jpg, png = jpeg_bytes(rgb), png_bytes(rgb)
    rng = np.random.default_rng(20)
    garbage = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    cases: List[Tuple[str, Callable[[int], Any], str]] = [
        ("jpeg", lambda i: compressed(i, jpg, "jpeg"), "ok"),
        ("png", lambda i: compressed(i, png, "png"), "ok"),
        ("JPEG upper case", lambda i: compressed(i, jpg, "JPEG"), "ok"),
        ("image_transport style format", lambda i: compressed(i, jpg, "rgb8; jpeg compressed bgr8"), "ok"),
        ("empty format, png data", lambda i: compressed(i, png, ""), "ok"),
        ("png data announced as jpeg", lambda i: compressed(i, png, "jpeg"), "ok"),
        ("grey png", lambda i: compressed(i, png_bytes(rgb[:, :, 1]), "png"), "ok"),
        ("16-bit grey png", lambda i: compressed(i, png_bytes((rgb[:, :, 0].astype(np.uint16) * 257)), "png"), "ok"),
        ("format bmp", lambda i: compressed(i, png, "bmp"), "unsupported_encoding"),
        ("compressedDepth", lambda i: compressed(i, png, "16UC1; compressedDepth png"), "unsupported_encoding"),
        ("bmp data as png", lambda i: compressed(i, _bmp_bytes(rgb), "png"), "unsupported_encoding"),
        ("no data", lambda i: compressed(i, b"", "jpeg"), "empty"),
        ("garbage as jpeg", lambda i: compressed(i, garbage, "jpeg"), "undecodable"),
        ("garbage as png", lambda i: compressed(i, garbage, "png"), "undecodable"),
        ("jpeg truncated to 16 bytes", lambda i: compressed(i, jpg[:16], "jpeg"), "undecodable"),
        ("jpeg truncated by half", lambda i: compressed(i, jpg[: len(jpg) // 2], "jpeg"), "undecodable"),
        ("png signature only", lambda i: compressed(i, png[:8], "png"), "undecodable"),
        ("png truncated by half", lambda i: compressed(i, png[: len(png) // 2], "png"), "undecodable"),
        ("png with a wrong IHDR CRC", lambda i: compressed(i, png[:29] + b"\0\0\0\0" + png[33:], "png"), "undecodable"),
        ("png IHDR lies: twice the size", lambda i: compressed(
            i, png_with_ihdr(png, 2 * rgb.shape[1], 2 * rgb.shape[0]), "png"), "undecodable"),
        ("png IHDR lies: 9500x9500", lambda i: compressed(i, png_with_ihdr(png, 9500, 9500), "png"), "too_many_pixels"),
        ("png IHDR lies: 2^31-1 x 1", lambda i: compressed(i, png_with_ihdr(png, 2**31 - 1, 1), "png"),
         "too_many_pixels"),
        ("png 20000x1", lambda i: compressed(i, png_bytes(np.zeros((1, 20000), np.uint8)), "png"), "aspect_ratio"),
        ("png 1x20000", lambda i: compressed(i, png_bytes(np.zeros((20000, 1), np.uint8)), "png"), "aspect_ratio"),
        ("png bomb 9500x9500", lambda i: compressed(i, png_bomb(9500), "png"), "too_many_pixels"),
    ]
    return [Case(name, make(first + k), expect) for k, (name, make, expect) in enumerate(cases)]


def _bmp_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="BMP")
    return buf.getvalue()


def expected_drops(cases: Sequence[Case]) -> dict:
    """Drop reason -> how many of ``cases`` the node must count under it ("any" cases left out)."""
    out: dict = {}
    for case in cases:
        if case.expect not in ("ok", "any"):
            out[case.expect] = out.get(case.expect, 0) + 1
    return out


# ----------------------------------------------------------------------------- random inputs
_RANDOM_ENCODINGS = tuple(codec.IMAGE_ENCODINGS) + MIXED_CASE_ENCODINGS + UNKNOWN_ENCODINGS[:8]
_BIG = (0, 1, 2, 3, 13, 14, 255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1)


def random_image(rng: np.random.Generator) -> Image:
    """A sensor_msgs/Image with a random header and data: half of them consistent (a real frame
    of a random small size, encoding and padding), the rest with random sizes, steps and lengths."""
    enc = str(rng.choice(_RANDOM_ENCODINGS))
    if rng.random() < 0.5:
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        channels, depth, _ = codec.IMAGE_ENCODINGS.get(enc.strip().lower(), (3, 1, None))
        step = width * channels * depth + int(rng.integers(0, 5))
        length = step * height + int(rng.choice([0, 0, 0, -1, 1, -step]))
    else:
        height, width, step = (int(rng.choice(_BIG)) if rng.random() < 0.4 else int(rng.integers(0, 64))
                               for _ in range(3))
        length = int(rng.integers(0, 4096))
    data = rng.integers(0, 256, max(length, 0), dtype=np.uint8).tobytes()
    return raw(0, data, enc, height, width, step, bigendian=int(rng.integers(0, 2)))


def seed_images(rng: np.random.Generator) -> List[bytes]:
    """Small valid JPEG and PNG files (colour, grey, 16-bit, palette) to mutate."""
    from PIL import Image as PILImage

    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    out = [jpeg_bytes(rgb), png_bytes(rgb), png_bytes(rgb[:, :, 0]), jpeg_bytes(rgb, 30),
           png_bytes(rgb[:, :, 0].astype(np.uint16) * 257)]
    buf = io.BytesIO()
    PILImage.fromarray(rgb).convert("P").save(buf, format="PNG")
    out.append(buf.getvalue())
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="GIF")
    out.append(buf.getvalue())
    return out


def random_compressed(rng: np.random.Generator, seeds: Sequence[bytes]) -> CompressedImage:
    """A CompressedImage whose data is a mutated seed file (bit flips, truncation, splice, lying
    PNG size) or plain garbage, with a random format string."""
    data = bytearray(seeds[int(rng.integers(0, len(seeds)))])
    kind = int(rng.integers(0, 6))
    if kind == 0:
        data = bytearray(rng.integers(0, 256, int(rng.integers(0, 512)), dtype=np.uint8).tobytes())
    elif kind == 1:
        data = data[: int(rng.integers(0, len(data) + 1))]
    elif kind == 2:
        for pos in rng.integers(0, len(data), int(rng.integers(1, 8))):
            data[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 3:
        other = seeds[int(rng.integers(0, len(seeds)))]
        cut = int(rng.integers(0, len(data)))
        data = data[:cut] + other[int(rng.integers(0, len(other))):]
    elif kind == 4 and data[12:16] == b"IHDR":
        size = [int(rng.choice((0, 1, 17, 16000, 9500, 2**31 - 1, 2**32 - 1))) for _ in range(2)]
        data = bytearray(png_with_ihdr(bytes(data), *size))
    fmt = str(rng.choice(("jpeg", "png", "", "JPEG", "rgb8; png compressed ", "gif", "x")))
    return compressed(0, bytes(data), fmt)


def declared_size(msg) -> Optional[Tuple[int, int]]:
    """(height, width) the message claims: the Image header, or the compressed file's own header
    (read lazily by Pillow, nothing decoded); None when the file has no readable header."""
    if isinstance(msg, Image):
        return int(msg.height), int(msg.width)
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                  # Pillow's bomb warning: not the codec's
            with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
                return img.height, img.width
    except Exception:  # noqa: BLE001 - any unreadable header
        return None


# ----------------------------------------------------------------------------- the node under test
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
# The tiny model on the CPU, small windows, every frame a keyframe: windows are cheap and the
# frames a window takes are exactly the frames received (none skipped by the selection).
TINY_NODE = ("-p", "allow_test_weights:=true", "-p", "model_config:=tiny", "-p", "device:=cpu",
             "-p", "image_size:=56", "-p", "window_size:=3", "-p", "window_overlap:=2",
             "-p", "keyframe_policy:=every", "-p", "diagnostics_period:=0.05", "-p", "warmup_forwards:=0")


def start_node(domain_name: str, log_path, *ros_args: str):
    """The node's executable (``bin/reconstruct_node``, as installed) ``--ros-args ...`` in the
    DDS domain of ``local_dds.ros_env(domain_name)``; stdout + stderr to ``log_path`` (a pipe
    nobody reads would block the node once full). Returns the Popen."""
    import os
    import subprocess
    import sys

    from httm_ros.tools.local_dds import ros_env

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))   # this checkout first
    env = {**os.environ, **ros_env(domain_name), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, str(ROOT / "bin" / "reconstruct_node"), "--ros-args", *ros_args],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of process ``pid`` in MiB."""
    return _status_kb(pid, "VmHWM") / 1024.0


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024.0


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM of ``pid`` to its current RSS (Linux: "5" > /proc/PID/clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def diagnostic_values(collector, node_fqn: str) -> dict:
    """key -> value (str) of the newest /diagnostics status of ``node_fqn`` ({} before the first)."""
    name = f"{node_fqn}: reconstruction"
    for array_msg in reversed(list(collector.messages["diagnostics"])):
        for status in array_msg.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values} | {"_level": status.level,
                                                                      "_message": status.message}
    return {}


def accounting(values: dict) -> dict:
    """The frame accounting in one /diagnostics status (``diagnostic_values``): received,
    processed, skipped, queued, drops by reason (queue_full included), lost and missing."""
    count = {k: int(values[f"frames_{k}"]) for k in ("received", "processed", "skipped", "queued")}
    count["lost"] = int(values["frames_lost_in_transport"])
    count["missing"] = int(values["frames_estimated_missing"])
    count["drops"] = {k[len("dropped."):]: int(v) for k, v in values.items() if k.startswith("dropped.")}
    return count


def unaccounted(acc: dict) -> int:
    """received - (processed + skipped + queued + dropped): 0 when every frame is accounted for."""
    return acc["received"] - (acc["processed"] + acc["skipped"] + acc["queued"] + sum(acc["drops"].values()))


def drop_delta(before: dict, after: dict) -> dict:
    """Per-reason drops between two accountings (reasons with no new drop left out)."""
    out = {r: n - before["drops"].get(r, 0) for r, n in after["drops"].items()}
    return {r: n for r, n in out.items() if n}


def unclean(log: str) -> list:
    """Lines of a node's output that a requested stop must not produce."""
    return [line for line in log.splitlines()
            if "Traceback" in line or "[ERROR]" in line or "[FATAL]" in line or "Error:" in line]
