"""The driver manager: start, restart with backoff, stop."""

import logging
import os
import threading
import time

from kwapi.drivers import manager as manager_module
from kwapi.drivers.base import DeviceError, Driver, DriverParameters
from kwapi.drivers.config import Wattmeter
from kwapi.drivers.manager import DriverManager
from tests.harness.processes import wait_for


class Steady(Driver):
    def read(self):
        return {self.probe_ids[0]: {"w": 10.0}}


class DiesOnce(Driver):
    """Crashes (a bug, not a device error) on its first life only."""

    lives = 0
    lock = threading.Lock()

    def setup(self):
        with DiesOnce.lock:
            DiesOnce.lives += 1
            self.life = DiesOnce.lives

    def read(self):
        if self.life == 1:
            raise KeyError("bug")
        return {self.probe_ids[0]: {"w": float(self.life)}}


def wattmeter(name, cls, probe, **parameters):
    return Wattmeter(name, cls.__name__, cls, (probe,), DriverParameters(**parameters), "test.conf")


def test_dead_driver_is_restarted_and_others_keep_running(caplog, monkeypatch):
    monkeypatch.setattr(manager_module, "RESTART_BACKOFF_INITIAL", 0.1)
    caplog.set_level(logging.INFO)
    published = []
    manager = DriverManager(
        [
            wattmeter("steady", Steady, "S", interval=0.02),
            wattmeter("fragile", DiesOnce, "F", interval=0.02),
        ],
        published.append,
        check_interval=0.05,
    )
    stop = threading.Event()
    runner = threading.Thread(target=manager.run, args=(stop,))
    manager.start()
    runner.start()
    try:
        wait_for(lambda: any(m.probe_id == "F" for m in published), 10, "restarted driver")
        steady_before = sum(m.probe_id == "S" for m in published)
        wait_for(lambda: sum(m.probe_id == "S" for m in published) > steady_before + 3, 5, "steady")
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert all(not driver.is_alive() for driver in manager.drivers)
    assert {m.meters["w"] for m in published if m.probe_id == "F"} == {2.0}
    assert "wattmeter fragile: driver DiesOnce died (KeyError('bug'))" in caplog.text
    assert "restarting driver DiesOnce (restart 1)" in caplog.text


def test_restart_delay_doubles_while_a_driver_keeps_dying(monkeypatch):
    monkeypatch.setattr(manager_module, "RESTART_BACKOFF_INITIAL", 0.05)

    class AlwaysDies(Driver):
        def read(self):
            raise RuntimeError("bug")

    manager = DriverManager([wattmeter("bad", AlwaysDies, "X")], [].append, check_interval=0.01)
    manager.start()
    slot = manager._slots[0]
    delays = []
    for _ in range(4):
        wait_for(lambda: not slot.driver.is_alive(), 5, "driver death")
        detected = time.monotonic()
        manager.check()
        delays.append(slot.restart_at - detected)
        wait_for(lambda: time.monotonic() >= slot.restart_at, 5, "restart time")
        manager.check()
        assert slot.restart_at is None  # restarted
    manager.stop()
    assert slot.restarts == 4
    # Each delay doubles, less a random part of up to half (jitter).
    for attempt, delay in enumerate(delays):
        full = 0.05 * 2**attempt
        assert full / 2 - 0.01 <= delay <= full + 0.01, (attempt, delays)


class PipeMeter(Driver):
    """A meter that writes one line per reading into a pipe; it stalls when the line stops."""

    def setup(self):
        self.pipe = PIPES[self.wattmeter]

    def read(self):
        line = self.pipe.readline()  # blocks, with no error, while the meter says nothing
        return {self.probe_ids[0]: {"w": float(line)}}


PIPES: dict = {}


def test_a_stalled_driver_is_reported_once_and_its_recovery_too(caplog, monkeypatch):
    monkeypatch.setattr(manager_module, "STALL_MIN_SECONDS", 0.3)
    caplog.set_level(logging.INFO, logger="kwapi.drivers.manager")
    read_end, write_end = os.pipe()
    PIPES["meter"] = os.fdopen(read_end, "r")
    writer = os.fdopen(write_end, "w")
    published = []
    manager = DriverManager(
        [wattmeter("meter", PipeMeter, "P", interval=0.02)], published.append, check_interval=0.02
    )
    manager.start()

    def checked(text: str) -> bool:
        manager.check()
        return text in caplog.text

    try:
        for watts in range(3):
            writer.write(f"{watts}\n")
            writer.flush()
        wait_for(lambda: len(published) == 3, 5, "three readings")
        wait_for(lambda: checked("stalled"), 5, "the stall reported")
        assert [state.stalled for state in manager.states()] == [True]  # in the health metrics
        for _ in range(5):  # more checks while still stalled say nothing more
            manager.check()
        writer.write("7\n")
        writer.flush()
        wait_for(lambda: checked("reads again"), 5, "the recovery reported")
        assert [state.stalled for state in manager.states()] == [False]
    finally:
        writer.write("8\n" * 10)
        writer.close()
        manager.stop()
    lines = [r.getMessage() for r in caplog.records if "meter" in r.getMessage()]
    stalls = [line for line in lines if "stalled" in line]
    assert len(stalls) == 1, lines
    assert "no reading for" in stalls[0] and "answered before" in stalls[0]
    assert len([line for line in lines if "reads again after a stall" in line]) == 1
    assert [m.meters["w"] for m in published[:4]] == [0.0, 1.0, 2.0, 7.0]


def test_a_failing_device_is_no_stall(caplog, monkeypatch):
    """A device that reports errors is an outage (logged by its driver), not a stall."""
    monkeypatch.setattr(manager_module, "STALL_MIN_SECONDS", 0.1)

    class Unplugged(Driver):
        reads = 0

        def read(self):
            Unplugged.reads += 1
            if Unplugged.reads > 2:
                raise DeviceError("gone")
            return {self.probe_ids[0]: {"w": 1.0}}

    published = []
    manager = DriverManager(
        [wattmeter("unplugged", Unplugged, "U", interval=0.02, max_backoff=0.05)],
        published.append,
        check_interval=0.02,
    )
    manager.start()
    started = time.monotonic()
    # Checked all along an outage of several stall delays.
    wait_for(lambda: manager.check() or Unplugged.reads > 20, 10, "twenty failed tries")
    manager.stop()
    assert time.monotonic() - started > 3 * manager_module.STALL_MIN_SECONDS
    assert "stalled" not in caplog.text
    assert len(published) == 2
