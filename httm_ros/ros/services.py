"""The node's services ``~/flush``, ``~/reset`` and ``~/publish_map`` (std_srvs/Trigger).

A request is answered at once and served by the inference thread once every frame received
before it was processed or dropped (a flushed window must not lose queued keyframes; the map
published on request holds every keyframe received before it that made it into the map).
"""

from __future__ import annotations

import collections
from typing import Iterator

from std_srvs.srv import Trigger

REQUESTS = ("flush", "reset", "publish_map")


class StreamRequests:
    """Pending requests: (what, frames received when it came), oldest first."""

    def __init__(self) -> None:
        self._items: "collections.deque[tuple[str, int]]" = collections.deque()

    def add(self, what: str, frames_received: int) -> None:
        self._items.append((what, frames_received))

    def due(self, frames_taken: int, queue) -> Iterator[str]:
        """Pop and yield the requests whose earlier frames have all left ``queue`` (a FrameQueue):
        taken by the inference thread (``frames_taken``) or dropped."""
        while self._items:
            what, received_before = self._items[0]
            if len(queue) and frames_taken + queue.dropped < received_before:
                return                                          # frames from before it still queued
            self._items.popleft()
            yield what


def advertise(node, requests: StreamRequests, queue) -> None:
    """Create the services of REQUESTS on ``node``; they queue into ``requests``."""
    def callback(what: str):
        def serve(request, response):
            requests.add(what, queue.received)
            response.success = True
            response.message = f"{what} queued (after the frames already received)"
            return response
        return serve

    for what in REQUESTS:
        node.create_service(Trigger, f"~/{what}", callback(what))
