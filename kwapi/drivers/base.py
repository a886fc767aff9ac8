"""The driver base class: one thread per wattmeter.

A driver subclass declares its parameters as a pydantic model and
implements :meth:`Driver.setup`, :meth:`Driver.read` and, if it holds a
resource, :meth:`Driver.teardown`.  The base class paces readings, stamps,
signs and publishes them, and survives a device that goes away: a
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
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import pydantic

from kwapi.bus.protocol import Measurement, finite_number

LOG = logging.getLogger(__name__)


class DeviceError(Exception):
    """The device cannot be reached or answered nonsense; worth retrying."""


class SectionError(ValueError):
    """What :meth:`Driver.validate` raises to name the key of the section at fault.

    *key* is ``probes``, ``parameters`` or ``driver``; a plain ValueError
    from ``validate`` is reported against ``parameters``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class DriverParameters(pydantic.BaseModel):
    """Parameters every driver accepts; subclasses add their own fields."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    interval: float = pydantic.Field(1.0, gt=0, description="Seconds between readings.")
    max_backoff: float = pydantic.Field(
        10.0, gt=0, description="Longest wait, in seconds, between tries to reach the device."
    )


Readings = Mapping[str, Mapping[str, float]]
PublishFunc = Callable[[Measurement], None]


class Backoff:
    """Exponential delays from *initial* doubling up to *cap*."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = min(initial, cap)
        self.cap = cap
        self.attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next try and count the try."""
        delay = min(self.cap, self.initial * 2**self.attempts)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Forget past failures."""
        self.attempts = 0


class Driver(threading.Thread):
    """One wattmeter's thread: set up, read every interval, publish.

    *probe_ids* lists the wattmeter's probes in its own order; ``None`` marks
    a position nobody watches.  :meth:`read` returns the meters of the probes
    it could read, keyed by probe id.
    """

    Parameters: ClassVar[type[DriverParameters]] = DriverParameters

    def __init__(
        self,
        wattmeter: str,
        probe_ids: Sequence[str | None],
        parameters: DriverParameters,
        publish: PublishFunc,
    ) -> None:
        super().__init__(name=f"driver:{wattmeter}", daemon=True)
        self.wattmeter = wattmeter
        self.probe_ids = list(probe_ids)
        self.params = parameters
        self._publish = publish
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        self.published = 0
        self.dropped = 0
        self.log = logging.LoggerAdapter(LOG, {"wattmeter": wattmeter})
        # Probes whose last reading was dropped, with the meters that were not finite.
        self._not_finite: dict[str, tuple[str, ...]] = {}

    # -- what subclasses implement -------------------------------------------

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        """Check the section as a whole at start; raise ValueError to refuse it.

        Called once before any thread starts, e.g. to check that the probe
        list fits the parameters or that a required library is installed.
        Raise :class:`SectionError` to name the key at fault (a plain
        ValueError names ``parameters``).
        """

    def setup(self) -> None:
        """Open the device; raise DeviceError if it cannot be reached."""

    def read(self) -> Readings:
        """Return one reading per probe read, keyed by probe id."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Release what setup opened; must not raise."""

    # -- the loop ------------------------------------------------------------

    def publish(self, probe_id: str, meters: Mapping[str, float], timestamp: float) -> None:
        """Stamp and publish one probe's meters; drop them if one is not a finite number.

        A dropped measurement is logged as a warning the first time, at debug
        level while the same meters stay non-finite, and once more when the
        probe reads finite numbers again.
        """
        not_finite = tuple(name for name, value in meters.items() if finite_number(value) is None)
        if not_finite:
            self._drop(probe_id, meters, not_finite)
            return
        self._publish(Measurement(probe_id, timestamp, dict(meters)))
        self.published += 1
        if self._not_finite and self._not_finite.pop(probe_id, None) is not None:
            self.log.warning(
                "wattmeter %s: probe %s reads finite numbers again", self.wattmeter, probe_id
            )

    def _drop(
        self, probe_id: str, meters: Mapping[str, object], not_finite: tuple[str, ...]
    ) -> None:
        self.dropped += 1
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

    def stop(self) -> None:
        """Ask the thread to stop after its current reading."""
        self.stop_event.set()

    def run(self) -> None:
        try:
            self._run_with_retries()
        except BaseException as exc:
            self.failure = exc
            self.log.error("wattmeter %s: driver crashed: %r", self.wattmeter, exc, exc_info=True)
        finally:
            self._safe_teardown()

    def _run_with_retries(self) -> None:
        backoff = Backoff(initial=min(1.0, self.params.interval), cap=self.params.max_backoff)
        last_error: str | None = None
        while not self.stop_event.is_set():
            try:
                self.setup()
                self._read_loop(backoff, recovering=last_error is not None)
                return
            except (DeviceError, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            # Logged outside the except block, so the line carries no traceback.
            if error != last_error:
                self.log.warning(
                    "wattmeter %s: %s; retrying every %g s at most",
                    self.wattmeter,
                    error,
                    self.params.max_backoff,
                )
            else:
                self.log.debug("wattmeter %s: still failing: %s", self.wattmeter, error)
            last_error = error
            self._safe_teardown()
            self.stop_event.wait(backoff.next_delay())

    def _read_loop(self, backoff: Backoff, recovering: bool) -> None:
        interval = self.params.interval
        deadline = time.monotonic()
        while not self.stop_event.is_set():
            readings = self.read()
            timestamp = time.time()
            for probe_id, meters in readings.items():
                if probe_id is not None and meters:
                    self.publish(probe_id, meters, timestamp)
            if recovering:
                self.log.warning("wattmeter %s: device is back", self.wattmeter)
                recovering = False
            backoff.reset()
            deadline += interval
            now = time.monotonic()
            if deadline < now:  # fell behind: skip the missed readings
                deadline = now
            self.stop_event.wait(deadline - now)

    def _safe_teardown(self) -> None:
        try:
            self.teardown()
        except Exception as exc:
            self.log.warning("wattmeter %s: teardown failed: %r", self.wattmeter, exc)
