"""Ipmi driver against a simulated BMC speaking RMCP+ on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading

import pytest

from kwapi.config import ConfigError, Section
from kwapi.drivers import ipmi as ipmi_module
from kwapi.drivers.config import parse_wattmeters
from kwapi.drivers.ipmi import IpmiDriver, IpmiParameters
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import driver_thread, warnings_about
from tests.harness.processes import free_udp_port, stop_process, wait_for

ipmi_command = pytest.importorskip("pyghmi.ipmi.command")

PASSWORD = "s3cret-Passw0rd"


class SimulatedBmcProcess:
    """tests.drivers.simulators.bmc run as a subprocess."""

    def __init__(self, **settings) -> None:
        self.settings = {"username": "admin", "password": PASSWORD, **settings}
        self.process: subprocess.Popen | None = None
        self.port = settings.get("port", 0)

    def start(self, **changes) -> SimulatedBmcProcess:
        self.settings.update(changes, port=self.port)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.drivers.simulators.bmc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.process.stdin.write(json.dumps(self.settings) + "\n")
        self.process.stdin.flush()
        ready = {}

        def read_ready():
            ready["line"] = self.process.stdout.readline()

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(20)
        line = ready.get("line", "")
        if not line.startswith("ready "):
            self.stop()
            raise AssertionError(f"simulated BMC did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signum=signal.SIGKILL)
            self.process.stdin.close()
            self.process.stdout.close()


@pytest.fixture
def bmc():
    """Factory of simulated BMCs, killed at teardown."""
    started: list[SimulatedBmcProcess] = []

    def make(start: bool = True, **settings) -> SimulatedBmcProcess:
        process = SimulatedBmcProcess(**settings)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        process.stop()


def running(publisher, port, probes=("node-1",), **parameters):
    parameters = {
        "host": "127.0.0.1",
        "port": port,
        "username": "admin",
        "password": PASSWORD,
        "interval": 0.2,
        "max_backoff": 1.0,
        **parameters,
    }
    driver = IpmiDriver("bmc-1", list(probes), IpmiParameters(**parameters), publisher.publish)
    return driver_thread(driver, timeout=40)


def test_dcmi_reading_is_published_as_watts(bmc, bus):
    publisher, client = bus
    # A watts sensor with another value shows that DCMI comes first.
    server = bmc(watts=187, sensors=[{"name": "PSU Power", "unit": "W", "value": 90}])
    with running(publisher, server.port):
        measurements = client.collect(3, timeout=15)
    assert [m.probe_id for m in measurements] == ["node-1"] * 3
    assert all(m.meters == {"w": 187.0} for m in measurements)


def test_inactive_measurement_publishes_nothing(bmc, bus, caplog):
    publisher, client = bus
    server = bmc(watts=187, active=False)
    with running(publisher, server.port) as driver:
        wait_for(lambda: warnings_about(caplog, "not active"), 15, "inactive measurement logged")
        with pytest.raises(AssertionError, match="no measurement"):
            client.receive(timeout=1.5)
        assert driver.published == 0
    assert len(warnings_about(caplog, "not active")) == 1


def test_falls_back_to_the_sdr_sensor_in_watts(bmc, bus):
    publisher, client = bus
    server = bmc(
        dcmi=False,
        sensors=[
            {"name": "CPU Temp", "unit": "degrees C", "value": 45},
            {"name": "Sys Power", "unit": "W", "value": 412, "m": 2},
            {"name": "Fan 1", "unit": "RPM", "value": 120},
        ],
    )
    with running(publisher, server.port):
        measurement = client.receive(timeout=15)
    assert measurement.probe_id == "node-1"
    assert measurement.meters == {"w": 412.0}


def test_sensor_parameter_picks_one_of_several(bmc, bus, caplog):
    publisher, client = bus
    sensors = [
        {"name": "PSU1 Power", "unit": "W", "value": 120},
        {"name": "PSU2 Power", "unit": "W", "value": 135},
    ]
    server = bmc(dcmi=False, sensors=sensors)
    with running(publisher, server.port, sensor="PSU2 Power"):
        assert client.receive(timeout=15).meters == {"w": 135.0}
    # Without the parameter the driver cannot choose: it says so and publishes nothing.
    with running(publisher, server.port) as driver:
        wait_for(lambda: warnings_about(caplog, "several sensors in watts"), 15, "ambiguity logged")
        assert "PSU1 Power, PSU2 Power" in warnings_about(caplog, "several")[0]
        assert driver.published == 0


def test_unavailable_sensor_publishes_nothing(bmc, bus):
    publisher, client = bus
    server = bmc(
        dcmi=False, sensors=[{"name": "Sys Power", "unit": "W", "value": 250, "available": False}]
    )
    with running(publisher, server.port) as driver:
        with pytest.raises(AssertionError, match="no measurement"):
            client.receive(timeout=1.5)
        assert driver.published == 0


def test_wrong_password_logs_one_line_and_publishes_nothing(bmc, bus, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi")
    publisher, client = bus
    server = bmc()
    with running(publisher, server.port, password="not-the-password", max_backoff=0.2) as driver:

        def retries():
            return [r for r in caplog.records if "still failing" in r.getMessage()]

        wait_for(lambda: len(retries()) >= 3, 20, "three retries")
        assert driver.published == 0
    lines = warnings_about(caplog, "Incorrect password")
    assert len(lines) == 1
    assert "cannot log in to BMC 127.0.0.1" in lines[0]
    assert "not-the-password" not in caplog.text
    with pytest.raises(AssertionError, match="no measurement"):
        client.receive(timeout=0.2)


def test_a_user_privilege_account_is_enough(bmc, bus):
    publisher, client = bus
    server = bmc(watts=140, max_privilege=2)
    with running(publisher, server.port):
        assert client.receive(timeout=15).meters == {"w": 140.0}


def test_privilege_above_the_accounts_limit_is_refused(bmc, bus, caplog):
    publisher, client = bus
    server = bmc(watts=140, max_privilege=2)
    with running(publisher, server.port, privilege="administrator") as driver:
        wait_for(lambda: warnings_about(caplog, "Invalid role"), 15, "refusal logged")
        assert driver.published == 0
    assert len(warnings_about(caplog, "Invalid role")) == 1
    with pytest.raises(AssertionError, match="no measurement"):
        client.receive(timeout=0.2)


def test_dcmi_request_bytes_are_exactly_those_of_the_spec(bmc):
    """The simulator serves DC 01 00 00 only, so the DCMI test above proves the driver's bytes."""
    server = bmc(watts=187)
    command = ipmi_command.Command(
        bmc="127.0.0.1", userid="admin", password=PASSWORD, port=server.port, privlevel=2
    )
    try:
        answers = {
            request: command.raw_command(netfn=0x2C, command=0x02, data=request)["code"]
            for request in [
                (0xDC, 0x01, 0x00, 0x00),
                (0xDC, 0x01, 0x00),
                (0xDC, 0x02, 0x00, 0x00),
                (0xDC, 0x01, 0x00, 0x00, 0x00),
                (0xDC, 0x01, 0x01, 0x00),
            ]
        }
    finally:
        command.ipmi_session.logout()
    assert answers.pop((0xDC, 0x01, 0x00, 0x00)) == 0
    assert set(answers.values()) == {0xCC}, answers


def test_bmc_absent_at_start_then_read_within_seconds(bmc, bus, caplog):
    publisher, client = bus
    server = bmc(start=False, port=free_udp_port(), watts=230)
    with running(publisher, server.port) as driver:
        wait_for(lambda: warnings_about(caplog, "BMC 127.0.0.1"), 20, "failure logged")
        assert driver.published == 0
        server.start()
        assert client.receive(timeout=20).meters == {"w": 230.0}
        wait_for(lambda: warnings_about(caplog, "device is back"), 5, "recovery logged")
    [line] = warnings_about(caplog, "BMC 127.0.0.1")
    assert re.search(
        rf"cannot log in to BMC 127\.0\.0\.1:{server.port}: no answer within \d+ s", line
    ), line
    assert "None" not in line


def test_bmc_outage_is_one_warning_line(bmc, bus, caplog):
    """A BMC silent long enough for a read and then logins to time out: one line."""
    caplog.set_level(logging.DEBUG, logger="kwapi")
    publisher, client = bus
    server = bmc(watts=187)
    with running(publisher, server.port):
        assert client.receive(timeout=15).meters == {"w": 187.0}
        server.stop()
        # The read times out first (about 9 s); every try after it is a login.
        wait_for(lambda: warnings_about(caplog, "no answer"), 30, "the outage logged")

        def login_failures():
            return [r for r in caplog.records if "still failing" in r.getMessage()]

        wait_for(lambda: len(login_failures()) >= 2, 30, "two failed logins")
        server.start(watts=205)

        def new_value():
            return client.receive(timeout=30).meters == {"w": 205.0}

        wait_for(new_value, 40, "readings from the restarted BMC")
        wait_for(lambda: warnings_about(caplog, "device is back"), 5, "recovery logged")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [line for line in lines if "None" in line], lines
    [outage] = [line for line in lines if "device is back" not in line]
    assert re.search(rf"BMC 127\.0\.0\.1:{server.port}: no answer within \d+ s", outage), outage
    assert all("no answer within" in r.getMessage() for r in login_failures())
    assert len(warnings_about(caplog, "device is back")) == 1


def test_bmc_restarting_while_read_is_read_again(bmc, bus):
    publisher, client = bus
    server = bmc(watts=187)
    with running(publisher, server.port):
        assert client.receive(timeout=15).meters == {"w": 187.0}
        server.stop()
        server.start(watts=199)  # a new process: every session it knew is gone

        def new_value():
            return client.receive(timeout=30).meters == {"w": 199.0}

        wait_for(new_value, 40, "readings from the restarted BMC")


def section(parameters: str, probes: str = "['node-1']") -> Section:
    return Section(
        "drivers.conf", "Rack 1 BMC", {"driver": "Ipmi", "probes": probes, "parameters": parameters}
    )


@pytest.mark.parametrize(
    ("parameters", "probes", "key", "fragment"),
    [
        ("{'username': 'a', 'password': 'b'}", "['n']", "parameters['host']", "required"),
        ("{'host': 'h', 'password': 'b'}", "['n']", "parameters['username']", "required"),
        ("{'host': 'h', 'username': 'a'}", "['n']", "parameters['password']", "required"),
        (
            "{'host': 'h', 'username': 'a', 'password': 'b', 'port': 70000}",
            "['n']",
            "parameters['port']",
            "less than or equal",
        ),
        (
            "{'host': 'h', 'username': 'a', 'password': 'b', 'interval': 'often'}",
            "['n']",
            "parameters['interval']",
            "valid number",
        ),
        (
            "{'host': 'h', 'username': 'a', 'password': 'b', 'community': 'x'}",
            "['n']",
            "parameters['community']",
            "Extra inputs",
        ),
        ("{'host': 'h', 'username': 'a', 'password': 'b'}", "['n', 'm']", "probes", "exactly one"),
    ],
)
def test_configuration_errors_name_section_and_key(parameters, probes, key, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters([section(parameters, probes)])
    error = caught.value
    assert error.section == "Rack 1 BMC"
    assert error.key == key
    assert fragment in str(error)


def test_password_is_kept_secret_in_parameters():
    [meter] = parse_wattmeters(
        [section(f"{{'host': 'h', 'username': 'a', 'password': '{PASSWORD}'}}")]
    )
    assert PASSWORD not in repr(meter)
    assert meter.parameters.password.get_secret_value() == PASSWORD


def test_kwapi_drivers_daemon_reads_several_bmcs(bmc, kwapi_drivers):
    dcmi = bmc(watts=321)
    sdr = bmc(dcmi=False, sensors=[{"name": "Sys Power", "unit": "W", "value": 96}])
    process, client = kwapi_drivers(
        f"""
        [Node 7 BMC]
        driver = Ipmi
        probes = ['node-7']
        parameters = {{'host': '127.0.0.1', 'port': {dcmi.port}, 'username': 'admin',
            'password': '{PASSWORD}', 'interval': 0.2}}

        [Node 8 BMC]
        driver = Ipmi
        probes = ['node-8']
        parameters = {{'host': '127.0.0.1', 'port': {sdr.port}, 'username': 'admin',
            'password': '{PASSWORD}', 'interval': 0.2}}
        """
    )
    seen: dict[str, dict] = {}

    def both_read():
        measurement = client.receive(timeout=20)
        seen[measurement.probe_id] = measurement.meters
        return len(seen) == 2

    wait_for(both_read, 30, "readings of both BMCs")
    assert seen == {"node-7": {"w": 321.0}, "node-8": {"w": 96.0}}
    with open(f"/proc/{process.process.pid}/cmdline", "rb") as cmdline:
        assert PASSWORD.encode() not in cmdline.read()
    assert process.stop() == 0
    assert PASSWORD not in process.output()


def test_kwapi_drivers_refuses_a_bad_section(tmpdir_short):
    parameters = "{'username': 'admin', 'password': 'x'}"
    line = expect_config_error(tmpdir_short, "Rack 1 BMC", "Ipmi", "['node-7']", parameters)
    assert "host" in line


def test_a_session_idle_too_long_is_renewed_before_reading(bmc, bus, caplog, monkeypatch):
    """BMCs drop sessions idle for about a minute: with a long interval, log in afresh."""
    monkeypatch.setattr(ipmi_module, "SESSION_IDLE_LIMIT", 0.1)
    publisher, client = bus
    server = bmc(watts=150)
    with running(publisher, server.port, interval=0.3) as driver:
        assert client.receive(timeout=15).meters == {"w": 150.0}
        first = driver._session
        assert first is not None
        assert [m.meters for m in client.collect(3, timeout=15)] == [{"w": 150.0}] * 3
        assert driver._session is not first
    assert not warnings_about(caplog, "BMC")
