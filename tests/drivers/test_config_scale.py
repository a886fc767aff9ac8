"""A machine room in one drivers.conf: 1,000 BMCs and 200 PDUs of 24 outlets.

Load times are measured by the benchmarks, not here; these tests check that
such a file parses, and that one bad section among 1,200 is reported alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import kwapi.drivers.config
from kwapi.config import read_sections
from kwapi.drivers.config import parse_wattmeters
from tests.harness.configs import drivers_conf
from tests.harness.daemons import config_error_line

RACKS = 200  # each: 5 servers with a BMC, then the rack's PDU
OUTLETS = 24
BAD = 900  # index of the faulty section; a BMC (every sixth section is a PDU)


def bmc_section(number: int, port: int = 623) -> str:
    return (
        f"[BMC {number}]\ndriver = Ipmi\nprobes = ['node-{number}']\n"
        f"parameters = {{'host': '10.1.{number // 250}.{number % 250 + 1}', 'port': {port}, "
        f"'username': 'kwapi', 'password': 'secret-{number}', 'interval': 5}}\n"
    )


def pdu_section(rack: int) -> str:
    # Outlets 1 to 5 feed the rack's servers (second power supplies), 23 and 24
    # its switch and fans; the others are unwatched.
    probes = [f"psu2-node-{rack * 5 + outlet}" for outlet in range(5)]
    probes += [None] * (OUTLETS - 7) + [f"rack-{rack}-switch", f"rack-{rack}-fan"]
    return (
        f"[PDU {rack}]\ndriver = Snmp\nprobes = {probes!r}\n"
        f"parameters = {{'host': 'pdu-{rack}.example.org', 'community': 'ro-{rack}', "
        f"'model': 'apc', 'interval': 5}}\n"
    )


def machine_room(bad: str | None = None) -> list[str]:
    """The 1,200 sections in rack order; *bad* replaces the one at index BAD."""
    sections = []
    for rack in range(RACKS):
        sections += [bmc_section(rack * 5 + server) for server in range(5)]
        sections.append(pdu_section(rack))
    if bad is not None:
        sections[BAD] = bad
    return sections


def write_room(directory: Path, bad: str | None = None) -> Path:
    return drivers_conf(directory, f"ipc://{directory}/drivers", "\n".join(machine_room(bad)))


def test_a_machine_room_parses_into_1200_wattmeters(tmp_path):
    wattmeters = parse_wattmeters(read_sections([str(write_room(tmp_path))]))
    assert len(wattmeters) == 1200
    drivers = [meter.driver_name for meter in wattmeters]
    assert (drivers.count("Ipmi"), drivers.count("Snmp")) == (1000, 200)
    assert wattmeters[BAD].name == "BMC 750"
    probes = [probe for meter in wattmeters for probe in meter.probe_ids if probe is not None]
    assert len(probes) == len(set(probes)) == 1000 + 200 * 7
    assert wattmeters[-1].parameters.community.get_secret_value() == "ro-199"


def test_each_driver_class_is_loaded_once_per_parse(tmp_path, monkeypatch):
    loaded: list[str] = []
    real = kwapi.drivers.config.load_driver_class

    def counting(name: str):
        loaded.append(name)
        return real(name)

    monkeypatch.setattr(kwapi.drivers.config, "load_driver_class", counting)
    parse_wattmeters(read_sections([str(write_room(tmp_path))]))
    assert sorted(loaded) == ["Ipmi", "Snmp"]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (bmc_section(750, port=70000), "[BMC 750] parameters['port']: Input should be less than"),
        (
            bmc_section(750).replace("= Ipmi", "= Ipmj"),
            "[BMC 750] driver: unknown driver 'Ipmj' (installed: ",
        ),
        (
            bmc_section(750).replace("node-750", "node-3"),
            "[BMC 750] probes: probe id 'node-3' is already used by wattmeter [BMC 3]",
        ),
    ],
)
def test_one_bad_section_among_1200_is_one_error_line(tmp_path, bad, expected):
    config = write_room(tmp_path, bad)
    line = config_error_line(config)
    assert line.startswith(f"kwapi-drivers: error: {config}: {expected}"), line
    assert "secret-" not in line
