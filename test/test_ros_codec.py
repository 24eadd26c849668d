"""httm_ros.ros.codec: message <-> numpy conversions, without DDS."""

import math

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from sensor_msgs.msg import CompressedImage, Image, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from httm_ros.geometry import quat_to_rotmat  # noqa: E402
from httm_ros.ros import codec  # noqa: E402
from ros_poses import pose_from_matrix, transform_stamped  # noqa: E402


def _rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _header(frame="cam"):
    return codec.make_header(codec.sec_to_stamp(12.5), frame)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16"])
@pytest.mark.parametrize("padding", [0, 3])
def test_colour_encodings_roundtrip(encoding, padding):
    rgb = _rgb()
    msg = codec.rgb_to_image(rgb, _header(), encoding, row_padding=padding)
    assert msg.step == msg.width * len(encoding.rstrip("168")) * (2 if "16" in encoding else 1) + padding
    out = codec.image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_is_replicated_to_three_channels(encoding):
    rgb = _rgb()
    out = codec.image_to_rgb(codec.rgb_to_image(rgb, _header(), encoding))
    grey = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


def test_16bit_big_endian_scaled_by_high_byte():
    values = np.array([[0, 255, 256, 65535]], dtype=">u2")
    msg = Image(height=1, width=4, encoding="mono16", is_bigendian=1, step=8)
    msg.data = values.tobytes()
    np.testing.assert_array_equal(codec.image_to_rgb(msg)[0, :, 0], [0, 0, 1, 255])


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported encoding"),
    (lambda m: setattr(m, "encoding", "32FC1"), "unsupported encoding"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "height", 0)), "zero-size"),
    (lambda m: setattr(m, "step", 2), "step 2 < width"),
    (lambda m: setattr(m, "data", m.data[:-1]), r"data has 104 bytes, step\*height = 105"),
])
def test_bad_images_raise_with_reason(mutate, reason):
    msg = codec.rgb_to_image(_rgb(), _header())
    mutate(msg)
    with pytest.raises(codec.ImageDecodeError, match=reason):
        codec.image_to_rgb(msg)


def test_compressed_png_is_exact_and_jpeg_close():
    rgb = np.kron(_rgb(4, 4), np.ones((8, 8, 1), np.uint8))           # blocky: JPEG-friendly
    png = codec.rgb_to_compressed(rgb, _header(), "png")
    np.testing.assert_array_equal(codec.decode_any(png), rgb)
    jpeg = codec.rgb_to_compressed(rgb, _header(), "jpeg", quality=95)
    assert np.abs(codec.decode_any(jpeg).astype(int) - rgb).mean() < 8


def test_compressed_transport_format_strings_and_16bit_png():
    from io import BytesIO

    from PIL import Image as PILImage

    grey16 = np.array([[0, 256, 65535]], dtype=np.uint16)
    buf = BytesIO()
    PILImage.fromarray(grey16).save(buf, format="PNG")
    msg = CompressedImage(format="mono16; png compressed ", data=buf.getvalue())
    np.testing.assert_array_equal(codec.compressed_to_rgb(msg)[0, :, 1], [0, 1, 255])


@pytest.mark.parametrize("fmt, data, reason", [
    ("jpeg", b"", "zero-size"),
    ("jpeg", b"not an image at all", "cannot decode"),
    ("tiff", b"II*\x00", "unsupported compressed format"),
    ("16UC1; compressedDepth png", b"\x89PNG", "compressedDepth"),
])
def test_bad_compressed_raise_with_reason(fmt, data, reason):
    with pytest.raises(codec.ImageDecodeError, match=reason):
        codec.compressed_to_rgb(CompressedImage(format=fmt, data=data))


def test_pointcloud2_layout_and_roundtrip():
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    msg = codec.pointcloud2_xyzrgb(xyz, rgb, _header("map"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 100, 16, 1600)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    assert msg.is_dense and len(msg.data) == 1600 and msg.header.frame_id == "map"
    # rgb float bits are 0x00RRGGBB, the way PCL's PointXYZRGB reads them.
    bits = np.frombuffer(msg.data, np.uint32).reshape(100, 4)[:, 3]
    assert bits[0] == (int(rgb[0, 0]) << 16) | (int(rgb[0, 1]) << 8) | int(rgb[0, 2])
    back_xyz, back_rgb = codec.decode_pointcloud2_xyzrgb(msg)
    np.testing.assert_array_equal(back_xyz, xyz)
    np.testing.assert_array_equal(back_rgb, rgb)


def test_pointcloud2_nan_not_dense_and_empty():
    xyz = np.zeros((3, 3), np.float32)
    xyz[1, 2] = np.nan
    assert not codec.pointcloud2_xyzrgb(xyz, np.zeros((3, 3), np.uint8), _header()).is_dense
    empty = codec.pointcloud2_xyzrgb(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), _header())
    assert empty.width == 0 and len(empty.data) == 0
    assert codec.decode_pointcloud2_xyzrgb(empty)[0].shape == (0, 3)


def test_float_image_nan_for_invalid():
    depth = np.array([[1.0, 2.0], [np.inf, 4.0]], np.float32)
    msg = codec.float_image(depth, _header(), valid=np.array([[True, False], [True, True]]))
    assert (msg.encoding, msg.step, msg.width, msg.height) == ("32FC1", 8, 2, 2)
    back = codec.image_to_float(msg)
    assert back[0, 0] == 1.0 and back[1, 1] == 4.0
    assert math.isnan(back[0, 1]) and math.isnan(back[1, 0])


def test_camera_info_from_intrinsics():
    k = np.array([[300.0, 0, 259], [0, 310.0, 196], [0, 0, 1]])
    info = codec.camera_info(k, 518, 392, _header())
    assert (info.width, info.height) == (518, 392)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), k)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], k)
    assert list(info.d) == [0.0] * 5


def test_pose_and_transform_from_similarity_matrix():
    angle = 0.3
    rot = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    mat = np.eye(4)
    mat[:3, :3] = 2.0 * rot                                             # scale is dropped
    mat[:3, 3] = [1, 2, 3]
    pose = pose_from_matrix(mat)
    q = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
    np.testing.assert_allclose(quat_to_rotmat(np.array(q)), rot, atol=1e-9)
    assert (pose.position.x, pose.position.y, pose.position.z) == (1, 2, 3)
    tf = transform_stamped(mat, _header("map"), "camera")
    assert tf.header.frame_id == "map" and tf.child_frame_id == "camera"
    assert tf.transform.translation.z == 3 and tf.transform.rotation.w == pytest.approx(q[3])


def test_stamps_roundtrip():
    stamp = codec.sec_to_stamp(1700000000.123456789)
    assert stamp.sec == 1700000000 and abs(stamp.nanosec - 123456789) < 1000
    assert codec.stamp_to_sec(codec.sec_to_stamp(3.25)) == 3.25
    header = codec.make_header(stamp, "x")
    assert header.stamp == stamp and header.stamp is not stamp


def test_pointcloud2_one_million_points_is_fast():
    import time

    xyz = np.random.default_rng(0).normal(size=(1_000_000, 3)).astype(np.float32)
    rgb = np.zeros((1_000_000, 3), np.uint8)
    start = time.perf_counter()
    msg = codec.pointcloud2_xyzrgb(xyz, rgb, Header())
    assert time.perf_counter() - start < 1.0                            # ms in practice; per-point is minutes
    assert len(msg.data) == 16_000_000


def test_batched_poses_match_single_and_fix_reflections():
    rng = np.random.default_rng(3)
    mats = np.repeat(np.eye(4)[None], 5, axis=0)
    for m in mats:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        m[:3, :3] = q * np.sign(np.linalg.det(q))                        # proper rotations
        m[:3, 3] = rng.normal(size=3)
    batch = codec.poses_from_matrices(mats)
    for m, pose in zip(mats, batch):
        single = pose_from_matrix(m)
        assert pose == single
        q = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
        np.testing.assert_allclose(quat_to_rotmat(np.array(q)), m[:3, :3], atol=1e-9)
    assert codec.poses_from_matrices(np.zeros((0, 4, 4))) == []


# ----------------------------------------------------------------------------- input bounds
def _png(width, height, mode="L"):
    from io import BytesIO

    from PIL import Image as PILImage

    buf = BytesIO()
    PILImage.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(width, height, **save_args):
    from io import BytesIO

    from PIL import Image as PILImage

    buf = BytesIO()
    PILImage.new("RGB", (width, height), (90, 20, 200)).save(buf, format="JPEG", **save_args)
    return buf.getvalue()


@pytest.mark.parametrize("data, size", [
    (lambda: _png(33, 17), (33, 17)),
    (lambda: _png(33, 17, "RGB"), (33, 17)),
    (lambda: _jpeg(33, 17), (33, 17)),
    (lambda: _jpeg(40, 9, progressive=True), (40, 9)),                       # SOF2
    (lambda: _jpeg(21, 30, exif=b"Exif\0\0" + b"x" * 5000), (21, 30)),         # a long APP1 first
    (lambda: b"\xff\xd8\xff\xe0\x00", None),                                   # cut short
    (lambda: b"GIF89a....", None),
])
def test_compressed_size_from_header_bytes(data, size):
    assert codec.compressed_size(data()) == size


def test_bomb_png_rejected_from_its_header_before_decompression(monkeypatch):
    from PIL import Image as PILImage

    data = _png(9500, 9500)                                   # ~87 KB, 90 Mpx once decoded
    monkeypatch.setattr(PILImage, "open", lambda *a, **k: pytest.fail("Pillow opened the bomb"))
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.compressed_to_rgb(CompressedImage(format="png", data=data), codec.InputLimits())
    assert err.value.reason == "too_many_pixels"
    assert str(err.value) == "image 9500x9500 has 90.2 Mpx, above max_input_pixels 8.3 Mpx"


def test_pillow_bomb_warning_becomes_a_rejection_not_stderr(monkeypatch, capfd):
    import warnings

    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(codec, "compressed_size", lambda data: None)      # a header only Pillow reads
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                    # any warning left fails here
        with pytest.raises(codec.ImageDecodeError, match="decompression bomb") as err:
            codec.compressed_to_rgb(CompressedImage(format="png", data=_png(40, 30)))
        with pytest.raises(codec.ImageDecodeError, match="decompression bomb"):
            codec.compressed_to_rgb(CompressedImage(format="png", data=_png(100, 30)))   # > 2x: the error
    assert err.value.reason == "too_many_pixels"
    assert "Warning" not in capfd.readouterr().err


def test_apply_pillow_limit_sets_the_process_bound(monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", PILImage.MAX_IMAGE_PIXELS)
    codec.apply_pillow_limit(codec.InputLimits(max_pixels=12345))
    assert PILImage.MAX_IMAGE_PIXELS == 12345


@pytest.mark.parametrize("data, reason, text", [
    (b"not an image at all", "undecodable", "cannot decode 'jpeg' data: not a decodable jpeg/png (19 bytes)"),
    (None, "undecodable", "corrupt or truncated jpeg/png"),
])
def test_garbage_compressed_reason_has_no_memory_address(data, reason, text):
    data = data if data is not None else _jpeg(64, 48)[:300]
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.compressed_to_rgb(CompressedImage(format="jpeg", data=data))
    assert err.value.reason == reason and text in str(err.value)
    assert "0x" not in str(err.value) and "BytesIO" not in str(err.value)


@pytest.mark.parametrize("width, height, limits, reason", [
    (20000, 1, codec.InputLimits(), "aspect_ratio"),
    (1, 20000, codec.InputLimits(), "aspect_ratio"),
    (4000, 2200, codec.InputLimits(), "too_many_pixels"),
    (90, 10, codec.InputLimits(max_aspect_ratio=100, fits=lambda w, h: f"image {w}x{h} too elongated"),
     "model_size"),
])
def test_out_of_bounds_raw_rejected_from_the_header(width, height, limits, reason):
    msg = Image(width=width, height=height, encoding="rgb8", step=3 * width)    # no data: never read
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.image_to_rgb(msg, limits)
    assert err.value.reason == reason and f"{width}x{height}" in str(err.value)


def test_within_bounds_decodes_and_limits_apply_to_compressed_too():
    limits = codec.InputLimits(max_pixels=64 * 48, max_aspect_ratio=2.0)
    rgb = _rgb(48, 64)
    assert codec.decode_any(codec.rgb_to_image(rgb, _header()), limits).shape == (48, 64, 3)
    assert codec.decode_any(codec.rgb_to_compressed(rgb, _header(), "png"), limits).shape == (48, 64, 3)
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.decode_any(codec.rgb_to_compressed(_rgb(48, 65), _header(), "jpeg"), limits)
    assert err.value.reason == "too_many_pixels"
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.decode_any(codec.rgb_to_compressed(_rgb(10, 21), _header(), "png"), limits)
    assert err.value.reason == "aspect_ratio" and "21x10" in str(err.value)


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported_encoding"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "height", 0)), "empty"),
    (lambda m: setattr(m, "step", 2), "bad_step"),
    (lambda m: setattr(m, "data", m.data[:-1]), "truncated"),
])
def test_bad_images_carry_their_counter_reason(mutate, reason):
    msg = codec.rgb_to_image(_rgb(), _header())
    mutate(msg)
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.image_to_rgb(msg)
    assert err.value.reason == reason and reason in codec.DROP_REASONS


def test_hostile_format_string_is_shortened_and_printable():
    with pytest.raises(codec.ImageDecodeError) as err:
        codec.compressed_to_rgb(CompressedImage(format="\x1b[31m" + "x" * 500, data=b"abc"))
    assert err.value.reason == "unsupported_encoding" and "\x1b" not in str(err.value)
    assert len(str(err.value)) < 150
