"""One RRD file per probe and meter, written with each measurement's own timestamp.

Layout: ``<rrd_dir>/<key>/<meter>.rrd`` where ``<key>`` is the first 32 hex
digits of the SHA-256 of the probe id, so no probe id (``..``, ``a/b``,
``a:b``) can name a path outside ``rrd_dir`` or confuse rrdtool's argument
syntax.  Each probe directory also holds a ``probe`` file with the probe id,
written before any RRD file, so the probe id of every directory is found
again after a restart (and checked against the key).

Every file has a 1 s step and, for each period of
:data:`~kwapi.plugins.rrd.periods.PERIODS`, an AVERAGE, a MIN and a MAX
archive.  When an rrdcached address is given, every rrdtool call passes
``--daemon`` so that updates, fetches and graphs all go through it, and
batches of updates go through :mod:`kwapi.plugins.rrd.rrdcached`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import rrdtool

from kwapi.bus.protocol import Measurement, is_valid_meter_name, is_valid_probe_id
from kwapi.plugins.rrd.periods import CONSOLIDATIONS, PERIODS, Period
from kwapi.plugins.rrd.rrdcached import RrdcachedClient, RrdcachedError
from kwapi.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

DS_NAME = "value"
ID_FILE = "probe"
_KEY = re.compile(r"[0-9a-f]{32}")
_OLD_UPDATE = "illegal attempt to update"
#: Seconds between two log lines about values that could not be written.
WRITE_ERRORS_LOG_PERIOD = 10.0


class StorageError(Exception):
    """The RRD directory or rrdcached cannot be used."""


def probe_key(probe_id: str) -> str:
    """Return the directory name of *probe_id*: 32 hex digits, never a path."""
    return hashlib.sha256(probe_id.encode("utf-8")).hexdigest()[:32]


class _File:
    """One RRD file and the timestamp of the last value written to it in this run."""

    __slots__ = ("last", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.last = 0.0  # unknown after a restart: rrdtool itself then refuses old values


@dataclass
class Series:
    """Values of one meter over a period, one row per ``step`` seconds."""

    start: int
    step: int
    timestamps: list[int]
    average: list[float | None]
    minimum: list[float | None]
    maximum: list[float | None]


class RrdStorage:
    """The RRD files of every probe under one directory.

    Safe to use from several threads: the index of probes is guarded by a
    lock and rrdtool calls release the GIL.  ``stats`` counts ``updated``
    values, ``dropped_old`` values (not newer than the file's last update),
    ``created`` files and ``errors``.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, daemon: str | None = None, heartbeat: int = 10
    ) -> None:
        self.directory = Path(directory).resolve()
        self.daemon = daemon or None
        self.heartbeat = heartbeat
        self.stats: Counter[str] = Counter(updated=0, dropped_old=0, created=0, errors=0)
        self._lock = threading.Lock()
        # probe id -> {meter: its file}; written under the lock, read without it
        self._probes: dict[str, dict[str, _File]] = {}
        self._daemon_args = ["--daemon", self.daemon] if self.daemon else []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.directory}: {exc.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StorageError(f"{self.directory} is not writable")
        self.client = RrdcachedClient(self.daemon) if self.daemon else None
        self._errors_log = RateLimitedLog(LOG, WRITE_ERRORS_LOG_PERIOD)
        self._load()

    # -- naming -----------------------------------------------------------

    def probe_dir(self, probe_id: str) -> Path:
        """Directory of *probe_id*'s files (whether or not it exists)."""
        return self.directory / probe_key(probe_id)

    def path(self, probe_id: str, meter: str) -> Path:
        """RRD file of one meter of one probe; ValueError for an invalid name."""
        if not is_valid_probe_id(probe_id):
            raise ValueError(f"invalid probe id {probe_id!r}")
        if not is_valid_meter_name(meter):
            raise ValueError(f"invalid meter name {meter!r}")
        return self.probe_dir(probe_id) / f"{meter}.rrd"

    def _load(self) -> None:
        """Rebuild the index of probes from the directory (after a restart)."""
        for entry in sorted(self.directory.iterdir()):
            if not (_KEY.fullmatch(entry.name) and entry.is_dir()):
                continue
            try:
                probe_id = (entry / ID_FILE).read_text(encoding="utf-8").strip()
            except OSError:
                LOG.warning("ignoring %s: it has no readable %s file", entry, ID_FILE)
                continue
            if not is_valid_probe_id(probe_id) or probe_key(probe_id) != entry.name:
                LOG.warning("ignoring %s: its %s file does not match its name", entry, ID_FILE)
                continue
            meters = {
                f.stem: _File(str(f)) for f in entry.glob("*.rrd") if is_valid_meter_name(f.stem)
            }
            self._probes[probe_id] = meters
        LOG.info("found %d probes in %s", len(self._probes), self.directory)

    # -- queries ----------------------------------------------------------

    def probes(self) -> list[str]:
        """Every probe with at least one RRD file, sorted."""
        with self._lock:
            return sorted(probe for probe, meters in self._probes.items() if meters)

    def probe_count(self) -> int:
        """How many probes have at least one RRD file."""
        return sum(1 for meters in list(self._probes.values()) if meters)

    def meters(self, probe_id: str) -> list[str]:
        """Meters recorded for *probe_id* (empty if the probe is unknown)."""
        with self._lock:
            return sorted(self._probes.get(probe_id, ()))

    def has(self, probe_id: str, meter: str | None = None) -> bool:
        """Tell whether *probe_id* (and *meter*, if given) has a file."""
        with self._lock:
            meters = self._probes.get(probe_id)
            if not meters:
                return False
            return meter is None or meter in meters

    def daemon_args(self) -> list[str]:
        """``--daemon ADDRESS`` when rrdcached is used, else nothing."""
        return ["--daemon", self.daemon] if self.daemon else []

    # -- writing ----------------------------------------------------------

    def update(self, measurement: Measurement) -> int:
        """Write every meter of *measurement* at its timestamp; return values written.

        A value not newer than the last one in its file is dropped and
        counted in ``stats['dropped_old']``; it never raises for that.
        """
        written = 0
        timestamp = measurement.timestamp
        known = self._probes.get(measurement.probe_id)
        for meter, value in measurement.meters.items():
            file = known.get(meter) if known is not None else None
            if file is None:
                file = self._create(measurement.probe_id, meter, timestamp)
            elif timestamp <= file.last:
                self.stats["dropped_old"] += 1
                continue
            try:
                rrdtool.update(file.path, *self._daemon_args, f"{timestamp:.6f}:{value!r}")
            except rrdtool.OperationalError as exc:
                if _OLD_UPDATE in str(exc):
                    self.stats["dropped_old"] += 1
                    continue
                self.stats["errors"] += 1
                raise
            file.last = timestamp
            written += 1
        self.stats["updated"] += written
        return written

    def update_many(self, measurements: Iterable[Measurement]) -> int:
        """Write every meter of every measurement; return values written.

        Through rrdcached, all the values go in one BATCH (one round trip
        instead of one per value); without it, each is written as by
        :meth:`update`.  Nothing raises: a value that cannot be written is
        counted in ``stats['errors']`` and logged.
        """
        if self.client is None:
            written = 0
            for measurement in measurements:
                errors = self.stats["errors"]
                try:
                    written += self.update(measurement)
                except (OSError, ValueError, rrdtool.OperationalError) as exc:
                    if self.stats["errors"] == errors:  # not counted by update()
                        self.stats["errors"] += 1
                    self._log_error("cannot write %s: %s", measurement.probe_id, exc)
            return written
        stats = self.stats
        commands: list[str] = []
        for measurement in measurements:
            timestamp = measurement.timestamp
            known = self._probes.get(measurement.probe_id)
            for meter, value in measurement.meters.items():
                file = known.get(meter) if known is not None else None
                if file is None:
                    try:
                        file = self._create(measurement.probe_id, meter, timestamp)
                    except (OSError, ValueError, rrdtool.OperationalError) as exc:
                        stats["errors"] += 1
                        self._log_error("cannot create %s: %s", measurement.probe_id, exc)
                        continue
                elif timestamp <= file.last:
                    stats["dropped_old"] += 1
                    continue
                commands.append(f"UPDATE {file.path} {timestamp:.6f}:{value!r}")
                file.last = timestamp
        try:
            refused = self.client.batch(commands)
        except (OSError, RrdcachedError) as exc:
            stats["errors"] += len(commands)
            self._log_error("cannot send %d updates to rrdcached: %s", len(commands), exc)
            return 0
        for index, message in refused:
            if _OLD_UPDATE in message:
                stats["dropped_old"] += 1
            else:
                stats["errors"] += 1
                self._log_error("rrdcached refused %r: %s", commands[index][:200], message)
        written = len(commands) - len(refused)
        stats["updated"] += written
        return written

    def _log_error(self, message: str, *args: object) -> None:
        """Log a write error, at most one every 10 s (with a count of the others)."""
        self._errors_log.error("write", message, *args)

    def _create(self, probe_id: str, meter: str, timestamp: float) -> _File:
        """Create the probe directory and id file, then the meter's file if missing."""
        path = self.path(probe_id, meter)  # validates both names
        directory = path.parent
        directory.mkdir(exist_ok=True)
        id_file = directory / ID_FILE
        if not id_file.exists():
            temporary = directory / f".{ID_FILE}.tmp"
            temporary.write_text(probe_id + "\n", encoding="utf-8")
            os.replace(temporary, id_file)
        if not path.exists():
            rrdtool.create(
                str(path),
                *self._daemon_args,
                "--no-overwrite",
                "--step",
                "1",
                "--start",
                str(int(timestamp) - 1),
                f"DS:{DS_NAME}:GAUGE:{self.heartbeat}:U:U",
                *archive_definitions(),
            )
            self.stats["created"] += 1
        with self._lock:
            meters = self._probes.setdefault(probe_id, {})
            return meters.setdefault(meter, _File(str(path)))

    def flush(self) -> None:
        """Make every accepted update durable (rrdcached FLUSHALL; direct writes already are)."""
        if self.client is not None:
            try:
                self.client.flush_all()
            except RrdcachedError as exc:
                raise StorageError(str(exc)) from None

    def check_daemon(self) -> None:
        """Raise StorageError if rrdcached is configured but does not answer."""
        if self.client is not None:
            try:
                self.client.stats()
            except (OSError, ValueError) as exc:
                raise StorageError(f"cannot reach rrdcached at {self.daemon}: {exc}") from None
            except RrdcachedError as exc:
                raise StorageError(str(exc)) from None

    # -- reading ----------------------------------------------------------

    def fetch(self, probe_id: str, meter: str, period: Period, end: int | None = None) -> Series:
        """Return *meter*'s average, min and max over *period* ending at *end* (now)."""
        path = str(self.path(probe_id, meter))
        step = period.resolution
        end = int(time.time()) if end is None else int(end)
        end -= end % step
        columns = {}
        for cf in CONSOLIDATIONS:
            (start, stop, row_step), _, rows = rrdtool.fetch(
                path,
                *self.daemon_args(),
                cf,
                "--resolution",
                str(step),
                "--start",
                f"end-{period.seconds}",
                "--end",
                str(end),
            )
            columns[cf] = [row[0] for row in rows]
        timestamps = list(range(start + row_step, stop + 1, row_step))[: len(columns["AVERAGE"])]
        return Series(
            start=start,
            step=row_step,
            timestamps=timestamps,
            average=columns["AVERAGE"],
            minimum=columns["MIN"],
            maximum=columns["MAX"],
        )


def archive_definitions() -> list[str]:
    """RRA definitions: each period's resolution and length, in every consolidation."""
    return [
        f"RRA:{cf}:0.5:{period.resolution}:{period.rows}"
        for period in PERIODS.values()
        for cf in CONSOLIDATIONS
    ]
