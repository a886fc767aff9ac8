"""Fixtures of the RRD plugin tests: a real rrdcached, storages and a filled one."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.storage import RrdcachedClient, RrdStorage
from tests.helpers import short_tmpdir, stop_process, wait_for

RRDCACHED = shutil.which("rrdcached") or "/usr/bin/rrdcached"


class Rrdcached:
    """A real rrdcached on a unix socket that keeps updates in memory until flushed."""

    def __init__(self, base: Path, directory: Path | None = None) -> None:
        # A restart passes the directory of the previous one: same socket, same journal.
        self.directory = Path(directory or short_tmpdir())
        self.socket = self.directory / "s"
        self.address = f"unix:{self.socket}"
        journal = self.directory / "journal"
        journal.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                RRDCACHED,
                "-g",  # foreground
                "-l",
                self.address,
                "-p",
                str(self.directory / "pid"),
                "-b",
                str(base),
                "-j",
                str(journal),
                "-w",
                "3600",  # write to disk only when flushed, so tests can tell
                "-F",  # flush everything on shutdown
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.client = RrdcachedClient(self.address)
        wait_for(self._answers, 10, "rrdcached to answer")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"rrdcached exited with status {self.process.returncode}")
        try:
            self.client.stats()
        except OSError:
            return False
        return True

    def stats(self) -> dict[str, int]:
        return self.client.stats()

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def rrd_dir(tmp_path) -> Path:
    path = tmp_path / "rrd"
    path.mkdir()
    return path


@pytest.fixture
def rrdcached(rrd_dir):
    daemon = Rrdcached(rrd_dir)
    yield daemon
    daemon.stop()


@pytest.fixture
def storage(rrd_dir) -> RrdStorage:
    return RrdStorage(rrd_dir)


def fill(storage: RrdStorage, probes: dict[str, float], seconds: int = 120, end=None) -> int:
    """Write *seconds* of 1 Hz power around each probe's base value; return the last timestamp."""
    end = int(time.time()) if end is None else end
    for offset in range(seconds, 0, -1):
        timestamp = end - offset + 1
        for index, (probe, base) in enumerate(probes.items()):
            watts = base + base * 0.2 * math.sin(timestamp / 15 + index)
            storage.update(Measurement(probe, float(timestamp), {"w": watts}))
    return end


@pytest.fixture
def filled(storage) -> RrdStorage:
    """A storage with three power probes and one stream probe, two minutes of data."""
    fill(storage, {"host-1": 120.0, "pdu:outlet@3": 60.0, "gpu.0": 250.0})
    now = int(time.time())
    for offset in range(60, 0, -1):
        storage.update(
            Measurement(
                "stream-1",
                float(now - offset),
                {"up": 1, "bitrate": 2_500_000 + offset * 1000, "fps": 25},
            )
        )
    return storage
