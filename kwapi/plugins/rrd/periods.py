"""Graph periods, time ranges and meters: what each graph covers, and what each meter measures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from kwapi.bus.protocol import POWER_METER


@dataclass(frozen=True)
class Period:
    """A time span shown by a graph, backed by one archive of that resolution."""

    name: str
    title: str
    seconds: int
    resolution: int  # seconds per archive row; also how long a drawn graph stays fresh
    rows: int  # rows kept in the archive (a little more than seconds / resolution)


PERIODS: dict[str, Period] = {
    p.name: p
    for p in (
        Period("minute", "last 5 minutes", 300, 1, 600),
        Period("hour", "last hour", 3600, 10, 420),
        Period("day", "last day", 86400, 300, 320),
        Period("week", "last week", 7 * 86400, 1800, 360),
        Period("month", "last month", 31 * 86400, 7200, 400),
        Period("year", "last year", 366 * 86400, 86400, 400),
    )
}

#: Consolidation functions kept for every period.
CONSOLIDATIONS = ("AVERAGE", "MIN", "MAX")

#: The longest time the archives hold (the year archive's rows), and the shortest range.
LONGEST_RANGE = max(p.resolution * p.rows for p in PERIODS.values())
SHORTEST_RANGE = 10


def archive_resolution(age: float) -> int:
    """Seconds per row of the finest archive still holding a time *age* seconds old.

    This is the archive rrdtool reads for a range starting then (it picks the
    finest that covers the whole range).
    """
    for period in sorted(PERIODS.values(), key=lambda p: p.resolution):
        if age <= period.resolution * period.rows:
            return period.resolution
    return max(p.resolution for p in PERIODS.values())


@dataclass(frozen=True)
class TimeRange:
    """A From / To range, in whole seconds since 1970 (``start < end``)."""

    start: int
    end: int

    @property
    def seconds(self) -> int:
        """The range's length."""
        return self.end - self.start

    @property
    def title(self) -> str:
        """The range in local time: ``2026-12-06 14:02:10 to 15:47:33 CET``."""
        first = datetime.fromtimestamp(self.start).astimezone()
        last = datetime.fromtimestamp(self.end).astimezone()
        shown = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M:%S"
        zone = last.strftime("%Z") or last.strftime("%z")
        return f"{first:%Y-%m-%d %H:%M:%S} to {last.strftime(shown)} {zone}"

    def period(self, now: float | None = None) -> Period:
        """The range as a :class:`Period` ending at :attr:`end`, to draw it.

        Its resolution, that of the archive holding :attr:`start`, is also how
        long a drawing of it stays fresh.
        """
        now = time.time() if now is None else now
        resolution = archive_resolution(now - self.start)
        return Period("range", self.title, self.seconds, resolution, 0)


@dataclass(frozen=True)
class Meter:
    """How a meter is labelled and graphed."""

    name: str
    label: str
    unit: str
    energy: bool = False  # power meters also show energy (kWh) and cost


_KNOWN = {
    POWER_METER: Meter(POWER_METER, "Power", "W", energy=True),
    "bitrate": Meter("bitrate", "Bitrate", "bit/s"),
    "fps": Meter("fps", "Frame rate", "fps"),
    "width": Meter("width", "Width", "px"),
    "height": Meter("height", "Height", "px"),
    "up": Meter("up", "Up", ""),
}


def meter_info(name: str) -> Meter:
    """Return how *name* is shown; unknown meters get their name and no unit."""
    return _KNOWN.get(name) or Meter(name, name, "")


def sort_meters(names: list[str] | set[str]) -> list[str]:
    """Return meter names with power first, then alphabetically (a probe page's order)."""
    return sorted(names, key=lambda name: (name != POWER_METER, name))
