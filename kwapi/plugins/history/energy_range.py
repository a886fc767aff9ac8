"""Energy of a probe over [start, end] from its raw power samples, by kwapi-api's rules.

The samples of one probe come sorted by time, in milliseconds (what the
store keeps), possibly with a timestamp twice (a batch written again): the
first of them counts, as kwapi-api ignores a measurement that is not newer
than the last. Between two consecutive samples:

* watts are integrated with the trapezoid, a negative reading counting as
  0 W (:func:`kwapi.plugins.energy.integrate`), on the same float seconds as
  kwapi-api (the milliseconds divided by 1000), in the same order, so that
  the energy between two samples is kwapi-api's to the last bit;
* an interval longer than ``max_gap`` seconds is a gap: not integrated,
  counted in ``gaps`` when it overlaps the range;
* at the edges, the interval from the last sample before *start* to the first
  one inside (and from the last inside to the first after *end*) is cut at
  *start* (*end*), the power interpolated linearly between the two readings
  (each counted as 0 W if negative).

``coverage`` is the part of the range covered by integrated intervals: 1
when samples no more than ``max_gap`` apart span the whole range.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from kwapi.plugins.energy import JOULES_PER_KWH, energy_step, integrate

MS_PER_SECOND = 1000.0


class Samples(NamedTuple):
    """Raw samples of one series: milliseconds (sorted) and values, one for one."""

    timestamps: Sequence[int]
    values: Sequence[float]


class ProbeEnergy(NamedTuple):
    """What /v1/energy/ says of one probe."""

    kwh: float = 0.0
    samples: int = 0
    coverage: float = 0.0
    gaps: int = 0

    @property
    def joules(self) -> float:
        """The energy in joules."""
        return self.kwh * JOULES_PER_KWH

    def as_json(self) -> dict[str, float | int]:
        """The probe's object in the response."""
        return {
            "kwh": self.kwh,
            "joules": self.joules,
            "samples": self.samples,
            "coverage": self.coverage,
            "gaps": self.gaps,
        }


class _Run(NamedTuple):
    kwh: float
    covered: float
    gaps: int
    samples: int


def _clamped(watts: float) -> float:
    """A reading as integrated: negative (or NaN) counts as 0 W, as in :func:`integrate`."""
    return watts if watts > 0.0 else 0.0


def _first_of(timestamps: Sequence[int], index: int) -> int:
    """The index of the first sample at the timestamp of sample *index*."""
    while index > 0 and timestamps[index - 1] == timestamps[index]:
        index -= 1
    return index


def _run(timestamps: Sequence[int], values: Sequence[float], max_gap: float) -> _Run:
    """Integrate consecutive samples as kwapi-api's collector does, one interval after another.

    The loop is the hot spot of a query (8.64 million samples for a day of
    100 probes at 1 Hz): :func:`integrate`'s arithmetic is inlined, negative
    readings are set to 0 W beforehand, and the seconds covered are the
    span less the gaps.
    """
    if not timestamps:
        return _Run(0.0, 0.0, 0, 0)
    if not min(values) > 0.0:  # also true with a NaN first, which then counts as 0 W
        values = [w if w > 0.0 else 0.0 for w in values]
    seconds = map(_seconds_of, timestamps)
    watts = iter(values)
    t_first = t_prev = next(seconds)
    w_prev = next(watts)
    kwh = skipped = 0.0
    gaps = repeated = 0
    joules_per_kwh = JOULES_PER_KWH  # a local: read faster than a global, 8.64 million times
    for t, w in zip(seconds, watts, strict=True):
        interval = t - t_prev
        if 0.0 < interval <= max_gap:
            kwh += (w_prev + w) / 2.0 * interval / joules_per_kwh
            t_prev, w_prev = t, w
        elif interval > max_gap:
            gaps += 1
            skipped += interval
            t_prev, w_prev = t, w
        else:  # the same timestamp again: the first one counts
            repeated += 1
    if not math.isfinite(kwh * JOULES_PER_KWH):  # inf or NaN readings: interval by interval
        return _run_checked(timestamps, values, max_gap)
    return _Run(kwh, t_prev - t_first - skipped, gaps, len(timestamps) - repeated)


def _run_checked(timestamps: Sequence[int], values: Sequence[float], max_gap: float) -> _Run:
    """:func:`_run` through :func:`energy_step`, which skips an interval that would overflow."""
    kwh = covered = 0.0
    gaps = samples = 0
    previous: tuple[float, float] | None = None
    for stamp, watts in zip(timestamps, values, strict=True):
        t = stamp / MS_PER_SECOND
        if previous is not None:
            seconds = t - previous[0]
            if seconds <= 0.0:
                continue
            total = energy_step(kwh, previous[1], watts, seconds, max_gap)
            if total is None:
                gaps += 1
            else:
                kwh, covered = total, covered + seconds
        samples += 1
        previous = (t, watts)
    return _Run(kwh, covered, gaps, samples)


def _edge(
    first: tuple[float, float],
    second: tuple[float, float],
    start: float,
    end: float,
    max_gap: float,
) -> tuple[float, float, int]:
    """(kWh, seconds covered, gaps) of the interval *first*-*second* cut to [start, end]."""
    (t0, w0), (t1, w1) = first, second
    low, high = max(t0, start), min(t1, end)
    if high <= low or t1 <= t0:
        return 0.0, 0.0, 0
    if t1 - t0 > max_gap:
        return 0.0, 0.0, 1
    w0, w1 = _clamped(w0), _clamped(w1)
    slope = (w1 - w0) / (t1 - t0)
    w_low = w0 + slope * (low - t0) if low > t0 else w0
    w_high = w1 - slope * (t1 - high) if high < t1 else w1
    kwh = integrate(w_low, w_high, high - low)
    if not math.isfinite(kwh * JOULES_PER_KWH):
        return 0.0, 0.0, 1
    return kwh, high - low, 0


def probe_energy(samples: Samples, start: float, end: float, max_gap: float) -> ProbeEnergy:
    """Energy, sample count, coverage and gaps of *samples* over [*start*, *end*] (seconds).

    *samples* holds those within [start, end] and, for the edges, the last
    one before *start* and the first one after *end* (more are ignored).
    """
    stamps, values = samples
    if end <= start:
        raise ValueError("end must be after start")
    low = bisect_left(stamps, start, key=_seconds)
    high = bisect_right(stamps, end, key=_seconds)
    before = _point(stamps, values, _first_of(stamps, low - 1)) if low > 0 else None
    after = _point(stamps, values, high) if high < len(stamps) else None
    run = _run(stamps[low:high], values[low:high], max_gap)
    kwh, covered, gaps = 0.0, run.covered, run.gaps
    if run.samples:
        first = _point(stamps, values, low)
        last = _point(stamps, values, _first_of(stamps, high - 1))
        if before is not None:
            kwh, seconds, gap = _edge(before, first, start, end, max_gap)
            covered, gaps = covered + seconds, gaps + gap
        kwh += run.kwh
        if after is not None:
            edge_kwh, seconds, gap = _edge(last, after, start, end, max_gap)
            kwh, covered, gaps = kwh + edge_kwh, covered + seconds, gaps + gap
    elif before is not None and after is not None:
        kwh, covered, gaps = _edge(before, after, start, end, max_gap)
    coverage = min(1.0, covered / (end - start))
    return ProbeEnergy(kwh, run.samples, coverage, gaps)


def _seconds(stamp: int) -> float:
    return stamp / MS_PER_SECOND


#: :func:`_seconds` as a method of a float, which ``map`` calls without a Python frame.
_seconds_of: Callable[[int], float] = MS_PER_SECOND.__rtruediv__


def _point(stamps: Sequence[int], values: Sequence[float], index: int) -> tuple[float, float]:
    return stamps[index] / MS_PER_SECOND, values[index]


def energy_document(
    start: float, end: float, probes: Mapping[str, ProbeEnergy]
) -> dict[str, object]:
    """The /v1/energy/ response: each probe's figures, in the order given, and the total."""
    kwh = math.fsum(energy.kwh for energy in probes.values())
    return {
        "start": start,
        "end": end,
        "probes": {probe: energy.as_json() for probe, energy in probes.items()},
        "total": {"kwh": kwh, "joules": kwh * JOULES_PER_KWH},
    }
