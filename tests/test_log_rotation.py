"""Log rotation: SIGHUP reopens the log file and stops nothing; the shipped logrotate file."""

from __future__ import annotations

import grp
import logging
import logging.handlers
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kwapi import service
from kwapi.bus.protocol import Measurement
from tests.harness.bus import bus_publisher
from tests.harness.daemons import start_api
from tests.harness.processes import wait_for

LOGROTATE_CONF = Path(__file__).parent.parent / "etc" / "logrotate.d" / "kwapi"
LOGROTATE = shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin:/sbin")


@pytest.mark.parametrize(
    "handler_class", [logging.handlers.WatchedFileHandler, logging.FileHandler]
)
def test_reopen_log_files_follows_a_moved_file(tmp_path, handler_class):
    path = tmp_path / "daemon.log"
    handler = handler_class(path)
    logger = logging.getLogger(f"tests.rotation.{handler_class.__name__}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("before")
        path.rename(tmp_path / "daemon.log.1")
        assert str(path) in service.reopen_log_files()
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (tmp_path / "daemon.log.1").read_text() == "before\n"
    assert path.read_text() == "after\n"


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
@pytest.mark.parametrize("rotation_type", ["none", "size"])
def test_sighup_moves_a_running_daemon_to_the_new_log_file(tmpdir_short, daemon, rotation_type):
    # "none" is oslo.log's default (a WatchedFileHandler); "size" a handler that
    # never looks at its path, which only the reopening on SIGHUP moves.
    log = Path(tmpdir_short) / "kwapi-api.log"
    rotated = Path(tmpdir_short) / "kwapi-api.log.1"
    api = start_api(
        daemon,
        tmpdir_short,
        log_file=log,
        log_rotation_type=rotation_type,
        max_logfile_size_mb=100,
    )
    wait_for(lambda: "serving the API" in read(log), 10, "the start in the log file")
    log.rename(rotated)  # what logrotate does, then its postrotate: kill -HUP
    api.process.signal(signal.SIGHUP)
    wait_for(lambda: "received SIGHUP" in read(log), 10, "the SIGHUP line in the new file")
    # More lines: a message signed with the wrong secret is rejected, with a warning.
    forger = bus_publisher(api.bus, secret="not-the-secret")
    try:
        wait_for(
            lambda: (
                forger.publish(Measurement("forged", time.time(), {"w": 1.0}))
                or "rejected" in read(log)
            ),
            20,
            "a rejection logged in the new file",
        )
    finally:
        forger.close()
    assert api.wait_healthy()["status"] == "ok"  # still running, still answering
    assert api.process.process.poll() is None
    old = rotated.read_text()
    assert "serving the API" in old
    assert "received SIGHUP" not in old and "rejected" not in old
    assert api.process.stop() == 0
    assert "stopped; state of" in read(log)
    assert api.process.output() == ""  # nothing on stderr, no traceback


def current_user_and_group() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate not installed (Debian package logrotate)")
def test_logrotate_accepts_the_shipped_configuration(tmp_path):
    # The shipped file, on a folder of this test's and as this test's user.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "kwapi-api.log").write_text("a line\n")
    user, group = current_user_and_group()
    text = LOGROTATE_CONF.read_text()
    assert "/var/log/kwapi/*.log {" in text and "su kwapi kwapi" in text
    conf = tmp_path / "kwapi"
    conf.write_text(
        text.replace("/var/log/kwapi", str(logs)).replace("kwapi kwapi", f"{user} {group}")
    )
    result = subprocess.run(
        [LOGROTATE, "--debug", "--force", "--state", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error" not in output.lower(), output
    for expected in (
        "(14 rotations)",
        "empty log files are not rotated",
        "renaming " + str(logs / "kwapi-api.log") + " to " + str(logs / "kwapi-api.log.1"),
        "running postrotate script",
        "--kill-whom=main 'kwapi-*.service'",
    ):
        assert expected in output, output


def test_the_postrotate_script_is_valid_shell():
    text = LOGROTATE_CONF.read_text()
    script = text.split("postrotate\n", 1)[1].split("endscript", 1)[0]
    assert "kill --signal=HUP --kill-whom=main 'kwapi-*.service'" in script
    assert "pkill -HUP -x 'kwapi-(drivers|forwarder|api|rrd|history)'" in script
    result = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
