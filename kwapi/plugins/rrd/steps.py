"""One RRD row per second from many samples: time-weighted average, true min and max.

The rule is rrdtool's own for a GAUGE (the *hold* rule): a sample's value
holds over the interval since the previous sample, ``(t_prev, t]``.  Step
*k* covers ``(k-1, k]``; its average is the integral of that step function
over the known part of the step divided by that part's length, and its
minimum and maximum are those of every sample whose interval covers some of
the step (the samples stamped inside it and the first one after it).  So the
average always lies between the minimum and the maximum.  It is what rrdtool
computes from the samples written one by one while they are less than a
second apart; where one interval spans several seconds, rrdtool gives each of
them the average of the whole interval, and this gives each its own.

An interval longer than the heartbeat is unknown, as rrdtool has it: the
sample that ends it (like the first sample of a series) only marks where
known time begins.  A step with no known part is unknown.  A step is
summarised once it is complete, that is once a sample at or after its end
has arrived, and written as one update at its end, so that its PDP, and
every MIN and MAX archive built from it, holds the true values.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from operator import mul, sub

#: One update: (time, average or None if unknown, minimum, maximum).
Row = tuple[float, float | None, float, float]


def unknown_row(time: int) -> Row:
    """An update that marks everything up to *time* unknown."""
    return (time, None, math.nan, math.nan)


class StepSummary:
    """The open step of one meter of one probe, fed batches of samples in time order.

    :meth:`add` returns the rows to write; ``last`` is the time of the last
    sample (None before the first, or after :meth:`restart`).
    """

    __slots__ = ("heartbeat", "high", "last", "low", "open", "seconds", "total")

    def __init__(self, heartbeat: float, last: float | None = None) -> None:
        self.heartbeat = heartbeat
        self.last = last  # time of the last sample taken in, None: unknown before the next
        self.open = 0 if last is None else _step_after(last)
        self.total = 0.0  # integral of the known part of the open step (value x seconds)
        self.seconds = 0.0  # length of that known part
        self.low = math.inf
        self.high = -math.inf

    def add(self, timestamps: Sequence[float], values: Sequence[float]) -> tuple[list[Row], int]:
        """Take in samples (times strictly increasing); return (rows to write, samples dropped).

        Samples not newer than the last one taken in are dropped.
        """
        rows: list[Row] = []
        count = len(timestamps)
        index = 0
        if self.last is not None and timestamps[0] <= self.last:
            index = bisect_right(timestamps, self.last)
        dropped = index
        while index < count:
            last = self.last
            timestamp = timestamps[index]
            if last is None or timestamp - last > self.heartbeat:
                self._restart_at(timestamp, rows)
                index += 1
            elif (end := bisect_right(timestamps, self.open, index)) > index:
                self._take(timestamps, values, index, end)
                index = end
            else:
                self._cross(timestamp, values[index], rows)
                index += 1
            if self.last == self.open:  # a sample right at the end completes the step
                self._close(rows)
        return rows, dropped

    def _take(
        self, timestamps: Sequence[float], values: Sequence[float], start: int, end: int
    ) -> None:
        """Samples start..end-1, all inside the open step, each held since the previous one."""
        last = self.last
        assert last is not None
        chunk = values[start:end]
        times = timestamps[start:end]
        previous = [last, *timestamps[start : end - 1]]
        self.total += sum(map(mul, chunk, map(sub, times, previous)))
        self.seconds += times[-1] - last
        low, high = min(chunk), max(chunk)
        if low < self.low:
            self.low = low
        if high > self.high:
            self.high = high
        self.last = times[-1]

    def _cross(self, timestamp: float, value: float, rows: list[Row]) -> None:
        """A sample after the open step, within the heartbeat: close the steps it holds over."""
        last = self.last
        assert last is not None
        part = self.open - last
        self.total += value * part
        self.seconds += part
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self._close(rows)
        step = math.ceil(timestamp)
        if step - 1 >= self.open:  # whole steps held at this value: one update covers them
            rows.append((step - 1, value, value, value))
        self.open = step
        self.total = value * (timestamp - (step - 1))
        self.seconds = timestamp - (step - 1)
        self.low = self.high = value
        self.last = timestamp

    def _restart_at(self, timestamp: float, rows: list[Row]) -> None:
        """The first sample, or one after a gap: the interval it ends is unknown."""
        self._close(rows)
        step = math.ceil(timestamp)
        rows.append(unknown_row(step - 1))
        self.open = step
        self.last = timestamp

    def _close(self, rows: list[Row]) -> None:
        """Append the open step's row (if it holds anything) and open the next one."""
        if self.low <= self.high:
            average = self.total / self.seconds if self.seconds > 0 else None
            rows.append((self.open, average, self.low, self.high))
        self.open += 1
        self.total = self.seconds = 0.0
        self.low, self.high = math.inf, -math.inf

    def partial(self) -> Row | None:
        """The known part of the open step as an update at the last sample (None if empty).

        Its values are then forgotten; samples that follow go on from there.
        """
        if self.last is None or self.low > self.high:
            return None
        average = self.total / self.seconds if self.seconds > 0 else None
        row = (self.last, average, self.low, self.high)
        self.total = self.seconds = 0.0
        self.low, self.high = math.inf, -math.inf
        return row


def _step_after(timestamp: float) -> int:
    """The step whose interval begins right after *timestamp*."""
    return math.floor(timestamp) + 1
