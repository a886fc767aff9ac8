"""kwapi-drivers' health metrics, read from a real driver manager running real drivers."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kwapi.drivers import manager as manager_module
from kwapi.drivers.base import AUTHENTICATION, TIMEOUT, DeviceError, Driver, DriverParameters
from kwapi.drivers.config import Wattmeter
from kwapi.drivers.health import health_registry
from kwapi.drivers.manager import DriverManager
from tests.harness.configs import drivers_conf
from tests.harness.daemons import config_error_line
from tests.harness.processes import busy_tcp_port, free_tcp_port, wait_for


class Steady(Driver):
    def read(self):
        return {self.probe_ids[0]: {"w": 10.0}}


class RefusesLogin(Driver):
    def setup(self):
        raise DeviceError("wrong password", AUTHENTICATION)


class GoesSilent(Driver):
    """Reads twice, then its device times out."""

    reads = 0

    def read(self):
        GoesSilent.reads += 1
        if GoesSilent.reads > 2:
            raise DeviceError("no answer", TIMEOUT)
        return {self.probe_ids[0]: {"w": 5.0}}


class Crashes(Driver):
    def read(self):
        raise KeyError("bug")


def wattmeter(name, cls, probe, **parameters):
    return Wattmeter(name, cls.__name__, cls, (probe,), DriverParameters(**parameters), "test.conf")


def samples(registry) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape, name, **labels):
    return scrape.get((name, tuple(sorted(labels.items()))))


def test_each_wattmeter_says_whether_it_reads_and_why_not(monkeypatch):
    monkeypatch.setattr(manager_module, "RESTART_BACKOFF_INITIAL", 0.05)
    manager = DriverManager(
        [
            wattmeter("steady", Steady, "S", interval=0.02),
            wattmeter("refusing", RefusesLogin, "R", interval=0.02, max_backoff=0.05),
            wattmeter("silent", GoesSilent, "G", interval=0.02, max_backoff=0.05),
            wattmeter("buggy", Crashes, "B", interval=0.02),
        ],
        [].append,
        check_interval=0.02,
    )
    registry = health_registry(manager.states)
    started = time.time()
    manager.start()
    try:

        def settled():
            manager.check()
            scrape = samples(registry)
            restarted = value(
                scrape,
                "kwapi_driver_restarts_total",
                section="buggy",
                driver="Crashes",
                reason="crash",
            )
            timeouts = value(
                scrape,
                "kwapi_driver_read_errors_total",
                section="silent",
                driver="GoesSilent",
                reason="timeout",
            )
            return (restarted or 0) >= 1 and (timeouts or 0) >= 2 and scrape

        scrape = wait_for(settled, 10, "a crash restarted and a device timing out twice")
    finally:
        manager.stop()
    steady = {"section": "steady", "driver": "Steady"}
    assert value(scrape, "kwapi_driver_up", **steady) == 1
    assert started <= value(scrape, "kwapi_driver_last_success_timestamp_seconds", **steady)
    assert value(scrape, "kwapi_driver_published_total", **steady) >= 1
    assert value(scrape, "kwapi_driver_interval_seconds", **steady) == 0.02
    assert value(scrape, "kwapi_driver_backoff_seconds", **steady) == 0
    assert value(scrape, "kwapi_driver_stalled", **steady) == 0
    probe_stamp = value(
        scrape, "kwapi_driver_probe_last_success_timestamp_seconds", section="steady", probe="S"
    )
    assert started <= probe_stamp <= time.time()

    refusing = {"section": "refusing", "driver": "RefusesLogin"}
    assert value(scrape, "kwapi_driver_up", **refusing) == 0
    assert value(scrape, "kwapi_driver_restarts_total", **refusing, reason="authentication") >= 1
    # A login that fails is no read error: the device was never read.
    assert (
        value(scrape, "kwapi_driver_read_errors_total", **refusing, reason="authentication") is None
    )
    assert 0 < value(scrape, "kwapi_driver_backoff_seconds", **refusing) <= 0.05
    assert value(scrape, "kwapi_driver_last_success_timestamp_seconds", **refusing) is None

    silent = {"section": "silent", "driver": "GoesSilent"}
    assert value(scrape, "kwapi_driver_up", **silent) == 0
    assert value(scrape, "kwapi_driver_published_total", **silent) == 2
    assert value(scrape, "kwapi_driver_last_success_timestamp_seconds", **silent) >= started

    buggy = {"section": "buggy", "driver": "Crashes"}
    assert value(scrape, "kwapi_driver_restarts_total", **buggy, reason="crash") >= 1


def test_kwapi_drivers_serves_its_health_on_metrics_port(kwapi_drivers, tmpdir_short):
    port = free_tcp_port()
    config_defaults = f"metrics_port = {port}\n"
    process, client = kwapi_drivers(
        """
        [Rack 1]
        driver = Dummy
        probes = ['node-1', 'node-2']
        parameters = {'interval': 0.2}
        """,
        defaults=config_defaults,
    )
    client.collect(2, timeout=15)

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()

    text = wait_for(
        lambda: 'kwapi_driver_up{driver="Dummy",section="Rack 1"} 1.0' in scrape() and scrape(),
        15,
        "the wattmeter up in the metrics",
    )
    assert (
        'kwapi_driver_probe_last_success_timestamp_seconds{probe="node-2",section="Rack 1"}' in text
    )
    assert "process_resident_memory_bytes" in text
    assert process.stop() == 0


def test_a_metrics_port_in_use_is_one_line_naming_the_option(tmpdir_short):
    with busy_tcp_port() as port:
        config = drivers_conf(
            tmpdir_short,
            f"ipc://{tmpdir_short}/drivers",
            "[Rack 1]\ndriver = Dummy\nprobes = ['node-1']\n",
            defaults=f"metrics_port = {port}\n",
        )
        line = config_error_line(config)
    assert "metrics_port" in line and f"127.0.0.1:{port}" in line, line
