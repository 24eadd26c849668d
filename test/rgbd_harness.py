"""A reconstruct_node fed like an RGB-D camera, for tests: 224x168 images (a synthetic sequence's
112x84 frames at twice the size, pixel replication), with optional camera_info and depth/image of
the same stamps (test_ros_camera_info.py, test_ros_metric_depth.py). Needs the colcon-built messages."""

import itertools

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from httm_ros.ros import codec
from httm_ros.ros.reconstruct_node import ReconstructNode
from httm_ros.synthetic.oracle import OraclePredictor
from httm_ros.tools.local_dds import RosContext, make_collector, wait_for, wait_matched

W, H = 112, 84                 # the oracle's (model input) size; the camera sends twice that
TIMEOUT = 30.0
_names = (f"c{i}" for i in itertools.count())


def stamp(i: int) -> Time:
    return Time(sec=1_700_000_000 + i, nanosec=5_000)


def up2(a: np.ndarray) -> np.ndarray:
    """The camera's image or depth: the sequence's at twice the size (pixel replication)."""
    return np.repeat(np.repeat(a, 2, 0), 2, 1)


def pinhole(fx, fy, cx, cy) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def source_k(seq, fx_error: float = 1.0) -> np.ndarray:
    """The 224x168 camera's K: the sequence's K mapped to twice the size (pixel centres at
    integers: c' = 2 c + 0.5), focal lengths times ``fx_error``."""
    k = seq.intrinsics[0].astype(np.float64)
    return pinhole(2 * k[0, 0] * fx_error, 2 * k[1, 1] * fx_error, 2 * k[0, 2] + 0.5, 2 * k[1, 2] + 0.5)


def info_msg(k, width, height, d=(0.0,) * 5, model="plumb_bob") -> CameraInfo:
    return CameraInfo(header=Header(frame_id="cam"), width=width, height=height, distortion_model=model,
                      d=list(d), k=np.asarray(k, float).reshape(-1).tolist())


def depth_msg(values: np.ndarray, encoding: str) -> Image:
    values = np.ascontiguousarray(values)
    msg = Image(header=Header(frame_id="cam"), height=values.shape[0], width=values.shape[1],
                encoding=encoding, is_bigendian=0, step=values.strides[0])
    msg.data = values.tobytes()
    return msg


def rgbd_ros(name: str):
    """Module fixture body: a RosContext with a feeder node."""
    ctx = RosContext(name)
    ctx.feeder = ctx.add(Node("feeder", context=ctx.context))
    yield ctx
    ctx.close()


class RgbdHarness:
    """A node in its own namespace (OraclePredictor of ``seq``; ``scale_range``: its per-window
    scale) fed 224x168 images with optional camera_info / depth, and a collector of its outputs."""

    def __init__(self, ros, seq, scale_range=(0.5, 2.0), **overrides):
        self.ns = "/" + next(_names)
        values = dict(image_size=W, window_size=6, window_overlap=2, keyframe_policy="every",
                      qos_reliability="reliable", qos_depth=100, device="cpu", diagnostics_period=0.2)
        values.update(overrides)
        self.oracle = OraclePredictor(seq, seed=1, scale_range=scale_range)
        self.node = ros.add(ReconstructNode(
            predictor=self.oracle, context=ros.context, namespace=self.ns,
            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
        self.col = ros.add(make_collector(ros.context, f"{self.ns}/reconstruct_node", name=f"col{self.ns[1:]}"))
        self.pub = {"image": ros.feeder.create_publisher(Image, f"{self.ns}/image", 100),
                    "camera_info": ros.feeder.create_publisher(CameraInfo, f"{self.ns}/camera_info", 100),
                    "depth": ros.feeder.create_publisher(Image, f"{self.ns}/depth/image", 100)}
        self.seq = seq
        wait_matched(self.pub["image"])
        for kind in self.node.side.buffers:
            wait_matched(self.pub[kind])
        for publisher in self.node.pub.values():
            wait_matched(publisher, 1, TIMEOUT)

    def _side_received(self) -> int:
        return sum(v for k, v in self.node.side.counters.snapshot().items() if k.startswith("received."))

    def send(self, i: int, info=None, depth=None) -> None:
        """Frame ``i`` with its side messages (sent first and waited for: the order is the test's,
        not DDS's; the node's own wait, side_input_wait, covers the other order)."""
        before, sent = self._side_received(), 0
        for kind, msg in (("camera_info", info), ("depth", depth)):
            if msg is not None:
                msg.header.stamp = stamp(i)
                self.pub[kind].publish(msg)
                sent += 1
        wait_for(lambda: self._side_received() >= before + sent, TIMEOUT, f"side inputs of frame {i}")
        n = self.node.counters.frames_received
        self.pub["image"].publish(codec.rgb_to_image(up2(self.seq.images[i]), codec.make_header(stamp(i), "cam")))
        wait_for(lambda: self.node.counters.frames_received > n, TIMEOUT, f"frame {i}")

    def close(self) -> None:
        self.node.shutdown()
