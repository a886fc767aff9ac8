"""Points in time as people and job schedulers write them, read into Unix seconds.

Shared by ``kwapi energy``, the From / To range of the kwapi-rrd page and
kwapi-history's query parameters. :func:`parse_time` accepts:

- Unix seconds: ``1765029730`` or ``1765029730.25``;
- RFC 3339 / ISO 8601: ``2026-12-06T14:02:10Z``, ``2026-12-06 14:02:10+01:00``,
  with a fraction of a second if wanted; without an offset (``2026-12-06T14:02``,
  ``2026-12-06``, what an HTML ``datetime-local`` field sends) the time is
  local time on the machine that reads it (unless the caller refuses such
  times: a server does not guess its clients' time zone);
- ``now``, and times relative to now: ``-15m``, ``now-2h``, ``-90s``, ``-1d``,
  ``-1w`` (seconds, minutes, hours, days, weeks; decimals allowed).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

#: Seconds per unit of a relative time.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}

_RELATIVE = re.compile(r"(?:now)?\s*-\s*([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*([smhdw])")
_UNIX = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")

#: What :func:`parse_time` accepts, for error messages.
ACCEPTED = "Unix seconds, RFC 3339 (2026-12-06T14:02:10Z), now, or -15m / -2h / -1d"


class TimeError(ValueError):
    """A time that :func:`parse_time` cannot read."""


def parse_time(text: str, now: float | None = None, *, naive_is_local: bool = True) -> float:
    """*text* (see the module) as Unix seconds; *now* defaults to the clock.

    With *naive_is_local* false, a date-time without an offset is refused.
    Raises :class:`TimeError` naming what is accepted.
    """
    now = time.time() if now is None else now
    value = text.strip().lower()
    if value == "now":
        return now
    if _UNIX.fullmatch(value):
        return float(value)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return now - float(relative.group(1)) * UNITS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        raise TimeError(f"cannot read {text.strip()!r:.60} as a time: use {ACCEPTED}") from None
    if moment.tzinfo is None and not naive_is_local:
        raise TimeError(
            f"{text.strip()!r:.60} has no offset: add Z or +01:00 (2026-12-06T14:02:10Z)"
        )
    try:
        stamp = moment.timestamp()  # naive: local time, as the docstring says
    except (OverflowError, OSError, ValueError):
        stamp = math.nan
    if not math.isfinite(stamp):
        raise TimeError(f"{text.strip()!r:.60} is out of range")
    return stamp


def format_seconds(seconds: float) -> str:
    """A duration for people: ``1 h 45 min 23 s``, ``2 d 3 h``, ``12.5 s``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    parts = []
    for name, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {name}")
    return " ".join(parts[:3])


def format_local(stamp: float) -> str:
    """*stamp* as local RFC 3339 time to the second, with its offset."""
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")
