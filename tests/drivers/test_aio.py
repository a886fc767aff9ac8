"""Async drivers: tasks of one shared event loop, with a thread driver's contract."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

from kwapi.backoff import Backoff
from kwapi.drivers.aio import AsyncDriver, EventLoopThread
from kwapi.drivers.base import DeviceError, DriverParameters, Pacer
from tests.harness.drivers import stop_driver, wait_retries, warnings_about
from tests.harness.processes import wait_for


class AsyncFakeDevice:
    """A device the test can unplug, plug back, or make hang without an answer."""

    def __init__(self) -> None:
        self.present = threading.Event()
        self.present.set()
        self.hanging = threading.Event()
        self.opens = 0
        self.reads = 0

    async def open(self) -> None:
        if not self.present.is_set():
            raise DeviceError("no such device")
        self.opens += 1

    async def read(self) -> float:
        while self.hanging.is_set():
            await asyncio.sleep(0.01)
        if not self.present.is_set():
            raise DeviceError("device stopped answering")
        self.reads += 1
        return 100.0 + self.reads


class AsyncFakeDriver(AsyncDriver):
    device: AsyncFakeDevice

    async def setup(self) -> None:
        await self.device.open()

    async def read(self):
        return {self.probe_ids[0]: {"w": await self.device.read()}, None: {"w": 0.0}}


def make_driver(device, published, name="meter", probe="A", **parameters):
    driver = AsyncFakeDriver(name, [probe], DriverParameters(**parameters), published.append)
    driver.device = device
    return driver


def test_async_drivers_share_one_event_loop_thread():
    drivers = [make_driver(AsyncFakeDevice(), [], name=f"m{i}", interval=0.02) for i in range(3)]
    before = threading.active_count()
    for driver in drivers:
        driver.start()
    try:
        wait_for(lambda: all(d.device.reads >= 2 for d in drivers), 5, "readings of all three")
        assert threading.active_count() <= before + 1
        assert EventLoopThread.shared().thread.is_alive()
    finally:
        for driver in drivers:
            stop_driver(driver, 5)


def test_readings_are_published_in_order_with_timestamps():
    published = []
    driver = make_driver(AsyncFakeDevice(), published, interval=0.02)
    driver.start()
    try:
        wait_for(lambda: len(published) >= 3, 5, "three readings")
    finally:
        stop_driver(driver, 5)
    assert {m.probe_id for m in published} == {"A"}
    stamps = [m.timestamp for m in published]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert [m.meters["w"] for m in published[:3]] == [101.0, 102.0, 103.0]


def test_device_going_away_is_logged_once_and_recovered(caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers.base")
    device = AsyncFakeDevice()
    published = []
    driver = make_driver(device, published, interval=0.02, max_backoff=0.1)
    driver.start()
    try:
        wait_for(lambda: published, 5, "first reading")
        device.present.clear()
        wait_retries(caplog, 3, 5)
        count = len(published)
        device.present.set()
        wait_for(lambda: len(published) > count + 2, 5, "readings after recovery")
    finally:
        stop_driver(driver, 5)
    assert len(warnings_about(caplog, "device stopped answering")) == 1
    assert len(warnings_about(caplog, "no such device")) == 1
    assert len(warnings_about(caplog, "device is back")) == 1
    assert device.opens == 2


def test_a_hanging_device_delays_no_other_and_stop_cancels_its_request():
    hanging, steady = AsyncFakeDevice(), AsyncFakeDevice()
    stuck_published: list = []
    steady_published: list = []
    stuck = make_driver(hanging, stuck_published, name="stuck", interval=0.05)
    other = make_driver(steady, steady_published, name="other", probe="B", interval=0.05)
    hanging.hanging.set()
    stuck.start()
    other.start()
    try:
        wait_for(lambda: len(steady_published) >= 10, 5, "ten readings beside a hung device")
        stamps = [m.timestamp for m in steady_published]
        assert max(b - a for a, b in itertools.pairwise(stamps)) < 0.5
        assert stuck_published == [] and stuck.is_alive()
        started = time.monotonic()
        stop_driver(stuck, 5)
        assert time.monotonic() - started < 1.0, "stop waited for the hung request"
    finally:
        stop_driver(other, 5)


def test_a_bug_ends_the_task_and_is_recorded(caplog):
    class Buggy(AsyncFakeDriver):
        async def read(self):
            return {"A": {"w": 1 / 0}}

    driver = Buggy("buggy", ["A"], DriverParameters(), [].append)
    driver.device = AsyncFakeDevice()
    driver.start()
    driver.join(5)
    assert not driver.is_alive()
    assert isinstance(driver.failure, ZeroDivisionError)
    assert "driver crashed" in caplog.text


def test_pacer_spreads_wattmeters_and_keeps_readings_half_an_interval_apart():
    phases = {Pacer(1.0, f"BMC {index}").phase for index in range(100)}
    assert len(phases) == 100 and all(0 <= phase < 1.0 for phase in phases)
    pacer = Pacer(1.0, "BMC 7")
    first = pacer.delay()  # after the first reading: on the grid, at least half away
    assert 0.5 <= first < 1.5
    assert abs(pacer.delay() - first - 1.0) < 0.05  # then every interval
    pacer.deadline = time.monotonic() - 10  # fell far behind: back on the grid
    assert 0.5 <= pacer.delay() < 1.5
    offset = (pacer.deadline - pacer.phase) % 1.0
    assert min(offset, 1.0 - offset) < 1e-6


def test_backoff_jitter_spreads_retries_below_the_exponential_delay():
    delays = [Backoff(1.0, 8.0, jitter=0.5).next_delay() for _ in range(50)]
    assert all(0.5 <= delay <= 1.0 for delay in delays)
    assert len(set(delays)) > 40
    backoff = Backoff(1.0, 8.0, jitter=0.5)
    for expected in (1, 2, 4, 8, 8):
        assert expected / 2 <= backoff.next_delay() <= expected
