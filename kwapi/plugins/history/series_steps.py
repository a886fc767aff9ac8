"""What /v1/series/ serves of one series: its raw samples, or time-weighted averages per step.

Both drop a timestamp seen twice (the first value counts, as for the
energy). An average per step is the integral of the readings, linear
between two samples no more than ``max_gap`` apart, over the part of the
step such intervals cover, divided by that part: a step no interval
covers has none (``None``). Readings are averaged as they were sent
(negative values included): this is a meter's average, not an energy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import pairwise

from kwapi.plugins.history.energy_range import MS_PER_SECOND, Samples

#: One row of a series: (Unix seconds, value or None).
Row = tuple[float, float | None]


def distinct(samples: Samples) -> Iterator[tuple[float, float]]:
    """(seconds, value) of *samples*, the first of each timestamp only, values as floats
    (the store writes 40.0 as 40)."""
    previous = None
    for stamp, value in zip(samples.timestamps, samples.values, strict=True):
        if stamp != previous:
            previous = stamp
            yield stamp / MS_PER_SECOND, float(value)


def raw_rows(samples: Samples, start: float, end: float) -> Iterator[Row]:
    """The samples within [*start*, *end*], the first of each timestamp."""
    for seconds, value in distinct(samples):
        if start <= seconds <= end:
            yield seconds, value


def step_count(start: float, end: float, step: float) -> int:
    """How many steps of *step* seconds [start, end] is cut into (the last may be shorter)."""
    return max(1, math.ceil((end - start) / step))


def step_rows(samples: Samples, start: float, end: float, step: float, max_gap: float) -> list[Row]:
    """(start of each step, the readings' time-weighted average over it or None)."""
    count = step_count(start, end, step)
    areas = [0.0] * count
    covered = [0.0] * count
    for (t0, v0), (t1, v1) in pairwise(distinct(samples)):
        if t1 - t0 > max_gap:
            continue
        low, high = max(t0, start), min(t1, end)
        if high <= low:
            continue
        slope = (v1 - v0) / (t1 - t0)
        index = min(count - 1, int((low - start) // step))
        while low < high:
            cut = min(high, start + (index + 1) * step) if index < count - 1 else high
            v_low, v_high = v0 + slope * (low - t0), v0 + slope * (cut - t0)
            areas[index] += (v_low + v_high) / 2.0 * (cut - low)
            covered[index] += cut - low
            low, index = cut, index + 1
    return [
        (start + index * step, areas[index] / covered[index] if covered[index] > 0.0 else None)
        for index in range(count)
    ]
