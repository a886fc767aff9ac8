"""kwapi tail: what an operator sees, including why messages fail verification."""

import json
import re
import subprocess
import time

from kwapi.bus.protocol import Batch, Measurement
from tests.harness.bus import SECRET, bus_publisher
from tests.harness.processes import VENV_BIN


def one_sample(probe, n):
    return Measurement(probe, time.time(), {"w": 100.0 + n, "fps": 25})


def run_tail(endpoint, *args, publisher, count=3, probes=("node-1",), make=one_sample):
    """Run `kwapi tail` while publishing until it has printed *count* lines.

    Each round publishes one message made by *make* for each of *probes*, in order.
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
            publisher.publish(make(probe, n))
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


def test_tail_summarises_a_batch_on_one_line(tmpdir_short):
    start = time.time() - 60

    def fifty_samples(probe, n):
        stamps = [start + n + i * 0.02 for i in range(50)]
        return Batch(probe, stamps, {"w": [100.0 + i % 7 for i in range(50)], "up": [1.0] * 50})

    lines = tail_of_new_bus(tmpdir_short, fifty_samples)
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(
            r"node-1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} batch of 50 over 0\.980 s: "
            r"up=1 \(min 1, max 1\) w=100 \(min 100, max 106\)",
            line,
        ), line


def test_tail_shows_why_a_batch_is_rejected(tmpdir_short):
    def decreasing(probe, n):
        body = {"probe_id": probe, "timestamps": [time.time(), time.time() - 1], "w": [1, 2]}
        return RawPayload(probe, json.dumps(body).encode())

    lines = tail_of_new_bus(tmpdir_short, decreasing)
    assert lines == ["REJECTED 'node-1.' bad_value: timestamps are not strictly increasing"] * 3


def tail_of_new_bus(tmpdir_short, make):
    """Three lines of `kwapi tail` on a bus where *make* builds every message."""
    endpoint = f"ipc://{tmpdir_short}/drv"
    publisher = bus_publisher(endpoint)
    try:
        return run_tail(endpoint, "--secret", SECRET, publisher=publisher, make=make)
    finally:
        publisher.close()


class RawPayload:
    """A payload sent as it is, valid or not (the publisher signs what encode() returns)."""

    def __init__(self, probe, payload):
        self.probe, self.payload = probe, payload

    def encode(self):
        return f"{self.probe}.".encode(), self.payload


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
