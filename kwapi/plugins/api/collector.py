"""The energy collector: each probe's latest readings and the energy it has used.

Energy is integrated on the drivers' timestamps with the trapezoidal rule, so
bus delays do not bend it; a negative reading counts as 0 W there, and an
interval that would make the counter overflow is skipped as a gap, so the
counter never decreases and stays finite.  One thread (the receiver)
writes; any number of threads read.  Records are immutable: the writer
replaces a probe's record in one dictionary assignment and, when a probe
appears, swaps in a new dictionary, so a reader never sees half an update
and never takes a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from kwapi.bus.protocol import POWER_METER, Measurement
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
    measurement, and a tuple is built twice as fast.)
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
        body = {"timestamp": self.timestamp, "kwh": self.kwh}
        for name, value in self.meters.items():
            if name not in COMPUTED_KEYS:
                body[name] = value
        return body


class Collector:
    """Folds accepted measurements into per-probe records.

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

    def add(self, measurement: Measurement) -> None:
        """Fold *measurement* into its probe's record (call from one thread only)."""
        records = self._records
        old = records.get(measurement.probe_id)
        meters = measurement.meters
        if old is None:
            record = ProbeRecord(
                measurement.probe_id,
                measurement.timestamp,
                meters=MappingProxyType(dict(meters)),
                power_timestamp=measurement.timestamp if POWER_METER in meters else None,
            )
            grown = dict(records)
            grown[measurement.probe_id] = record
            self._records = grown
            return
        if measurement.timestamp <= old.timestamp:
            self.out_of_order += 1
            return
        kwh, gaps, power_timestamp = old.kwh, old.gaps, old.power_timestamp
        w_new = meters.get(POWER_METER)
        if w_new is not None:
            w_old = old.meters.get(POWER_METER)
            if w_old is not None and power_timestamp is not None:
                seconds = measurement.timestamp - power_timestamp
                total = energy_step(kwh, w_old, w_new, seconds, self.max_gap)
                if total is None:
                    gaps += 1
                else:
                    kwh = total
            power_timestamp = measurement.timestamp
        if meters.get(UP_METER) == 0:
            kept = {POWER_METER: old.meters[POWER_METER]} if POWER_METER in old.meters else {}
            merged = {**kept, **meters}
        else:
            merged = {**old.meters, **meters}
        records[measurement.probe_id] = ProbeRecord(
            measurement.probe_id,
            measurement.timestamp,
            kwh,
            MappingProxyType(merged),
            power_timestamp,
            gaps,
        )

    def records(self) -> list[ProbeRecord]:
        """Every record, shown or cleaned (what the state file keeps)."""
        return list(self._records.values())

    def is_visible(self, record: ProbeRecord, now: float | None = None) -> bool:
        """Tell whether *record* is recent enough to be served."""
        now = self._clock() if now is None else now
        return now - record.timestamp <= self.cleaning_interval

    def visible(self) -> dict[str, ProbeRecord]:
        """Records of the probes heard from recently, sorted by probe id."""
        now = self._clock()
        limit = self.cleaning_interval
        current = [r for r in self._records.values() if now - r.timestamp <= limit]
        current.sort(key=_probe_key)
        return {r.probe_id: r for r in current}

    def count_visible(self) -> int:
        """How many probes :meth:`visible` would return."""
        now = self._clock()
        limit = self.cleaning_interval
        return sum(1 for r in self._records.values() if now - r.timestamp <= limit)

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
