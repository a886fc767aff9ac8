"""Host driver: watts estimated from /proc/stat deltas (a fake file, then the real one)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kwapi.config import read_sections
from kwapi.drivers.config import parse_wattmeters
from kwapi.drivers.host import HostDriver, parse_proc_stat
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import RunningDriver, wait_retries
from tests.harness.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]


class ProcStat:
    """A fake /proc/stat with four CPUs whose counters the test advances."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # user nice system idle iowait irq softirq steal guest guest_nice
        self.fields = [10_000, 50, 3_000, 80_000, 400, 20, 30, 100, 500, 0]
        self.write()

    def advance(self, busy: int, idle: int, steal: int = 0) -> None:
        """Add *busy* ticks (user and system), *idle* ticks and *steal* ticks."""
        user = busy // 2
        self.fields[0] += user
        self.fields[2] += busy - user
        self.fields[3] += idle
        self.fields[7] += steal
        self.fields[8] += user // 2  # guest time is already inside user time
        self.write()

    def write(self, text: str | None = None) -> None:
        if text is None:
            numbers = " ".join(str(value) for value in self.fields)
            per_cpu = "".join(f"cpu{n} {numbers}\n" for n in range(4))
            text = f"cpu  {numbers}\n{per_cpu}intr 1 2 3\nctxt 42\nbtime 1700000000\n"
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, self.path)


@pytest.fixture
def stat(tmp_path):
    return ProcStat(tmp_path / "stat")


def test_parse_proc_stat():
    times, cpus = parse_proc_stat(
        "cpu  100 10 50 800 20 5 5 10 30 0\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 0\n"
    )
    assert cpus == 2
    assert times.busy == 100 + 10 + 50 + 5 + 5
    assert times.total == times.busy + 800 + 20 + 10


def test_defaults_are_per_vcpu_and_follow_the_load(stat):
    with RunningDriver(HostDriver, ["vm-1"], proc_stat=str(stat.path), interval=0.05) as run:
        wait_for(lambda: hasattr(run.driver, "max_watts"), 10, "the driver to be set up")
        # 4 vCPUs x Cloud Carbon Footprint's AWS averages (0.74 W and 3.5 W per vCPU)
        assert run.driver.idle_watts == pytest.approx(2.96)
        assert run.driver.max_watts == pytest.approx(14.0)
        expected = []
        for busy, idle, steal in [(100, 300, 0), (400, 0, 0), (0, 400, 0), (100, 200, 100)]:
            stat.advance(busy, idle, steal)
            (measurement,) = run.wait_more(1)
            expected.append(2.96 + (14.0 - 2.96) * busy / (busy + idle + steal))
            assert measurement.probe_id == "vm-1"
            assert measurement.meters["estimated"] == 1
            assert measurement.meters["w"] == pytest.approx(expected[-1], abs=0.001)
    # one measurement per change of the counters: none while they stood still
    assert [m.meters["w"] for m in run.measurements] == pytest.approx(expected, abs=0.001)


def test_configured_watts_override_the_per_vcpu_defaults(stat):
    with RunningDriver(
        HostDriver,
        ["server"],
        proc_stat=str(stat.path),
        idle_watts=100,
        max_watts=300,
        interval=0.05,
    ) as run:
        wait_for(lambda: hasattr(run.driver, "max_watts"), 10, "the driver to be set up")
        stat.advance(busy=250, idle=250)
        (measurement,) = run.wait_more(1)
    assert measurement.meters == {"w": pytest.approx(200.0), "estimated": 1}


def test_counters_going_back_publish_nothing(stat):
    with RunningDriver(HostDriver, ["vm-1"], proc_stat=str(stat.path), interval=0.05) as run:
        wait_for(lambda: hasattr(run.driver, "max_watts"), 10, "the driver to be set up")
        stat.fields[0] -= 5_000  # e.g. a restored snapshot
        stat.write()

        def busy_ticks_then_measurements():
            stat.advance(busy=400, idle=0)
            return run.measurements

        wait_for(busy_ticks_then_measurements, 10, "a measurement after the counters went back")
    # only the full-load windows were published, never the one across the jump back
    assert [m.meters["w"] for m in run.measurements] == pytest.approx(
        [14.0] * len(run.measurements)
    )


def test_unreadable_stat_file_is_logged_once_and_recovered(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    path = tmp_path / "stat"
    with RunningDriver(
        HostDriver, ["vm-1"], proc_stat=str(path), vcpus=2, interval=0.05, max_backoff=0.3
    ) as run:
        wait_retries(caplog, 2)
        stat = ProcStat(path)
        wait_for(lambda: hasattr(run.driver, "max_watts"), 10, "the driver to be set up")
        stat.advance(busy=0, idle=200)
        (measurement,) = run.wait_more(1)
    assert measurement.meters["w"] == pytest.approx(2 * 0.74)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "cannot read" in w]) == 1


def test_demo_configuration_has_the_host_probe():
    demo = ROOT / "etc" / "kwapi" / "demo" / "drivers.conf"
    sections = read_sections([str(demo)])
    assert {"Demo rack", "Demo switch", "This host"} <= {section.name for section in sections}
    (host,) = parse_wattmeters([section for section in sections if section.name == "This host"])
    assert host.driver_name == "Host"
    assert host.probe_ids == ("demo-host",)


def test_kwapi_drivers_estimates_this_machine(kwapi_drivers):
    process, client = kwapi_drivers(
        """
        [This host]
        driver = Host
        probes = ['this-host']
        parameters = {'interval': 0.2}
        """
    )
    measurement = client.receive(timeout=20)
    stat_lines = Path("/proc/stat").read_text().splitlines()
    cpus = sum(1 for line in stat_lines if line[:3] == "cpu" and line[3].isdigit())
    assert measurement.probe_id == "this-host"
    assert measurement.meters["estimated"] == 1
    assert 0.74 * cpus <= measurement.meters["w"] <= 3.5 * cpus
    assert process.stop() == 0


@pytest.mark.parametrize(
    ("probes", "parameters", "expected"),
    [
        ("['a']", "{'idle_watts': 80, 'max_watts': 40}", "parameters['max_watts']"),
        ("['a']", "{'interval': 'often'}", "parameters['interval']"),
        ("['a', 'b']", "{}", "exactly one probe"),
        ("['a']", "{'idle_watts': 50, 'vcpus': 2}", "idle watts (50) must be lower"),
    ],
)
def test_bad_section_stops_kwapi_drivers_at_start(tmp_path, probes, parameters, expected):
    assert expected in expect_config_error(tmp_path, "This host", "Host", probes, parameters)
