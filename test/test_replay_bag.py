"""Bag reading and writing with rosbags (sqlite3 and MCAP), topic choice, broken bags (no DDS)."""

import os

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("sensor_msgs")

from httm_ros.tools.bag_io import (BagError, OutputBag, choose_topic, image_topics,  # noqa: E402
                                 read_messages)
from httm_ros.ros import codec  # noqa: E402
from ros_poses import transform_stamped  # noqa: E402


def _image(i: int, compressed: bool = False):
    rgb = np.full((6, 8, 3), (20 * i) % 256, np.uint8)
    header = codec.make_header(codec.sec_to_stamp(10.0 + i), "cam")
    return codec.rgb_to_compressed(rgb, header) if compressed else codec.rgb_to_image(rgb, header)


def _mcap(path, frames=4, topics=("/cam/image_raw",)):
    with OutputBag(path) as out:
        for i in range(frames):
            for topic in topics:
                out.write_message(topic, _image(i, topic.endswith("compressed")), int((10 + i) * 1e9))
        out.write_message("/cam/camera_info", codec.camera_info(np.eye(3), 8, 6, codec.make_header(
            codec.sec_to_stamp(10.0), "cam")), int(10e9))
        out.commit()
    return path


def _sqlite(path, frames=3):
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer

    from httm_ros.tools.bag_io import typestore

    writer = Writer(path, version=8)
    writer.open()
    conn = writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=typestore())
    for i in range(frames):
        writer.write(conn, int((10 + i) * 1e9), serialize_message(_image(i, compressed=True)))
    writer.close()
    return path


def test_mcap_and_sqlite3_bags_list_and_read_their_image_topics(tmp_path):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    mcap = _mcap(tmp_path / "m", topics=("/cam/image_raw", "/cam/image_raw/compressed"))
    assert [(t.name, t.input_type, t.count) for t in image_topics(mcap)] == [
        ("/cam/image_raw", "raw", 4), ("/cam/image_raw/compressed", "compressed", 4)]
    msgs = [deserialize_message(raw, Image) for _, raw in read_messages(mcap, "/cam/image_raw")]
    assert [m.header.stamp.sec for m in msgs] == [10, 11, 12, 13]
    assert codec.image_to_rgb(msgs[2])[0, 0, 0] == 40
    later = [t for t, _ in read_messages(mcap, "/cam/image_raw", start_offset=1.5)]
    assert later == [int(12e9), int(13e9)]
    single_file = mcap / "m.mcap"                                   # a bare .mcap file works too
    assert [t.name for t in image_topics(single_file)] == ["/cam/image_raw", "/cam/image_raw/compressed"]

    sqlite = _sqlite(tmp_path / "s")
    assert os.path.exists(sqlite / "s.db3")
    topic = choose_topic(sqlite)
    assert (topic.name, topic.input_type, topic.count) == ("/camera/image/compressed", "compressed", 3)
    rgb = [codec.compressed_to_rgb(deserialize_message(raw, CompressedImage))
           for _, raw in read_messages(sqlite, topic.name)]
    assert len(rgb) == 3 and rgb[0].shape == (6, 8, 3)


def test_topic_choice_is_explicit_when_ambiguous(tmp_path):
    bag = _mcap(tmp_path / "m", topics=("/a/image_raw", "/b/image_raw/compressed"))
    with pytest.raises(BagError, match="several image topics: /a/image_raw \\(Image, 4 messages\\), "
                                       "/b/image_raw/compressed \\(CompressedImage, 4 messages\\); choose one "
                                       "\\(--topic / image_topic:=; an aligned depth image topic goes to depth_topic:=\\)"):
        choose_topic(bag)
    assert choose_topic(bag, "/b/image_raw/compressed").input_type == "compressed"
    assert choose_topic(bag, "a/image_raw").name == "/a/image_raw"
    with pytest.raises(BagError, match="/cam/camera_info is sensor_msgs/msg/CameraInfo, not an image topic"):
        choose_topic(bag, "/cam/camera_info")
    with pytest.raises(BagError, match="no topic /nope; image topics: /a/image_raw"):
        choose_topic(bag, "/nope")


def test_unreadable_truncated_and_missing_bags_are_clear_errors(tmp_path):
    bag = _mcap(tmp_path / "m", frames=30)
    data = (bag / "m.mcap").read_bytes()
    (bag / "m.mcap").write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=r"m: not a readable rosbag2 bag .*mcap recover"):
        list(read_messages(bag, "/cam/image_raw"))
    junk = tmp_path / "junk.db3"
    junk.write_bytes(b"this is not sqlite" * 10)
    with pytest.raises(BagError, match="junk.db3"):
        choose_topic(junk)
    with pytest.raises(BagError, match="no such bag"):
        image_topics(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BagError, match="not a readable rosbag2 bag"):
        image_topics(empty)
    sqlite = _sqlite(tmp_path / "s", frames=40)
    raw = (sqlite / "s.db3").read_bytes()
    (sqlite / "s.db3").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(BagError, match="s"):
        list(read_messages(sqlite, "/camera/image/compressed"))


def test_output_bag_appears_only_when_committed(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with OutputBag(target) as out:
            out.write_message("/x/image", _image(0), 1)
            raise RuntimeError("boom")
    assert not target.exists() and os.listdir(tmp_path) == []
    _mcap(target)
    with pytest.raises(BagError, match="exists"):
        with OutputBag(target) as out:
            out.write_message("/x/image", _image(0), 1)
            out.commit()
    assert sorted(os.listdir(target)) == ["metadata.yaml", "out.mcap"] and len(os.listdir(tmp_path)) == 1


def test_tf_is_written_as_tf2_msgs_without_tf2_msgs(tmp_path):
    from rosbags.rosbag2 import Reader

    from httm_ros.tools.bag_io import typestore

    pose = np.eye(4)
    pose[:3, 3] = (1.0, 2.0, 3.0)
    with OutputBag(tmp_path / "tf") as out:
        out.write_tf([transform_stamped(pose, codec.make_header(codec.sec_to_stamp(5.0), "map"), "cam")], int(5e9))
        out.commit()
    store = typestore()
    with Reader(tmp_path / "tf") as reader:
        (conn, _, raw), = list(reader.messages())
        msg = store.deserialize_cdr(raw, conn.msgtype)
    assert conn.msgtype == "tf2_msgs/msg/TFMessage" and conn.topic == "/tf"
    (t,) = msg.transforms
    assert (t.header.frame_id, t.child_frame_id, t.transform.translation.z) == ("map", "cam", 3.0)


@pytest.mark.parametrize("fill", [0, 1, 2])
def test_rclpy_serialized_messages_are_cut_to_their_exact_cdr_size(fill):
    """rmw sizes rclpy's serialization buffer from an estimate: a WindowStats could end with 8
    padding bytes that the rosbags library refuses ("CDR message size mismatch"). Written bags
    hold exactly the bytes the fields use; rclpy and rosbags both read them back."""
    wstats = pytest.importorskip("httm_ros.msg")
    from rclpy.serialization import deserialize_message, serialize_message

    from httm_ros.tools.bag_io import exact_cdr, typestore

    store = typestore()
    msg = wstats.WindowStats(alignment_message="X" * fill, tracking_state="YY", map_segment=0x11223344,
                             map_points=0x5566, windows_failed=9, gpu_memory_peak_mb=1.0)
    raw = serialize_message(msg)
    exact = exact_cdr(raw, "httm_ros/msg/WindowStats", store)
    assert len(exact) <= len(raw) and raw.startswith(exact)
    back = store.deserialize_cdr(exact, "httm_ros/msg/WindowStats")          # strict: no trailing bytes
    assert (back.tracking_state, back.map_segment, back.map_points, back.gpu_memory_peak_mb) == \
        ("YY", 0x11223344, 0x5566, 1.0)
    assert deserialize_message(exact, wstats.WindowStats) == msg
