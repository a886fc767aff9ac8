"""The parts of kwapi-rrd's URLs, checked: each returns its value or aborts (404 or 400)."""

from __future__ import annotations

import math
import time
from http import HTTPStatus

from flask import abort, request

from kwapi.bus.protocol import is_valid_probe_id
from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.periods import (
    LONGEST_RANGE,
    PERIODS,
    SHORTEST_RANGE,
    Period,
    TimeRange,
    sort_meters,
)
from kwapi.times import ACCEPTED, TimeError, format_seconds, parse_time

#: Bounds of the ``end`` of a JSON series.  rrdtool fetches nothing before
#: 1980 (and reads a smaller number as a date, not as seconds since 1970), so
#: the longest period must fit after 1980; the upper bound is year 2100.
RRDTOOL_EPOCH = 315_446_400
END_MIN = RRDTOOL_EPOCH + max(period.seconds for period in PERIODS.values())
END_MAX = 4_102_444_800


def find_period(name: str) -> Period:
    """The period called *name*; 404 naming the others if there is none."""
    period = PERIODS.get(name)
    if period is None:
        abort(
            HTTPStatus.NOT_FOUND,
            f"There is no period called “{name}”. Choose one of: {', '.join(PERIODS)}.",
        )
    return period


def find_probe(probe: str) -> str:
    """*probe* if it has sent a measurement; 404 if not."""
    if not is_valid_probe_id(probe) or not context().storage.has(probe):
        abort(
            HTTPStatus.NOT_FOUND,
            f"No probe called “{probe}” has sent a measurement to this server yet.",
        )
    return probe


def find_meter(probe: str, meter: str | None) -> str:
    """*meter* of *probe*, or its first meter if None; 404 naming its meters if it has none."""
    meters = sort_meters(context().storage.meters(probe))
    if meter is None:
        return meters[0]
    if meter not in meters:
        abort(
            HTTPStatus.NOT_FOUND,
            f"Probe “{probe}” has no meter called “{meter}”. It has: {', '.join(meters)}.",
        )
    return meter


def find_stream(stream: str) -> str:
    """*stream* if stream_power names it; 404 if not."""
    if stream not in context().streams.streams:
        abort(
            HTTPStatus.NOT_FOUND,
            f"There is no stream called “{stream}” in this server's stream_power option.",
        )
    return stream


def end_argument() -> int | None:
    """The ``end`` query argument, in seconds since 1970; 400 outside END_MIN..END_MAX."""
    text = request.args.get("end")
    if text is None:
        return None
    valid = text.isascii() and text.isdigit() and len(text) <= len(str(END_MAX))
    if not (valid and END_MIN <= int(text) <= END_MAX):
        abort(
            HTTPStatus.BAD_REQUEST,
            f"end must be a whole number of seconds since 1970, from {END_MIN} "
            f"to {END_MAX}, not {text!r:.40}",
        )
    return int(text)


def range_arguments() -> TimeRange:
    """The ``start`` and ``end`` query arguments (``end`` defaults to now) as a range.

    Each is read by :func:`kwapi.times.parse_time` (Unix seconds, RFC 3339,
    local ``YYYY-MM-DDTHH:MM[:SS]`` as an HTML form sends it, ``now``,
    ``-15m``...).  400 naming the argument when one is missing or unreadable,
    outside 1980..2100, or when the range is backwards, shorter than
    SHORTEST_RANGE or longer than the archives (LONGEST_RANGE).
    """
    now = time.time()
    start = _time_argument("start", now)
    end = _time_argument("end", now, default="now")
    span = TimeRange(math.floor(start), math.ceil(end))
    if span.end <= span.start:
        abort(HTTPStatus.BAD_REQUEST, "end: the range must end after its start")
    if span.seconds < SHORTEST_RANGE:
        abort(
            HTTPStatus.BAD_REQUEST,
            f"end: the range must last at least {SHORTEST_RANGE} s, not {span.seconds} s",
        )
    if span.seconds > LONGEST_RANGE:
        abort(
            HTTPStatus.BAD_REQUEST,
            f"start: the range may last at most {format_seconds(LONGEST_RANGE)} "
            "(what the archives keep), "
            f"not {format_seconds(span.seconds)}",
        )
    return span


def _time_argument(name: str, now: float, default: str | None = None) -> float:
    """Query argument *name* as Unix seconds; 400 naming it if missing, unreadable, out of range."""
    text = request.args.get(name, default)
    if text is None or not text.strip():
        abort(HTTPStatus.BAD_REQUEST, f"{name} is required: {ACCEPTED}")
    if len(text) > 64:
        abort(HTTPStatus.BAD_REQUEST, f"{name}: {text!r:.40}... is too long to be a time")
    try:
        value = parse_time(text, now)
    except TimeError as exc:
        abort(HTTPStatus.BAD_REQUEST, f"{name}: {exc}")
    if not RRDTOOL_EPOCH <= value <= END_MAX:
        abort(
            HTTPStatus.BAD_REQUEST,
            f"{name} must fall between 1980 and 2100 ({RRDTOOL_EPOCH} to {END_MAX}), "
            f"not {text!r:.40}",
        )
    return value
