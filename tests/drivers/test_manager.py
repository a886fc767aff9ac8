"""The driver manager: start, restart with backoff, stop."""

import itertools
import logging
import threading
import time

import pytest

from kwapi.drivers import manager as manager_module
from kwapi.drivers.base import Driver, DriverParameters
from kwapi.drivers.config import Wattmeter
from kwapi.drivers.manager import DriverManager
from tests.helpers import wait_for


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
    for earlier, later in itertools.pairwise(delays):
        assert later == pytest.approx(2 * earlier, rel=0.2)
