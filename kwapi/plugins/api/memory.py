"""kwapi-api's C heap: big blocks mapped apart, freed pages given back to the system.

With glibc, memory that a thread frees stays in that thread's malloc arena.
At 10,000 probes two things leave a lot there: a burst of messages queued
in ZeroMQ's I/O thread (20,000 messages: 10 to 30 MB, measured), and the
bodies of GET /v1/probes/ and /metrics built in waitress' threads.  Where
the C library is not glibc, these functions do nothing.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)

#: glibc's mallopt() parameter M_MMAP_THRESHOLD, and the value kwapi-api gives it.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
#: Seconds between two returns of the heap's free pages to the system.
TRIM_PERIOD = 10.0


def _libc_function(name: str) -> Callable[..., Any] | None:
    """The C library's function *name*, or None where there is none."""
    try:
        function: Callable[..., Any] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function


def map_big_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have malloc map each block over *threshold* bytes apart, and unmap it when freed.

    glibc raises that threshold to the largest block freed so far: after one
    /metrics of 10,000 probes (2.5 MB of text), every later response body was
    carved from the arena of the waitress thread that built it, and each
    arena kept its peak (15 MB more in all, measured).  Fixing the threshold
    at its default value gives those blocks back.  False where it cannot.
    """
    mallopt = _libc_function("mallopt")
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, threshold))


class HeapTrim(threading.Thread):
    """Gives the free pages of every malloc arena back to the system every *period* s.

    glibc's ``malloc_trim(0)``: microseconds when there is nothing to give
    back, a few milliseconds after a burst (the GIL is released meanwhile).
    """

    def __init__(self, period: float = TRIM_PERIOD) -> None:
        super().__init__(name="heap-trim", daemon=True)
        self.period = period
        self._trim = _libc_function("malloc_trim")
        self._stop_event = threading.Event()

    def run(self) -> None:
        if self._trim is None:
            LOG.debug("no malloc_trim in this C library: freed memory stays in the heap")
            return
        while not self._stop_event.wait(self.period):
            self._trim(0)

    def stop(self) -> None:
        """Stop trimming (the thread ends within a moment)."""
        self._stop_event.set()
