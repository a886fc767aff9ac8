"""Publishing a load evenly over time from a bench process."""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq


def bound_pub(endpoint: str, sndhwm: int = 0, linger_ms: int = 0) -> zmq.Socket:
    """A PUB socket bound to *endpoint* (high-water mark 0: no limit)."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, sndhwm)
    pub.setsockopt(zmq.LINGER, linger_ms)
    pub.bind(endpoint)
    return pub


def publish_spread(
    pub: zmq.Socket, frames: Callable[[int], list[bytes]], total: int, per_second: int
) -> float:
    """Send messages ``frames(0)`` .. ``frames(total - 1)``, *per_second* a second,
    spread evenly; return the largest lateness, in seconds, of a message."""
    start = time.perf_counter()
    sent, late = 0, 0.0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * per_second) + 1)
        if due <= sent:
            time.sleep(max(0.0, start + sent / per_second - now))
            continue
        late = max(late, now - (start + sent / per_second))
        for index in range(sent, due):
            pub.send_multipart(frames(index))
        sent = due
    return late
