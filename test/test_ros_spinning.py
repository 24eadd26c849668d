"""rclpy's execution-vs-destruction race (httm_ros/ros/spinning.py) over real DDS.

A node keeps creating and destroying a timer and a subscription (with its event handlers, as the
reconstruct node's image subscription has) while a MultiThreadedExecutor spins it in another
thread and a publisher floods the topic: what a lifecycle deactivation or a node stopping in a test
process does. With rclpy's own ``executor.spin()`` this ends the spinning within a few hundred
cycles here (a clean-clone CI run lost two node tests to it); through ``Spinner`` the executor
goes on and a subscription made afterwards still receives.
"""

import threading
import time

import pytest

pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from httm_ros.tools.local_dds import RosContext, wait_for  # noqa: E402

CYCLES = 300
DEADLINE_S = 10.0


def test_spinning_survives_entities_destroyed_under_it():
    ros = RosContext("test_ros_spinning")
    try:
        churn = ros.add(Node("churn", context=ros.context))
        feeder = ros.add(Node("feeder", context=ros.context))
        pub = feeder.create_publisher(String, "flood", 50)
        feeder.create_timer(0.001, lambda: pub.publish(String(data="x")))
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        events = SubscriptionEventCallbacks(message_lost=lambda info: None)
        deadline = time.monotonic() + DEADLINE_S
        cycles = 0
        while cycles < CYCLES and time.monotonic() < deadline:
            timer = churn.create_timer(0.0005, lambda: None)
            sub = churn.create_subscription(String, "flood", lambda msg: None, qos, event_callbacks=events)
            time.sleep(0.002)
            timer.cancel()
            churn.destroy_timer(timer)
            churn.destroy_subscription(sub)
            cycles += 1
            assert ros._thread.is_alive(), f"the executor stopped spinning after {cycles} cycles: {ros.spin_error!r}"
        received = threading.Event()
        churn.create_subscription(String, "flood", lambda msg: received.set(), qos)
        wait_for(received.is_set, 10.0, "a message after the churn")
        print(f"{cycles} cycles, {ros.spinner.destroy_races} destroy races survived")
    finally:
        ros.close()
