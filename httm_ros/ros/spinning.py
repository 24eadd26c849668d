"""Spinning an rclpy executor that survives rclpy's execution-vs-destruction race.

rclpy 9.1 (the wheels here) can raise ``InvalidHandle: cannot use Destroyable because destruction
was requested`` out of ``Executor.spin_once`` when another thread destroys a subscription or timer
while the executor builds its wait set (the subscription's event handlers are added without a
guard) or walks the ready entities (upstream: ros2/rclpy issues #1206 and #1355). Out of
``executor.spin()`` that ends the spinning for good: a node whose subscriptions are destroyed at a
lifecycle deactivation, or a test process whose nodes stop while others keep running, then
receives nothing more. ``test/test_ros_spinning.py`` reproduces it.

The race leaves nothing half done: the executor's generator of ready callbacks ends with the
exception and the next ``spin_once`` builds a fresh wait set without the destroyed entity. So the
loops here count the exception and go on; any other exception propagates as before.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from rclpy.exceptions import InvalidHandle


class Spinner:
    """``spin_once`` in a loop, the destroy race counted in ``.destroy_races`` instead of raised."""

    def __init__(self, executor) -> None:
        self.executor = executor
        self.destroy_races = 0
        self.stopped = threading.Event()

    def spin_once(self, timeout_sec: float) -> None:
        try:
            self.executor.spin_once(timeout_sec=timeout_sec)
        except InvalidHandle:
            self.destroy_races += 1

    def spin_until(self, done: Callable[[], bool] = lambda: False, period: float = 0.1) -> None:
        """Spin until ``done()`` (checked every ``period`` s at most), ``shutdown`` or the end of the
        executor's context."""
        while not (done() or self.stopped.is_set()) and self.executor.context.ok():
            self.spin_once(period)

    def shutdown(self, timeout_sec: Optional[float] = None) -> None:
        """End ``spin_until`` and shut the executor down (``timeout_sec``: for running callbacks)."""
        self.stopped.set()
        self.executor.shutdown(timeout_sec=timeout_sec)
