"""reconstruct_lifecycle_node: the managed (lifecycle) variant of reconstruct_node.

The same body (:class:`.reconstruct_node.ReconstructBody`: the same topics, services, parameters
and threads) on an ``rclpy.lifecycle.LifecycleNode``, for Nav2-style bring-up (docs/ROS.md
"Lifecycle node"). Transitions (lifecycle_msgs/srv/ChangeState on ``~/change_state``):

    unconfigured --configure--> inactive   parameters checked, model loaded, publishers (lifecycle
                                           publishers: they publish nothing until active) and
                                           services created; a failure (bad parameter, no
                                           checkpoint, require_gpu without CUDA, ...) is logged
                                           with its reason, the transition returns FAILURE and the
                                           node stays unconfigured, ready to be configured again
    inactive --activate--> active          image subscription, inference and publisher threads,
                                           /diagnostics timer; logs ``ready: ...``
    active --deactivate--> inactive        intake stops and the queue is handled as at shutdown
                                           (flush_on_shutdown), then the publishers are disabled;
                                           the map, the path and the core's state are kept
    inactive --cleanup--> unconfigured     every entity of configure and the model are released
    any --shutdown--> finalized            the above, as far as the state needs

Parameters are declared at construction (so ``ros2 param set`` works before configure) and checked
at every configure. SIGINT/SIGTERM: the shutdown transition from the current state, then exit 0.
"""

from __future__ import annotations

import sys
from typing import Any, Dict

import torch
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile

from . import params
from .node_main import NodeEntry, run
from .reconstruct_node import NODE_NAME, ReconstructBody

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ReconstructLifecycleNode(ReconstructBody, LifecycleNode):
    """The managed node. ``predictor`` (optional) replaces the model at every configure, e.g. an
    OraclePredictor in tests. ``finished`` is False when a stop left a thread running."""

    def __init__(self, predictor=None, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._predictor = predictor
        self._active = False
        self.finished = True            # False when a stop left a thread running
        self.finalized = False          # the shutdown transition ran
        try:
            params.declare_all(self)
        except params.ParameterError as err:     # declared all the same: configure fails until fixed
            self.get_logger().warning(f"{err} (configure fails until they are set right)")

    # ------------------------------------------------------------------ ReconstructBody hooks
    def current_values(self) -> Dict[str, Any]:
        """Every parameter's value now (unchecked)."""
        return {p.name: params.coerce(p, self.get_parameter(p.name).value) for p in params.PARAMS}

    def _checked_parameters(self) -> Dict[str, Any]:
        """The values declared at construction, checked now (they may have been set since)."""
        values = self.current_values()
        errors = params.validate(values)
        if errors:
            raise params.ParameterError("invalid parameters: " + "; ".join(errors))
        return values

    def _output_publisher(self, msg_type, topic: str, qos: QoSProfile):
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def _release(self) -> None:
        for publisher in getattr(self, "pub", {}).values():        # out of the managed entities too
            self.destroy_lifecycle_publisher(publisher)
        super()._release()

    # ------------------------------------------------------------------ transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            self._configure(self._predictor)
        except Exception as err:  # noqa: BLE001 - any failure: logged, FAILURE, unconfigured again
            log.error(f"configure failed: {type(err).__name__}: {err}")
            self._release()
            return FAILURE
        log.info(f"configured: {self.runner.description}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._threads_running():           # a deactivate ran out of shutdown_timeout mid-window
            self.get_logger().error("activate refused: the inference thread of the last activation is "
                                    "still running its window; try again once it ended")
            return FAILURE
        super().on_activate(state)                                  # publishers on before any window
        worker = getattr(self, "_worker", None)
        try:
            self._activate()
        except Exception as err:  # noqa: BLE001
            self.get_logger().error(f"activate failed: {type(err).__name__}: {err}")
            if getattr(self, "_worker", None) is not worker:         # this activation started it
                self._deactivate(flush=False)
            super().on_deactivate(state)
            return FAILURE
        self._active = True
        self.get_logger().info(self.ready_line())
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._export_if_idle()
        self._release()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()              # the released weights go back to the device
        self.get_logger().info("cleaned up: model and outputs released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From unconfigured, inactive or active: stop and release what that state holds."""
        self._stop_activity()
        self._export_if_idle()
        self._release()
        self.finalized = True
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop and release everything; back to unconfigured."""
        self.get_logger().error(f"error in a transition from {state.label}: stopping and releasing")
        self._stop_activity()
        self._release()
        return SUCCESS

    def _export_if_idle(self) -> None:
        """Loop closure exports before the core goes (cleanup, shutdown), as the plain node's stop
        writes them; not while a thread of the last activation still runs a window."""
        if getattr(self, "rec", None) is not None and not self._threads_running():
            self._export_loops()

    def _stop_activity(self) -> None:
        """The stop path of the plain node (flush_on_shutdown, shutdown_timeout) when active."""
        if self._active:
            self._active = False
            self.finished = self._deactivate()


def _shutdown_transition(node: ReconstructLifecycleNode) -> bool:
    """The stop of the managed node: the shutdown transition from the current state (unless it
    ran already); True when the threads ended."""
    if not node.finalized:
        node.trigger_shutdown()
    return node.finished


ENTRY = NodeEntry(name=NODE_NAME, node_class=ReconstructLifecycleNode, stop=_shutdown_transition,
                  abandon=ReconstructLifecycleNode._abandon_start,
                  values=ReconstructLifecycleNode.current_values,
                  up_line=lambda node: "unconfigured: waiting for the configure transition (~/change_state)")


def main(args=None) -> int:
    """Entry point of ``reconstruct_lifecycle_node``: starts unconfigured; exit 0 after
    SIGINT/SIGTERM (the shutdown transition first), 2 when the node cannot be created. A signal
    during configure (model loading) is served once the transition ends."""
    return run(ENTRY, args)


if __name__ == "__main__":
    sys.exit(main())
