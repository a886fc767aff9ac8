"""Run a real driver thread in the test process and collect what it publishes."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kwapi.bus.protocol import Measurement
from kwapi.drivers.base import Driver
from tests.helpers import wait_for


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
        self.driver.stop()
        self.driver.join(15)
        assert not self.driver.is_alive(), "driver thread did not stop"
        assert self.driver.failure is None, f"driver crashed: {self.driver.failure!r}"
