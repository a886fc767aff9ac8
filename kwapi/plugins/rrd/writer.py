"""Writing measurements in batches, from a thread of their own.

The receiver hands each message (one sample or a batch of a probe's
samples) to :meth:`BatchWriter.add`, which only queues it; a writer thread
hands the queue to :meth:`~kwapi.plugins.rrd.storage.RrdStorage.update_many`
every *interval* seconds, or as soon as *batch_size* samples wait.  It also
writes the last, incomplete second of batched probes that went quiet
(:meth:`~kwapi.plugins.rrd.storage.RrdStorage.write_open_steps`), and that of
every probe on stop.  Through rrdcached a
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

from kwapi.bus.protocol import Message
from kwapi.plugins.rrd.storage import RrdStorage

LOG = logging.getLogger(__name__)

#: How many batches may wait before add() writes them itself.
BACKLOG_BATCHES = 20
#: Heartbeats without a batch after which a probe's incomplete second is written.
IDLE_HEARTBEATS = 3


class BatchWriter(threading.Thread):
    """Queues messages and writes them to *storage* in batches of about *batch_size* samples."""

    def __init__(self, storage: RrdStorage, *, batch_size: int = 1000, interval: float = 0.2):
        super().__init__(name="rrd-writer", daemon=True)
        self.storage = storage
        self.batch_size = batch_size
        self.interval = interval
        self._pending: list[Message] = []
        self._samples = 0  # samples in _pending
        self._oldest: float | None = None  # time.monotonic() the oldest pending one came
        self._lock = threading.Lock()  # guards _pending, _samples and _oldest
        self._write_lock = threading.Lock()  # one batch written at a time, in order
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def add(self, message: Message) -> None:
        """Queue the samples of *message* (the receiver's handler)."""
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(message)
            self._samples += len(message)
            waiting = self._samples
        if waiting >= self.batch_size:
            self._wake.set()
            if waiting >= self.batch_size * BACKLOG_BATCHES:
                self.write_pending()

    def pending(self) -> int:
        """How many samples wait to be written."""
        return self._samples

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
                self._samples = 0
            chunk: list[Message] = []
            samples = 0
            for message in queued:
                chunk.append(message)
                samples += len(message)
                if samples >= self.batch_size:
                    written += self.storage.update_many(chunk)
                    chunk, samples = [], 0
            if chunk:
                written += self.storage.update_many(chunk)
        return written

    def write_idle(self) -> int:
        """Write the incomplete second of batched probes quiet for a few heartbeats."""
        with self._write_lock:
            return self.storage.write_open_steps(IDLE_HEARTBEATS * self.storage.heartbeat)

    def run(self) -> None:
        next_idle_check = time.monotonic() + self.storage.heartbeat
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.write_pending()
                if time.monotonic() >= next_idle_check:
                    next_idle_check = time.monotonic() + self.storage.heartbeat
                    self.write_idle()
            except Exception:  # a bug must not stop the writing of later batches
                LOG.exception("could not write a batch of measurements")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, then write whatever is still queued, incomplete seconds included."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        self.write_pending()
        with self._write_lock:
            self.storage.write_open_steps()
