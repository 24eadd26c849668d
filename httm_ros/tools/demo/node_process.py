"""reconstruct_node as a separate process: start, stop, and waits that fail early when it dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

from ..launch_plan import installed_executable


class DemoError(RuntimeError):
    """The demo cannot go on; ``str(err)`` says why (and where the node's log is)."""


def start_node(ros_args: Sequence[str], env: Dict[str, str], log_path: Path) -> subprocess.Popen:
    """The installed reconstruct_node executable, output to ``log_path``."""
    exe = installed_executable()
    if exe is None:
        raise DemoError("reconstruct_node is not installed: run scripts/colcon_build.sh and "
                        "source .ws/install/setup.bash first (scripts/demo does both)")
    handle = open(log_path, "w")
    try:
        return subprocess.Popen([sys.executable, str(exe), *ros_args], env=env, stdout=handle,
                                stderr=subprocess.STDOUT)
    finally:
        handle.close()


def stop_node(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGINT, then SIGKILL after ``timeout``; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Watch:
    """Waits with deadlines that fail early when the node process dies."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path

    def until(self, predicate, timeout: float, what: str, progress=None) -> None:
        """Wait for ``predicate()``; ``progress()`` (a value) changing restarts the deadline."""
        deadline, last = time.monotonic() + timeout, progress() if progress else None
        while not predicate():
            if self.proc.poll() is not None:
                raise DemoError(f"reconstruct_node exited ({self.proc.returncode}) while waiting for {what}; "
                                f"its log ({self.log_path}) ends with:\n{_tail(self.log_path)}")
            now = progress() if progress else None
            if now != last:
                deadline, last = time.monotonic() + timeout, now
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}; node log: {self.log_path}")
            time.sleep(0.05)
