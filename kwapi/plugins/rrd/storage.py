"""One RRD file per probe and meter, written with each measurement's own timestamp.

Layout: ``<rrd_dir>/<key>/<meter>.rrd`` where ``<key>`` is the first 32 hex
digits of the SHA-256 of the probe id, so no probe id (``..``, ``a/b``,
``a:b``) can name a path outside ``rrd_dir`` or confuse rrdtool's argument
syntax.  Each probe directory also holds a ``probe`` file with the probe id,
written before any RRD file, so the probe id of every directory is found
again after a restart (and checked against the key).

Every file has a 1 s step and, for each period of
:data:`~kwapi.plugins.rrd.periods.PERIODS`, an AVERAGE, a MIN and a MAX
archive.  A file made for a single-sample measurement has one data source,
``value``, written at each measurement's own timestamp, as always.  A file
made for a batched message (a high-frequency probe) has three: ``value``
(the time-weighted average of each second), ``min`` and ``max`` (the true
extremes of each second's samples), written once a second from the summary
of :mod:`kwapi.plugins.rrd.steps`; the AVERAGE archive of ``value`` and the
MIN and MAX archives of ``min`` and ``max`` then hold the meter's average,
minimum and maximum over each row, however many samples a second brought
(:meth:`RrdStorage.extremes` names the data sources of a file's extremes).
Either kind of file takes either kind of message: a single sample goes to
all three data sources, a one-source file gets only the averages.

When an rrdcached address is given, every rrdtool call passes
``--daemon`` so that updates, fetches and graphs all go through it, and
batches of updates go through :mod:`kwapi.plugins.rrd.rrdcached`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import rrdtool

from kwapi.bus.protocol import (
    Batch,
    Message,
    is_valid_meter_name,
    is_valid_probe_id,
)
from kwapi.plugins.rrd.periods import CONSOLIDATIONS, PERIODS, Period
from kwapi.plugins.rrd.rrdcached import RrdcachedClient, RrdcachedError
from kwapi.plugins.rrd.steps import Row, StepSummary
from kwapi.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

DS_NAME = "value"
#: The data sources whose MIN and MAX archives hold each row's true minimum and maximum.
MIN_DS, MAX_DS = "min", "max"
DS_NAMES = (DS_NAME, MIN_DS, MAX_DS)
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
    """One RRD file and what this run knows of it.

    ``last`` is the time of its last update in this run (or its start when
    this run created it; 0 when unknown: rrdtool itself then refuses old
    values), ``columns`` its data sources (3, or 1 for files made before
    ``min`` and ``max`` existed; 0 until read), ``steps`` the open second of
    batched samples (None until the first batch), ``sampled`` the time of
    the last single sample written in this run (None if none).
    """

    __slots__ = ("columns", "last", "path", "sampled", "steps", "touched")

    def __init__(self, path: str, columns: int = 0, last: float = 0.0) -> None:
        self.path = path
        self.last = last
        self.columns = columns
        self.sampled: float | None = None
        self.steps: StepSummary | None = None
        self.touched = 0.0  # time.monotonic() of the last batch taken in


#: One rrdtool update: the file, its argument (``time:values``) and how many values it writes.
_Update = tuple[_File, str, int]


def _number(value: float) -> str:
    """*value* as rrdtool reads it: U for NaN (unknown)."""
    return "U" if value != value else repr(value)


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
    ``created`` files and ``errors``; ``batched`` counts the values
    that came in batched messages (written as one update per second).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, daemon: str | None = None, heartbeat: int = 10
    ) -> None:
        self.directory = Path(directory).resolve()
        self.daemon = daemon or None
        self.heartbeat = heartbeat
        self.stats: Counter[str] = Counter(updated=0, dropped_old=0, created=0, errors=0, batched=0)
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

    def extremes(self, probe_id: str, meter: str) -> tuple[str, str]:
        """Data sources whose MIN and MAX archives hold *meter*'s true minimum and maximum.

        ``("min", "max")`` for a file of a high-frequency probe, ``("value",
        "value")`` for a one-source file (extremes of its 1 s values).
        """
        with self._lock:
            file = self._probes.get(probe_id, {}).get(meter)
        if file is None:
            file = _File(str(self.path(probe_id, meter)))
        return (MIN_DS, MAX_DS) if self._columns(file) > 1 else (DS_NAME, DS_NAME)

    def daemon_args(self) -> list[str]:
        """``--daemon ADDRESS`` when rrdcached is used, else nothing."""
        return ["--daemon", self.daemon] if self.daemon else []

    # -- writing ----------------------------------------------------------

    def update(self, message: Message) -> int:
        """Write every meter of *message* now, one rrdtool call each; return values written.

        A single sample is written at its timestamp; a batch as one update
        per completed second and meter.  A value not newer than the last
        one in its file is dropped and counted in ``stats['dropped_old']``;
        it never raises for that, but does for an invalid name or a failed
        write.
        """
        written = 0
        for file, text, values in self._updates(message, time.monotonic(), strict=True):
            try:
                rrdtool.update(file.path, *self._daemon_args, text)
            except rrdtool.OperationalError as exc:
                if _OLD_UPDATE in str(exc):
                    self.stats["dropped_old"] += values
                    continue
                self.stats["errors"] += 1
                raise
            written += values
        self.stats["updated"] += written
        return written

    def update_many(self, messages: Iterable[Message]) -> int:
        """Write every meter of every message; return values written.

        Through rrdcached, all the updates go in one BATCH (one round trip
        instead of one per value); without it, each is written as by
        :meth:`update`.  Nothing raises: a value that cannot be written is
        counted in ``stats['errors']`` and logged.
        """
        now = time.monotonic()
        updates: list[_Update] = []
        for message in messages:
            try:
                updates += self._updates(message, now)
            except (OSError, ValueError, rrdtool.OperationalError) as exc:  # not a storage bug
                self.stats["errors"] += 1
                self._log_error("cannot write %s: %s", message.probe_id, exc)
        return self._write(updates)

    def write_open_steps(self, idle: float | None = None) -> int:
        """Write the known part of every open second of batched samples; return values written.

        With *idle*, only those of files that got no batch for *idle*
        seconds (a probe that stopped); without, all of them (on stop).
        """
        now = time.monotonic()
        updates: list[_Update] = []
        for meters in list(self._probes.values()):
            for file in list(meters.values()):
                steps = file.steps
                if steps is None or (idle is not None and now - file.touched < idle):
                    continue
                row = steps.partial()
                if row is not None:
                    self._add_row(updates, file, row)
        return self._write(updates)

    def _write(self, updates: list[_Update]) -> int:
        """Send *updates*: one BATCH through rrdcached, else one rrdtool call each."""
        stats = self.stats
        if self.client is None:
            written = 0
            for file, text, values in updates:
                try:
                    rrdtool.update(file.path, text)
                except rrdtool.OperationalError as exc:
                    if _OLD_UPDATE in str(exc):
                        stats["dropped_old"] += values
                    else:
                        stats["errors"] += 1
                        self._log_error("cannot write %s: %s", file.path, exc)
                    continue
                written += values
            stats["updated"] += written
            return written
        commands = [f"UPDATE {file.path} {text}" for file, text, _ in updates]
        try:
            refused = self.client.batch(commands)
        except (OSError, RrdcachedError) as exc:
            stats["errors"] += sum(values for _, _, values in updates)
            self._log_error("cannot send %d updates to rrdcached: %s", len(commands), exc)
            return 0
        written = sum(values for _, _, values in updates)
        for index, message in refused:
            values = updates[index][2]
            written -= values
            if not values:  # an unknown-time marker the file already holds: nothing lost
                continue
            if _OLD_UPDATE in message:
                stats["dropped_old"] += values
            else:
                stats["errors"] += 1
                self._log_error("rrdcached refused %r: %s", commands[index][:200], message)
        stats["updated"] += written
        return written

    def _updates(self, message: Message, now: float, *, strict: bool = False) -> list[_Update]:
        """The updates that write *message*, file by file.

        A file that cannot be created is counted and logged, or with
        *strict* raises.
        """
        updates: list[_Update] = []
        known = self._probes.get(message.probe_id)
        batch = isinstance(message, Batch)
        first = message.first_timestamp
        start = math.ceil(first) - 1 if batch else int(first) - 1
        for meter, data in message.meters.items():
            file = known.get(meter) if known is not None else None
            if file is None:
                try:
                    file = self._create(message.probe_id, meter, start, 3 if batch else 1)
                except (OSError, ValueError, rrdtool.OperationalError) as exc:
                    if strict:
                        raise
                    self.stats["errors"] += 1
                    self._log_error("cannot create %s: %s", message.probe_id, exc)
                    continue
            if isinstance(message, Batch):
                self.stats["batched"] += len(message)
                self._add_samples(updates, file, message.timestamps, data, now)  # type: ignore[arg-type]
            elif file.steps is not None:  # a probe that sent batches: same rule for all
                self._add_samples(updates, file, (first,), (data,), now)  # type: ignore[arg-type]
            elif first <= file.last:
                self.stats["dropped_old"] += 1
            else:
                value = repr(data)
                text = value if self._columns(file) == 1 else f"{value}:{value}:{value}"
                updates.append((file, f"{first:.6f}:{text}", 1))
                file.last = file.sampled = first
        return updates

    def _add_samples(
        self,
        updates: list[_Update],
        file: _File,
        timestamps: Sequence[float],
        values: Sequence[float],
        now: float,
    ) -> None:
        """Take samples into *file*'s open second; add the updates of the seconds they complete."""
        steps = file.steps
        if steps is None:
            steps = file.steps = StepSummary(self.heartbeat, file.sampled)
        file.touched = now
        rows, dropped = steps.add(timestamps, values)
        if dropped:
            self.stats["dropped_old"] += dropped
        for row in rows:
            self._add_row(updates, file, row)

    def _add_row(self, updates: list[_Update], file: _File, row: Row) -> None:
        """Add the update of one row, unless the file already holds that time."""
        at, average, low, high = row
        marker = average is None and low != low  # NaN: nothing known up to *at*
        if at <= file.last:
            if not marker:
                self.stats["dropped_old"] += 1
            return
        file.last = at
        text = "U" if average is None else repr(average)
        if self._columns(file) != 1:
            text = f"{text}:{_number(low)}:{_number(high)}"
        updates.append((file, f"{at:.6f}:{text}", 0 if marker else 1))

    def _columns(self, file: _File) -> int:
        """How many data sources *file* has (read once from the file)."""
        if not file.columns:
            try:
                info = rrdtool.info(file.path)
            except rrdtool.OperationalError:
                return 1  # unreadable now: "value" is in every file; a write will tell
            file.columns = len(DS_NAMES) if f"ds[{MIN_DS}].type" in info else 1
        return file.columns

    def _log_error(self, message: str, *args: object) -> None:
        """Log a write error, at most one every 10 s (with a count of the others)."""
        self._errors_log.error("write", message, *args)

    def _create(self, probe_id: str, meter: str, start: int, columns: int) -> _File:
        """Create the probe directory and id file, then the meter's file from *start*.

        The file gets the first *columns* data sources of :data:`DS_NAMES`.
        """
        path = self.path(probe_id, meter)  # validates both names
        directory = path.parent
        directory.mkdir(exist_ok=True)
        id_file = directory / ID_FILE
        if not id_file.exists():
            temporary = directory / f".{ID_FILE}.tmp"
            temporary.write_text(probe_id + "\n", encoding="utf-8")
            os.replace(temporary, id_file)
        created = _File(str(path))
        names = DS_NAMES[:columns]
        if not path.exists():
            rrdtool.create(
                str(path),
                *self._daemon_args,
                "--no-overwrite",
                "--step",
                "1",
                "--start",
                str(start),
                *(f"DS:{name}:GAUGE:{self.heartbeat}:U:U" for name in names),
                *archive_definitions(),
            )
            self.stats["created"] += 1
            created = _File(str(path), columns=columns, last=float(start))
        with self._lock:
            meters = self._probes.setdefault(probe_id, {})
            return meters.setdefault(meter, created)

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
            (start, stop, row_step), names, rows = rrdtool.fetch(
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
            # Files with min and max: the true extremes are those data sources' MIN and MAX.
            wanted = {"MIN": MIN_DS, "MAX": MAX_DS}.get(cf, DS_NAME)
            column = names.index(wanted) if wanted in names else 0
            columns[cf] = [row[column] for row in rows]
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
