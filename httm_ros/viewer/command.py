"""httm-view: a browser viewer of reconstruct_node's outputs (live topics or an output bag).

    httm-view                          subscribe to /reconstruct_node's topics (needs rclpy)
    httm-view --bag outputs/demo/outputs_bag
    httm-view --bag BAG --screenshot viewer.png     write a headless-chromium screenshot and exit

Open http://127.0.0.1:8080 (--host / --port to change) in a browser. Ctrl-C (or SIGTERM) exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Optional, Sequence

from httm_ros.tools.bag_io import BagError

from .server import start_viewer


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="httm-view", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bag", help="show an output bag (rosbag2 directory or .mcap) instead of live topics")
    p.add_argument("--node", default="/reconstruct_node",
                   help="the reconstruct node's full name, for its topics (default /reconstruct_node)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this host only)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--screenshot", metavar="PNG", help="with --bag: write a screenshot of the page and exit")
    return p.parse_args(argv)


def _stop_event() -> threading.Event:
    """An event set by SIGINT / SIGTERM (installed in the main thread). Later signals are ignored:
    Ctrl-C on ``ros2 launch`` reaches the viewer twice (the terminal's, then launch's), and the
    second could otherwise land after Python has restored the default handlers on its way out."""
    stop = threading.Event()

    def on_signal(*_) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return stop


def _serve_bag(args, stop: threading.Event) -> int:
    from .bag_feed import load_bag

    server, feed = start_viewer(args.host, args.port)
    try:
        topics = load_bag(feed, args.bag, args.node)
        print(f"httm-view: {args.bag}: {', '.join(sorted(topics))}; map {feed.scene.counts['map']} points; "
              f"http://{args.host}:{server.get_port()}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


def _serve_live(args, stop: threading.Event) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from ..ros.spinning import Spinner
    from .live_feed import subscribe

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)      # our handlers: exit 0
    server, feed = start_viewer(args.host, args.port)
    node = rclpy.create_node("httm_view")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = Spinner(executor)
    spinner = threading.Thread(target=spinning.spin_until, name="httm-view-spin", daemon=True)
    try:
        topics = subscribe(node, feed, args.node)
        spinner.start()
        print(f"httm-view: subscribed to {', '.join(topics.values())}; http://{args.host}:{server.get_port()}",
              flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        spinning.shutdown(timeout_sec=2.0)
        if spinner.is_alive():          # out of rclpy before the node goes (else: abort at exit)
            spinner.join(5.0)
        node.destroy_node()
        rclpy.try_shutdown()
        server.stop()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.screenshot:
        if not args.bag:
            print("httm-view: error: --screenshot needs --bag", file=sys.stderr)
            return 2
        from .screenshot import ScreenshotError, write_screenshot
        try:
            write_screenshot(args.bag, args.screenshot, node=args.node)
        except (BagError, ScreenshotError) as err:
            print(f"httm-view: error: {err}", file=sys.stderr)
            return 1
        print(f"httm-view: wrote {args.screenshot}")
        return 0
    stop = _stop_event()
    try:
        return _serve_bag(args, stop) if args.bag else _serve_live(args, stop)
    except BagError as err:
        print(f"httm-view: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
