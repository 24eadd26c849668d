"""SIGINT and SIGTERM: one requested stop of reconstruct_node, at any moment (docs/ROS.md "Shutdown").

rclpy's own signal handlers are not used (``rclpy.init(signal_handler_options=NO)``): they shut
the ROS context down from the signal, under the threads still using it (``Failed to create
publisher`` during the model build, ``publisher's context is invalid`` while a window is published,
an RCLError out of ``executor.spin()``). Instead:

- before ``main()`` (the imports in ``bin/reconstruct_node``): the process exits 0 at once; no DDS
  participant exists yet, so nothing needs cleaning up;
- while the node is built (``rclpy.init``, parameters, model loading): the first signal raises
  :class:`StopRequest` in the main thread, so the model build is interrupted; the node destroys what
  it created and ``main()`` returns 0;
- once the node is up: the signal only sets :attr:`StopSignals.requested`; the main loop sees it
  within its spin period and runs the one shutdown path (stop intake, finish or drop the window in
  flight, join the threads, destroy the node, shut rclpy down).

Later signals while stopping are ignored (the stop is bounded by ``shutdown_timeout``).
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM while the node is being built. A BaseException,
    like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""


class StopSignals:
    """Handlers for SIGINT and SIGTERM (main thread only); see the module docstring."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name: Optional[str] = None
        self._raise = True                       # until the node is up: interrupt the main thread

    def install(self) -> "StopSignals":
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def node_up(self) -> None:
        """From now on a signal only sets ``requested`` (the main loop stops the node)."""
        self._raise = False

    def _handle(self, signum, frame) -> None:
        if self.requested.is_set():
            return                               # already stopping
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        if self._raise:
            raise StopRequest(self.signal_name)
