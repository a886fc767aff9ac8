"""Every driver's ``batch``: readings buffered per probe, sent as batched messages."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

import pytest

from kwapi.bus.protocol import MAX_BATCH_SAMPLES, Batch, Measurement, decode_payload
from kwapi.drivers.aio import AsyncDriver
from kwapi.drivers.base import DeviceError, Driver, DriverParameters, Pacer
from kwapi.drivers.batching import Batcher
from kwapi.drivers.config import Wattmeter
from kwapi.drivers.dummy import DummyDriver, DummyParameters
from kwapi.drivers.manager import DriverManager
from tests.harness.clock import Clock
from tests.harness.drivers import driver_thread, stop_driver, warnings_about
from tests.harness.processes import wait_for


class Collected:
    """What a driver published, as the bus would carry it (encoded, then decoded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[Measurement | Batch] = []

    def publish(self, message: Measurement | Batch) -> None:
        _topic, payload = message.encode()
        with self._lock:
            self.messages.append(decode_payload(payload))

    def batches(self) -> list[Measurement | Batch]:
        with self._lock:
            return list(self.messages)

    def samples(self, probe: str | None = None) -> list[Measurement]:
        return [
            sample
            for message in self.batches()
            for sample in message.measurements()
            if probe is None or sample.probe_id == probe
        ]


class CountingDriver(Driver):
    """Probes A and B; meter ``n`` numbers the readings. ``broken`` makes reads fail."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.broken = threading.Event()
        self.reads = 0

    def setup(self) -> None:
        if self.broken.is_set():
            raise DeviceError("device gone")

    def read(self):
        if self.broken.is_set():
            raise DeviceError("device gone")
        self.reads += 1
        return {"A": {"w": 100.0, "n": self.reads}, "B": {"w": 50.0, "n": self.reads}}


def numbers(samples: list[Measurement]) -> list[int]:
    return [int(sample.meters["n"]) for sample in samples]


def test_batcher_splits_full_batches_and_closes_one_when_meters_change():
    batcher = Batcher(60.0)
    out = []
    for index in range(MAX_BATCH_SAMPLES + 10):
        out += batcher.add("p", 1000.0 + index / 100, {"w": float(index)})
    assert [len(batch) for batch in out] == [MAX_BATCH_SAMPLES]
    # A new meter: the 10 samples buffered leave first, as a batch of their own.
    out = batcher.add("p", 2000.0, {"w": 1.0, "v": 230.0})
    assert [len(batch) for batch in out] == [10] and set(out[0].meters) == {"w"}
    [last] = batcher.flush()
    assert last.timestamps == [2000.0] and last.meters == {"w": [1.0], "v": [230.0]}
    for batch in (*out, last):
        assert decode_payload(batch.encode()[1]) == batch
    assert not batcher.is_newer("p", 2000.0) and batcher.is_newer("p", 2000.001)
    assert batcher.due is None and batcher.flush() == []


def test_batcher_windows_lie_on_a_grid_of_the_monotonic_clock():
    batcher = Batcher(0.5, phase=0.125)
    batcher.add("p", 1.0, {"w": 1.0})
    due = batcher.due
    assert due is not None and 0 < due - time.monotonic() <= 0.5
    assert (due - 0.125) % 0.5 == pytest.approx(0.0, abs=1e-6) or (
        due - 0.125
    ) % 0.5 == pytest.approx(0.5, abs=1e-6)


def test_thread_driver_sends_each_probes_readings_as_one_batch_per_window():
    collected = Collected()
    params = DriverParameters(interval=0.02, batch=0.2)
    driver = CountingDriver("meter", ["A", None, "B"], params, collected.publish)
    with driver_thread(driver):
        wait_for(lambda: len(collected.batches()) >= 6, 10, "three windows of two probes")
    batches = collected.batches()
    assert all(isinstance(batch, Batch) for batch in batches)
    assert {batch.probe_id for batch in batches} == {"A", "B"}
    # Ten readings per window of 0.2 s at 50 Hz (the windows lie between two
    # readings), except the first (it starts at once) and the last (at stop).
    sizes = [len(batch) for batch in batches if batch.probe_id == "A"][1:-1]
    assert sizes and all(size in (9, 10, 11) for size in sizes), sizes
    assert sorted(sizes)[len(sizes) // 2] == 10
    # Stopping published what was buffered: nothing of any reading is lost.
    for probe in ("A", "B"):
        assert numbers(collected.samples(probe)) == list(range(1, driver.reads + 1))
    assert driver.published == 2 * driver.reads and driver.dropped == 0
    assert driver.health.probes_last_success["A"] == collected.samples("A")[-1].timestamp


def test_a_failing_device_publishes_what_was_buffered_before_retrying(caplog):
    collected = Collected()
    params = DriverParameters(interval=0.02, batch=30, max_backoff=0.2)
    driver = CountingDriver("meter", ["A", "B"], params, collected.publish)
    with driver_thread(driver):
        wait_for(lambda: driver.reads >= 5, 10, "five readings")
        assert collected.batches() == []  # a 30 s window: nothing yet
        driver.broken.set()
        wait_for(lambda: len(collected.batches()) == 2, 10, "the buffered batches")
        reads = driver.reads
        assert numbers(collected.samples("A")) == list(range(1, reads + 1))
        driver.broken.clear()
        wait_for(lambda: driver.reads > reads, 10, "readings again")
    assert numbers(collected.samples("B")) == list(range(1, driver.reads + 1))


class ChangingMetersDriver(Driver):
    """One stream probe whose meters change every fourth reading (up, then down)."""

    def setup(self) -> None:
        self.reads = itertools.count(1)
        self.count = 0

    def read(self):
        n = next(self.reads)
        self.count = n
        if (n - 1) // 4 % 2:
            return {"S": {"up": 0, "n": n}}
        return {"S": {"up": 1, "bitrate": 1e6, "n": n}}


def test_a_probe_whose_meters_change_closes_its_batch_first():
    collected = Collected()
    driver = ChangingMetersDriver(
        "streams", ["S"], DriverParameters(interval=0.01, batch=30), collected.publish
    )
    with driver_thread(driver):
        wait_for(lambda: len(collected.batches()) >= 4, 10, "four batches")
    batches = collected.batches()
    for batch in batches[:-1]:
        assert len(batch) == 4  # every meter for every timestamp
        assert len({tuple(sample.meters) for sample in batch.measurements()}) == 1
    assert numbers(collected.samples()) == list(range(1, driver.count + 1))


class StampedDriver(Driver):
    """A device that stamps its own rounds, and sometimes repeats an old one."""

    def setup(self) -> None:
        self.rounds = [
            (1000.0, {"A": {"w": 1.0}}),
            (1000.5, {"A": {"w": 2.0}}),
            (1000.5, {"A": {"w": 3.0}}),  # a repeat
            (999.0, {"A": {"w": 4.0}}),  # from the past
            (1001.0, {"A": {"w": 5.0}}),
        ]

    def read_rounds(self):
        rounds, self.rounds = self.rounds, []
        return rounds


def test_batched_samples_not_newer_than_the_last_are_dropped_and_logged_once(caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers.base")
    collected = Collected()
    driver = StampedDriver("meter", ["A"], DriverParameters(batch=30), collected.publish)
    with driver_thread(driver):
        wait_for(lambda: not driver.rounds, 10, "the rounds read")
    assert [(s.timestamp, s.meters["w"]) for s in collected.samples()] == [
        (1000.0, 1.0),
        (1000.5, 2.0),
        (1001.0, 5.0),
    ]
    assert driver.dropped == 2 and driver.published == 3
    assert len(warnings_about(caplog, "not newer than the one before")) == 1


class AsyncCounting(AsyncDriver):
    async def setup(self) -> None:
        self.reads = 0

    async def read(self):
        await asyncio.sleep(0)
        self.reads += 1
        return {"A": {"w": 10.0, "n": self.reads}}


def test_async_driver_batches_and_stop_publishes_what_is_buffered():
    collected = Collected()
    params = DriverParameters(interval=0.02, batch=0.3)
    driver = AsyncCounting("bmc", ["A"], params, collected.publish)
    driver.start()
    try:
        wait_for(lambda: len(collected.batches()) >= 2, 10, "two batches")
        assert all(isinstance(batch, Batch) for batch in collected.batches())
    finally:
        stop_driver(driver)
    assert numbers(collected.samples()) == list(range(1, driver.reads + 1))
    assert driver.published == driver.reads


class CrashingDriver(Driver):
    """Reads five times, then dies of a bug; the next instance starts over at 101."""

    starts = 0

    def setup(self) -> None:
        type(self).starts += 1
        self.reads = 100 * (type(self).starts - 1)

    def read(self):
        if self.reads % 100 == 5:
            raise ZeroDivisionError("a bug")
        self.reads += 1
        return {"A": {"w": 1.0, "n": self.reads}}


def test_a_driver_that_dies_publishes_its_buffer_and_the_manager_restarts_it():
    collected = Collected()
    params = DriverParameters(interval=0.02, batch=30)
    wattmeter = Wattmeter("meter", "Crashing", CrashingDriver, ("A",), params, "test.conf")
    manager = DriverManager([wattmeter], collected.publish, check_interval=0.05)
    manager.start()
    try:
        wait_for(lambda: numbers(collected.samples()) == [1, 2, 3, 4, 5], 10, "the first batch")
        wait_for(lambda: manager.check() or len(collected.batches()) >= 2, 15, "a restart")
    finally:
        manager.stop()
    assert numbers(collected.samples()) == [1, 2, 3, 4, 5, 101, 102, 103, 104, 105]


def test_manager_stop_publishes_every_buffered_sample():
    collected = Collected()
    params = DummyParameters(interval=0.02, batch=30, seed=1)
    wattmeter = Wattmeter("rack", "Dummy", DummyDriver, ("n1", "n2"), params, "test.conf")
    manager = DriverManager([wattmeter], collected.publish, check_interval=1)
    manager.start()
    [driver] = manager.drivers
    wait_for(lambda: manager.states()[0].health.up, 10, "the first reading")
    manager.stop()
    assert not driver.is_alive()
    batches = collected.batches()
    assert sorted(batch.probe_id for batch in batches) == ["n1", "n2"]
    assert sum(len(batch) for batch in batches) == driver.published >= 2


def test_pacer_catches_up_late_readings_without_moving_its_grid():
    clock = Clock(1000.0)
    pacer = Pacer(0.1, "meter", clock)
    clock.now += pacer.delay()
    grid = pacer.deadline
    clock.now += 0.5  # a reading that took half a second: five deadlines missed
    wakes = []
    for _ in range(20):
        clock.now += pacer.delay()
        wakes.append(clock.now)
        clock.now += 0.001  # each reading takes a millisecond
    # No deadline skipped: twenty readings, twenty intervals of the same grid ...
    assert pacer.deadline == pytest.approx(grid + 20 * 0.1)
    assert wakes[-1] == pytest.approx(pacer.deadline)
    # ... caught up half an interval apart, then back to one interval.
    gaps = [b - a for a, b in itertools.pairwise(wakes)]
    assert min(gaps) == pytest.approx(0.05) and gaps[-1] == pytest.approx(0.1)
    clock.now += 5.0  # far behind: back on the grid, half an interval away at least
    assert 0.05 <= pacer.delay() < 0.15
    assert (pacer.deadline - grid) / 0.1 == pytest.approx(round((pacer.deadline - grid) / 0.1))


def test_fifty_hertz_keeps_its_rate_without_drift():
    collected = Collected()
    params = DummyParameters(interval=0.02, batch=1, seed=3)
    driver = DummyDriver("hf", ["p"], params, collected.publish)
    with driver_thread(driver):
        wait_for(lambda: len(collected.samples()) >= 180, 15, "3.6 s of samples")
    stamps = [sample.timestamp for sample in collected.samples()]
    start = stamps[0] + 0.5  # the samples' own clock: not the test's waits
    count = sum(start <= stamp < start + 3.0 for stamp in stamps)
    assert abs(count - 150) <= 150 * 0.01 + 1, count
    assert all(b > a for a, b in itertools.pairwise(stamps))


@pytest.mark.parametrize("value", [0.0005, -1])
def test_interval_is_a_millisecond_at_least_and_batch_not_negative(value):
    with pytest.raises(ValueError):
        DriverParameters(interval=value)
    with pytest.raises(ValueError):
        DriverParameters(batch=-1)
    assert DriverParameters(interval=0.001).interval == 0.001
    assert DriverParameters().batch == 0
