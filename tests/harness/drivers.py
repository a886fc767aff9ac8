"""Drivers in the test process: a real driver thread collecting what it publishes,
stopped bounded; the warnings it logged."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.drivers.base import Driver
from tests.harness.processes import wait_for


class RunningDriver:
    """A driver thread whose measurements land in :attr:`measurements`.

    Use as a context manager: the thread starts on entry and is stopped and
    joined (bounded) on exit.
    """

    def __init__(
        self, driver_class: type[Driver], probes: Sequence[str | None], **parameters
    ) -> None:
        params = driver_class.Parameters.model_validate(parameters)
        driver_class.validate(tuple(probes), params)
        self._lock = threading.Lock()
        self._measurements: list[Measurement] = []
        self.driver = driver_class("test-meter", list(probes), params, self._publish)

    def _publish(self, measurement: Measurement) -> None:
        measurement.encode()  # what the real publisher would refuse fails the test
        with self._lock:
            self._measurements.append(measurement)

    @property
    def measurements(self) -> list[Measurement]:
        with self._lock:
            return list(self._measurements)

    @property
    def samples(self) -> list[Measurement]:
        """Every sample published, batches taken apart, oldest first."""
        return [sample for message in self.measurements for sample in message.measurements()]

    def wait_samples(self, count: int, timeout: float = 15.0) -> list[Measurement]:
        """Wait until *count* samples in all were published (in batches or not); return them."""
        wait_for(lambda: len(self.samples) >= count, timeout, f"{count} sample(s)")
        return self.samples

    def wait_count(self, count: int, timeout: float = 15.0) -> list[Measurement]:
        """Wait until *count* measurements in all were published; return them all."""
        wait_for(lambda: len(self.measurements) >= count, timeout, f"{count} measurement(s)")
        return self.measurements

    def wait_more(self, count: int = 1, timeout: float = 15.0) -> list[Measurement]:
        """Wait for *count* new measurements; return only those."""
        start = len(self.measurements)
        return self.wait_count(start + count, timeout)[start:]

    def __enter__(self) -> RunningDriver:
        self.driver.start()
        return self

    def __exit__(self, *exc_info) -> None:
        stop_driver(self.driver)


def stop_driver(driver: Driver, timeout: float = 15) -> None:
    """Stop *driver*'s thread; check that it ended within *timeout* s and did not crash."""
    driver.stop()
    driver.join(timeout)
    assert not driver.is_alive(), "driver thread did not stop"
    assert driver.failure is None, f"driver crashed: {driver.failure!r}"


@contextlib.contextmanager
def driver_thread(driver: Driver, timeout: float = 15) -> Iterator[Driver]:
    """Run *driver*'s thread for the ``with`` block, then :func:`stop_driver` it."""
    driver.start()
    try:
        yield driver
    finally:
        stop_driver(driver, timeout)


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The messages of the captured records at WARNING or above that contain *text*."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and text in record.getMessage()
    ]


def wait_retries(caplog: pytest.LogCaptureFixture, count: int, timeout: float = 10.0) -> None:
    """Wait until the captured records hold *count* retries of a failing driver."""
    wait_for(
        lambda: sum("still failing" in record.getMessage() for record in caplog.records) >= count,
        timeout,
        "retries",
    )
