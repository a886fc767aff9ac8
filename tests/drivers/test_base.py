"""The driver base class: pacing, publishing, and surviving a device that goes away."""

import logging
import threading

import pytest

from kwapi.drivers.base import Backoff, DeviceError, Driver, DriverParameters
from tests.helpers import wait_for


class FakeDevice:
    """A device the test can unplug and plug back; it counts what was asked of it."""

    def __init__(self):
        self.present = threading.Event()
        self.present.set()
        self.opens = 0
        self.reads = 0

    def open(self):
        if not self.present.is_set():
            raise DeviceError("no such device")
        self.opens += 1

    def read(self):
        if not self.present.is_set():
            raise DeviceError("device stopped answering")
        self.reads += 1
        return 100.0 + self.reads


class FakeDeviceDriver(Driver):
    device: FakeDevice

    def setup(self):
        self.device.open()

    def read(self):
        return {"A": {"w": self.device.read()}, None: {"w": 0.0}}


def make_driver(device, published, **parameters):
    driver = FakeDeviceDriver("meter", ["A"], DriverParameters(**parameters), published.append)
    driver.device = device
    return driver


def test_backoff_doubles_up_to_cap_and_resets():
    backoff = Backoff(0.5, 4)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_publishes_readings_with_timestamps_and_skips_unwatched_positions():
    published = []
    driver = make_driver(FakeDevice(), published, interval=0.02)
    driver.start()
    try:
        wait_for(lambda: len(published) >= 3, 5, "three readings")
    finally:
        driver.stop()
        driver.join(5)
    assert not driver.is_alive()
    assert {m.probe_id for m in published} == {"A"}
    stamps = [m.timestamp for m in published]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert [m.meters["w"] for m in published[:3]] == [101.0, 102.0, 103.0]


def test_device_going_away_is_logged_once_and_recovered(caplog):
    device = FakeDevice()
    published = []
    driver = make_driver(device, published, interval=0.02, max_backoff=0.1)
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers.base")
    driver.start()
    try:
        wait_for(lambda: published, 5, "first reading")
        device.present.clear()
        wait_for(lambda: device.opens == 1 and "no such device" in caplog.text, 5, "failure")
        count = len(published)
        reads = device.reads
        # While the device is away, the driver keeps trying but publishes nothing.
        wait_for(lambda: caplog.text.count("still failing") >= 3, 5, "several retries")
        assert len(published) == count and device.reads == reads
        device.present.set()
        wait_for(lambda: len(published) > count + 2, 5, "readings after recovery")
    finally:
        driver.stop()
        driver.join(5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("device stopped answering" in w for w in warnings) == 1
    assert sum("no such device" in w for w in warnings) == 1
    assert any("device is back" in w for w in warnings)
    assert driver.failure is None and device.opens == 2


def test_a_bug_ends_the_thread_and_is_recorded():
    class Buggy(FakeDeviceDriver):
        def read(self):
            return {"A": {"w": 1 / 0}}

    driver = Buggy("meter", ["A"], DriverParameters(), [].append)
    driver.device = FakeDevice()
    driver.start()
    driver.join(5)
    assert not driver.is_alive()
    assert isinstance(driver.failure, ZeroDivisionError)


def test_stop_interrupts_a_long_interval_and_a_long_backoff():
    device = FakeDevice()
    driver = make_driver(device, [], interval=3600)
    driver.start()
    wait_for(lambda: device.reads == 1, 5, "first reading")
    driver.stop()
    driver.join(2)
    assert not driver.is_alive()

    device.present.clear()
    driver = make_driver(device, [], interval=1, max_backoff=3600)
    driver.start()
    wait_for(lambda: driver.is_alive(), 5)
    driver.stop()
    driver.join(2)
    assert not driver.is_alive()


def test_parameters_refuse_unknown_keys():
    with pytest.raises(ValueError):
        DriverParameters(interval=1, colour="red")
