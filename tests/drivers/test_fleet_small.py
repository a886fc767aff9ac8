"""A small machine room in one kwapi-drivers: 50 BMCs and 10 PDUs, every reading arrives."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.drivers.simulators.bmc_fleet_fast import BmcFleetProcess
from tests.harness.processes import wait_for

if not (Path(__file__).parent / "simulators" / "pdu_fleet.py").exists():
    pytest.skip("tests/drivers/simulators/pdu_fleet.py is missing", allow_module_level=True)

from tests.drivers.simulators.pdu_fleet import FleetProcess, watts

PASSWORD = "fleet-Passw0rd"
BMCS, PDUS, OUTLETS = 50, 10, 24
INTERVAL = 0.5
WINDOW = 3.0  # seconds in which every probe must be read at least MIN_READINGS times
MIN_READINGS = 3  # of the 6 due: the machine may be loaded


def sections(bmc_ports: list[int], pdu_ports: list[int]) -> str:
    """One Ipmi section per BMC, one Snmp section per PDU, every INTERVAL s."""
    text = "".join(
        f"[BMC {i}]\ndriver = Ipmi\nprobes = ['node-{i}']\n"
        f"parameters = {{'host': '127.0.0.1', 'port': {port}, 'username': 'admin', "
        f"'password': '{PASSWORD}', 'interval': {INTERVAL}}}\n\n"
        for i, port in enumerate(bmc_ports)
    )
    return text + "".join(
        f"[PDU {p}]\ndriver = Snmp\n"
        f"probes = {[f'pdu-{p}-{k}' for k in range(1, OUTLETS + 1)]!r}\n"
        f"parameters = {{'host': '127.0.0.1', 'port': {port}, 'community': 'public', "
        f"'model': 'apc', 'interval': {INTERVAL}}}\n\n"
        for p, port in enumerate(pdu_ports)
    )


def test_every_bmc_and_outlet_reading_arrives(kwapi_drivers):
    expected = {f"node-{i}": 100.0 + i for i in range(BMCS)}
    expected |= {
        f"pdu-{p}-{k}": float(watts(p, k)) for p in range(PDUS) for k in range(1, OUTLETS + 1)
    }
    settings = [{"password": PASSWORD, "watts": 100 + i} for i in range(BMCS)]
    with (
        BmcFleetProcess(settings) as bmcs,
        FleetProcess(pdus=PDUS, outlets=OUTLETS, model="apc", community="public") as pdus,
    ):
        process, client = kwapi_drivers(sections(bmcs.ports, pdus.ports))
        seen: dict[str, list[float]] = defaultdict(list)

        def collect(seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    measurement = client.receive(timeout=left)
                except AssertionError:  # nothing more before the deadline
                    break
                probe = measurement.probe_id
                assert measurement.meters == {"w": expected[probe]}, measurement
                seen[probe].append(measurement.timestamp)
            return set(seen) == set(expected)

        wait_for(lambda: collect(0.5), 60, "a reading of every BMC and outlet")
        seen.clear()
        collect(WINDOW)
        few = {probe: len(seen[probe]) for probe in expected if len(seen[probe]) < MIN_READINGS}
        assert not few, f"probes read fewer than {MIN_READINGS} times in {WINDOW} s: {few}"
        assert not client.rejected, client.rejected
        assert process.stop(timeout=15) == 0
