"""reconstruct_lifecycle_node in-process over real DDS: transitions driven through the lifecycle
services (lifecycle_msgs/srv/ChangeState, GetState) as a Nav2 lifecycle_manager drives them.

The node runs with an OraclePredictor (as in test_ros_node.py); every wait is on an actual message,
counter or service answer, with a deadline.
"""

import gc
import weakref

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("lifecycle_msgs")
if __import__("os").environ.get("HTTM_ROS_INSTALLED") != "1":
    pytest.skip("needs the colcon-built messages (run via scripts/test)", allow_module_level=True)

from builtin_interfaces.msg import Time  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from httm_ros.msg import WindowStats  # noqa: E402
from httm_ros.ros import codec  # noqa: E402
from httm_ros.ros.lifecycle_node import ReconstructLifecycleNode  # noqa: E402
from httm_ros.synthetic.oracle import OraclePredictor  # noqa: E402
from httm_ros.tools.local_dds import make_collector, wait_for, wait_matched  # noqa: E402

import node_fixtures  # noqa: E402
from node_fixtures import ORACLE_VALUES, TIMEOUT, attach, namespaces, start_node  # noqa: E402

ros, seq = node_fixtures.ros, node_fixtures.seq       # the module's fixtures
PROBE = 999_999                     # a window index no real window has
_names = namespaces("lc")


class Managed:
    """A lifecycle node in its own namespace, driven over its lifecycle services."""

    def __init__(self, ros, seq, **overrides):
        self.ns = next(_names)
        self.fqn = f"{self.ns}/reconstruct_node"
        self.node = start_node(ros, ReconstructLifecycleNode, self.ns, OraclePredictor(seq, seed=1),
                               {**ORACLE_VALUES, **overrides})
        self.ros, self.seq = ros, seq
        self.change = ros.feeder.create_client(ChangeState, f"{self.fqn}/change_state")
        self.get = ros.feeder.create_client(GetState, f"{self.fqn}/get_state")
        assert self.change.wait_for_service(TIMEOUT) and self.get.wait_for_service(TIMEOUT)

    def _call(self, client, request):
        future = client.call_async(request)
        wait_for(future.done, 2 * TIMEOUT, client.srv_name)
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def subscribed_topics(self):
        return {s.topic_name for s in self.node.subscriptions}


def _stamp(i: int) -> Time:
    return Time(sec=1_700_000_000 + i, nanosec=5)


def _send(m: Managed, pub, frames) -> None:
    for i in frames:
        before = m.node.counters.frames_received
        pub.publish(codec.rgb_to_image(m.seq.images[i], codec.make_header(_stamp(i), "cam")))
        wait_for(lambda: m.node.counters.frames_received > before, TIMEOUT, f"frame {i} received")


def test_transitions_over_the_lifecycle_services(ros, seq):
    m = Managed(ros, seq)
    image = f"{m.ns}/image"
    assert m.state() == "unconfigured"
    assert not hasattr(m.node, "pub") and image not in m.subscribed_topics()

    # configure: the model and the publishers exist, no image subscription yet, nothing published
    assert m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == "inactive"
    assert m.node.runner is not None and image not in m.subscribed_topics()
    col = ros.add(make_collector(ros.context, m.fqn, name=f"col{m.ns[1:]}"))
    wait_for(lambda: all(col.matched(t) for t in ("stats", "depth", "pose", "path", "points")), TIMEOUT,
             "the outputs advertised while inactive")
    assert not any(p.is_activated for p in m.node.pub.values())

    # activate: frames in, windows out
    assert m.transition(Transition.TRANSITION_ACTIVATE)
    assert m.state() == "active" and image in m.subscribed_topics()
    pub = ros.feeder.create_publisher(Image, image, 100)
    wait_matched(pub)
    _send(m, pub, range(10))                                   # windows of 6, overlap 2: 6 + 4
    wait_for(lambda: col.count("stats") >= 2 and col.count("depth") >= 10, TIMEOUT, "2 windows")
    assert [s.window_index for s in col.messages["stats"]] == [0, 1]
    wait_for(lambda: any(s.name.startswith(m.fqn) for a in list(col.messages["diagnostics"]) for s in a.status),
             TIMEOUT, "/diagnostics of the active node")

    # deactivate: intake and threads stop, publishers disabled: a publish now goes nowhere
    assert m.transition(Transition.TRANSITION_DEACTIVATE)
    assert m.state() == "inactive"
    assert image not in m.subscribed_topics() and not m.node.threads_alive()
    assert not any(p.is_activated for p in m.node.pub.values())
    m.node.pub["stats"].publish(WindowStats(window_index=PROBE))  # dropped by the lifecycle publisher
    received = m.node.counters.frames_received

    # active again: the stream goes on where it was (same map and path)
    assert m.transition(Transition.TRANSITION_ACTIVATE)
    assert m.state() == "active"
    wait_matched(pub)
    _send(m, pub, range(10, 14))
    wait_for(lambda: col.count("stats") >= 3, TIMEOUT, "the window after reactivation")
    stats = col.messages["stats"]
    assert [s.window_index for s in stats] == [0, 1, 2]        # reliable, in order: no PROBE before it
    assert stats[-1].frames_received == received + 4 and len(col.last("path").poses) == 14

    # deactivate + cleanup: everything of configure goes (publishers, services, the model)
    assert m.transition(Transition.TRANSITION_DEACTIVATE)
    runner, core = weakref.ref(m.node.runner), weakref.ref(m.node.rec)
    assert m.transition(Transition.TRANSITION_CLEANUP)
    assert m.state() == "unconfigured"
    assert m.node.runner is None and m.node.rec is None and m.node.pub == {}
    gc.collect()
    assert runner() is None and core() is None                 # nothing else holds the model or the map
    assert not any(s.srv_name.endswith("/flush") for s in m.node.services)
    wait_for(lambda: not col.matched("stats"), TIMEOUT, "the outputs gone after cleanup")

    # shutdown from unconfigured: finalized
    assert m.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert m.state() == "finalized" and m.node.finalized and m.node.finished


def test_shutdown_from_active_stops_the_threads_and_writes_the_loop_exports(ros, seq, tmp_path):
    m = Managed(ros, seq, flush_on_shutdown=True, window_mode="anchored", loop_closure=True,
                loop_export_dir=str(tmp_path))
    assert m.transition(Transition.TRANSITION_CONFIGURE) and m.transition(Transition.TRANSITION_ACTIVATE)
    col, pub = attach(ros, m.ns, diagnostics=False, node=m.node)
    _send(m, pub, range(3))                                    # fewer than a window: flushed at the stop
    assert m.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert m.state() == "finalized" and m.node.finished and not m.node._threads_running()
    wait_for(lambda: col.count("stats") >= 1, TIMEOUT, "the flushed last window")
    assert col.last("stats").num_keyframes == 3
    # the pose graph's exports, as the plain node writes them at its stop (3 keyframes, no loop)
    exported = {p.name: p.read_text().splitlines() for p in tmp_path.iterdir()}
    assert sorted(exported) == ["keyframes_after.tum", "keyframes_before.tum", "pose_graph.g2o"]
    assert len(exported["keyframes_before.tum"]) == len(exported["keyframes_after.tum"]) == 3
    assert sum(line.startswith("VERTEX") for line in exported["pose_graph.g2o"]) == 3


def test_configure_failure_stays_unconfigured_and_can_be_configured_again(ros, seq):
    m = Managed(ros, seq, drop_policy="sideways")
    assert not m.transition(Transition.TRANSITION_CONFIGURE)  # FAILURE: the reason is logged
    assert m.state() == "unconfigured"
    assert not any(p.topic_name.endswith("/stats") for p in m.node.publishers)
    assert not any(s.srv_name.endswith("/flush") for s in m.node.services)
    assert m.node.set_parameters([Parameter("drop_policy", value="drop_newest")])[0].successful
    assert m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == "inactive" and m.node.queue.policy == "drop_newest"
    assert m.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert m.state() == "finalized"
