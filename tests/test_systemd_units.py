"""The shipped systemd units are valid and hardened."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import VENV_BIN

UNITS = sorted((Path(__file__).parent.parent / "etc" / "systemd").glob("kwapi-*.service"))


def test_every_daemon_has_a_unit():
    assert [unit.stem for unit in UNITS] == [
        "kwapi-api",
        "kwapi-drivers",
        "kwapi-forwarder",
        "kwapi-rrd",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_runs_unprivileged_and_hardened(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(unit)
    service = parser["Service"]
    assert service["User"] == "kwapi"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ProtectSystem"] == "strict"
    assert service["RestartPreventExitStatus"] == "2"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_accepts_the_unit(unit, tmp_path):
    # Point ExecStart at the commands installed in this virtualenv.
    text = unit.read_text().replace("/usr/bin/", f"{VENV_BIN}/")
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
