"""Wattmetre driver: real-format CSV lines from a real command and real files."""

from __future__ import annotations

import itertools
import logging
import os
import shlex
import sys
from pathlib import Path

import pytest

from kwapi.bus.protocol import Batch
from kwapi.drivers.wattmetre import NOISE, NOT_OK, WattmetreDriver, parse_line
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import RunningDriver, warnings_about
from tests.harness.processes import wait_for

SIMULATOR = Path(__file__).parent / "simulators" / "wattmetre_meter.py"

#: What the reader writes: a banner and a header, rounds every 20 ms with
#: empty ports, a round whose status is not OK, lines that are not rounds.
SCRIPT = [
    "wattmetre-read v3.2 on /dev/ttyUSB0, 4 ports",
    "#id,flags,timestamp,status,p0,p1,p2,p3",
    "1,0x1f,1795000000.000000000,OK,101.5,55.25,7.0,0.5",
    "2,0x1f,1795000000.020000000,OK,102.0,,7.125,0.5",
    "3,0x1f,1795000000.040000000,ERR,0,0,0,0",
    "4,0x1f,1795000000.060000000,OK,103.5,56.0",
    "5,0x1f,garbage,OK,1,2,3,4",
    "",
    "6,0x1f,1795000000.080000000,OK,104.0,57.5,8.0,0.5",
    "7,0x1f,1795000000.100000000,OK,1.0,abc,3.0,0.5",
    "8,0x1f,1795000000.120000000,OK,105.0,58.0,9.0,0.5\r",
]
PROBES = ["p0", "p1", None, "p3"]
#: What the probes of PROBES publish from SCRIPT (port 2 is nobody's).
EXPECTED = {
    "p0": [("000", 101.5), ("020", 102.0), ("060", 103.5), ("080", 104.0), ("120", 105.0)],
    "p1": [("000", 55.25), ("060", 56.0), ("080", 57.5), ("120", 58.0)],
    "p3": [("000", 0.5), ("020", 0.5), ("080", 0.5), ("120", 0.5)],
}


def expected(base: str = "1795000000", shift: int = 0) -> dict[str, list[tuple[float, float]]]:
    """EXPECTED as (timestamp, watts), seconds moved by *shift*."""
    return {
        probe: [(float(f"{int(base) + shift}.{ms}000000"), watts) for ms, watts in rounds]
        for probe, rounds in EXPECTED.items()
    }


def shifted(lines: list[str], shift: int) -> list[str]:
    return [line.replace("1795000000.", f"{1795000000 + shift}.") for line in lines]


def by_probe(samples) -> dict[str, list[tuple[float, float]]]:
    result: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        result.setdefault(sample.probe_id, []).append((sample.timestamp, sample.meters["w"]))
    return result


def command(*args: str) -> str:
    return shlex.join([sys.executable, str(SIMULATOR), *args])


def test_parse_line():
    assert parse_line("1,0x1f,1795000000.000000005,OK,1.5,,2") == (
        1795000000.000000005,
        [1.5, None, 2.0],
    )
    assert parse_line("1,0x1f,1795000000,OK,") == (1795000000.0, [None])
    assert parse_line("1,0x1f,1795000000.5,KO,1") == NOT_OK
    for noise in ("", "hello", "1,2,3", "a,b,1.5e9,OK,1", "1,2,17950.1.2,OK,1", "1,2,3,OK,x"):
        assert parse_line(noise) == NOISE, noise


def test_lines_of_a_command_become_batched_samples_at_their_own_timestamps(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    script = tmp_path / "lines.csv"
    script.write_text("\n".join(SCRIPT) + "\n")
    with RunningDriver(
        WattmetreDriver, PROBES, command=command("--lines", str(script)), batch=0.2
    ) as run:
        run.wait_samples(13)
        wait_for(lambda: run.driver.flush_due() is None, 5, "the last batch sent")
    assert all(isinstance(message, Batch) for message in run.measurements)
    assert by_probe(run.samples) == expected()
    # Each kind of discarded line is a warning once, then debug.
    [noise] = warnings_about(caplog, f"({NOISE})")
    assert "wattmetre-read v3.2" in noise
    [status] = warnings_about(caplog, f"({NOT_OK})")
    assert "ERR" in status
    assert caplog.text.count(f"({NOISE})") == 4  # banner, header, garbage, abc
    assert run.driver.health.read_errors == {}


def test_a_command_that_exits_fails_the_driver_which_runs_it_again(caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    reader = command("--live", "2", "--for", "0.3", "--exit", "3")
    with RunningDriver(
        WattmetreDriver, ["a", "b"], command=reader, batch=0.1, max_backoff=0.2
    ) as run:
        wait_for(lambda: run.driver.health.restarts["device_gone"] >= 2, 15, "two exits")
        wait_for(lambda: run.driver.flush_due() is None, 5, "the last batch sent")
        samples = by_probe(run.samples)
    # Each exit is one outage, logged once (the device came back in between).
    exits = warnings_about(caplog, "exited with status 3")
    assert len(exits) == run.driver.health.restarts["device_gone"] >= 2
    assert exits[0].endswith("exited with status 3: meter unplugged; retrying every 0.2 s at most")
    assert len(warnings_about(caplog, "device is back")) >= len(exits) - 1
    stamps = [stamp for stamp, _ in samples["a"]]
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))
    # Samples of at least two runs of the command (each started by a setup).
    starts = [r.created for r in caplog.records if "reading command" in r.getMessage()]
    spans = itertools.pairwise([*starts, float("inf")])
    runs = [sum(start <= stamp < end for stamp in stamps) for start, end in spans]
    assert sum(count >= 10 for count in runs) >= 2, runs  # about 15 rounds a run
    # Port 1 is empty every fifth round: fewer samples for b.
    assert 0.7 * len(stamps) <= len(samples["b"]) < len(stamps)
    assert {watts for _, watts in samples["a"]} <= {100.0 + k * 0.125 for k in range(7)}


def wait_reading(caplog, path: Path) -> None:
    wait_for(lambda: f"reading file {path}" in caplog.text, 10, f"the driver on {path.name}")


def append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_an_hourly_series_of_files_is_followed_across_a_rotation(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    pattern = str(tmp_path / "power.csv.%Y-%m-%dT%H")
    (tmp_path / "power.csv.2026-12-06T09.gz").write_bytes(b"\x1f\x8b old hour, compressed")
    (tmp_path / "power.csv.2026-12-06T09").write_text("\n".join(shifted(SCRIPT, -7200)) + "\n")
    ten = tmp_path / "power.csv.2026-12-06T10"
    ten.write_text("\n".join(shifted(SCRIPT, -3600)) + "\n")  # before the driver: not read
    with RunningDriver(WattmetreDriver, PROBES, path=pattern, batch=0.2) as run:
        wait_reading(caplog, ten)
        append(ten, "\n".join(SCRIPT) + "\n")
        append(ten, "9,0x1f,1795000000.14")  # the reader stopped mid-line at the rotation
        eleven = tmp_path / "power.csv.2026-12-06T11"
        eleven.write_text("\n".join(shifted(SCRIPT, 3600)) + "\n")
        run.wait_samples(26)
        wait_for(lambda: run.driver.flush_due() is None, 5, "the last batch sent")
        wait_reading(caplog, eleven)
    got = by_probe(run.samples)
    this_hour, next_hour = expected(), expected(shift=3600)
    assert got == {probe: this_hour[probe] + next_hour[probe] for probe in EXPECTED}
    assert "1795000000.14" in caplog.text  # the unfinished line, discarded


def test_a_file_replaced_under_the_same_name_is_read_from_its_start(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="kwapi.drivers")
    path = tmp_path / "power.csv"
    path.write_text("")
    with RunningDriver(WattmetreDriver, PROBES, path=str(path), batch=0.2) as run:
        wait_reading(caplog, path)
        append(path, "\n".join(SCRIPT) + "\n")
        run.wait_samples(13)
        os.rename(path, tmp_path / "power.csv.1")
        path.write_text("\n".join(shifted(SCRIPT, 1)) + "\n")
        run.wait_samples(26)
        wait_for(lambda: run.driver.flush_due() is None, 5, "the last batch sent")
    got = by_probe(run.samples)
    first, second = expected(), expected(shift=1)
    assert got == {probe: first[probe] + second[probe] for probe in EXPECTED}


def test_kwapi_drivers_publishes_a_wattmetre_at_fifty_hertz_in_one_second_batches(kwapi_drivers):
    process, client = kwapi_drivers(
        f"""
        [Lab wattmetre]
        driver = Wattmetre
        probes = ['node-1', None, 'node-3']
        parameters = {{'command': {command("--live", "3")!r}}}
        """
    )
    messages = client.collect(6, timeout=20)
    assert {message.probe_id for message in messages} == {"node-1", "node-3"}
    assert all(isinstance(message, Batch) for message in messages)
    full = messages[2:]  # the first window may be partial
    assert all(45 <= len(message) <= 55 for message in full), [len(m) for m in full]
    base = {"node-1": 100.0, "node-3": 300.0}  # ports 0 and 2
    for message in full:
        gaps = [b - a for a, b in itertools.pairwise(message.timestamps)]
        assert sum(gaps) / len(gaps) == pytest.approx(0.02, rel=0.1)
        ripple = {base[message.probe_id] + k * 0.125 for k in range(7)}
        assert set(message.meters["w"]) <= ripple
    assert process.stop() == 0


@pytest.mark.parametrize(
    ("parameters", "expected_error"),
    [
        ("{}", "give either 'command' or 'path'"),
        ("{'command': 'cat', 'path': '/tmp/x'}", "give either 'command' or 'path'"),
        ("{'command': 'no-such-wattmetre-reader -v'}", "'no-such-wattmetre-reader' not found"),
        ("{'command': 'read \"unclosed'}", "cannot split the command"),
        ("{'path': '/tmp/x', 'interval': 0.0001}", "parameters['interval']"),
    ],
)
def test_a_bad_section_stops_kwapi_drivers_in_one_line(tmp_path, parameters, expected_error):
    line = expect_config_error(tmp_path, "Lab wattmetre", "Wattmetre", "['n1']", parameters)
    assert expected_error in line
