"""Rate-limited logging: one line per kind of event per period, then a count of the rest.

Shared by the bus (rejected messages) and the plugins (write errors), so it
sits at the top of the package and imports nothing from either.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable


class RateLimitedLog:
    """Logs at most one line per key per *period* seconds, then a summary count.

    The first event of a key is logged at once; the ones that follow within
    *period* are only counted, and the next line logged for that key says
    how many were left out.  Keys are independent: each kind of event (a
    rejection reason, a handler error, a write error) has its own budget.
    """

    def __init__(
        self,
        logger: logging.Logger,
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._period = period
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        """Log *message* % *args* at *level* unless *key* was logged less than a period ago."""
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] += 1
            return
        self._next[key] = now + self._period
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d more like this since the last report)"
            args = (*args, suppressed)
        self._logger.log(level, message, *args)

    def warning(self, key: str, message: str, *args: object) -> None:
        """:meth:`log` at WARNING level."""
        self.log(logging.WARNING, key, message, *args)

    def error(self, key: str, message: str, *args: object) -> None:
        """:meth:`log` at ERROR level."""
        self.log(logging.ERROR, key, message, *args)
