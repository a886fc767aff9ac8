"""Rapl driver against a fake powercap tree whose counters run like RAPL's."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import statistics
import subprocess
import tempfile

import pytest

from kwapi.bus.protocol import Batch
from kwapi.drivers.base import DeviceError
from kwapi.drivers.rapl import RaplDriver, discover_zones, energy_delta
from tests.drivers.simulators.fake_powercap import FakePowercap
from tests.harness.bus import BusClient
from tests.harness.configs import drivers_conf
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import RunningDriver, wait_retries
from tests.harness.processes import VENV_BIN, free_tcp_port, stop_process, wait_for


def two_socket_machine(root) -> FakePowercap:
    """Two packages with core and dram, uncore on package 0 only, a psys zone,
    and the MMIO duplicate."""
    tree = FakePowercap(root)
    tree.add_zone("intel-rapl:0", "package-0", watts=40.0)
    tree.add_zone("intel-rapl:0:0", "core", watts=25.0)
    tree.add_zone("intel-rapl:0:1", "dram", watts=6.0)
    tree.add_zone("intel-rapl:0:2", "uncore", watts=4.0)
    tree.add_zone("intel-rapl:1", "package-1", watts=30.0)
    tree.add_zone("intel-rapl:1:0", "core", watts=20.0)
    tree.add_zone("intel-rapl:1:1", "dram", watts=5.0)
    tree.add_zone("intel-rapl:2", "psys", watts=90.0)
    tree.add_zone("intel-rapl-mmio:0", "package-0", watts=500.0)
    return tree


@pytest.fixture
def machine(tmp_path):
    tree = two_socket_machine(tmp_path / "powercap").start()
    yield tree
    tree.stop()


def assert_watts(values: list[float], expected: float) -> None:
    """Readings match the counters' power.

    The fake counters advance every 20 ms from a thread, so on a loaded
    machine a reading may see a counter some tens of milliseconds stale:
    each reading is checked loosely, their median tightly.
    """
    assert values
    assert values == pytest.approx([expected] * len(values), rel=0.75)
    assert statistics.median(values) == pytest.approx(expected, rel=0.1)


def labels(root, kinds):
    return [zone.label for zone in discover_zones(str(root), kinds)]


class TestDiscovery:
    def test_packages_by_default_and_mmio_ignored(self, tmp_path):
        tree = two_socket_machine(tmp_path)
        assert labels(tree.root, ["package"]) == ["package-0", "package-1"]

    def test_zone_kinds_in_the_given_order_within_each_package(self, tmp_path):
        tree = two_socket_machine(tmp_path)
        assert labels(tree.root, ["dram", "package"]) == [
            "package-0/dram",
            "package-0",
            "package-1/dram",
            "package-1",
        ]
        assert labels(tree.root, ["core"]) == ["package-0/core", "package-1/core"]
        assert labels(tree.root, ["psys"]) == ["psys"]
        assert labels(tree.root, ["uncore"]) == ["package-0/uncore"]
        assert labels(tree.root, ["core", "uncore"]) == [
            "package-0/core",
            "package-0/uncore",
            "package-1/core",
        ]

    def test_missing_tree_is_a_device_error(self, tmp_path):
        with pytest.raises(DeviceError, match="no powercap tree"):
            discover_zones(str(tmp_path / "absent"), ["package"])


def test_energy_delta_corrects_one_wraparound():
    assert energy_delta(1_000, 4_000, 10_000) == 3_000
    assert energy_delta(9_000, 500, 10_000) == 1_500


def test_watts_from_counter_deltas_per_package(machine):
    with RunningDriver(
        RaplDriver, ["cpu-0", "cpu-1"], powercap_path=str(machine.root), interval=0.5
    ) as run:
        # Five readings per probe, so that one stale counter on a loaded
        # machine cannot move the median.
        measurements = run.wait_count(10)
    by_probe = {}
    for measurement in measurements:
        by_probe.setdefault(measurement.probe_id, []).append(measurement.meters["w"])
    # the MMIO duplicate (500 W) is never read; package-1 is the second probe
    assert_watts(by_probe["cpu-0"], 40.0)
    assert_watts(by_probe["cpu-1"], 30.0)


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        (["dram", "psys"], {"dram-0": 6.0, "dram-1": 5.0, "platform": 90.0}),
        # Package 1 has no uncore zone: its core takes the next probe.
        (["core", "uncore"], {"core-0": 25.0, "uncore-0": 4.0, "core-1": 20.0}),
    ],
)
def test_zones_parameter_selects_the_zones_in_order(machine, zones, expected):
    with RunningDriver(
        RaplDriver, list(expected), powercap_path=str(machine.root), zones=zones, interval=0.5
    ) as run:
        measurements = run.wait_count(2 * len(expected))
    by_probe = {}
    for measurement in measurements:
        by_probe.setdefault(measurement.probe_id, []).append(measurement.meters["w"])
    assert set(by_probe) == set(expected)
    for probe, watts in expected.items():
        assert_watts(by_probe[probe], watts)


def test_wraparound_is_corrected(tmp_path):
    tree = FakePowercap(tmp_path)
    # 2 J range at 2 W: the counter wraps every second, several times per test
    tree.add_zone("intel-rapl:0", "package-0", watts=2.0, max_range_uj=2_000_000, energy_uj=0)
    tree.start()
    try:
        with RunningDriver(RaplDriver, ["cpu"], powercap_path=str(tree.root), interval=0.5) as run:
            wait_for(lambda: tree.wraps["intel-rapl:0"] >= 2, 10, "two wraparounds")
            run.wait_more(2)
        values = [m.meters["w"] for m in run.measurements]
    finally:
        tree.stop()
    assert len(values) >= 4
    assert_watts(values, 2.0)  # uncorrected, a wrap would give a negative reading


def two_socket_driver(tree: FakePowercap) -> RunningDriver:
    """The Rapl driver of probes cpu-0 and cpu-1 on *tree*, retrying quickly."""
    return RunningDriver(
        RaplDriver, ["cpu-0", "cpu-1"], powercap_path=str(tree.root), interval=0.2, max_backoff=0.5
    )


def test_missing_zone_logged_once_then_found(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", watts=35.0)
    tree.start()
    try:
        with two_socket_driver(tree) as run:
            wait_retries(caplog, 2)
            assert run.measurements == []  # nothing published for half a machine
            tree.add_zone("intel-rapl:1", "package-1", watts=25.0)  # e.g. module loaded
            run.wait_count(4)
    finally:
        tree.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "2 probe(s) but 1 RAPL zone(s)" in w]) == 1
    assert any("device is back" in w for w in warnings)


def test_zone_gone_while_read_logged_once_then_found(tmp_path, caplog):
    """A zone's directory disappears under a running driver: one line, not
    the failed read and then the missing zone."""
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", watts=35.0)
    tree.add_zone("intel-rapl:1", "package-1", watts=25.0)
    tree.start()
    try:
        with two_socket_driver(tree) as run:
            run.wait_count(2)
            tree.remove_zone("intel-rapl:1")  # e.g. the package taken offline
            wait_retries(caplog, 2)
            published = len(run.measurements)
            tree.add_zone("intel-rapl:1", "package-1", watts=25.0)
            after = run.wait_count(published + 4)[published:]
    finally:
        tree.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    [outage] = [w for w in warnings if "device is back" not in w]
    assert "2 probe(s) but 1 RAPL zone(s)" in outage, warnings
    assert "(package-0)" in outage
    assert len(warnings) == 2 and "device is back" in warnings[1], warnings
    assert {m.probe_id for m in after} == {"cpu-0", "cpu-1"}


def test_permission_denied_explained_in_one_line_and_recovered():
    """An energy_uj the daemon may not read (as since Linux 5.10): it says why.

    Root reads any file whatever its mode, thanks to CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH; when the tests run as root, the daemon is started
    without those two capabilities (util-linux setpriv), so that the kernel
    refuses the read with EACCES as it does for an unprivileged service.
    """
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and util-linux setpriv is missing to drop CAP_DAC_*")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]
    base = tempfile.mkdtemp(prefix="kwrapl", dir="/tmp")
    tree = FakePowercap(os.path.join(base, "powercap"))
    tree.add_zone("intel-rapl:0", "package-0", watts=45.0)
    tree.set_mode("intel-rapl:0", 0o000)
    tree.start()
    port = free_tcp_port()
    config = drivers_conf(
        base,
        f"tcp://127.0.0.1:{port}",
        f"""
        [This machine]
        driver = Rapl
        probes = ['node-1']
        parameters = {{'powercap_path': '{tree.root}', 'interval': 0.5, 'max_backoff': 0.5}}
        """,
        defaults="debug = true",
    )
    log_path = os.path.join(base, "drivers.log")
    client = BusClient(f"tcp://127.0.0.1:{port}")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*prefix, str(VENV_BIN / "kwapi-drivers"), "--config-file", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        with open(log_path, errors="replace") as handle:
            return handle.read()

    try:
        wait_for(lambda: output().count("still failing") >= 2, 20, "retries while denied")
        denied = [line for line in output().splitlines() if "WARNING" in line]
        assert len(denied) == 1, output()
        assert "permission denied reading" in denied[0]
        assert "CVE-2020-8694" in denied[0] and "udev rule" in denied[0]
        tree.set_mode("intel-rapl:0", 0o444)  # what the udev rule does
        measurement = client.receive(timeout=15)
        assert measurement.probe_id == "node-1"
        assert_watts([measurement.meters["w"]], 45.0)
        assert "device is back" in output()
    finally:
        client.close()
        try:
            assert stop_process(process) == 0
        finally:
            tree.stop()
            shutil.rmtree(base, ignore_errors=True)


def test_unknown_zone_kind_stops_kwapi_drivers_at_start(tmp_path):
    line = expect_config_error(tmp_path, "This machine", "Rapl", "['node-1']", "{'zones': ['gpu']}")
    assert "parameters['zones.0']" in line


def energy_average(samples) -> float:
    """Watts averaged over the samples' time: each sample covers the time since the previous."""
    joules = sum(
        b.meters["w"] * (b.timestamp - a.timestamp) for a, b in itertools.pairwise(samples)
    )
    return joules / (samples[-1].timestamp - samples[0].timestamp)


def test_read_faster_than_the_counter_moves_each_sample_spans_a_counter_step(tmp_path):
    """At 200 Hz on counters that move every 20 ms: no 0 W reading, no double
    reading, one sample per counter step, batched."""
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", watts=40.0)
    tree.start(step=0.02)
    try:
        with RunningDriver(
            RaplDriver, ["cpu"], powercap_path=str(tree.root), interval=0.005, batch=0.25
        ) as run:
            samples = run.wait_samples(40)
    finally:
        tree.stop()
    assert all(isinstance(message, Batch) for message in run.measurements)
    watts = [sample.meters["w"] for sample in samples]
    assert min(watts) > 0  # a counter not yet moved gives no sample, not 0 W
    assert_watts(watts, 40.0)
    assert energy_average(samples) == pytest.approx(40.0, rel=0.05)
    span = samples[-1].timestamp - samples[0].timestamp
    assert len(samples) - 1 <= span / 0.02 * 1.2 + 1  # about one per step, not four


def test_a_millisecond_interval_stays_wrap_correct(tmp_path):
    tree = FakePowercap(tmp_path)
    # 0.5 J range at 20 W: the counter wraps 40 times a second
    tree.add_zone("intel-rapl:0", "package-0", watts=20.0, max_range_uj=500_000, energy_uj=0)
    tree.start(step=0.002)
    try:
        with RunningDriver(
            RaplDriver, ["cpu"], powercap_path=str(tree.root), interval=0.001, batch=0.2
        ) as run:
            wait_for(lambda: tree.wraps["intel-rapl:0"] >= 20, 10, "twenty wraparounds")
            samples = run.wait_samples(len(run.samples) + 1)
    finally:
        tree.stop()
    assert min(sample.meters["w"] for sample in samples) > 0  # no wrap taken for a drop
    assert energy_average(samples) == pytest.approx(20.0, rel=0.05)
