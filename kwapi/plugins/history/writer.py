"""The writer thread: batches of samples to the store, the spool when it does not take them.

The receiver's thread hands each accepted message to :meth:`HistoryWriter.add`,
which formats it as line protocol and appends the text to the batch being
filled (formatting there leaves the writer thread almost nothing to do under
the GIL: see doc/performance.rst). The writer thread closes that batch once it
holds ``batch_size`` samples or its first sample waited ``flush_interval``
seconds, cuts it into bodies of at most ``batch_size`` lines, gzips and posts
them (:class:`~kwapi.plugins.history.store.StoreClient`). A batch the store
does not take goes to the :class:`~kwapi.plugins.history.spool.Spool`
before it leaves memory; while the store is down, new batches go straight
there. The spool is replayed oldest first, one batch per turn of the loop
between new batches, once a try succeeds; tries of a store that fails are
spaced by :class:`~kwapi.backoff.Backoff`. A rejected batch (400) is logged, counted and
dropped. On stop, the batch being filled is sent or spooled like any other.
"""

from __future__ import annotations

import bisect
import gzip
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from kwapi.backoff import Backoff
from kwapi.bus.protocol import Message
from kwapi.plugins.history.lineprotocol import LineFormat
from kwapi.plugins.history.spool import Spool, SpoolFile
from kwapi.plugins.history.store import Outcome, StoreClient
from kwapi.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

#: gzip level of the bodies: level 1 makes them about 8 times smaller for a
#: fraction of the time level 6 takes (see doc/performance.rst).
GZIP_LEVEL = 1
#: Upper bounds, in seconds, of the write latency histogram.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Samples of closed batches kept in memory while the store is slower than the bus
#: (a burst, a slow store); beyond, the oldest closed batches go to the spool.
MAX_BACKLOG_SAMPLES = 500_000


@dataclass
class WriterStats:
    """Counts of the writer, in samples unless named otherwise; read from any thread."""

    received: int = 0
    written: int = 0
    rejected: int = 0
    rejected_batches: int = 0
    unformattable: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0

    def observe(self, outcome: Outcome) -> None:
        """Count the duration of a write the store answered."""
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, outcome.seconds)] += 1
        self.latency_sum += outcome.seconds


@dataclass
class StoreState:
    """Whether the store took the last write, since when, and its last error."""

    up: bool = True
    since: float = field(default_factory=time.time)
    last_error: str = ""
    last_written: float | None = None


class HistoryWriter(threading.Thread):
    """Batches received messages and writes them to *client*, spooling what fails.

    *clock* is monotonic seconds (the batches' ages and the retry times).
    """

    def __init__(
        self,
        client: StoreClient,
        spool: Spool,
        line_format: LineFormat,
        *,
        batch_size: int,
        flush_interval: float,
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="history-writer", daemon=True)
        self.client = client
        self.spool = spool
        self.format = line_format
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff = backoff
        self.stats = WriterStats()
        self.store = StoreState()
        self._clock = clock
        self._cond = threading.Condition()
        self._filling: list[bytes] = []
        self._filling_samples = 0
        self._opened = 0.0
        self._closed: deque[tuple[list[bytes], int]] = deque()
        self._pending = 0
        self._stopping = False
        self._retry_at = 0.0
        self._log = RateLimitedLog(LOG, 60.0)

    # -- the receiver's side

    def add(self, message: Message) -> None:
        """Format *message* into the batch being filled (the receiver's handler).

        A message that cannot be formatted is counted and logged, never raised.
        """
        samples = len(message)
        try:
            text = self.format.text(message)
        except (ValueError, TypeError) as exc:
            with self._cond:
                self.stats.received += samples
                self.stats.unformattable += samples
            self._log.error("format", "cannot format a sample of %s: %s", message.probe_id, exc)
            return
        with self._cond:
            if not self._filling:  # a new batch: the writer thread times it from now
                self._opened = self._clock()
                self._cond.notify()
            self._filling.append(text)
            self._filling_samples += samples
            self._pending += samples
            self.stats.received += samples
            if self._filling_samples >= self.batch_size:
                self._close_batch()
                self._cond.notify()

    def pending(self) -> int:
        """Samples received and not yet written, spooled or dropped."""
        return self._pending

    def _close_batch(self) -> None:
        """Move the batch being filled to the closed ones (the lock held)."""
        if self._filling:
            self._closed.append((self._filling, self._filling_samples))
            self._filling = []
            self._filling_samples = 0

    # -- the writer thread

    def stop(self, timeout: float | None = None) -> None:
        """Write or spool every sample received, then end the thread (at most *timeout* s)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while True:
            step, batch, samples = self._next_step()
            if step == "stop":
                return
            if step == "spill":  # the store is slower than the bus: keep it on disk
                self._deliver(batch, samples, spool_only=True)
                continue
            if step == "write":
                self._deliver(batch, samples)
            if not self._stopping:  # one spooled batch after each new one
                self._replay_one()

    def _next_step(self) -> tuple[str, list[bytes], int]:
        """Wait for something to do: ``write`` or ``spill`` the oldest closed batch,
        ``replay`` the spool, or ``stop`` once every batch is delivered."""
        with self._cond:
            while True:
                now = self._clock()
                if self._stopping or (self._filling and now >= self._opened + self.flush_interval):
                    self._close_batch()
                if self._closed:
                    backlog = sum(samples for _, samples in self._closed)
                    oldest, samples = self._closed.popleft()
                    spill = backlog - samples >= MAX_BACKLOG_SAMPLES and not self._stopping
                    return ("spill" if spill else "write"), oldest, samples
                if self._stopping:
                    return "stop", [], 0
                if len(self.spool) and now >= self._retry_at:
                    return "replay", [], 0
                self._cond.wait(self._wait(now))

    def _wait(self, now: float) -> float | None:
        """Seconds until the batch being filled is due, or a replay (None: neither)."""
        due = []
        if self._filling:
            due.append(self._opened + self.flush_interval)
        if len(self.spool):
            due.append(self._retry_at)
        return max(0.0, min(due) - now) if due else None

    def _deliver(self, texts: list[bytes], samples: int, spool_only: bool = False) -> None:
        """Compress and send (or spool) one closed batch: formatted *texts* of *samples*."""
        try:
            for body, lines in bodies(texts, self.batch_size):
                self._send(gzip_body(body), lines, spool_only)
        finally:
            with self._cond:
                self._pending -= samples

    def _send(self, body: bytes, samples: int, spool_only: bool = False) -> None:
        """Post *body* unless the store is down; keep it in the spool if it is not taken."""
        if spool_only or self._clock() < self._retry_at:
            self.spool.put(body, samples, self.format.precision)
            return
        outcome = self.client.post(body, self.format.precision)
        if outcome.verdict == "written":
            self._written(outcome, samples)
        elif outcome.verdict == "retry":
            self._failed(outcome)
            self.spool.put(body, samples, self.format.precision)
        else:
            self._rejected(outcome, samples)

    def _replay_one(self) -> None:
        """Send the oldest spooled batch, if the store may be tried now."""
        spooled = self.spool.oldest()
        if spooled is None or self._clock() < self._retry_at:
            return
        body = self.spool.read(spooled)
        if body is None:
            return
        outcome = self.client.post(body, spooled.precision)
        if outcome.verdict == "written":
            self.spool.remove(spooled)
            self._written(outcome, spooled.samples)
        elif outcome.verdict == "retry":
            self._failed(outcome)
        else:
            self._rejected(outcome, spooled.samples, spooled)
            self.spool.remove(spooled, replayed=False)

    # -- outcomes

    def _written(self, outcome: Outcome, samples: int) -> None:
        self.stats.written += samples
        self.store.last_written = time.time()
        self._answered(outcome)

    def _answered(self, outcome: Outcome) -> None:
        """The store answered (2xx, or a final 4xx): it is up; tries need not wait."""
        self.stats.observe(outcome)
        self.backoff.reset()
        self._retry_at = 0.0
        if not self.store.up:
            LOG.info(
                "store %s answers again after %.1f s; replaying %d spooled batch(es) oldest first",
                self.client.url,
                time.time() - self.store.since,
                len(self.spool),
            )
            self.store.up, self.store.since = True, time.time()

    def _failed(self, outcome: Outcome) -> None:
        if outcome.status:
            self.stats.observe(outcome)
        self.stats.failures[str(outcome.status or "none")] += 1
        delay = self.backoff.next_delay()
        self._retry_at = self._clock() + delay
        self.store.last_error = outcome.detail
        if self.store.up:
            self.store.up, self.store.since = False, time.time()
            LOG.warning(
                "store %s did not take a batch (%s); keeping batches in the spool %s, "
                "next try in %.2g s",
                self.client.url,
                outcome.detail,
                self.spool.directory,
                delay,
            )
        else:
            LOG.debug("store still failing (%s); next try in %.2g s", outcome.detail, delay)

    def _rejected(self, outcome: Outcome, samples: int, spooled: SpoolFile | None = None) -> None:
        self.stats.rejected += samples
        self.stats.rejected_batches += 1
        self._answered(outcome)
        where = f" (spooled as {spooled.path.name})" if spooled else ""
        self._log.error(
            "rejected",
            "store %s rejected a batch of %d sample(s)%s, which is dropped, not retried: %s",
            self.client.url,
            samples,
            where,
            outcome.detail,
        )


def bodies(texts: Iterable[bytes], size: int) -> Iterator[tuple[bytes, int]]:
    """*texts* (lines, each ended by a newline) joined into bodies of *size* lines
    (the last one fewer), each with its number of lines (one a sample)."""
    parts: list[bytes] = []
    count = 0
    for text in texts:
        lines = text.count(b"\n")
        while count + lines > size:  # the body is full within this text: cut it
            cut = size - count
            pieces = text.split(b"\n", cut)
            parts.append(b"\n".join(pieces[:cut]) + b"\n")
            yield b"".join(parts), size
            parts, count = [], 0
            text, lines = pieces[cut], lines - cut
        if lines:
            parts.append(text)
            count += lines
    if count:
        yield b"".join(parts), count


def gzip_body(text: bytes) -> bytes:
    """The gzipped body of *text* (gzip level :data:`GZIP_LEVEL`, no timestamp)."""
    return gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0)
