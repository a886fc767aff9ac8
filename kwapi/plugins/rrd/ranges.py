"""Energy, average, minimum, maximum and cost of each probe over a From / To range.

Read from the RRD files with one ``rrdtool xport`` of every probe's
AVERAGE, MIN and MAX power at the resolution of the finest archive that
holds the whole range (rrdtool's choice, reported as ``resolution``).  Each
row counts for the part of it inside the range, so the energy of a range
that cuts a row in two counts only the part inside.  A probe's average is
its energy over the time its rows are known; its minimum and maximum come
from its MIN and MAX archives.  The total's energy and cost are the sums of
the probes'; its average, minimum and maximum are those of the total line
(the sum of the probes' known averages, row by row, as the summary graph
draws it); its coverage is the probes' mean coverage.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import rrdtool

from kwapi.bus.protocol import POWER_METER
from kwapi.plugins.energy import JOULES_PER_KWH
from kwapi.plugins.rrd.graphs import DRAW_LOCK, rrd_text
from kwapi.plugins.rrd.periods import TimeRange
from kwapi.plugins.rrd.storage import DS_NAME, RrdStorage

#: The probe of the total row (``*`` can never be a probe id).
TOTAL_ROW = "*"
CSV_FIELDS = (
    "probe",
    "kwh",
    "joules",
    "average_w",
    "min_w",
    "max_w",
    "cost",
    "currency",
    "coverage",
    "start",
    "end",
    "resolution_s",
)


@dataclass(frozen=True)
class ProbeRange:
    """One row of the table: a probe's power over the range (None where nothing is known)."""

    probe: str
    kwh: float
    joules: float
    average_w: float | None
    min_w: float | None
    max_w: float | None
    cost: float
    coverage: float  # fraction of the range its known rows cover


@dataclass(frozen=True)
class RangeTable:
    """Every power probe over a range, and their total (probe ``*``)."""

    span: TimeRange
    resolution: int  # seconds per row of the archive read
    probes: tuple[ProbeRange, ...]
    total: ProbeRange
    kwh_price: float
    currency: str

    def as_json(self) -> dict[str, object]:
        """The table as a JSON document."""
        return {
            "start": self.span.start,
            "end": self.span.end,
            "resolution": self.resolution,
            "kwh_price": self.kwh_price,
            "currency": self.currency,
            "probes": {row.probe: _fields(row) for row in self.probes},
            "total": _fields(self.total),
        }

    def as_csv(self) -> str:
        """RFC 4180 CSV: one header line, a row per probe, then the total (probe ``*``)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_FIELDS)
        for row in (*self.probes, self.total):
            writer.writerow(
                [
                    row.probe,
                    row.kwh,
                    row.joules,
                    *("" if v is None else v for v in (row.average_w, row.min_w, row.max_w)),
                    row.cost,
                    self.currency,
                    row.coverage,
                    self.span.start,
                    self.span.end,
                    self.resolution,
                ]
            )
        return buffer.getvalue()


def _fields(row: ProbeRange) -> dict[str, object]:
    """A row's numbers, without its probe id."""
    fields = asdict(row)
    del fields["probe"]
    return fields


def range_table(
    storage: RrdStorage,
    probes: Sequence[str],
    span: TimeRange,
    *,
    kwh_price: float,
    currency: str,
) -> RangeTable:
    """The table of *probes* (their power files) over *span*, read in one ``rrdtool xport``."""
    if not probes:
        empty = _summarise(TOTAL_ROW, [], [], [], [], span, kwh_price)
        return RangeTable(span, 0, (), empty, kwh_price, currency)
    args = [
        *storage.daemon_args(),
        "--start",
        str(span.start),
        "--end",
        str(span.end),
        "--step",
        "1",  # the finest archive that covers the range
        "--maxrows",
        "1000000",  # never consolidated further by xport
    ]
    for index, probe in enumerate(probes):
        path = rrd_text(str(storage.path(probe, POWER_METER)))
        low, high = storage.extremes(probe, POWER_METER)
        sources = (("", DS_NAME, "AVERAGE"), ("_lo", low, "MIN"), ("_hi", high, "MAX"))
        for suffix, source, cf in sources:
            args += [f"DEF:p{index}{suffix}={path}:{source}:{cf}", f"XPORT:p{index}{suffix}"]
    with DRAW_LOCK:
        result = rrdtool.xport(*args)
    meta, rows = result["meta"], result["data"]
    step, first = int(meta["step"]), int(meta["start"])
    weights = [
        max(0, min(first + (i + 1) * step, span.end) - max(first + i * step, span.start))
        for i in range(len(rows))
    ]
    lines = []
    sums: list[float | None] = [None] * len(rows)
    for index, probe in enumerate(probes):
        averages = [_value(row[3 * index]) for row in rows]
        lows = [_value(row[3 * index + 1]) for row in rows]
        highs = [_value(row[3 * index + 2]) for row in rows]
        lines.append(_summarise(probe, averages, lows, highs, weights, span, kwh_price))
        for i, value in enumerate(averages):
            if value is not None:
                sums[i] = value + (sums[i] or 0.0)
    total = _summarise(TOTAL_ROW, sums, sums, sums, weights, span, kwh_price)
    coverage = sum(line.coverage for line in lines) / len(lines)
    total = ProbeRange(**{**asdict(total), "coverage": coverage})
    return RangeTable(span, step, tuple(lines), total, kwh_price, currency)


def _value(cell: object) -> float | None:
    """A known finite value of an xport cell, or None."""
    if isinstance(cell, int | float) and math.isfinite(cell):
        return float(cell)
    return None


def _summarise(
    probe: str,
    averages: Sequence[float | None],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    weights: Sequence[int],
    span: TimeRange,
    kwh_price: float,
) -> ProbeRange:
    """One line of the table from rows of average, min and max watts, each *weights* s long."""
    joules = 0.0
    covered = 0
    low = high = None
    for average, lo, hi, weight in zip(averages, lows, highs, weights, strict=True):
        if weight <= 0 or average is None:
            continue
        joules += average * weight
        covered += weight
        low = lo if low is None or (lo is not None and lo < low) else low
        high = hi if high is None or (hi is not None and hi > high) else high
    kwh = joules / JOULES_PER_KWH
    return ProbeRange(
        probe=probe,
        kwh=kwh,
        joules=joules,
        average_w=joules / covered if covered else None,
        min_w=low,
        max_w=high,
        cost=kwh * kwh_price,
        coverage=covered / span.seconds,
    )
