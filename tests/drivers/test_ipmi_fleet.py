"""A machine room's worth of BMCs in one kwapi-drivers: dead ones never silence the living.

The regression test of the fleet freeze: with pyghmi's client, a few BMCs
that never answer, or that hold another password, among a hundred stopped
every BMC's readings within a minute (a lock-order deadlock inside pyghmi).
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

from tests.harness.processes import stop_process, wait_for

pytest.importorskip("pyghmi.ipmi.bmc")

PASSWORD = "s3cret-Passw0rd"
BMCS_PER_SIMULATOR = 25


class BmcFleet:
    """tests.drivers.simulators.bmc_fleet processes serving *settings*, in order.

    The first *apart* BMCs get a process of their own, the others processes
    of BMCS_PER_SIMULATOR. A process of pyghmi's BMC server that also served
    the BMCs refusing logins was seen to stop answering all its BMCs for
    about 8 s, while the BMCs of the other processes were read on time: kept
    apart, the dead and refusing BMCs' simulator cannot stall living ones,
    and a gap in the living BMCs' readings is kwapi's.
    """

    def __init__(self, settings: list[dict], apart: int = 0) -> None:
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        if apart:
            self.ports += self._start(settings[:apart])
        for first in range(apart, len(settings), BMCS_PER_SIMULATOR):
            chunk = settings[first : first + BMCS_PER_SIMULATOR]
            self.ports += self._start(chunk)

    def _start(self, chunk: list[dict]) -> list[int]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.drivers.simulators.bmc_fleet"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        process.stdin.write(json.dumps(chunk) + "\n")
        process.stdin.flush()
        line: dict[str, str] = {}
        reader = threading.Thread(target=lambda: line.update(text=process.stdout.readline()))
        reader.start()
        reader.join(30)
        words = line.get("text", "").split()
        assert words[:1] == ["ready"], f"BMC simulator did not start: {line!r}"
        return [int(port) for port in words[1:]]

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process, signum=signal.SIGKILL)
            process.stdin.close()
            process.stdout.close()


def ipmi_sections(ports: list[int], passwords: list[str], interval: float) -> str:
    return "".join(
        f"[BMC {index}]\ndriver = Ipmi\nprobes = ['node-{index}']\n"
        f"parameters = {{'host': '127.0.0.1', 'port': {port}, 'username': 'admin', "
        f"'password': '{password}', 'interval': {interval}}}\n\n"
        for index, (port, password) in enumerate(zip(ports, passwords, strict=True))
    )


def test_dead_and_refusing_bmcs_never_stop_the_living(kwapi_drivers):
    """100 BMCs: 4 never answer, 4 hold another password; the 92 others read every second."""
    silent = set(range(4))
    refusing = set(range(4, 8))
    settings = [
        {"username": "admin", "password": PASSWORD, "watts": 100 + index, "silent": index in silent}
        for index in range(100)
    ]
    fleet = BmcFleet(settings, apart=len(silent | refusing))
    try:
        passwords = ["another-Passw0rd" if index in refusing else PASSWORD for index in range(100)]
        process, client = kwapi_drivers(ipmi_sections(fleet.ports, passwords, interval=1.0))
        living = {f"node-{index}" for index in range(100) if index not in silent | refusing}
        seen: dict[str, list[float]] = defaultdict(list)

        def collect_until(deadline: float) -> None:
            while time.monotonic() < deadline:
                try:
                    measurement = client.receive(timeout=max(0.01, deadline - time.monotonic()))
                except AssertionError:  # nothing more before the deadline
                    return
                assert measurement.probe_id in living, measurement
                assert measurement.meters == {"w": 100 + int(measurement.probe_id[5:])}
                seen[measurement.probe_id].append(measurement.timestamp)

        def all_living_read() -> bool:
            collect_until(time.monotonic() + 0.5)
            return set(seen) == living

        wait_for(all_living_read, 60, "a reading of every living BMC")
        seen.clear()
        start = time.time()
        # Long enough for every dead BMC's first timeouts and retries to happen inside it.
        collect_until(time.monotonic() + 45)
        end = time.time()
        late = {}
        for probe in sorted(living):
            stamps = [start, *seen.get(probe, []), end]
            gap = max(b - a for a, b in itertools.pairwise(stamps))
            if gap > 2.0:
                late[probe] = round(gap, 1)
        assert not late, f"longest gap between readings above 2 s: {late}"
        assert process.stop(timeout=15) == 0
        output = process.output()
        for index in silent | refusing:
            where = f"127.0.0.1:{fleet.ports[index]}:"
            lines = [line for line in output.splitlines() if where in line]
            assert len(lines) == 1, (index, lines)
    finally:
        fleet.stop()
