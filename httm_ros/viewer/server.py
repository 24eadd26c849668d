"""The viser server of httm-view: started on a host/port with an empty scene and its feed."""

from __future__ import annotations

import socket

from .msg_adapter import SceneFeed
from .viser_scene import ReconstructionScene


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_viewer(host: str = "127.0.0.1", port: int = 8080):
    """A viser server (``port`` 0: any free one) with an empty ReconstructionScene -> (server, feed)."""
    import viser

    server = viser.ViserServer(host=host, port=port or free_port(host), verbose=False)
    return server, SceneFeed(ReconstructionScene(server))
