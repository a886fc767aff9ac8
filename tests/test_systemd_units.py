"""The shipped systemd units are valid and hardened."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.processes import VENV_BIN

UNITS = sorted((Path(__file__).parent.parent / "etc" / "systemd").glob("kwapi-*.service"))


def test_every_daemon_has_a_unit():
    assert [unit.stem for unit in UNITS] == [
        "kwapi-api",
        "kwapi-drivers",
        "kwapi-forwarder",
        "kwapi-history",
        "kwapi-rrd",
    ]


def read_unit(unit: Path) -> configparser.ConfigParser:
    """The unit's settings (of a setting given twice, the last)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(unit)
    return parser


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_runs_unprivileged_and_hardened(unit):
    service = read_unit(unit)["Service"]
    assert service["User"] == "kwapi"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ProtectSystem"] == "strict"
    assert service["RestartPreventExitStatus"] == "2"


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_waits_for_readiness_and_watches_the_daemon(unit):
    # The daemons say READY=1 once bound and subscribed, feed the watchdog from
    # their main loops (tests/test_systemd_notify.py), and only the main process may.
    service = read_unit(unit)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s"
    assert service["Restart"] == "on-failure"  # a watchdog timeout is a failure
    assert service["KillSignal"] == "SIGTERM"  # what makes a daemon say STOPPING=1
    # log_file = /var/log/kwapi/<daemon>.log is writable under ProtectSystem=strict.
    assert service["LogsDirectory"] == "kwapi"


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_units_share_one_private_tmp_for_the_default_ipc_endpoints(unit):
    # The default endpoints are ipc:///tmp/kwapi-drivers and ipc:///tmp/kwapi-forwarder:
    # with a private /tmp each, no daemon would reach another's socket.
    settings = read_unit(unit)
    assert settings["Service"]["PrivateTmp"] == "yes"
    others = {other.name for other in UNITS if other != unit}
    assert set(settings["Unit"]["JoinsNamespaceOf"].split()) == others
    if unit.stem != "kwapi-drivers":
        assert "kwapi-drivers.service" in settings["Unit"]["After"].split()
    # Ordering only: a plugin host without drivers starts its plugins alone.
    for dependency in ("Wants", "Requires", "BindsTo"):
        assert not set(settings["Unit"].get(dependency, "").split()) & others


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_accepts_the_unit(unit, tmp_path):
    # Installed together, as in /etc/systemd/system, so that the units they name
    # exist; ExecStart points at the commands installed in this virtualenv.
    for each in UNITS:
        (tmp_path / each.name).write_text(each.read_text().replace("/usr/bin/", f"{VENV_BIN}/"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # systemd skips what it cannot parse (an unknown key, a bad unit name in
    # JoinsNamespaceOf=...) with a warning ending in "ignoring", and still exits 0.
    assert "ignoring" not in result.stderr, result.stderr
