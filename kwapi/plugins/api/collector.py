"""The energy collector: each probe's latest readings and the energy it has used.

Energy is integrated on the drivers' timestamps with the trapezoidal rule, so
bus delays do not bend it; a negative reading counts as 0 W there, and an
interval that would make the counter overflow is skipped as a gap, so the
counter never decreases and stays finite.  One thread (the receiver)
writes; any number of threads read.  Records are immutable: the writer
replaces or adds a probe's record in one dictionary assignment, and a
reader that walks the records walks a copy made by ``dict.copy()``, which
runs whole while it holds the GIL (no Python code runs while a dictionary
of strings is copied), so a reader never sees half an update and never
takes a lock.  (Swapping in a grown copy at each new probe instead cost
the writer O(n) per probe: 10,000 probes copied 50 million entries.)
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from kwapi.bus.protocol import POWER_METER, Batch, Measurement, Message
from kwapi.plugins.energy import energy_step

SECONDS_PER_HOUR = 3600.0
#: A measurement with this meter at 0 (a stream that is down) replaces every
#: other meter of its probe but ``w``, so no stale bitrate or fps is served.
UP_METER = "up"
#: Keys of a probe's API object that are not plain meters.
COMPUTED_KEYS = frozenset({"timestamp", "kwh"})

_EMPTY: Mapping[str, float] = MappingProxyType({})


class ProbeRecord(NamedTuple):
    """What is known of one probe; immutable, replaced as a whole on every update.

    ``timestamp`` is the driver time of the last accepted measurement,
    ``meters`` the last value of every meter the probe has sent (``w`` is
    watts; a measurement with ``up`` = 0 clears all but ``w``), ``kwh``
    the energy integrated since the probe was first seen,
    ``power_timestamp`` the driver time of the last ``w`` reading and
    ``gaps`` how many intervals were skipped: longer than ``max_gap``, or
    with an energy that would make ``kwh`` (or its joules) overflow.
    (A named tuple rather than a frozen dataclass: it is built for every
    measurement, and a tuple is built twice as fast.  ``meters`` is a plain
    dictionary that nothing changes once the record is made, read-only by
    its type: a read-only proxy would cost 48 bytes per probe.)
    """

    probe_id: str
    timestamp: float
    kwh: float = 0.0
    meters: Mapping[str, float] = _EMPTY
    power_timestamp: float | None = None
    gaps: int = 0

    @property
    def w(self) -> float | None:
        """The last power reading in watts, if the probe sends any."""
        return self.meters.get(POWER_METER)

    def as_api(self) -> dict[str, float]:
        """The flat object the REST API serves: timestamp, kwh, w and other meters."""
        meters = self.meters
        body = {"timestamp": self.timestamp, "kwh": self.kwh}
        body.update(meters)
        if not COMPUTED_KEYS.isdisjoint(meters):  # a meter named kwh is not the energy
            body["timestamp"], body["kwh"] = self.timestamp, self.kwh
        return body


class Collector:
    """Folds accepted measurements and batches into per-probe records.

    A probe whose last measurement is more than *cleaning_interval* seconds
    old (by *clock*) is left out of :meth:`visible`, but its record is kept
    so that its energy resumes where it was if the probe comes back.
    """

    def __init__(
        self,
        *,
        max_gap: float = 120.0,
        cleaning_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
        records: Iterable[ProbeRecord] = (),
    ) -> None:
        self.max_gap = max_gap
        self.cleaning_interval = cleaning_interval
        self._clock = clock
        self._records: dict[str, ProbeRecord] = {r.probe_id: r for r in records}
        #: Measurements ignored because they were not newer than the probe's last one.
        self.out_of_order = 0

    def fold(self, message: Message) -> None:
        """Fold a single-sample message or a batch into its probe's record."""
        if isinstance(message, Batch):
            self.add_batch(message)
        else:
            self.add(message)

    def add(self, measurement: Measurement) -> None:
        """Fold *measurement* into its probe's record (call from one thread only)."""
        records = self._records
        old = records.get(measurement.probe_id)
        meters = measurement.meters
        timestamp = measurement.timestamp
        if old is None:
            records[measurement.probe_id] = ProbeRecord(
                measurement.probe_id,
                timestamp,
                meters=dict(meters),
                power_timestamp=timestamp if POWER_METER in meters else None,
            )
            return
        if timestamp <= old.timestamp:
            self.out_of_order += 1
            return
        kwh, gaps, power_timestamp = old.kwh, old.gaps, old.power_timestamp
        w_new = meters.get(POWER_METER)
        if w_new is not None:
            w_old = old.meters.get(POWER_METER)
            if w_old is not None and power_timestamp is not None:
                total = energy_step(kwh, w_old, w_new, timestamp - power_timestamp, self.max_gap)
                if total is None:
                    gaps += 1
                else:
                    kwh = total
            power_timestamp = timestamp
        # old.probe_id, not the message's: one copy of the id per probe.
        records[old.probe_id] = ProbeRecord(
            old.probe_id,
            timestamp,
            kwh,
            _merged(old.meters, meters, meters.get(UP_METER) == 0),
            power_timestamp,
            gaps,
        )

    def add_batch(self, batch: Batch) -> None:
        """Fold every sample of *batch* into its probe's record in one new record.

        The result is the record that :meth:`add` would leave after each
        sample in turn, to the bit, but built once per batch.
        """
        timestamps, series = batch.timestamps, batch.meters
        old = self._records.get(batch.probe_id)
        if old is None:  # the first sample founds the record, as in add()
            first = {name: values[0] for name, values in series.items()}
            self.add(Measurement(batch.probe_id, timestamps[0], first))
            old = self._records[batch.probe_id]
            start = 1
        else:
            start = bisect.bisect_right(timestamps, old.timestamp)
            self.out_of_order += start  # samples not newer than the record
        if start >= len(timestamps):
            return
        kwh, gaps, power_timestamp = old.kwh, old.gaps, old.power_timestamp
        watts = series.get(POWER_METER)
        if watts is not None:
            kwh, gaps = self._integrate(old, timestamps, watts, start)
            power_timestamp = timestamps[-1]
        up = series.get(UP_METER)
        down = up is not None and any(value == 0 for value in up[start:])
        last = {name: values[-1] for name, values in series.items()}
        self._records[old.probe_id] = ProbeRecord(
            old.probe_id,
            timestamps[-1],
            kwh,
            _merged(old.meters, last, down),
            power_timestamp,
            gaps,
        )

    def _integrate(
        self,
        old: ProbeRecord,
        timestamps: Sequence[float],
        watts: Sequence[float],
        start: int,
    ) -> tuple[float, int]:
        """*old*'s energy and gaps after the power samples from index *start* on."""
        kwh, gaps, max_gap, step = old.kwh, old.gaps, self.max_gap, energy_step
        w_prev = old.meters.get(POWER_METER)
        at = old.power_timestamp
        if w_prev is None or at is None:  # the first power reading: nothing to integrate
            w_prev, at = watts[start], timestamps[start]
            start += 1
        for index in range(start, len(timestamps)):
            timestamp, w = timestamps[index], watts[index]
            total = step(kwh, w_prev, w, timestamp - at, max_gap)
            if total is None:
                gaps += 1
            else:
                kwh = total
            w_prev, at = w, timestamp
        return kwh, gaps

    def records(self) -> list[ProbeRecord]:
        """Every record, shown or cleaned (what the state file keeps)."""
        return list(self._records.copy().values())

    def is_visible(self, record: ProbeRecord, now: float | None = None) -> bool:
        """Tell whether *record* is recent enough to be served."""
        now = self._clock() if now is None else now
        return now - record.timestamp <= self.cleaning_interval

    def visible(self) -> dict[str, ProbeRecord]:
        """Records of the probes heard from recently, sorted by probe id."""
        now = self._clock()
        limit = self.cleaning_interval
        current = [r for r in self._records.copy().values() if now - r.timestamp <= limit]
        current.sort(key=_probe_key)
        return {r.probe_id: r for r in current}

    def count_visible(self) -> int:
        """How many probes :meth:`visible` would return."""
        now = self._clock()
        limit = self.cleaning_interval
        return sum(1 for r in self._records.copy().values() if now - r.timestamp <= limit)

    def get(self, probe_id: str) -> ProbeRecord | None:
        """The record of *probe_id* if it is served, else None."""
        record = self._records.get(probe_id)
        if record is None or not self.is_visible(record):
            return None
        return record

    def latest(self, probe_id: str) -> ProbeRecord | None:
        """The record of *probe_id*, served or cleaned (None if never heard of)."""
        return self._records.get(probe_id)

    def __len__(self) -> int:
        return len(self._records)


def _probe_key(record: ProbeRecord) -> str:
    return record.probe_id


def _merged(old: Mapping[str, float], new: Mapping[str, float], down: bool) -> dict[str, float]:
    """*old* meters updated with *new* ones; only ``w`` of *old* is kept when *down*."""
    if down:
        kept = {POWER_METER: old[POWER_METER]} if POWER_METER in old else {}
        return {**kept, **new}
    return {**old, **new}
