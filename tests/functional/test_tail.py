"""kwapi tail: what an operator sees, including why messages fail verification."""

import re
import subprocess
import time

from kwapi.bus.protocol import Measurement
from tests.harness.bus import SECRET, bus_publisher
from tests.harness.processes import VENV_BIN


def run_tail(endpoint, *args, publisher, count=3, probes=("node-1",)):
    """Run `kwapi tail` while publishing until it has printed *count* lines.

    Each round publishes one measurement of each of *probes*, in order.
    """
    process = subprocess.Popen(
        [
            str(VENV_BIN / "kwapi"),
            "tail",
            "--endpoint",
            endpoint,
            "--count",
            str(count),
            "--timeout",
            "20",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    n = 0
    while process.poll() is None:
        n += 1
        for probe in probes:
            publisher.publish(Measurement(probe, time.time(), {"w": 100.0 + n, "fps": 25}))
        time.sleep(0.05)
    out, err = process.communicate(5)
    assert process.returncode == 0, err
    return out.splitlines()


def test_tail_prints_measurements(tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/drv"
    publisher = bus_publisher(endpoint)
    try:
        lines = run_tail(endpoint, "--secret", SECRET, publisher=publisher)
    finally:
        publisher.close()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(
            r"node-1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} w=\d+(\.\d+)? fps=25", line
        ), line


def test_tail_marks_messages_that_fail_verification(tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/drv"
    publisher = bus_publisher(endpoint, "another-secret")
    try:
        lines = run_tail(endpoint, "--secret", SECRET, publisher=publisher, count=2)
    finally:
        publisher.close()
    assert lines == ["REJECTED 'node-1.' bad_signature: signature does not match any secret"] * 2


def test_tail_filters_by_probe_and_rejects_bad_ids(tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/drv"
    publisher = bus_publisher(endpoint)
    try:
        # node-1 comes last in each round: any other probe let through would
        # be printed before it.
        lines = run_tail(
            endpoint,
            "--probe",
            "node-1",
            "--secret",
            SECRET,
            publisher=publisher,
            count=4,
            probes=("node-10", "node-2", "node-1"),
        )
    finally:
        publisher.close()
    assert len(lines) == 4
    assert all(line.startswith("node-1 ") for line in lines), lines
    result = subprocess.run(
        [str(VENV_BIN / "kwapi"), "tail", "--endpoint", endpoint, "--probe", "a b"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "invalid probe id 'a b'" in result.stderr
