"""Each daemon's --help says first what it does, and names its sample configuration file."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.harness.processes import run_command

ROOT = Path(__file__).parent.parent
DAEMONS = {
    "kwapi-drivers": "kwapi.cmd.drivers",
    "kwapi-forwarder": "kwapi.cmd.forwarder",
    "kwapi-api": "kwapi.cmd.api",
    "kwapi-rrd": "kwapi.cmd.rrd",
    "kwapi-history": "kwapi.cmd.history",
}


@pytest.mark.parametrize("prog", DAEMONS)
def test_help_starts_with_what_the_daemon_does_and_its_sample_file(prog):
    result = run_command(prog, "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    summary = importlib.import_module(DAEMONS[prog]).SUMMARY
    assert lines[0] == f"{prog}: {summary}"
    assert len(lines[0]) < 160  # one line on a terminal, or two
    sample = f"etc/kwapi/{prog.removeprefix('kwapi-')}.conf.sample"
    header = result.stdout.split("usage:", 1)[0]  # before the options
    assert sample in header, result.stdout
    assert (ROOT / sample).is_file()
    assert f"usage: {prog} " in result.stdout  # then oslo.config's usage and options
    assert "--config-file" in result.stdout


def test_help_is_asked_by_h_or_help_before_any_double_dash():
    from kwapi import service

    assert service.asks_for_help(["--config-file", "x.conf", "-h"])
    assert service.asks_for_help(["--help"])
    assert not service.asks_for_help(["--config-file", "x.conf"])
    assert not service.asks_for_help(["--", "--help"])
