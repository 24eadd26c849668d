"""The synthetic demo sequence as a rosbag2 (MCAP), rendered once and cached, and its thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from httm_ros.timing import StageTimer

from ..bag_io import OutputBag, read_messages
from .console import log
from .demo_settings import Settings

IMAGE_TOPIC = "/camera/image_raw"
INFO_TOPIC = "/camera/camera_info"
BAG_START = 100.0                      # bag time of the first frame, s (sim time 0 means "unset")
BAG_VERSION = 1                        # bump when the demo bag's content changes


def demo_bag(s: Settings, cache_dir: Path, seed: int = 0) -> Path:
    """The synthetic demo sequence as a rosbag2 (MCAP): rgb8 images and the true camera info.
    Rendered once and cached (the name holds everything the content depends on)."""
    from sensor_msgs.msg import CameraInfo  # noqa: F401 - the message package must exist

    from httm_ros.ros import codec
    from httm_ros.synthetic import demo_sequence

    path = cache_dir / f"demo_{s.frames}f_{s.width}x{s.height}_seed{seed}_v{BAG_VERSION}"
    if (path / "metadata.yaml").exists():
        log(f"demo bag (cached): {path}")
        return path
    log(f"rendering the synthetic demo sequence: {s.frames} frames at {s.width}x{s.height} ...")
    timer = StageTimer(mode="wall")
    seq = demo_sequence(num_frames=s.frames, width=s.width, height=s.height, seed=seed)
    with OutputBag(path) as bag:
        for i in range(len(seq)):
            stamp = codec.sec_to_stamp(BAG_START + float(seq.timestamps[i]))
            ns = stamp.sec * 1_000_000_000 + stamp.nanosec
            bag.write_message(IMAGE_TOPIC, codec.rgb_to_image(seq.images[i], codec.make_header(stamp, "camera")), ns)
            info = codec.camera_info(seq.intrinsics[i], s.width, s.height, codec.make_header(stamp, "camera"))
            bag.write_message(INFO_TOPIC, info, ns)
        bag.commit(overwrite=True)
    log(f"demo bag written in {timer.lap('render'):.1f} s: {path}")
    return path


def thumbnails(bag: Path, count: int) -> List[Tuple[str, np.ndarray]]:
    """(label, rgb uint8 [H, W, 3]) of the first, middle and last frame of the bag."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from httm_ros.ros import codec

    wanted = sorted({0, count // 2, count - 1})
    out = []
    for i, (_, raw) in enumerate(read_messages(bag, IMAGE_TOPIC)):
        if i in wanted:
            out.append((f"input frame {i}", codec.image_to_rgb(deserialize_message(raw, Image))))
    return out
