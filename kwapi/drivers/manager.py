"""The driver manager: starts a driver per wattmeter, restarts dead ones, reports stalls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kwapi.backoff import Backoff
from kwapi.drivers.base import RETRY_JITTER, DriverBase, Health, PublishFunc
from kwapi.drivers.config import Wattmeter

if TYPE_CHECKING:
    from kwapi.service import Heartbeat

LOG = logging.getLogger(__name__)

RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_CAP = 60.0
# The health metrics' reason for a restart of a driver that died of a bug.
CRASH = "crash"
# A wattmeter whose device answered before and that has published no reading
# for this many of its intervals (and at least STALL_MIN_SECONDS), with no
# device error to explain it, is stalled: the manager says so once.
STALL_INTERVALS = 5
STALL_MIN_SECONDS = 10.0


@dataclass(frozen=True)
class WattmeterState:
    """What the health metrics read of one wattmeter."""

    wattmeter: Wattmeter
    health: Health
    stalled: bool


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
    health: Health = field(default_factory=Health)

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

    def states(self) -> list[WattmeterState]:
        """Each wattmeter's configuration, health and stall, for the health metrics."""
        return [
            WattmeterState(slot.wattmeter, slot.health, slot.stalled_since is not None)
            for slot in self._slots
        ]

    def start(self) -> None:
        """Start every driver thread."""
        for slot in self._slots:
            self._start(slot)
        LOG.info("started %d driver(s)", len(self._slots))

    def _start(self, slot: _Slot) -> None:
        slot.driver = slot.wattmeter.build(self._publish)
        slot.driver.health = slot.health
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
                slot.health.up = False
                slot.health.backoff = delay
                LOG.error(
                    "wattmeter %s: driver %s died (%r); restarting in %.0f s",
                    slot.wattmeter.name,
                    slot.wattmeter.driver_name,
                    driver.failure,
                    delay,
                )
            if now >= slot.restart_at:
                slot.restarts += 1
                slot.health.restarts[CRASH] += 1
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

    def run(self, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
        """Check the threads until *stop* is set, then stop them all.

        *heartbeat* (the daemon's: log reopening, systemd's watchdog) takes a
        turn at each wake-up, which comes as often as it asks, checks or not.
        """
        next_check = time.monotonic() + self.next_check_delay()
        while not stop.wait(self._wait(next_check, heartbeat)):
            if time.monotonic() >= next_check:
                self.check()
                next_check = time.monotonic() + self.next_check_delay()
            if heartbeat is not None:
                heartbeat.turn()
        self.stop()

    @staticmethod
    def _wait(next_check: float, heartbeat: Heartbeat | None) -> float:
        """Seconds to sleep: until the next check, or the heartbeat's next turn if sooner."""
        wait = max(0.0, next_check - time.monotonic())
        return wait if heartbeat is None else heartbeat.longest_wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread and wait for them, *timeout* seconds in all."""
        for driver in self.drivers:
            driver.stop()
        deadline = time.monotonic() + timeout
        for driver in self.drivers:
            driver.join(max(0.0, deadline - time.monotonic()))
            if driver.is_alive():
                LOG.warning("wattmeter %s: did not stop in time", driver.wattmeter)
