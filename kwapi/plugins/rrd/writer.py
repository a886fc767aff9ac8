"""Writing measurements in batches, from a thread of their own.

The receiver hands each measurement to :meth:`BatchWriter.add`, which only
queues it; a writer thread hands the queue to
:meth:`~kwapi.plugins.rrd.storage.RrdStorage.update_many` every *interval*
seconds, or as soon as *batch_size* measurements wait.  Through rrdcached a
batch is one BATCH command, so the receiver never waits for rrdcached and
rrdcached gets thousands of updates per round trip.  When the writer falls
far behind, :meth:`add` writes the queue itself, which slows the receiver
down: ZeroMQ then queues (and past its high-water mark drops) upstream, so
memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
import time

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.storage import RrdStorage

LOG = logging.getLogger(__name__)

#: How many batches may wait before add() writes them itself.
BACKLOG_BATCHES = 20


class BatchWriter(threading.Thread):
    """Queues measurements and writes them to *storage* in batches."""

    def __init__(self, storage: RrdStorage, *, batch_size: int = 1000, interval: float = 0.2):
        super().__init__(name="rrd-writer", daemon=True)
        self.storage = storage
        self.batch_size = batch_size
        self.interval = interval
        self._pending: list[Measurement] = []
        self._oldest: float | None = None  # time.monotonic() the oldest pending one came
        self._lock = threading.Lock()  # guards _pending and _oldest
        self._write_lock = threading.Lock()  # one batch written at a time, in order
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def add(self, measurement: Measurement) -> None:
        """Queue *measurement* (the receiver's handler)."""
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(measurement)
            waiting = len(self._pending)
        if waiting >= self.batch_size:
            self._wake.set()
            if waiting >= self.batch_size * BACKLOG_BATCHES:
                self.write_pending()

    def pending(self) -> int:
        """How many measurements wait to be written."""
        return len(self._pending)

    def lag(self) -> float:
        """Seconds the oldest measurement still queued has waited (0 when none waits)."""
        oldest = self._oldest
        return 0.0 if oldest is None or not self._pending else time.monotonic() - oldest

    def write_pending(self) -> int:
        """Write what is queued now, in batches; return the values written."""
        written = 0
        with self._write_lock:
            with self._lock:
                queued, self._pending, self._oldest = self._pending, [], None
            for start in range(0, len(queued), self.batch_size):
                written += self.storage.update_many(queued[start : start + self.batch_size])
        return written

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.write_pending()
            except Exception:  # a bug must not stop the writing of later batches
                LOG.exception("could not write a batch of measurements")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, then write whatever is still queued."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        self.write_pending()
