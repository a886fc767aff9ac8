"""kwapi-drivers as a real process: publishing, signals, restarts, bad configuration."""

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.harness.configs import api_config, drivers_conf, write_config
from tests.harness.daemons import DUMMY, QUICK_RESTARTS, config_error_line, start_api
from tests.harness.http import get_json
from tests.harness.processes import run_command, wait_for

EXTRA_DRIVERS = str(Path(__file__).parent.parent / "fixtures" / "extra_drivers")
BROKEN_DRIVERS = str(Path(__file__).parent.parent / "fixtures" / "broken_drivers")


def dummy_conf(directory, endpoint, sections=DUMMY, defaults=""):
    """drivers.conf of *sections*; a driver that died is restarted within 0.2 s."""
    return drivers_conf(directory, endpoint, sections, QUICK_RESTARTS + defaults)


def test_publishes_signed_measurements_and_stops_on_sigterm(tmpdir_short, daemon, bus_client):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    conf = dummy_conf(tmpdir_short, endpoint)
    process = daemon("kwapi-drivers", "--config-file", str(conf))
    client = bus_client(endpoint)
    measurements = client.collect(10, timeout=15)
    assert {m.probe_id for m in measurements} == {"node-1", "node-2"}
    assert all(10 <= m.meters["w"] <= 20 for m in measurements)
    assert all(abs(m.timestamp - time.time()) < 10 for m in measurements)
    assert not client.rejected
    started = time.monotonic()
    assert process.stop(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in process.output()
    assert "measurement(s) published" in process.output()


def test_sigint_stops_too(tmpdir_short, daemon, bus_client):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    process = daemon("kwapi-drivers", "--config-file", str(dummy_conf(tmpdir_short, endpoint)))
    bus_client(endpoint).receive(15)
    process.signal(signal.SIGINT)
    assert process.process.wait(10) == 0


def test_unsigned_mode_sends_two_frames(tmpdir_short, daemon, bus_client):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    conf = dummy_conf(tmpdir_short, endpoint, defaults="enable_signing = false\n")
    daemon("kwapi-drivers", "--config-file", str(conf))
    signed_client = bus_client(endpoint)
    wait_for(lambda: signed_client.socket.poll(100), 15, "a message")
    frames = signed_client.socket.recv_multipart()
    assert len(frames) == 2
    unsigned_client = bus_client(endpoint, secret=None)
    assert unsigned_client.receive(15).probe_id in {"node-1", "node-2"}


def test_driver_from_another_package_is_restarted_after_a_crash(tmpdir_short, daemon, bus_client):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    conf = dummy_conf(
        tmpdir_short,
        endpoint,
        DUMMY
        + textwrap.dedent("""
        [Fragile]
        driver = Crashing
        probes = ['fragile']
        parameters = {'interval': 0.05, 'readings_before_crash': 3}
        """),
    )
    env = {"PYTHONPATH": os.pathsep.join([EXTRA_DRIVERS, os.environ.get("PYTHONPATH", "")])}
    process = daemon("kwapi-drivers", "--config-file", str(conf), env=env)
    client = bus_client(endpoint)
    generations = set()
    dummy_seen_after_crash = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(generations) < 2 or dummy_seen_after_crash < 3):
        measurement = client.receive(15)
        if measurement.probe_id == "fragile":
            generations.add(measurement.meters["generation"])
        elif len(generations) >= 1 and "died" in process.output():
            dummy_seen_after_crash += 1
    # Two lives of the driver were heard from (the first may have died before
    # the subscription reached the publisher).
    assert len(generations) >= 2
    assert dummy_seen_after_crash >= 3  # the crash did not take the other wattmeter down
    output = process.output()
    assert "wattmeter Fragile: driver Crashing died (ZeroDivisionError('bug in driver'))" in output
    assert "restarting driver Crashing" in output
    assert process.stop() == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[M]\ndriver = Dummy\nprobes = ['A', \n", "[M] probes: not a Python literal"),
        ("[M\ndriver = Dummy\n", "cannot parse"),
        ("[M]\ndriver = Dummy\nprobes = A, B\n", "[M] probes: not a Python literal"),
        ("[M]\ndriver = Dummy\n", "[M] probes: missing"),
        ("[M]\ndriver = Dummy\nprobes = ['a/b']\n", "[M] probes: invalid probe id 'a/b'"),
        ("[M]\ndriver = Dummy\nprobes = ['A', 'A']\n", "[M] probes: probe id 'A' appears twice"),
        (
            "[M]\ndriver = Dummy\nprobes = ['A']\n[N]\ndriver = Dummy\nprobes = ['A']\n",
            "[N] probes: probe id 'A' is already used by wattmeter [M]",
        ),
        (
            "[M]\ndriver = Dummy\nprobes = ['A']\nparameters = {'interval': 'often'}\n",
            "[M] parameters['interval']: Input should be a valid number",
        ),
        ("", "no wattmeter section"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(tmpdir_short, body, expected):
    conf = dummy_conf(tmpdir_short, f"ipc://{tmpdir_short}/d", body)
    line = config_error_line(conf)
    assert expected in line
    if expected not in ("no wattmeter section",):
        assert str(conf) in line


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("Nope", "unknown driver 'Nope' (installed: Broken, Crashing, Dummy, "),
        (
            "Broken",
            "driver 'Broken' cannot be loaded: "
            "ModuleNotFoundError: No module named 'kwapi_missing_dependency'",
        ),
    ],
)
def test_driver_that_cannot_be_loaded_exits_2_with_one_line_and_logs_nothing(
    tmpdir_short, monkeypatch, driver, expected
):
    paths = [BROKEN_DRIVERS, EXTRA_DRIVERS, os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path for path in paths if path))
    conf = dummy_conf(
        tmpdir_short, f"ipc://{tmpdir_short}/d", f"[M]\ndriver = {driver}\nprobes = ['A']\n"
    )
    result = run_command("kwapi-drivers", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr.startswith(f"kwapi-drivers: error: {conf}: [M] driver: {expected}")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""  # no stevedore warning, no traceback


def test_watch_probe_gives_kwapi_api_exactly_that_probe(tmpdir_short, daemon):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    sections = """
    [Rack]
    driver = Dummy
    probes = ['node-1', 'node-10', 'node-2']
    parameters = {'interval': 0.05}
    """
    daemon("kwapi-drivers", "--config-file", str(dummy_conf(tmpdir_short, endpoint, sections)))
    api = start_api(daemon, tmpdir_short, probes_endpoint=endpoint, watch_probe="node-1")
    # Each reading publishes node-1, node-10 and node-2 in that order: by the
    # time node-1 arrived 5 times, the others had 4 chances to arrive too.
    wait_for(lambda: api.accepted() >= 5, 20, "five measurements of node-1")
    assert set(get_json(api.url + "/v1/probes/")["probes"]) == {"node-1"}
    receiver = api.healthz()["receiver"]
    assert sum(receiver["rejected"].values()) == 0  # filtered by the subscription
    assert api.process.stop() == 0


def test_invalid_watch_probe_exits_2_with_one_line(tmpdir_short):
    conf = api_config(tmpdir_short, watch_probe="node-1, a/b")
    result = run_command("kwapi-api", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr == (
        f"kwapi-api: error: {conf}: [DEFAULT] watch_probe: invalid probe id 'a/b'\n"
    )


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ("probes_endpoint = http://x\n", "[DEFAULT] probes_endpoint: invalid value"),
        ("probes_endpoint = tcp://256.1.1.1:1\n", "[DEFAULT] probes_endpoint: cannot bind"),
        ("check_drivers_interval = soon\n", "[DEFAULT] check_drivers_interval: invalid value"),
        ("enable_signing = maybe\n", "[DEFAULT] enable_signing: invalid value"),
    ],
)
def test_bad_default_options_exit_2_naming_the_key(tmpdir_short, defaults, expected):
    conf = write_config(
        tmpdir_short,
        "drivers.conf",
        "[DEFAULT]\nmetering_secret = x\n" + defaults + DUMMY,
    )
    assert f"kwapi-drivers: error: {conf}: {expected}" in config_error_line(conf)


def test_missing_secret_and_missing_file(tmpdir_short):
    conf = write_config(
        tmpdir_short,
        "drivers.conf",
        f"[DEFAULT]\nprobes_endpoint = ipc://{tmpdir_short}/d\n" + DUMMY,
    )
    line = config_error_line(conf)
    assert "[DEFAULT] metering_secret: must be set when enable_signing is true" in line
    assert config_error_line(f"{tmpdir_short}/absent.conf") == (
        f"kwapi-drivers: error: cannot read configuration file(s): {tmpdir_short}/absent.conf"
    )


def test_use_json_gives_one_json_object_per_log_line(tmpdir_short, daemon):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    conf = dummy_conf(tmpdir_short, endpoint, defaults="use_json = true\n")
    process = daemon("kwapi-drivers", "--config-file", str(conf))
    process.wait_output("started 1 driver", 15)
    assert process.stop() == 0
    records = [json.loads(line) for line in process.output().splitlines() if line.strip()]
    messages = [record["message"] for record in records]
    assert any(message.startswith("publishing on ipc://") for message in messages)
    assert all({"levelname", "name", "asctime"} <= set(record) for record in records)
