"""The driver base class: pacing, publishing, and surviving a device that goes away."""

import itertools
import logging
import threading

import pytest

from kwapi.drivers.base import DeviceError, Driver, DriverParameters
from kwapi.drivers.config import available_drivers, load_driver_class
from kwapi.drivers.rapl import RaplDriver
from tests.harness.drivers import RunningDriver, driver_thread, wait_retries, warnings_about
from tests.harness.processes import wait_for


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
        wait_retries(caplog, 3, 5)
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


class FlakyProbeDriver(Driver):
    """Probes A and B; while ``a_broken`` is set, A's watts are NaN or infinite.

    Meter ``n`` numbers the readings; ``broken_reads`` lists those where A was bad.
    """

    def setup(self):
        self.a_broken = threading.Event()
        self.broken_reads: list[int] = []
        self.reads = itertools.count(1)

    def read(self):
        n = next(self.reads)
        a_watts = 100.0
        if self.a_broken.is_set():
            self.broken_reads.append(n)
            a_watts = float("nan") if n % 2 else float("inf")
        return {"A": {"w": a_watts, "volts": 230.0, "n": n}, "B": {"w": 50.0, "n": n}}


def test_a_non_finite_reading_drops_that_probe_only_and_is_logged_once(bus, caplog):
    publisher, client = bus
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers.base")
    driver = FlakyProbeDriver(
        "meter", ["A", "B"], DriverParameters(interval=0.02), publisher.publish
    )
    with driver_thread(driver):
        wait_for(lambda: {m.probe_id for m in client.collect(2)} == {"A", "B"}, 10, "A and B")
        driver.a_broken.set()
        wait_for(lambda: len(driver.broken_reads) >= 1, 10, "a bad reading of A")
        received = []
        wait_for(
            lambda: (
                received.append(client.receive())
                or sum(m.probe_id == "B" and m.meters["n"] in driver.broken_reads for m in received)
                >= 6
            ),
            10,
            "B's measurements while A reads NaN and infinity",
        )
        driver.a_broken.clear()
        wait_for(
            lambda: (
                received.append(client.receive())
                or any(
                    m.probe_id == "A" and m.meters["n"] > driver.broken_reads[-1] for m in received
                )
            ),
            10,
            "A's measurements once its readings are finite again",
        )
        assert driver.is_alive()
    broken = set(driver.broken_reads)
    # Nothing of A (not even its finite meter) went out while it was bad; B lost nothing.
    assert not [m for m in received if m.probe_id == "A" and m.meters["n"] in broken]
    b_reads = [int(m.meters["n"]) for m in received if m.probe_id == "B"]
    assert b_reads == list(range(b_reads[0], b_reads[-1] + 1))
    assert not client.rejected
    assert driver.dropped == len(broken) and driver.failure is None
    # One warning for the whole outage (NaN and infinity alike), one when it ends.
    dropping = warnings_about(caplog, "dropping measurements")
    assert dropping == [
        "wattmeter meter: probe A: dropping measurements with a meter that is not a finite "
        f"number (w={float('nan') if min(broken) % 2 else float('inf')!r}) "
        "until it reads finite numbers again"
    ]
    assert warnings_about(caplog, "A reads finite numbers again") == [
        "wattmeter meter: probe A reads finite numbers again"
    ]
    assert caplog.text.count("still not finite") == len(broken) - 1


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


#: The documented default of max_backoff, for every installed driver.
DEFAULT_MAX_BACKOFF = 10.0


@pytest.mark.parametrize("name", available_drivers())
def test_every_driver_retries_every_ten_seconds_at_most_by_default(name):
    assert DriverParameters().max_backoff == DEFAULT_MAX_BACKOFF
    field = load_driver_class(name).Parameters.model_fields["max_backoff"]
    assert field.default == DEFAULT_MAX_BACKOFF


def test_a_failing_driver_says_it_retries_every_ten_seconds(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kwapi.drivers")
    absent = tmp_path / "no-powercap"
    with RunningDriver(RaplDriver, ["cpu"], powercap_path=str(absent)):
        wait_for(lambda: warnings_about(caplog, "no powercap tree"), 10, "the failure logged")
    [line] = warnings_about(caplog, "no powercap tree")
    assert line.endswith("retrying every 10 s at most"), line
