"""The driver base classes: a thread per wattmeter, or a task of a shared loop.

A driver subclass declares its parameters as a pydantic model and
implements :meth:`Driver.setup`, :meth:`Driver.read` and, if it holds a
resource, :meth:`Driver.teardown` (coroutines for an
:class:`kwapi.drivers.aio.AsyncDriver`).  The base class paces readings, stamps,
signs and publishes them (one message per reading, or with ``batch`` > 0
each probe's readings of ``batch`` seconds as one batched message, see
:mod:`kwapi.drivers.batching`), and survives a device that goes away: a
:class:`DeviceError` (or an OSError) is logged once, the device is torn down
and set up again with capped exponential backoff.  A reading that is not a
finite number (NaN, infinity) is not published: that probe's measurement is
dropped, logged once until the probe reads finite numbers again, and the
other probes go on.  Any other exception is a bug: it ends the thread, and
the driver manager restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

import pydantic

from kwapi.backoff import Backoff
from kwapi.bus.protocol import Measurement, Message, finite_number
from kwapi.drivers.batching import Batcher

LOG = logging.getLogger(__name__)


# Why a device failed, as the health metrics count it (label ``reason``).
TIMEOUT = "timeout"
AUTHENTICATION = "authentication"
PARSE = "parse"
DEVICE_GONE = "device_gone"
OTHER = "other"


class DeviceError(Exception):
    """The device cannot be reached or answered nonsense; worth retrying.

    *reason* sorts the failure for the health metrics: :data:`TIMEOUT`,
    :data:`AUTHENTICATION`, :data:`PARSE`, :data:`DEVICE_GONE` or
    :data:`OTHER`.
    """

    def __init__(self, message: str, reason: str = OTHER) -> None:
        super().__init__(message)
        self.reason = reason


def failure_reason(exc: BaseException) -> str:
    """The health metrics' reason for a device failure *exc*."""
    if isinstance(exc, DeviceError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, PermissionError):
        return AUTHENTICATION
    if isinstance(exc, OSError):
        return DEVICE_GONE
    return OTHER


@dataclass
class Health:
    """What the health metrics tell of one wattmeter; it outlives the driver's restarts.

    The driver writes it from its own thread or task; the metrics read it
    from another, copying the containers they iterate (a copy is atomic
    under the GIL).  A failure of ``read`` counts as a read error; every
    failure, of ``read`` or of ``setup``, leads to a restart: teardown, wait,
    setup again.
    """

    up: bool = False
    last_success: float | None = None  # time.time() of the last good reading
    published: int = 0
    dropped: int = 0
    backoff: float = 0.0
    read_errors: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    probes_last_success: dict[str, float] = field(default_factory=dict)

    def count_failure(self, reason: str, backoff: float, reading: bool) -> None:
        """``read`` (*reading*) or ``setup`` failed for *reason*; a restart in *backoff* s."""
        self.up = False
        if reading:
            self.read_errors[reason] += 1
        self.restarts[reason] += 1
        self.backoff = backoff


class SectionError(ValueError):
    """What :meth:`Driver.validate` raises to name the key of the section at fault.

    *key* is ``probes``, ``parameters`` or ``driver``; a plain ValueError
    from ``validate`` is reported against ``parameters``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


#: The shortest interval between readings, for drivers that can read that fast.
MIN_INTERVAL: Final = 0.001
#: The longest ``batch``: samples older than that would wait too long for a dashboard.
MAX_BATCH_SECONDS: Final = 60.0


class DriverParameters(pydantic.BaseModel):
    """Parameters every driver accepts; subclasses add their own fields."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    interval: float = pydantic.Field(
        1.0, ge=MIN_INTERVAL, description="Seconds between readings (0.001 at least)."
    )
    batch: float = pydantic.Field(
        0.0,
        ge=0,
        le=MAX_BATCH_SECONDS,
        description="Seconds of readings each probe sends as one batched message "
        "(0: each reading at once).",
    )
    max_backoff: float = pydantic.Field(
        10.0, gt=0, description="Longest wait, in seconds, between tries to reach the device."
    )


# Meters per probe; a None key (a position nobody watches) is not published.
Readings = Mapping[str | None, Mapping[str, float]]
# Readings with the Unix time they were taken, for drivers whose device stamps them.
Round = tuple[float, Readings]
# What a device that goes away raises: logged once, then retried with backoff.
DEVICE_FAILURES = (DeviceError, OSError, TimeoutError)
PublishFunc = Callable[[Message], None]


# Share of each retry delay left to chance (see Backoff).
RETRY_JITTER = 0.5


#: Energy counters (Rapl, Nvml): one that has not moved for this many seconds
#: is published as such (0 W); a shorter standstill is the hardware not having
#: updated it yet, read faster than it updates: no sample until it moves.
COUNTER_HOLD: Final = 0.5
#: How far behind its deadlines a driver may fall and still catch up (see Pacer).
MAX_CATCH_UP: Final = 1.0


def grid_phase(interval: float, name: str) -> float:
    """Where, within *interval*, wattmeter *name* reads: spread by a checksum of the name."""
    return zlib.crc32(name.encode()) / 2**32 * interval


class Pacer:
    """Deadlines every *interval* seconds on a grid of its own, without drift.

    The first reading is at once; the next ones fall on a grid whose phase
    comes from *name*, so that many wattmeters of the same interval spread
    over it instead of all reading in the same millisecond.  A reading that
    comes late does not move the grid: the next readings catch up, planned
    at least half an interval apart, so that the count of readings over a
    minute is the minute divided by the interval.  A driver more than
    :data:`MAX_CATCH_UP` seconds (or one interval, if longer) behind skips
    the deadlines it missed and goes back to the grid, half an interval
    away at least.  *clock* is the monotonic clock, a parameter for the tests.
    """

    def __init__(
        self, interval: float, name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.phase = grid_phase(interval, name)
        self.deadline: float | None = None
        self.wake = 0.0  # when the next reading is planned
        self.called = 0.0  # when delay() was last called
        self.max_lag = max(MAX_CATCH_UP, interval)

    def delay(self) -> float:
        """Seconds from now until the next reading, to wait after a reading."""
        now = self.clock()
        if self.deadline is not None and now - (self.deadline + self.interval) <= self.max_lag:
            self.deadline += self.interval
            last = max(self.wake, self.called)  # when the reading just taken began
            self.wake = max(self.deadline, last + self.interval / 2)
        else:  # the first reading, or fell far behind: a point of the grid
            self.deadline = now + (self.phase - now) % self.interval
            if self.deadline - now < self.interval / 2:  # keep readings apart
                self.deadline += self.interval
            self.wake = self.deadline
        self.called = now
        return max(0.0, self.wake - now)


class DriverBase:
    """What every driver has, however it runs: parameters, publishing, failure reports.

    *probe_ids* lists the wattmeter's probes in its own order; ``None`` marks
    a position nobody watches.  Subclasses run the readings: :class:`Driver`
    in a thread of its own, :class:`kwapi.drivers.aio.AsyncDriver` as a task of
    a shared event loop.
    """

    Parameters: ClassVar[type[DriverParameters]] = DriverParameters

    def __init__(
        self,
        wattmeter: str,
        probe_ids: Sequence[str | None],
        parameters: DriverParameters,
        publish: PublishFunc,
    ) -> None:
        super().__init__()  # threading.Thread's, for a thread driver
        self.wattmeter = wattmeter
        self.probe_ids = list(probe_ids)
        self.params = parameters
        self._publish = publish
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        # When the last reading succeeded (time.monotonic()), and whether the
        # device is failing now: what the manager's stall watch looks at.
        self.last_reading_at: float | None = None
        self.failing = False
        self.set_up = False  # whether setup() succeeded since the last failure
        self.health = Health()
        self.log = logging.LoggerAdapter(LOG, {"wattmeter": wattmeter})
        # Probes whose last reading was dropped, with the meters that were not finite.
        self._not_finite: dict[str, tuple[str, ...]] = {}
        self._last_error: str | None = None
        # With batch > 0: the buffered samples, and a lock for drivers that
        # publish from several threads (Ffprobe's workers).
        self._batcher: Batcher | None = None
        if parameters.batch > 0:
            phase = grid_phase(parameters.interval, wattmeter) + parameters.interval / 2
            self._batcher = Batcher(parameters.batch, phase)
        self._batch_lock = threading.Lock()
        self._stale: set[str] = set()  # probes whose last sample was not newer than the one before

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        """Check the section as a whole at start; raise ValueError to refuse it.

        Called once before any reading starts, e.g. to check that the probe
        list fits the parameters or that a required library is installed.
        Raise :class:`SectionError` to name the key at fault (a plain
        ValueError names ``parameters``).
        """

    @property
    def published(self) -> int:
        """Samples this wattmeter published (across restarts under a driver manager)."""
        return self.health.published

    @property
    def dropped(self) -> int:
        """Samples dropped: a meter not a finite number, or (batched) a timestamp not newer."""
        return self.health.dropped

    # -- what the driver manager calls ---------------------------------------

    def start(self) -> None:
        """Start reading."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the driver to stop after its current reading."""
        self.stop_event.set()

    def is_alive(self) -> bool:
        """Whether the driver still runs."""
        raise NotImplementedError

    def join(self, timeout: float | None = None) -> None:
        """Wait up to *timeout* seconds for the driver to end."""
        raise NotImplementedError

    # -- shared by the reading loops ------------------------------------------

    def publish(self, probe_id: str, meters: Mapping[str, float], timestamp: float) -> None:
        """Publish one probe's meters at *timestamp*, or buffer them (``batch`` > 0).

        Meters that are not all finite numbers are dropped: logged as a
        warning the first time, at debug level while the same meters stay
        non-finite, and once more when the probe reads finite numbers again.
        Batched, a sample not newer than the probe's previous one is dropped
        too (a batch's timestamps must increase).
        """
        not_finite = tuple(name for name, value in meters.items() if finite_number(value) is None)
        if not_finite:
            self._drop(probe_id, meters, not_finite)
            return
        if self._batcher is None:
            self._send(Measurement(probe_id, timestamp, dict(meters)))
        else:
            with self._batch_lock:
                if not self._batcher.is_newer(probe_id, timestamp):
                    self._drop_stale(probe_id, timestamp)
                    return
                self._stale.discard(probe_id)
                for batch in self._batcher.add(probe_id, timestamp, meters):
                    self._send(batch)
        if self._not_finite and self._not_finite.pop(probe_id, None) is not None:
            self.log.warning(
                "wattmeter %s: probe %s reads finite numbers again", self.wattmeter, probe_id
            )

    def flush_due(self) -> float | None:
        """When the buffered samples must be published (time.monotonic()), or None."""
        return None if self._batcher is None else self._batcher.due

    def flush(self, only_due: bool = False) -> None:
        """Publish every buffered sample now (*only_due*: if their window has ended)."""
        if self._batcher is None:
            return
        with self._batch_lock:
            due = self._batcher.due
            if due is None or (only_due and time.monotonic() < due):
                return
            for batch in self._batcher.flush():
                self._send(batch)

    def final_flush(self) -> None:
        """Publish what is buffered as the driver ends; log, never raise."""
        try:
            self.flush()
        except Exception as exc:
            self.log.error(
                "wattmeter %s: buffered samples lost: %r", self.wattmeter, exc, exc_info=True
            )

    def _send(self, message: Message) -> None:
        """Hand one message to the bus; count its samples."""
        self._publish(message)
        self.health.published += len(message)
        self.health.probes_last_success[message.probe_id] = message.timestamp

    def publish_readings(self, readings: Readings) -> None:
        """Publish one round of readings, stamped now; note a device that came back."""
        self.publish_rounds([(time.time(), readings)])

    def publish_rounds(self, rounds: Sequence[Round]) -> None:
        """Publish rounds of readings at their own timestamps; note a device that came back.

        No round at all (a device that had nothing new) publishes nothing and
        is not a sign of life.
        """
        for timestamp, readings in rounds:
            for probe_id, meters in readings.items():
                if probe_id is not None and meters:
                    self.publish(probe_id, meters, timestamp)
        if not rounds:
            return
        self.last_reading_at = time.monotonic()
        self.health.last_success = time.time()
        self.health.up = True
        self.health.backoff = 0.0
        if self.failing:
            self.log.warning("wattmeter %s: device is back", self.wattmeter)
            self.failing = False
            self._last_error = None

    def report_failure(self, exc: BaseException, backoff: float) -> None:
        """Log a device failure once per distinct error, at debug level while it lasts.

        The next try is in *backoff* seconds; both go to the health metrics.
        """
        self.health.count_failure(failure_reason(exc), backoff, reading=self.set_up)
        error = f"{type(exc).__name__}: {exc}"
        self.failing = True
        if error != self._last_error:
            self.log.warning(
                "wattmeter %s: %s; retrying every %g s at most",
                self.wattmeter,
                error,
                self.params.max_backoff,
            )
        else:
            self.log.debug("wattmeter %s: still failing: %s", self.wattmeter, error)
        self._last_error = error

    def new_backoff(self) -> Backoff:
        """The backoff between tries to reach the device, jittered."""
        return Backoff(
            initial=min(1.0, self.params.interval), cap=self.params.max_backoff, jitter=RETRY_JITTER
        )

    def _drop_stale(self, probe_id: str, timestamp: float) -> None:
        """Drop a batched sample whose timestamp is not newer than the probe's previous one."""
        self.health.dropped += 1
        level = logging.DEBUG if probe_id in self._stale else logging.WARNING
        self._stale.add(probe_id)
        self.log.log(
            level,
            "wattmeter %s: probe %s: dropping a sample at %.6f, not newer than the one before",
            self.wattmeter,
            probe_id,
            timestamp,
        )

    def _drop(
        self, probe_id: str, meters: Mapping[str, object], not_finite: tuple[str, ...]
    ) -> None:
        self.health.dropped += 1
        values = ", ".join(f"{name}={meters[name]!r:.40}" for name in not_finite)
        if self._not_finite.get(probe_id) != not_finite:
            self.log.warning(
                "wattmeter %s: probe %s: dropping measurements with a meter that is not "
                "a finite number (%s) until it reads finite numbers again",
                self.wattmeter,
                probe_id,
                values,
            )
        else:
            self.log.debug(
                "wattmeter %s: probe %s: still not finite (%s)", self.wattmeter, probe_id, values
            )
        self._not_finite[probe_id] = not_finite


class Driver(DriverBase, threading.Thread):
    """One wattmeter's thread: set up, read every interval, publish.

    :meth:`read` returns the meters of the probes it could read, keyed by
    probe id.
    """

    # -- what subclasses implement -------------------------------------------

    def setup(self) -> None:
        """Open the device; raise DeviceError if it cannot be reached."""

    def read(self) -> Readings:
        """Return one reading per probe read, keyed by probe id."""
        raise NotImplementedError

    def read_rounds(self) -> Sequence[Round]:
        """Return rounds of readings with their Unix times: :meth:`read`'s, stamped now.

        A driver whose device stamps its own measurements, or delivers many
        at a time, overrides this instead of :meth:`read`.
        """
        readings = self.read()
        return [(time.time(), readings)]

    def teardown(self) -> None:
        """Release what setup opened; must not raise."""

    # -- the loop ------------------------------------------------------------

    def start(self) -> None:
        self.name = f"driver:{self.wattmeter}"
        self.daemon = True
        threading.Thread.start(self)

    def is_alive(self) -> bool:
        return threading.Thread.is_alive(self)

    def join(self, timeout: float | None = None) -> None:
        threading.Thread.join(self, timeout)

    def run(self) -> None:
        try:
            self._run_with_retries()
        except BaseException as exc:
            self.failure = exc
            self.log.error("wattmeter %s: driver crashed: %r", self.wattmeter, exc, exc_info=True)
        finally:
            self._safe_teardown()
            self.final_flush()

    def _run_with_retries(self) -> None:
        backoff = self.new_backoff()
        while not self.stop_event.is_set():
            try:
                self.set_up = False
                self.setup()
                self.set_up = True
                self._read_loop(backoff)
                return
            except DEVICE_FAILURES as exc:
                failure: BaseException = exc
            # Logged outside the except block, so the line carries no traceback.
            delay = backoff.next_delay()
            self.report_failure(failure, delay)
            self._safe_teardown()
            self.flush()
            self.stop_event.wait(delay)

    def _read_loop(self, backoff: Backoff) -> None:
        pacer = Pacer(self.params.interval, self.wattmeter)
        while not self.stop_event.is_set():
            self.publish_rounds(self.read_rounds())
            backoff.reset()
            self._pause(pacer.delay())

    def _pause(self, seconds: float) -> None:
        """Wait *seconds* or until stopped, publishing the buffered samples when due."""
        end = time.monotonic() + seconds
        while True:
            due = self.flush_due()
            if due is None or due > end:
                self.stop_event.wait(max(0.0, end - time.monotonic()))
                return
            if self.stop_event.wait(max(0.0, due - time.monotonic())):
                return
            self.flush(only_due=True)

    def _safe_teardown(self) -> None:
        try:
            self.teardown()
        except Exception as exc:
            self.log.warning("wattmeter %s: teardown failed: %r", self.wattmeter, exc)
