"""Helpers for driver tests: a real driver thread collecting what it publishes,
drivers.conf files, kwapi-drivers refusing a bad one, log and port helpers."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.drivers.base import Driver
from tests.helpers import SECRET, VENV_BIN, wait_for, write_config


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


def drivers_conf(directory: str | Path, endpoint: str, sections: str, defaults: str = "") -> Path:
    """Write *directory*/drivers.conf: signed publishing on *endpoint*, then *sections*.

    *sections* (dedented) holds the wattmeter sections; *defaults* (dedented)
    adds lines to [DEFAULT].
    """
    header = f"[DEFAULT]\nprobes_endpoint = {endpoint}\nmetering_secret = {SECRET}\n"
    text = header + textwrap.dedent(defaults).lstrip() + "\n" + textwrap.dedent(sections).lstrip()
    return write_config(directory, "drivers.conf", text)


def config_error_line(config: str | Path, env: dict[str, str] | None = None) -> str:
    """Run kwapi-drivers on *config*; assert it stops at once with exit status 2
    and one ``kwapi-drivers: error: `` line on stderr, no traceback; return that line.

    *env* is the whole environment of the command (default: this process's).
    """
    result = subprocess.run(
        [str(VENV_BIN / "kwapi-drivers"), "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kwapi-drivers: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def expect_config_error(
    directory: str | Path,
    section_name: str,
    driver: str,
    probes: str,
    parameters: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Write a drivers.conf with one wattmeter section, check that kwapi-drivers
    refuses it (see :func:`config_error_line`) naming the file and the section;
    return the error line.

    *probes* and *parameters* are the options' text as written in the file;
    no ``parameters`` line is written when it is None.
    """
    section = f"[{section_name}]\ndriver = {driver}\nprobes = {probes}\n"
    if parameters is not None:
        section += f"parameters = {parameters}\n"
    config = drivers_conf(directory, f"ipc://{directory}/drivers", section)
    line = config_error_line(config, env)
    assert str(config) in line and f"[{section_name}]" in line, line
    return line


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The messages of the captured records at WARNING or above that contain *text*."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and text in record.getMessage()
    ]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
