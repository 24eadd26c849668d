"""The in-process node over real DDS, for test_ros_node.py, test_ros_lifecycle.py,
test_ros_accounting_dds.py and test_ros_loop_closure.py: the module's ROS context (a domain of its
own) with a feeder node, the oracle's synthetic sequence, a node in a namespace of its own, and a
collector of its outputs with a publisher of its images.

Import it after the module's ``pytest.importorskip("rclpy")`` and HTTM_ROS_INSTALLED check; the
fixtures ``ros`` and ``seq`` are used by importing them into the test module.
"""

import itertools
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from httm_ros.synthetic import demo_sequence
from httm_ros.tools.local_dds import RosContext, make_collector, wait_for, wait_matched

W, H = 112, 84                 # the sequence's images = the model input (image_size=W)
TIMEOUT = 30.0
ORACLE_VALUES = dict(image_size=W, window_size=6, window_overlap=2, keyframe_policy="every",
                     qos_reliability="reliable", qos_depth=100, device="cpu", diagnostics_period=0.2)


@pytest.fixture(scope="module")
def seq():
    """24 frames W x H of the demo scene at 0.05 m/frame (the oracle's ground truth)."""
    return demo_sequence(num_frames=24, width=W, height=H, seed=0, speed=0.05)


@pytest.fixture(scope="module")
def ros(request):
    """The test module's context (its domain from the module name) with ``feeder``, a node."""
    ctx = RosContext(request.module.__name__)
    ctx.feeder = ctx.add(Node("feeder", context=ctx.context))
    yield ctx
    ctx.close()


def namespaces(prefix: str) -> Iterator[str]:
    """/prefix0, /prefix1, ...: one namespace a node."""
    return (f"/{prefix}{i}" for i in itertools.count())


def start_node(ros, node_class, ns: str, predictor, values: Dict[str, Any]):
    """``node_class`` (ReconstructNode or ReconstructLifecycleNode) in ``ns``, its parameters
    ``values``, added to ``ros``'s executor."""
    return ros.add(node_class(predictor=predictor, context=ros.context, namespace=ns,
                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))


def attach(ros, ns: str, depth: int = 100, diagnostics: bool = True, node=None) -> Tuple[Any, Any]:
    """(a collector of the node's outputs, a publisher of its ``image`` with history ``depth``,
    matched with the node's subscription). With the running ``node``: also until its image reader
    has matched this writer and each of its outputs has matched the collector. DDS matches the two
    sides separately, and a frame or output sent before its reader matched is lost (volatile QoS):
    a clean-clone CI run lost frame 0 that way once."""
    col = ros.add(make_collector(ros.context, f"{ns}/reconstruct_node", name=f"col{ns[1:]}",
                                 diagnostics=diagnostics))
    pub = ros.feeder.create_publisher(Image, f"{ns}/image", depth)
    wait_matched(pub)
    if node is not None:
        wait_for(lambda: node._sub.get_publisher_count() >= 1, TIMEOUT, "the node's image reader matched")
        for publisher in node.pub.values():
            if diagnostics or publisher.topic_name != "/diagnostics":
                wait_matched(publisher, 1, TIMEOUT)
    return col, pub


def node_statuses(col, ns: str) -> List[Any]:
    """The statuses of the node in ``ns`` on /diagnostics (other nodes publish there too)."""
    name = f"{ns}/reconstruct_node: reconstruction"
    return [s for a in list(col.messages["diagnostics"]) for s in a.status if s.name == name]


def call_trigger(ros, ns: str, service: str):
    """The std_srvs/Trigger response of the node's ``~/service`` (flush, reset, publish_map)."""
    client = ros.feeder.create_client(Trigger, f"{ns}/reconstruct_node/{service}")
    assert client.wait_for_service(TIMEOUT)
    future = client.call_async(Trigger.Request())
    wait_for(future.done, TIMEOUT, f"~/{service}")
    return future.result()                              # the client goes with the feeder node
