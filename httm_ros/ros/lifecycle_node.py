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

import os
import sys
from typing import Any, Dict

import rclpy
import torch
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions

from . import params
from .reconstruct_node import NODE_NAME, SPIN_PERIOD, ReconstructBody
from .stop_signals import StopRequest, StopSignals

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
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()              # the released weights go back to the device
        self.get_logger().info("cleaned up: model and outputs released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From unconfigured, inactive or active: stop and release what that state holds."""
        self._stop_activity()
        self._release()
        self.finalized = True
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop and release everything; back to unconfigured."""
        self.get_logger().error(f"error in a transition from {state.label}: stopping and releasing")
        self._stop_activity()
        self._release()
        return SUCCESS

    def _stop_activity(self) -> None:
        """The stop path of the plain node (flush_on_shutdown, shutdown_timeout) when active."""
        if self._active:
            self._active = False
            self.finished = self._deactivate()


def main(args=None) -> int:
    """Entry point of ``reconstruct_lifecycle_node``: starts unconfigured; exit 0 after
    SIGINT/SIGTERM (the shutdown transition first), 2 when the node cannot be created."""
    signals = StopSignals().install()
    log = rclpy.logging.get_logger(NODE_NAME)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = ReconstructLifecycleNode()
    except StopRequest as stop:
        log.info(f"stop requested ({stop}) during start-up: exiting")
        rclpy.try_shutdown()
        return 0
    except Exception as err:  # noqa: BLE001 - one clear line for every start-up failure
        log.fatal(f"cannot start: {type(err).__name__}: {err}")
        rclpy.try_shutdown()
        return 2
    signals.node_up()              # a signal during configure (model loading) is served once it ends
    for warning in params.ignored_overrides(sys.argv if args is None else args, node.get_name(),
                                            node.current_values()):
        node.get_logger().warning(warning)
    node.get_logger().info("unconfigured: waiting for the configure transition (~/change_state)")
    if not _spin_until_stopped(node, signals):
        sys.stdout.flush()         # a thread is still in a model forward: no interpreter teardown under it
        sys.stderr.flush()
        os._exit(0)
    return 0


def _spin_until_stopped(node: ReconstructLifecycleNode, signals: StopSignals) -> bool:
    """Spin until a stop signal, then the shutdown transition; True when the threads ended."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not signals.requested.is_set():
            executor.spin_once(timeout_sec=SPIN_PERIOD)
    except ExternalShutdownException:
        pass
    finally:
        node.get_logger().info(f"stop requested ({signals.signal_name or 'context shut down'}): stopping")
        if not node.finalized:
            node.trigger_shutdown()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return node.finished


if __name__ == "__main__":
    sys.exit(main())
