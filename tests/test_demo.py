"""`make run`: bin/kwapi-demo starts the whole stack on etc/kwapi/demo/ and Ctrl-C stops it.

The demo listens where etc/kwapi/demo/ says (127.0.0.1:5000, :5001, :8080,
VictoriaMetrics on :18428, UDP 18935, ipc:///tmp/kwapi-demo/): fixed
addresses, so this test must not run beside a `make run` or another copy of
itself (the suite runs serially; it is skipped when the ports are taken).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness.http import get
from tests.harness.processes import port_taken, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
API = "http://127.0.0.1:5000"
RRD = "http://127.0.0.1:8080"
HISTORY = "http://127.0.0.1:5001"
READY = "Press Ctrl-C to stop every daemon."
DAEMONS = (
    "demo-stream",
    "victoria-metrics",
    "kwapi-drivers",
    "kwapi-forwarder",
    "kwapi-rrd",
    "kwapi-api",
    "kwapi-history",
)
DEMO_PORTS = (5000, 5001, 8080, 18428)


def sessions_alive(sessions: set[int]) -> list[str]:
    """Processes whose session is one of *sessions* (the demo starts each child in its own)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
        state, session = fields.split()[0], int(fields.split()[3])
        if session in sessions and state != "Z":
            alive.append(f"{entry.name} ({command})")
    return alive


class Output:
    """The lines a process prints, collected by a thread so that every wait is bounded."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def get_json(url: str) -> dict | None:
    status, body = get(url, timeout=5)
    return json.loads(body) if status == 200 else None


def probes_ready(since: float) -> dict | None:
    """/v1/probes/ once every demo probe has reported since *since* (demo-stream
    up), else None.  kwapi-api restores the records of an earlier demo run
    from its state file: those do not count."""
    body = get_json(f"{API}/v1/probes/")
    probes = (body or {}).get("probes", {})
    demo = ("demo-node-1", "demo-node-2", "demo-node-3", "demo-switch", "demo-host", "demo-stream")
    if not all(probes.get(probe, {}).get("timestamp", 0) >= since for probe in demo):
        return None
    if probes["demo-host"].get("estimated") != 1 or probes["demo-stream"].get("up") != 1:
        return None
    return probes


def energy_command(lines: list[str]) -> list[str]:
    """The `kwapi energy` command line the demo printed, as an argument list."""
    (command,) = [
        line.strip() for line in lines if line.strip().startswith(".venv/bin/kwapi energy")
    ]
    argv = shlex.split(command)
    assert argv[argv.index("--api") + 1] == HISTORY, command
    assert "--probe" in argv and "--start=-5m" in argv, command
    return argv


def demo_energy(argv: list[str]) -> dict | None:
    """The JSON report of *argv* once every probe asked has samples, else None."""
    result = subprocess.run([*argv, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode != 0:
        return None
    report = json.loads(result.stdout)
    return report if all(p["samples"] > 1 for p in report["probes"].values()) else None


@pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="ffmpeg is not installed"
)
@pytest.mark.timeout(240)
def test_make_run_starts_the_demo_and_ctrl_c_stops_every_daemon():
    if any(map(port_taken, DEMO_PORTS)):
        pytest.skip(f"a port of {DEMO_PORTS} is in use on 127.0.0.1 (a `make run` going on?)")
    started_at = time.time()
    # As `make run` does: $(BIN)/python bin/kwapi-demo, from the repository root.
    process = subprocess.Popen(
        [sys.executable, "bin/kwapi-demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    pids: dict[str, int] = {}
    try:
        wait_for(lambda: READY in output.lines or process.poll() is not None, 30, "the demo")
        assert READY in output.lines, output.text()
        for line in output.lines:
            started = re.fullmatch(r"started (\S+) \(pid (\d+)\), log: .*", line)
            if started:
                pids[started[1]] = int(started[2])
        assert sorted(pids) == sorted(DAEMONS), output.text()
        # The addresses it prints are those of etc/kwapi/demo/.
        assert f"  Graphs: {RRD}/" in output.lines
        assert f"  REST API: curl {API}/v1/probes/" in output.lines

        probes = wait_for(
            lambda: probes_ready(started_at), 60, "every demo probe in kwapi-api, demo-stream up"
        )
        assert probes["demo-host"]["w"] > 0
        streams = get_json(f"{API}/v1/streams/")["streams"]
        assert streams["demo-stream"]["host"] == "demo-host" and streams["demo-stream"]["up"]

        status, page = get(f"{RRD}/last/minute/")
        assert status == 200 and b"Power, last 5 minutes" in page
        wait_for(
            lambda: b'data-probe="demo-host"' in get(f"{RRD}/last/minute/")[1],
            30,
            "demo-host's graph on the rrd page",
        )

        # The `kwapi energy` command it prints works on what kwapi-history wrote.
        command = energy_command(output.lines)
        report = wait_for(lambda: demo_energy(command), 60, "the demo's energy from kwapi-history")
        assert report["probes"]["demo-node-1"]["kwh"] > 0, report

        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(60) == 0, output.text()
        output.join(10)
        for name in DAEMONS:
            assert f"{name} stopped" in output.lines, output.text()
        assert not any(" exited with status " in line for line in output.lines), output.text()
        assert sessions_alive(set(pids.values())) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in pids.values():  # each child leads its own process group
            if sessions_alive({pid}):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        if process.stdout:
            process.stdout.close()
        for log in sorted((ROOT / "var" / "demo" / "logs").glob("*.log")):  # shown on failure
            print(f"----- end of {log.name} -----\n{log.read_text(errors='replace')[-3000:]}")
