"""The driver manager: starts one thread per wattmeter and keeps them alive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kwapi.drivers.base import RETRY_JITTER, Backoff, DriverBase, PublishFunc
from kwapi.drivers.config import Wattmeter

LOG = logging.getLogger(__name__)

RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_CAP = 60.0
# A wattmeter whose device answered before and that has published no reading
# for this many of its intervals (and at least STALL_MIN_SECONDS), with no
# device error to explain it, is stalled: the manager says so once.
STALL_INTERVALS = 5
STALL_MIN_SECONDS = 10.0


@dataclass
class _Slot:
    """One wattmeter, its current thread and its restart schedule."""

    wattmeter: Wattmeter
    driver: DriverBase | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(
            RESTART_BACKOFF_INITIAL, RESTART_BACKOFF_CAP, jitter=RETRY_JITTER
        )
    )
    stalled_since: float | None = None

    @property
    def stall_after(self) -> float:
        """Seconds without a reading after which this wattmeter is stalled."""
        return max(STALL_INTERVALS * self.wattmeter.parameters.interval, STALL_MIN_SECONDS)


class DriverManager:
    """Starts a driver thread per wattmeter, restarts dead ones, stops them all.

    A driver found dead is restarted after a delay that doubles with each
    consecutive death, up to a minute, jittered; a driver that lived longer
    than that cap starts again from the shortest delay.  A driver alive but
    silent (see :meth:`watch_stalls`) is reported once.
    """

    def __init__(
        self,
        wattmeters: Sequence[Wattmeter],
        publish: PublishFunc,
        check_interval: float,
    ) -> None:
        self._slots = [_Slot(wattmeter) for wattmeter in wattmeters]
        self._publish = publish
        self.check_interval = check_interval

    @property
    def drivers(self) -> list[DriverBase]:
        """The current driver threads, one per wattmeter still scheduled."""
        return [slot.driver for slot in self._slots if slot.driver is not None]

    def start(self) -> None:
        """Start every driver thread."""
        for slot in self._slots:
            self._start(slot)
        LOG.info("started %d driver(s)", len(self._slots))

    def _start(self, slot: _Slot) -> None:
        slot.driver = slot.wattmeter.build(self._publish)
        slot.started_at = time.monotonic()
        slot.restart_at = None
        slot.stalled_since = None
        slot.driver.start()

    def check(self) -> None:
        """Restart drivers that died, once their backoff delay has passed; watch for stalls."""
        now = time.monotonic()
        for slot in self._slots:
            driver = slot.driver
            if driver is None:
                continue
            if driver.is_alive():
                self._watch_stall(slot, driver, now)
                continue
            if slot.restart_at is None:
                if now - slot.started_at > RESTART_BACKOFF_CAP:
                    slot.backoff.reset()
                delay = slot.backoff.next_delay()
                slot.restart_at = now + delay
                LOG.error(
                    "wattmeter %s: driver %s died (%r); restarting in %.0f s",
                    slot.wattmeter.name,
                    slot.wattmeter.driver_name,
                    driver.failure,
                    delay,
                )
            if now >= slot.restart_at:
                slot.restarts += 1
                LOG.warning(
                    "wattmeter %s: restarting driver %s (restart %d)",
                    slot.wattmeter.name,
                    slot.wattmeter.driver_name,
                    slot.restarts,
                )
                self._start(slot)

    def _watch_stall(self, slot: _Slot, driver: DriverBase, now: float) -> None:
        """Say once that a driver whose device answered before publishes nothing, and why not."""
        last = driver.last_reading_at
        if last is None or driver.failing:
            return
        silent = now - last
        if slot.stalled_since is None and silent > slot.stall_after:
            slot.stalled_since = last
            LOG.error(
                "wattmeter %s: driver %s stalled: no reading for %.0f s although its device "
                "answered before and reported no error",
                slot.wattmeter.name,
                slot.wattmeter.driver_name,
                silent,
            )
        elif slot.stalled_since is not None and last > slot.stalled_since:
            LOG.warning(
                "wattmeter %s: driver %s reads again after a stall of %.0f s",
                slot.wattmeter.name,
                slot.wattmeter.driver_name,
                last - slot.stalled_since,
            )
            slot.stalled_since = None

    def next_check_delay(self) -> float:
        """Seconds until the next check is due: the interval, or sooner for a restart."""
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if not due:
            return self.check_interval
        return max(0.0, min(self.check_interval, min(due) - time.monotonic()))

    def run(self, stop: threading.Event) -> None:
        """Check the threads until *stop* is set, then stop them all."""
        while not stop.wait(self.next_check_delay()):
            self.check()
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread and wait for them, *timeout* seconds in all."""
        for driver in self.drivers:
            driver.stop()
        deadline = time.monotonic() + timeout
        for driver in self.drivers:
            driver.join(max(0.0, deadline - time.monotonic()))
            if driver.is_alive():
                LOG.warning("wattmeter %s: did not stop in time", driver.wattmeter)
