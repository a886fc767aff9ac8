"""bin/kwapi-drivers-conf-from-csv: drivers.conf sections from an inventory CSV."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kwapi.config import read_sections
from kwapi.drivers.config import Wattmeter, parse_wattmeters

SCRIPT = Path(__file__).parent.parent.parent / "bin" / "kwapi-drivers-conf-from-csv"
PROG = "kwapi-drivers-conf-from-csv"
PASSWORD = "Pa55,w;rd#'\"x"  # CSV, ini and Python literal quoting all at once
HEADER = "name,driver,probes,host,port,username,password,community,model,interval\n"
INVENTORY = (
    HEADER + "Node 1 BMC,ipmi,node-1,10.0.40.1,,kwapi,s3cret-1,,,5\n"
    'Node 2 BMC,IPMI,node-2,10.0.40.2,6230,kwapi,"Pa55,w;rd#\'""x",,,\n'
    "Rack 1 PDU,Snmp,node-1-b node-2-b - switch-1,pdu-r1.example.org,,,,ro-rack1,apc,2.5\n"
)


def run(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    """Run the script on *text* written to tmp_path/inventory.csv."""
    (tmp_path / "inventory.csv").write_text(text)
    return subprocess.run(
        [sys.executable, str(SCRIPT), "inventory.csv", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def load(tmp_path: Path, text: str) -> list[Wattmeter]:
    """The wattmeters of drivers.conf text, parsed as kwapi-drivers does."""
    conf = tmp_path / "room.conf"
    conf.write_text(text)
    return parse_wattmeters(read_sections([str(conf)]))


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a refused inventory; checks exit status 2 and no output."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: error: inventory.csv"), lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0].removeprefix(f"{PROG}: error: ")


def test_script_is_an_executable_python_3_script():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


def test_sections_in_csv_order_with_drivers_probes_and_parameters(tmp_path):
    result = run(tmp_path, INVENTORY)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    bmc1, bmc2, pdu = load(tmp_path, result.stdout)
    assert [m.name for m in (bmc1, bmc2, pdu)] == ["Node 1 BMC", "Node 2 BMC", "Rack 1 PDU"]
    assert [m.driver_name for m in (bmc1, bmc2, pdu)] == ["Ipmi", "Ipmi", "Snmp"]
    assert (bmc1.probe_ids, bmc2.probe_ids) == (("node-1",), ("node-2",))
    assert pdu.probe_ids == ("node-1-b", "node-2-b", None, "switch-1")
    assert (bmc1.parameters.host, bmc1.parameters.port, bmc1.parameters.interval) == (
        "10.0.40.1",
        623,
        5.0,
    )
    assert bmc1.parameters.password.get_secret_value() == "s3cret-1"
    assert bmc2.parameters.password.get_secret_value() == PASSWORD
    assert (bmc2.parameters.port, bmc2.parameters.interval) == (6230, 1.0)
    assert pdu.parameters.community.get_secret_value() == "ro-rack1"
    assert (pdu.parameters.model, pdu.parameters.interval) == ("apc", 2.5)


def test_snmp_v3_columns(tmp_path):
    text = (
        "name,driver,probes,host,protocol,user,auth_key,auth_protocol,priv_key,model\n"
        "PDU 7,snmp,a b,pdu-7,3,kwapi,auth-key-7,sha256,priv-key-7,eaton\n"
    )
    result = run(tmp_path, text)
    assert result.returncode == 0, result.stderr
    [pdu] = load(tmp_path, result.stdout)
    params = pdu.parameters
    assert (params.protocol, params.user, params.auth_protocol) == ("3", "kwapi", "sha256")
    assert params.auth_key.get_secret_value() == "auth-key-7"
    assert params.priv_key.get_secret_value() == "priv-key-7"


def test_output_file_is_readable_by_its_owner_only(tmp_path):
    output = tmp_path / "room.conf"
    output.write_text("old")
    output.chmod(0o644)
    result = run(tmp_path, INVENTORY, "-o", str(output))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert [m.name for m in parse_wattmeters(read_sections([str(output)]))][-1] == "Rack 1 PDU"


def test_comments_and_blank_rows_are_skipped_and_counted(tmp_path):
    text = HEADER + "# rack 1\n\nA,Ipmi,a,h,,u,p,,,\nB,Ipmi,b,h,,u,,,,\n"
    assert error_line(run(tmp_path, text)) == (
        "inventory.csv line 5: password: required by driver Ipmi"
    )


SECRET = "TopSecret-9"
ROW = f"Node 9 BMC,Ipmi,node-9,10.0.40.9,,kwapi,{SECRET},,,"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name,driver,probes\n", " line 1: missing column 'host'"),
        (HEADER.replace("\n", ",colour\n") + ROW + ",red\n", " line 1: unknown column 'colour'"),
        (HEADER.replace("model", "port"), " line 1: column 'port' appears twice"),
        (HEADER, ": no row after the header"),
        (HEADER + ROW.replace(",Ipmi,", ",Ipmy,"), " line 2: driver: unknown driver 'Ipmy'"),
        (HEADER + ROW.replace(",kwapi,", ",,"), " line 2: username: required by driver Ipmi"),
        (HEADER + ROW.replace("Node 9 BMC", ""), " line 2: name: empty"),
        (HEADER + ROW.replace("node-9", ""), " line 2: probes: empty"),
        (HEADER + ROW.replace("node-9", "node 9"), " line 2: probes: driver Ipmi: a BMC"),
        (HEADER + ROW.replace(",,,", ",,,x"), " line 2: interval: Input should be a valid number"),
        (HEADER + ROW.replace(",,kwapi", ",99999,kwapi"), " line 2: port: Input should be less"),
        (HEADER + ROW + ",x,y", " line 2: 12 fields, the header has 10"),
        (
            HEADER + ROW.replace(",,,", ",public,,"),
            " line 2: community: not a parameter of driver Ipmi",
        ),
        (HEADER + ROW.replace("Node 9 BMC", "DEFAULT"), " line 2: name: 'DEFAULT' is a reserved"),
        (HEADER + ROW + "\n" + ROW, " line 3: name: 'Node 9 BMC' is also on line 2"),
        (
            HEADER + ROW + "\n" + ROW.replace("Node 9", "Node 10"),
            " line 3: probes: probe 'node-9' is also on line 2",
        ),
        (
            HEADER + "PDU,snmp,a b a,pdu,,,,x,apc,",
            " line 2: probes: probe id 'a' appears twice",
        ),
        (
            HEADER + "PDU,snmp,a b,pdu,,,,x,,",
            " line 2: driver Snmp: set exactly one of the parameters 'oid' and 'model'",
        ),
        (HEADER + "PDU,snmp,- -,pdu,,,,x,apc,", " line 2: probes: every probe is None"),
    ],
)
def test_a_bad_inventory_is_one_error_line_naming_the_csv_line(tmp_path, text, expected):
    result = run(tmp_path, text, "-o", "room.conf")
    line = error_line(result)
    assert line.startswith(f"inventory.csv{expected}"), line
    assert SECRET not in result.stderr
    assert not (tmp_path / "room.conf").exists()


def test_errors_never_show_a_secret(tmp_path):
    text = HEADER + ROW.replace(",kwapi,", ",a-user-name-too-long-for-a-bmc,")
    result = run(tmp_path, text)
    assert error_line(result) == (
        "inventory.csv line 2: username: String should have at most 16 characters"
    )
    assert SECRET not in result.stderr


def test_missing_inventory_is_one_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "absent.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{PROG}: error: {tmp_path / 'absent.csv'}: cannot read: ")
    assert len(result.stderr.splitlines()) == 1


def room_inventory(servers: int = 800, pdus: int = 200) -> str:
    """*servers* BMC rows then *pdus* PDU rows of 24 outlets, every fourth unwatched."""
    rows = [
        f"BMC {n},Ipmi,node-{n},10.2.{n // 250}.{n % 250 + 1},,kwapi,pw-{n},,,5"
        for n in range(servers)
    ]
    for pdu in range(pdus):
        outlets = " ".join("-" if o % 4 == 3 else f"pdu-{pdu}-{o}" for o in range(24))
        rows.append(f"PDU {pdu},Snmp,{outlets},pdu-{pdu}.example.org,,,,ro-{pdu},raritan,")
    return HEADER + "\n".join(rows) + "\n"


def test_a_1000_row_inventory_round_trips(tmp_path):
    result = run(tmp_path, room_inventory())
    assert result.returncode == 0, result.stderr
    meters = load(tmp_path, result.stdout)
    assert len(meters) == 1000
    assert [m.name for m in meters[798:802]] == ["BMC 798", "BMC 799", "PDU 0", "PDU 1"]
    bmc = meters[123]
    assert (bmc.probe_ids, bmc.parameters.host) == (("node-123",), "10.2.0.124")
    assert bmc.parameters.password.get_secret_value() == "pw-123"
    pdu = meters[-1]
    assert pdu.probe_ids[:4] == ("pdu-199-0", "pdu-199-1", "pdu-199-2", None)
    assert sum(probe is None for probe in pdu.probe_ids) == 6
    assert pdu.parameters.community.get_secret_value() == "ro-199"


def literal_block(text: str, marker: str) -> str:
    """The reST literal block that follows the first *marker* (ending in ::) of *text*."""
    lines = text[text.index(marker) + len(marker) :].splitlines()[2:]
    block = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        block.append(line.removeprefix("    "))
    return "\n".join(block).strip() + "\n"


def test_the_documented_example_is_what_the_script_writes(tmp_path):
    doc = (SCRIPT.parent.parent / "doc" / "drivers" / "index.rst").read_text()
    inventory = literal_block(doc, "their rack's PDU::")
    result = run(tmp_path, inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout == literal_block(doc, "\ngives::")
    broken = inventory.replace(",kwapi,change-me-2", ",,change-me-2")
    documented = literal_block(doc, "ever shown::").removeprefix(f"{PROG}: error: ")
    assert error_line(run(tmp_path, broken)) == documented.strip()
