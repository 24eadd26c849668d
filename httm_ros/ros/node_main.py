"""The main loop shared by the ``reconstruct_node`` and ``reconstruct_lifecycle_node`` executables.

    rclpy.init without its signal handlers (:mod:`.stop_signals` serves SIGINT/SIGTERM)
    -> build the node: a stop signal meanwhile (StopRequest) -> exit 0; any other error -> one
       ``cannot start: <type>: <reason>`` line (FATAL), exit 2
    -> log the ignored ``-p`` overrides, then the node's up line ("ready: ..."); spin until a stop signal
    -> the node's stop (plain: ``shutdown()``; managed: the shutdown transition), destroy, rclpy down
    -> exit 0; ``os._exit(0)`` when a thread is still in a model forward (no interpreter teardown
       under it)

What differs between the two executables is a :class:`NodeEntry`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from . import params
from .stop_signals import StopRequest, StopSignals
from .spinning import Spinner

SPIN_PERIOD = 0.1        # s: the main loop sees a stop signal within this


@dataclass(frozen=True)
class NodeEntry:
    """One executable: its node and how it stops."""

    name: str                                   # logger name for start-up lines (the node's name)
    node_class: Callable[[], Any]               # built with no arguments (parameters: command line)
    stop: Callable[[Any], bool]                 # the stop path; True when the node's threads ended
    abandon: Callable[[Any], None]              # a stop signal right after the build: destroy it
    values: Callable[[Any], Dict[str, Any]]     # the parameter values now (ignored overrides)
    # The node's "ready"/"waiting" line, logged once the node is up (a stop signal from then on
    # stops a running node) and after the override warnings: whoever waits for it (launch files,
    # tests) may signal at once.
    up_line: Optional[Callable[[Any], str]] = None


def run(entry: NodeEntry, args=None) -> int:
    """The executable's exit status: 0 after SIGINT/SIGTERM at any moment, 2 when the node
    cannot start (docs/ROS.md "Shutdown")."""
    signals = StopSignals().install()
    node, status = _start(entry, signals, args)
    if node is None:
        return status
    for warning in params.ignored_overrides(sys.argv if args is None else args, node.get_name(),
                                            entry.values(node)):
        node.get_logger().warning(warning)
    if entry.up_line:
        node.get_logger().info(entry.up_line(node))
    if not _spin_until_stopped(node, signals, entry.stop):
        sys.stdout.flush()         # a thread is still in a model forward: no interpreter teardown under it
        sys.stderr.flush()
        os._exit(0)
    return 0


def _start(entry: NodeEntry, signals: StopSignals, args) -> Tuple[Optional[Any], int]:
    """(the node, up: a later signal only requests the stop, 0) or (None, the exit status of a
    start that ended: 0 after a stop signal, 2 after an error)."""
    log = rclpy.logging.get_logger(entry.name)
    node = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = entry.node_class()
        signals.node_up()
    except StopRequest as stop:
        log.info(f"stop requested ({stop}) during start-up: exiting")
        if node is not None:                                   # the signal came right after the build
            entry.abandon(node)
        rclpy.try_shutdown()
        return None, 0
    except Exception as err:  # noqa: BLE001 - one clear line for every start-up failure
        log.fatal(f"cannot start: {type(err).__name__}: {err}")
        rclpy.try_shutdown()
        return None, 2
    return node, 0


def _spin_until_stopped(node, signals: StopSignals, stop: Callable[[Any], bool]) -> bool:
    """Spin until a stop signal, then ``stop``; True when the node's threads ended."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        Spinner(executor).spin_until(signals.requested.is_set, SPIN_PERIOD)
    except ExternalShutdownException:
        pass
    finally:
        node.get_logger().info(f"stop requested ({signals.signal_name or 'context shut down'}): stopping")
        finished = stop(node)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return finished
