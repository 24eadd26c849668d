"""camera_info in and out (issue 17): side-input checks and pairing (ros/side_inputs.py), the
published camera_info's roi convention (docs/ROS.md "camera_info and metric scale"), and the node
over real DDS: a pixel round-trips source -> model -> source through our camera_info, and a 3D
point unprojected from our depth + camera_info projects with the source camera_info onto the
same source pixel."""

import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from httm_ros.pipeline.input_mapping import input_mapping  # noqa: E402
from httm_ros.ros import codec  # noqa: E402
from httm_ros.ros.messages import WindowOutputs, source_region_roi, window_messages  # noqa: E402
from httm_ros.ros.params import defaults  # noqa: E402
from httm_ros.ros.side_inputs import (PairingBuffer, SideInputError, SideInputs, camera_info_k,  # noqa: E402
                                      depth_metres)
from httm_ros.vggt.preprocess import model_input_size  # noqa: E402

# ----------------------------------------------------------------------------- the convention


def source_pixel(info: CameraInfo, uv_model: np.ndarray) -> np.ndarray:
    """docs/ROS.md: a model pixel (u, v) -> the source pixel, from our camera_info alone."""
    roi = info.roi
    return np.stack([roi.x_offset + (uv_model[..., 0] + 0.5) * roi.width / info.width - 0.5,
                     roi.y_offset + (uv_model[..., 1] + 0.5) * roi.height / info.height - 0.5], -1)


def model_pixel(info: CameraInfo, uv_src: np.ndarray) -> np.ndarray:
    roi = info.roi
    return np.stack([(uv_src[..., 0] + 0.5 - roi.x_offset) * info.width / roi.width - 0.5,
                     (uv_src[..., 1] + 0.5 - roi.y_offset) * info.height / roi.height - 0.5], -1)


def _k(fx, fy, cx, cy):
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _info_msg(k, width, height, stamp=Time(sec=1), d=(0.0,) * 5, model="plumb_bob"):
    return CameraInfo(header=Header(stamp=stamp, frame_id="cam"), width=width, height=height,
                      distortion_model=model, d=list(d), k=np.asarray(k, float).reshape(-1).tolist())


def _published_info(src_hw, k_src, roi=True):
    """Our ~/camera_info for one keyframe of a ``src_hw`` source with camera K ``k_src``."""
    model_hw = model_input_size(*src_hw, "crop", 518, 14)
    mapping = input_mapping(src_hw, model_hw, 518)
    out = WindowOutputs(range(0, 1), model_hw, mapping.intrinsics(k_src)[None], np.eye(4)[None],
                        source_regions=np.array([source_region_roi(mapping, roi)]))
    msgs = window_messages(out, [Time(sec=1)], {**defaults(), "publish_camera_info": True})
    return msgs.camera_info[0], mapping


@pytest.mark.parametrize("src_hw,exact", [((480, 640), True), ((720, 1280), True), ((640, 480), False)])
def test_published_roi_maps_model_pixels_back_to_the_source(src_hw, exact):
    """Landscape (no crop): the roi is the whole source and the mapping exact; portrait (cropped):
    the crop's source rows are fractional, rounded in the roi: within 1 source pixel."""
    k_src = _k(600.0, 610.0, src_hw[1] / 2 - 4.0, src_hw[0] / 2 + 3.0)
    info, mapping = _published_info(src_hw, k_src)
    assert (info.height, info.width) == mapping.model_hw and info.binning_x == info.binning_y == 0
    uv = np.array([[0.0, 0.0], [info.width - 1.0, info.height - 1.0], [17.0, 33.0]])
    back = source_pixel(info, uv)
    np.testing.assert_allclose(back, mapping.to_source(uv), atol=1e-9 if exact else 1.0)
    np.testing.assert_allclose(model_pixel(info, back), uv, atol=1e-9)       # the round trip itself
    if exact:
        assert (info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height) == (0, 0, src_hw[1], src_hw[0])
    else:
        assert info.roi.y_offset > 0 and info.roi.width == src_hw[1]
    k = np.array(info.k).reshape(3, 3)                                    # K of the model input (P = [K | 0])
    np.testing.assert_allclose(np.array(info.p).reshape(3, 4)[:, :3], k)
    xyz = np.array([[0.2, -0.1, 1.5], [-0.4, 0.3, 3.0]])
    proj = lambda K, p: (p @ K.T)[:, :2] / p[:, 2:]                      # noqa: E731
    np.testing.assert_allclose(proj(k, xyz), mapping.to_model(proj(k_src, xyz)), atol=1e-9)


def test_camera_info_roi_can_be_off():
    info, _ = _published_info((640, 480), _k(500, 500, 240, 320), roi=False)
    assert (info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height) == (0, 0, 0, 0)


# ----------------------------------------------------------------------------- side inputs in


def test_camera_info_checks_distortion_binning_and_roi():
    ck = camera_info_k(_info_msg(_k(500, 501, 320, 240), 640, 480))
    assert ck.hw == (480, 640) and ck.k[0, 0] == 500
    with pytest.raises(SideInputError) as err:
        camera_info_k(_info_msg(_k(500, 501, 320, 240), 640, 480, d=(0.1, 0, 0, 0, 0)))
    assert err.value.reason == "distorted_camera_info" and "plumb_bob" in str(err.value)
    with pytest.raises(SideInputError) as err:
        camera_info_k(_info_msg(_k(500, 501, 320, 240), 640, 480, d=(0,) * 7 + (0.01,), model="rational_polynomial"))
    assert err.value.reason == "distorted_camera_info"
    with pytest.raises(SideInputError) as err:
        camera_info_k(_info_msg(np.zeros((3, 3)), 640, 480))                # an uncalibrated driver
    assert err.value.reason == "bad_camera_info"
    msg = _info_msg(_k(500, 500, 330, 250), 320, 240)
    msg.binning_x = msg.binning_y = 2
    msg.roi.x_offset, msg.roi.y_offset = 10, 10                           # image_geometry's convention
    np.testing.assert_allclose(camera_info_k(msg).k, _k(250, 250, 160, 120))


def test_rectified_images_take_p_and_ignore_d():
    """image_proc's image_rect with the driver's camera_info: K and D describe the raw camera, P the
    rectified image (CameraInfo's convention, image_geometry reads P for rectified images)."""
    msg = _info_msg(_k(500, 501, 320, 240), 640, 480, d=(0.1, -0.05, 0, 0, 0))
    msg.p = [480.0, 0.0, 318.0, 0.0, 0.0, 481.0, 236.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(SideInputError) as err:
        camera_info_k(msg)                                                 # raw intrinsics + D: refused
    assert err.value.reason == "distorted_camera_info" and "camera_info_rectified" in str(err.value)
    np.testing.assert_allclose(camera_info_k(msg, rectified=True).k, _k(480, 481, 318, 236))
    msg.p = [0.0] * 12                                                     # a driver without P
    with pytest.raises(SideInputError) as err:
        camera_info_k(msg, rectified=True)
    assert err.value.reason == "bad_camera_info" and "camera_info P" in str(err.value)
    side = SideInputs({**defaults(), "use_camera_info": True, "camera_info_rectified": True})
    msg.p = [480.0, 0.0, 318.0, 0.0, 0.0, 481.0, 236.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert side.add("camera_info", msg) is None                           # buffered, not refused


def _depth_msg(values, encoding, stamp=Time(sec=1)):
    values = np.ascontiguousarray(values)
    msg = Image(header=Header(stamp=stamp, frame_id="cam"), height=values.shape[0], width=values.shape[1],
                encoding=encoding, is_bigendian=0, step=values.strides[0])
    msg.data = values.tobytes()
    return msg


def test_depth_encodings_units_and_holes():
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    np.testing.assert_allclose(depth_metres(_depth_msg(mm, "16UC1")), [[np.nan, 1.0], [2.5, 65.535]])
    m = np.array([[np.nan, 1.5], [-1.0, np.inf]], np.float32)
    np.testing.assert_allclose(depth_metres(_depth_msg(m, "32FC1")), [[np.nan, 1.5], [np.nan, np.nan]])
    for encoding in ("rgb8", "16SC1", "mono16", "64FC1"):
        with pytest.raises(SideInputError) as err:
            depth_metres(_depth_msg(mm, encoding))
        assert err.value.reason == "unsupported_depth_encoding"
    short = _depth_msg(mm, "16UC1")
    short.data = bytes(short.data)[:5]
    with pytest.raises(SideInputError) as err:
        depth_metres(short)
    assert err.value.reason == "bad_depth"


def test_pairing_exact_within_tolerance_latest_fallback_bounded_and_waiting():
    buf = PairingBuffer(capacity=3)
    for s in (1.0, 2.0, 3.0, 4.0):
        buf.add(s, f"m{s:g}")
    assert len(buf) == 3                                                   # the oldest went
    assert buf.pair(2.0004, "exact", 1e-3) == ("m2", "exact")
    assert buf.pair(2.5, "exact", 1e-3) == (None, "unpaired")
    assert buf.pair(2.5, "latest", 1e-3) == ("m4", "latest")
    assert buf.pair(1.0, "exact", 1e-3) == (None, "unpaired")              # evicted
    threading.Timer(0.05, buf.add, args=(5.0, "m5")).start()
    t0 = time.monotonic()
    assert buf.pair(5.0, "exact", 1e-3, wait=2.0) == ("m5", "exact")       # arrives while waiting
    assert time.monotonic() - t0 < 1.5
    t0 = time.monotonic()
    assert buf.pair(9.0, "exact", 1e-3, wait=0.1) == (None, "unpaired")
    assert 0.09 < time.monotonic() - t0 < 1.0


def test_side_inputs_count_refusals_size_mismatch_and_follow_a_rescale():
    values = {**defaults(), "use_camera_info": True, "use_depth": True, "side_input_wait": 0.0}
    side = SideInputs(values)
    assert side.add("camera_info", _info_msg(_k(500, 500, 319.5, 239.5), 640, 480)) is None
    assert side.add("depth", _depth_msg(np.full((480, 640), 1500, np.uint16), "16UC1")) is None
    assert side.add("depth", _depth_msg(np.zeros((4, 4), np.uint8), "8UC1")).reason == "unsupported_depth_encoding"
    k, depth, refused = side.pair(1.0, (480, 640), (240, 320), values)      # the node halves the frame
    assert refused is None and depth.shape == (240, 320) and np.allclose(depth, 1.5)
    np.testing.assert_allclose(k, _k(250, 250, 159.5, 119.5))
    k, depth, refused = side.pair(1.0, (240, 320), (240, 320), values)      # another size: refused
    assert k is None and depth is None and refused.reason == "size_mismatch"
    assert side.pair(7.0, (480, 640), (480, 640), values)[:2] == (None, None)
    counts = side.counters.snapshot()
    assert counts["received.depth"] == 2 and counts["received.camera_info"] == 1
    assert counts["refused.unsupported_depth_encoding"] == 1 and counts["refused.size_mismatch"] == 2
    assert counts["paired.depth.exact"] == 2 and counts["paired.camera_info.unpaired"] == 1


# ----------------------------------------------------------------------------- the node over DDS
needs_ros = pytest.mark.skipif(os.environ.get("HTTM_ROS_INSTALLED") != "1",
                               reason="needs the colcon-built messages (run via scripts/test)")
if os.environ.get("HTTM_ROS_INSTALLED") == "1":
    from rgbd_harness import H, TIMEOUT, W, RgbdHarness, rgbd_ros, source_k  # noqa: E402
    from httm_ros.tools.local_dds import wait_for  # noqa: E402


@pytest.fixture(scope="module")
def seq():
    from httm_ros.synthetic import demo_sequence
    return demo_sequence(num_frames=14, width=112, height=84, seed=0, speed=0.05)


@pytest.fixture(scope="module")
def ros():
    yield from rgbd_ros(__name__)


@needs_ros
def test_node_camera_info_in_replaces_k_and_out_round_trips_a_pixel(ros, seq):
    h = RgbdHarness(ros, seq, use_camera_info=True)
    try:
        k_src = source_k(seq, fx_error=1.1)                 # the camera says 10 % longer focal than VGGT
        for i in range(10):
            h.send(i, info=_info_msg(k_src, 224, 168))
        wait_for(lambda: h.col.count("stats") >= 2 and h.col.count("camera_info") >= 10, TIMEOUT, "2 windows")
        info = h.col.messages["camera_info"][0]
        mapping = input_mapping((168, 224), (H, W), W)
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), mapping.intrinsics(k_src), rtol=1e-6)
        assert (info.width, info.height) == (W, H)
        assert (info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height) == (0, 0, 224, 168)
        stats = h.col.messages["stats"][1]
        assert stats.keyframes_with_camera_info == 4
        assert stats.focal_given_px == pytest.approx(1.1 * stats.focal_predicted_px, rel=1e-5)
        names = list(stats.side_input_counts_names)
        assert stats.side_input_counts[names.index("paired.camera_info.exact")] == 10
        # the round trip: a model pixel -> source pixel via our roi -> back; the 3D point from our
        # depth + our K projects with the source camera's K onto that same source pixel.
        k = np.array(info.k).reshape(3, 3)
        depth = codec.image_to_float(h.col.messages["depth"][0])
        for u, v in ((10, 20), (W - 5, H - 7), (56, 42)):
            src = source_pixel(info, np.array([u, v], float))
            np.testing.assert_allclose(model_pixel(info, src), (u, v), atol=1e-9)
            z = float(depth[v, u])
            point = z * np.linalg.solve(k, np.array([u, v, 1.0]))        # camera frame, our units
            proj = k_src @ point
            np.testing.assert_allclose(proj[:2] / proj[2], src, atol=1e-6)
        # a distorted camera_info is refused (counted), the keyframe goes on with the predicted K
        h.send(10, info=_info_msg(k_src, 224, 168, d=(0.1, 0.01, 0, 0, 0)))
        wait_for(lambda: h.node.side.counters.snapshot().get("refused.distorted_camera_info") == 1, TIMEOUT,
                 "the distorted camera_info counted")
    finally:
        h.close()


@needs_ros
def test_node_without_camera_info_publishes_the_source_roi_of_a_rescaled_stream(ros, seq):
    h = RgbdHarness(ros, seq)
    try:
        for i in range(6):
            h.send(i)
        wait_for(lambda: h.col.count("camera_info") >= 6 and h.col.count("stats") >= 1, TIMEOUT, "a window")
        info = h.col.messages["camera_info"][0]
        assert (info.roi.width, info.roi.height) == (224, 168)
        np.testing.assert_allclose(info.k[0], seq.intrinsics[0, 0, 0], rtol=1e-6)       # predicted
        s = h.col.messages["stats"][0]
        assert s.keyframes_with_camera_info == 0 and np.isnan(s.focal_given_px) and not s.metric
    finally:
        h.close()
