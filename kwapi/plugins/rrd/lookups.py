"""The parts of kwapi-rrd's URLs, checked: each returns its value or aborts (404 or 400)."""

from __future__ import annotations

from http import HTTPStatus

from flask import abort, request

from kwapi.bus.protocol import is_valid_probe_id
from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.periods import PERIODS, Period, sort_meters

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
