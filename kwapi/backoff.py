"""Exponential backoff with jitter, for whatever retries a failing peer.

Shared by the drivers (a device that went away, a driver that crashed) and
kwapi-history (a store that does not take writes).
"""

from __future__ import annotations

import random

#: Doublings past which a delay stays at its cap (2**64 times the first
#: delay exceeds any cap, and a float cannot hold 2**1024).
_MAX_DOUBLINGS = 64


class Backoff:
    """Exponential delays from *initial* doubling up to *cap*.

    With *jitter* j > 0 each delay is drawn between (1 - j) times and the
    full exponential delay, so that many peers that failed together do not
    all retry in the same instant.
    """

    def __init__(self, initial: float, cap: float, jitter: float = 0.0) -> None:
        self.initial = min(initial, cap)
        self.cap = cap
        self.jitter = jitter
        self.attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next try and count the try."""
        doublings = min(self.attempts, _MAX_DOUBLINGS)
        delay = float(min(self.cap, self.initial * 2**doublings))
        self.attempts += 1
        if self.jitter:
            delay *= 1.0 - self.jitter * random.random()
        return delay

    def reset(self) -> None:
        """Forget past failures."""
        self.attempts = 0
