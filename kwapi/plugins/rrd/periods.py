"""Graph periods and meters: how far back each graph looks, and what each meter measures."""

from __future__ import annotations

from dataclasses import dataclass

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
