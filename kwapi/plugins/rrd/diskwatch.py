"""Watching the file system under ``rrd_dir`` while rrdcached writes the files.

Through rrdcached, kwapi-rrd never writes an RRD file itself: rrdcached
accepts every update and reports a failed write only in its own log, so a
read-only or full disk would go unnoticed by kwapi-rrd.  :class:`DiskWatch`
checks the file system it shares with rrdcached (``statvfs``) every few
seconds, logs one line when it turns read-only or full and one when it
recovers, and gives its state to ``/stats/``.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from typing import TypedDict

from kwapi.plugins.rrd.periods import CONSOLIDATIONS, PERIODS
from kwapi.plugins.rrd.storage import DS_NAMES

LOG = logging.getLogger(__name__)

#: Bytes of the largest RRD file of kwapi-rrd (8 bytes a row and data source; a
#: high-frequency probe's file has three: average, minimum and maximum) plus its header.
RRD_FILE_BYTES = (
    sum(p.rows for p in PERIODS.values()) * len(CONSOLIDATIONS) * len(DS_NAMES) * 8 + 8192
)


class DiskState(enum.StrEnum):
    """What the file system under ``rrd_dir`` allows."""

    OK = "ok"
    FULL = "full"  # existing files are still written; a new probe gets no file
    READ_ONLY = "read-only"  # nothing is written
    UNREADABLE = "unreadable"  # statvfs itself failed (directory gone, I/O error)


#: How each state is explained in the log.
CONSEQUENCES = {
    DiskState.FULL: "new probes cannot get an RRD file until space is freed",
    DiskState.READ_ONLY: "rrdcached cannot write the RRD files: values are lost until "
    "it is writable again",
    DiskState.UNREADABLE: "rrdcached may not be able to write the RRD files",
}


def disk_state(directory: str, min_free: int = RRD_FILE_BYTES) -> tuple[DiskState, int, str]:
    """The state of the file system holding *directory*, its free bytes and why."""
    try:
        st = os.statvfs(directory)
    except OSError as exc:
        return DiskState.UNREADABLE, 0, exc.strerror or str(exc)
    free = st.f_bavail * st.f_frsize
    if st.f_flag & os.ST_RDONLY:
        return DiskState.READ_ONLY, free, "mounted read-only"
    if free < min_free:
        return DiskState.FULL, free, f"{free} bytes free, a new RRD file needs {min_free}"
    return DiskState.OK, free, ""


class DiskStatus(TypedDict):
    """What ``/stats/`` shows of the file system: its state, since when, free bytes."""

    state: str
    since: float
    free_bytes: int


class DiskWatch(threading.Thread):
    """Checks ``rrd_dir``'s file system every *interval* seconds and logs changes."""

    def __init__(
        self, directory: str, interval: float = 10.0, min_free: int = RRD_FILE_BYTES
    ) -> None:
        super().__init__(name="disk-watch", daemon=True)
        self.directory = directory
        self.interval = interval
        self.min_free = min_free
        self.state = DiskState.OK
        self.since = time.time()
        self.free_bytes = 0
        self._stop_event = threading.Event()

    def check(self) -> DiskState:
        """Look at the file system now; log a line if its state changed."""
        state, free, reason = disk_state(self.directory, self.min_free)
        self.free_bytes = free
        if state != self.state:
            if state is DiskState.OK:
                LOG.warning(
                    "rrd_dir %s is writable again (was %s for %.0f s)",
                    self.directory,
                    self.state,
                    time.time() - self.since,
                )
            else:
                LOG.error(
                    "rrd_dir %s is %s (%s): %s",
                    self.directory,
                    state,
                    reason,
                    CONSEQUENCES[state],
                )
            self.state, self.since = state, time.time()
        return state

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.check()
            except Exception:  # a bug here must not end the watch
                LOG.exception("could not check the file system of %s", self.directory)

    def stop(self) -> None:
        self._stop_event.set()

    def snapshot(self) -> DiskStatus:
        """The state for ``/stats/``: state, since when, free bytes."""
        return {"state": str(self.state), "since": self.since, "free_bytes": self.free_bytes}
