"""RRD files: a real rrdcached, storages filled with power and stream data, and
what the files hold."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import rrdtool

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.rrdcached import RrdcachedClient
from kwapi.plugins.rrd.storage import RrdStorage, probe_key
from tests.harness.processes import short_tmpdir, stop_process, wait_for

RRDCACHED = shutil.which("rrdcached") or "/usr/bin/rrdcached"
#: What the tests' rrdcached does with updates: write them to disk only when
#: flushed (so that a test can tell), and everything on shutdown.
FLUSHED_ONLY = ("-w", "3600", "-F")
#: What the benchmarks' rrdcached does, as a busy site's: writes deferred up to
#: 10 minutes, spread over 5, by 4 threads.
DEFERRED_WRITES = ("-w", "600", "-z", "300", "-t", "4")


class Rrdcached:
    """A real rrdcached on a unix socket for the files under *base*.

    *writes* are its options about writing (default: keep updates in memory
    until flushed).
    """

    def __init__(
        self, base: Path, directory: Path | None = None, writes: Sequence[str] = FLUSHED_ONLY
    ) -> None:
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
                *writes,
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


# -- data written ---------------------------------------------------------------


def fill(storage: RrdStorage, probes: dict[str, float], seconds: int = 120, end=None) -> int:
    """Write *seconds* of 1 Hz power around each probe's base value; return the last timestamp."""
    end = int(time.time()) if end is None else end
    for offset in range(seconds, 0, -1):
        timestamp = end - offset + 1
        for index, (probe, base) in enumerate(probes.items()):
            watts = base + base * 0.2 * math.sin(timestamp / 15 + index)
            storage.update(Measurement(probe, float(timestamp), {"w": watts}))
    return end


#: The meters of three streams: a video in HD, one in SD, a radio.
HD = {"up": 1, "bitrate": 4_000_000.0, "fps": 25.0, "width": 1280.0, "height": 720.0}
SD = {"up": 1, "bitrate": 1_000_000.0, "fps": 25.0, "width": 640.0, "height": 360.0}
RADIO = {"up": 1, "bitrate": 128_000.0}


def fill_streams(storage: RrdStorage, end: int, seconds: int = 120) -> None:
    """*seconds* of 1 Hz data: enc at 100 W; sd goes down for the last half."""
    for timestamp in range(end - seconds + 1, end + 1):
        at = float(timestamp)
        storage.update(Measurement("enc", at, {"w": 100.0}))
        storage.update(Measurement("hd", at, HD))
        storage.update(Measurement("radio", at, RADIO))
        down = timestamp > end - seconds // 2
        storage.update(Measurement("sd", at, {"up": 0} if down else SD))


# -- what the files hold ---------------------------------------------------------


def rrd_last(rrd_dir: Path, probe="node-1", daemon: str | None = None) -> int:
    """Time of the last value in *probe*'s power file (0 if none yet)."""
    path = rrd_dir / probe_key(probe) / "w.rrd"
    if not path.exists():
        return 0
    args = ["--daemon", daemon] if daemon else []
    try:
        return rrdtool.last(str(path), *args)
    except rrdtool.OperationalError:
        return 0


def assert_rrd_files_sound(rrd_dir: Path) -> int:
    """rrdtool info and fetch work on every file; return how many files."""
    files = sorted(rrd_dir.glob("*/*.rrd"))
    for path in files:
        info = rrdtool.info(str(path))
        assert info["step"] == 1 and info["ds[value].type"] == "GAUGE"
        rrdtool.fetch(str(path), "AVERAGE", "--start", "end-300")
    return len(files)


def values_between(rrd_dir: Path, start: int, end: int, probe="node-1") -> list[float]:
    """Known 1 s averages of *probe*'s power from *start* to *end*, read from the file."""
    path = rrd_dir / probe_key(probe) / "w.rrd"
    (_, _, step), _, rows = rrdtool.fetch(
        str(path), "AVERAGE", "--resolution", "1", "--start", str(start), "--end", str(end)
    )
    assert step == 1
    return [row[0] for row in rows if row[0] is not None]


def flush(rrd_dir: Path, address: str) -> None:
    """Have rrdcached write every file's pending updates (FLUSH waits; FLUSHALL does not)."""
    for path in rrd_dir.glob("*/*.rrd"):
        rrdtool.flushcached("--daemon", address, str(path))
