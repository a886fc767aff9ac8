"""The driver manager: starts one thread per wattmeter and keeps them alive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kwapi.drivers.base import Backoff, Driver, PublishFunc
from kwapi.drivers.config import Wattmeter

LOG = logging.getLogger(__name__)

RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_CAP = 60.0


@dataclass
class _Slot:
    """One wattmeter, its current thread and its restart schedule."""

    wattmeter: Wattmeter
    driver: Driver | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(RESTART_BACKOFF_INITIAL, RESTART_BACKOFF_CAP)
    )


class DriverManager:
    """Starts a driver thread per wattmeter, restarts dead ones, stops them all.

    A thread found dead is restarted after a delay that doubles with each
    consecutive death, up to a minute; a thread that lived longer than that
    cap starts again from the shortest delay.
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
    def drivers(self) -> list[Driver]:
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
        slot.driver.start()

    def check(self) -> None:
        """Restart threads that died, once their backoff delay has passed."""
        now = time.monotonic()
        for slot in self._slots:
            driver = slot.driver
            if driver is None or driver.is_alive():
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
